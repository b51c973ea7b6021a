"""``botlib promote | rollback | models | feed | serve``: from the registry to signals."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from botlib.cli._common import console, err_console, print_json, progress_bar

feed_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Put closed candles on the Redis bar streams (and python:market_data).",
    no_args_is_help=True,
)


def promote(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. nn-lstm-btc_usdt-1h.")],
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version (default: the newest).")
    ] = None,
    metric: Annotated[
        str, typer.Option(help="Gate metric (total_return, sharpe, sortino, calmar, cagr).")
    ] = "total_return",
    margin: Annotated[
        float, typer.Option(help="Must beat buy-and-hold and flat by this much (metric units).")
    ] = 0.0,
    min_trades: Annotated[int, typer.Option(help="Fewest out-of-sample trades.")] = 3,
    min_dsr: Annotated[
        float | None, typer.Option(help="Optimizations: least deflated Sharpe ratio (0-1).")
    ] = None,
    max_pbo: Annotated[
        float | None, typer.Option(help="Optimizations: most probability of overfitting.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Promote even if the gate fails (recorded on the version).")
    ] = False,
    no_redis: Annotated[
        bool, typer.Option("--no-redis", help="Move the alias only; write nothing to Redis.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the gate's checks as JSON.")
    ] = False,
) -> None:
    """Gate a registered version and, if it passes, make it @champion (the old one
    becomes @previous), write it to botlib:active_models and announce it; a running
    `botlib serve` switches to it between two bars.

        botlib promote nn-lstm-btc_usdt-1h --margin 0.01
    """
    from botlib.promotion import GateConfig, PromotionRefusedError
    from botlib.promotion import promote as do_promote

    gate = GateConfig(
        metric=metric,
        margin=margin,
        min_trades=min_trades,
        min_deflated_sharpe=min_dsr,
        max_pbo=max_pbo,
    )
    try:
        result = do_promote(name, version, gate=gate, force=force, publish=not no_redis)
    except PromotionRefusedError as exc:
        if as_json:
            print_json(exc.result.to_dict())
        else:
            _checks(exc.result)
        err_console.print(f"[bold red]refused:[/] {name} v{exc.result.version}")
        raise typer.Exit(1) from None
    if as_json:
        print_json(result.to_dict())
        return
    _checks(result)
    how = "promoted" if result.passed else "[yellow]FORCED[/] (gate failed)"
    console.print(f"{name} v{result.version} {how} → @champion")


def _checks(result: object) -> None:
    table = Table(title=f"promotion gate: {result.name} v{result.version}")  # type: ignore[attr-defined]
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    for check in result.checks:  # type: ignore[attr-defined]
        table.add_row(
            check.name, "[green]pass[/]" if check.passed else "[red]FAIL[/]", check.detail
        )
    console.print(table)


def rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    no_redis: Annotated[bool, typer.Option("--no-redis", help="Move the alias only.")] = False,
) -> None:
    """Move @champion back to @previous (and tell the loop)."""
    from botlib.promotion import rollback as do_rollback

    old, new = do_rollback(name, publish=not no_redis)
    console.print(f"{name}: @champion v{old} → v{new}")


def deactivate(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
) -> None:
    """Stop serving a model: it leaves the active models (the loop stops at once) and
    loses @champion; a model bound to the backend's id is announced inactive."""
    from botlib.promotion import deactivate as do_deactivate

    was = do_deactivate(name)
    console.print(f"{name}: no longer served" + (f" (was v{was['version']})" if was else ""))


def bind(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    model_id: Annotated[str, typer.Argument(help="The backend's model id (a UUID).")],
    user_id: Annotated[
        str | None, typer.Option(help="The owner's user id (a UUID), if known.")
    ] = None,
    symbol_as: Annotated[
        str | None,
        typer.Option(help="The market as the backend spells it (BTCUSDT): its records use it."),
    ] = None,
) -> None:
    """Bind a registered model to the backend's model id (its ai_models row): from its
    next promotion on, its predictions and signals carry that id.

        botlib bind nn-lstm-btc_usdt-1h 6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f
    """
    from botlib.tracking.identity import bind_model, set_symbol_as

    ident = bind_model(name, model_id, user_id=user_id)
    set_symbol_as(name, symbol_as)
    console.print(
        f"{name} is model {ident.model_id}"
        + (f" of user {ident.user_id}" if ident.user_id else "")
        + "; promote it again for the live records to carry the id"
    )


def bind_strategy(
    strategy: Annotated[str, typer.Argument(help="Rule strategy: sma_cross, rsi_reversion.")],
    strategy_id: Annotated[str, typer.Argument(help="The backend's strategy id (a UUID).")],
    user_id: Annotated[
        str | None, typer.Option(help="The owner's user id (a UUID), if known.")
    ] = None,
) -> None:
    """Bind the backend's strategy id to a rule strategy: its optimize_strategy commands
    then search that strategy's parameters (aliases such as rsi_period are accepted).

        botlib bind-strategy rsi_reversion 0b6f0d1e-3c2a-4f5e-8d7c-9a1b2c3d4e5f
    """
    from botlib.tracking.identity import bind_strategy as do_bind

    bound = do_bind(strategy, strategy_id, user_id=user_id)
    console.print(f"strategy {bound.strategy_id} is {bound.strategy} (registered as {bound.name})")


def models(
    as_json: Annotated[bool, typer.Option("--json", help="The backend's ai_models rows.")] = False,
) -> None:
    """Registered models with aliases, status and out-of-sample metrics."""
    from botlib.promotion import list_models

    rows = list_models()
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no registered models yet: run `botlib pipeline run quick` or a notebook")
        return
    table = Table(title="registered models")
    for col in ("name", "status", "version", "aliases", "return", "sharpe", "trades"):
        table.add_column(col)
    for row in rows:
        m = row["performance_metrics"]
        table.add_row(
            row["name"],
            row["status"],
            row["version"],
            " ".join(f"@{a}=v{v}" for a, v in row["aliases"].items()) or "–",
            f"{m['test.total_return']:+.2%}" if "test.total_return" in m else "–",
            f"{m['test.sharpe']:.2f}" if "test.sharpe" in m else "–",
            f"{m['test.trades']:.0f}" if "test.trades" in m else "–",
        )
    console.print(table)


@feed_app.command("replay")
def feed_replay(
    symbol: Annotated[str, typer.Option(help="Market.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="Bar length.")] = "1h",
    start: Annotated[str | None, typer.Option(help="First bar (UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Stop before (UTC).")] = None,
    last: Annotated[
        int | None, typer.Option(help="Only the last N bars of the window.", min=1)
    ] = None,
    file: Annotated[
        str | None, typer.Option(help="A CSV/parquet of candles instead of stored data.")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Stored candles from: reference, local (imported) or an exchange id "
            "(default: the first that holds the market)."
        ),
    ] = None,
    exchange: Annotated[
        str | None, typer.Option(help="Exchange name on the stream (default: settings).")
    ] = None,
    speed: Annotated[
        float, typer.Option(help="Multiple of real time (3600 with 1h = a bar a second); 0 = max.")
    ] = 0.0,
) -> None:
    """Replay stored candles onto the bar stream, as a live feed would: only those after
    the newest bar already on the stream.

    botlib feed replay --start 2025-06-01 --last 500 --speed 36000
    """
    import pandas as pd

    from botlib.data import load_ohlcv, read_candles_file
    from botlib.live import last_published, replay
    from botlib.settings import get_settings
    from botlib.transport import connect

    candles = (
        read_candles_file(file)
        if file
        else load_ohlcv(symbol, timeframe, start=start, end=end, source=source)
    )
    if last is not None:
        candles = candles.iloc[-last:]
    ex = exchange or get_settings().exchange_id
    r = connect(role="feed")
    # like a restarted live feed: only bars after the newest one already on the stream
    newest = last_published(r, ex, symbol, timeframe)
    if newest is not None:
        stamp = pd.Timestamp(newest, unit="ms", tz="UTC")
        skipped = int((candles.index <= stamp).sum())
        candles = candles.loc[candles.index > stamp]
        if skipped:
            err_console.print(
                f"{skipped} bars skipped: the stream already holds bars up to "
                f"{stamp:%Y-%m-%d %H:%M} UTC (replayed again, they would be set aside as "
                "repeats)"
            )
    with progress_bar(f"replay {symbol} {timeframe}") as update:
        n = replay(
            r,
            candles,
            exchange=ex,
            symbol=symbol,
            timeframe=timeframe,
            speed=speed,
            progress=update,
        )
    console.print(f"published {n} bars of {symbol} {timeframe} ({ex})")


@feed_app.command("ccxt")
def feed_ccxt(
    symbol: Annotated[str, typer.Option(help="Market.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="Bar length.")] = "1h",
    exchange: Annotated[str | None, typer.Option(help="ccxt exchange id.")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between polls.")] = 10.0,
    max_polls: Annotated[int | None, typer.Option(help="Stop after N polls.")] = None,
) -> None:
    """Poll closed candles through ccxt's REST API and publish each once."""
    from botlib.live import poll_ccxt
    from botlib.transport import connect

    n = poll_ccxt(
        connect(role="feed"), symbol, timeframe, exchange=exchange, poll_s=poll, max_polls=max_polls
    )
    console.print(f"published {n} bars")


@feed_app.command("watch")
def feed_watch(
    symbol: Annotated[str, typer.Option(help="Market.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="Bar length.")] = "1h",
    exchange: Annotated[str | None, typer.Option(help="ccxt exchange id.")] = None,
    lookback: Annotated[int, typer.Option(help="Closed bars fetched first (REST).")] = 500,
) -> None:
    """Stream closed candles from the exchange's websocket (ccxt watch_ohlcv); a dropped
    connection is resumed and the candles it missed are fetched over REST."""
    from botlib.live.watch import watch_ccxt
    from botlib.transport import connect

    try:
        n = watch_ccxt(
            connect(role="feed"), symbol, timeframe, exchange=exchange, lookback=lookback
        )
    except KeyboardInterrupt:
        n = 0
    console.print(f"published {n} bars")


def serve(
    exchange: Annotated[
        str | None, typer.Option(help="Exchange of the bar streams (default: settings).")
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            help="This process's name among the loops (unique; keep it across restarts to "
            "take its markets back at once). Default: HOST-serve-PID."
        ),
    ] = None,
    batch: Annotated[int, typer.Option(help="Most bars read per stream per step.", min=1)] = 256,
    history: Annotated[
        int, typer.Option(help="Bars kept beyond the models' required history.", min=0)
    ] = 1000,
    max_model_age_days: Annotated[
        float, typer.Option(help="Models older than this stop signalling (0 = no limit).")
    ] = 30.0,
    bot_id: Annotated[str | None, typer.Option(help="bot_id written on every signal.")] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without a bar.")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(help="Runtime config file (JSON/YAML), re-read when it changes."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Also serve /metrics on 127.0.0.1:PORT.")
    ] = None,
    max_price_jump: Annotated[
        float,
        typer.Option(
            help="Set aside a bar with a price more than this factor from the last close."
        ),
    ] = 10.0,
    clock_skew: Annotated[
        float, typer.Option(help="Seconds a bar's close may lie in the future (clock skew).")
    ] = 60.0,
    lease_ttl: Annotated[
        float,
        typer.Option(help="Seconds before a dead loop process's markets move to another.", min=1),
    ] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-V", help="Log every model swap.")] = False,
) -> None:
    """Run the signal loop: every active model on every closed candle, predictions and
    signals to Redis (streams and the backend's channels). Stop with Ctrl-C / SIGTERM.
    """
    from botlib.live import LoopConfig, SignalLoop
    from botlib.settings import get_settings

    if verbose:
        logging.getLogger("botlib").setLevel(logging.INFO)
    else:
        logging.getLogger("botlib.serve").setLevel(logging.INFO)
    settings = get_settings()
    kwargs: dict[str, object] = {
        "exchange": exchange or settings.exchange_id,
        "batch": batch,
        "history": history,
        "max_model_age_days": max_model_age_days or None,
        "bot_id": bot_id,
        "max_price_jump": max_price_jump,
        "clock_skew_s": clock_skew,
        "lease_ttl_s": lease_ttl,
    }
    if consumer:
        kwargs["consumer"] = consumer
    loop = SignalLoop(config=LoopConfig(**kwargs), config_file=config_file)  # type: ignore[arg-type]
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    if metrics_port is not None:
        from botlib.monitor import serve_metrics

        serve_metrics(loop.r, loop.names, port=metrics_port)
        console.print(f"metrics on http://127.0.0.1:{metrics_port}/metrics")
    loop.load_active()
    if not loop.served:
        err_console.print("no active models yet: waiting for `botlib promote …`")
    try:
        stats = loop.run(idle_exit_s=idle_exit)
    except KeyboardInterrupt:
        stats = loop.stats
    console.print(
        f"served {stats.bars} bars: {stats.predictions} predictions, {stats.signals} signals, "
        f"{stats.validated} scored, {stats.deadletters} dead-lettered, {stats.errors} errors"
    )


def bridge(
    workers: Annotated[int, typer.Option(help="Worker processes for long commands.", min=1)] = 1,
    experiment: Annotated[str, typer.Option(help="MLflow experiment of the runs it starts.")] = (
        "botlib-bridge"
    ),
    config_file: Annotated[
        Path | None,
        typer.Option(help="Runtime config file (rate limits), re-read when it changes."),
    ] = None,
    time_limit: Annotated[
        float,
        typer.Option(help="Seconds a train/optimize/backtest may run before it is stopped."),
    ] = 6 * 3600.0,
) -> None:
    """Answer the backend's commands (elysia:command and botlib:commands): train,
    backtest, optimize, generate_signal, get_predictions, promote, rollback. Stop with
    Ctrl-C / SIGTERM."""
    from botlib.bridge.service import BridgeConfig, CommandService

    logging.getLogger("botlib.bridge").setLevel(logging.INFO)
    service = CommandService(
        config=BridgeConfig(workers=workers, experiment=experiment, time_limit_s=time_limit),
        config_file=config_file,
    )
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    console.print("listening on elysia:command and botlib:commands (Ctrl-C to stop)")
    try:
        service.run()
    except KeyboardInterrupt:
        service.stop()
    console.print(f"handled {service.handled} commands")


def watch_registry(
    interval: Annotated[
        float, typer.Option(help="Seconds between two looks at the registry.", min=0.2)
    ] = 2.0,
    margin: Annotated[
        float, typer.Option(help="The gate's margin over the baselines (as `botlib promote`).")
    ] = 0.0,
    min_trades: Annotated[
        int, typer.Option(help="The gate's fewest round trips (as `botlib promote`).", min=0)
    ] = 3,
    once: Annotated[bool, typer.Option("--once", help="One look, then exit.")] = False,
) -> None:
    """Make the registry's @champion what the loop serves: a version given @champion in
    the MLflow UI (or its API, or a notebook) is gated as `botlib promote` gates it and
    published, or refused with the alias moved back and the failed checks on the
    version; @champion moved onto @previous rolls back without the gate; a deleted
    @champion stops serving. Only versions botlib's training logged are considered.
    Stop with Ctrl-C / SIGTERM."""
    from botlib.promotion import GateConfig
    from botlib.registry_watch import RegistryWatcher

    if not once:
        logging.getLogger("botlib.registry").setLevel(logging.INFO)
    watcher = RegistryWatcher(
        gate=GateConfig(margin=margin, min_trades=min_trades), interval_s=interval,
        fetch_ahead=not once,
    )  # fmt: skip
    if once:
        try:
            for action in watcher.poll():
                console.print(f"{action.name}: {action.action} v{action.version} {action.detail}")
        finally:
            watcher.close()
        return
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    console.print(f"watching the registry's @champion every {interval:g} s (Ctrl-C to stop)")
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop()


def paper(
    shadow_every: Annotated[
        int, typer.Option(help="Bars between two shadow backtests of an account.", min=1)
    ] = 24,
    cash: Annotated[
        float | None, typer.Option(help="Each account's starting cash (default: settings).")
    ] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without a signal.")
    ] = None,
) -> None:
    """Trade every served model's signals on paper, per model version and market: the
    records in botlib:signals (what the backend gets) on the bars of the market's
    stream, with the backtest's fills, fees and stops. Beside each account its shadow
    backtest (the model's backtest over the same bars) must agree; a missing signal or
    a difference is a parity break, reported by `botlib status` and alerted on
    python:model_alert. State in Redis (botlib:paper*): a restart continues.
    Stop with Ctrl-C / SIGTERM."""
    from botlib.live.paper import PaperBook, PaperConfig

    logging.getLogger("botlib.paper").setLevel(logging.INFO)
    book = PaperBook(config=PaperConfig(cash=cash, shadow_every=shadow_every))
    signal.signal(signal.SIGTERM, lambda *_: book.stop())
    console.print("paper accounts on botlib:signals (Ctrl-C to stop)")
    try:
        n = book.run(idle_exit_s=idle_exit)
    except KeyboardInterrupt:
        n = book.applied
    console.print(f"applied {n} signals to {len(book.accounts)} paper accounts")
