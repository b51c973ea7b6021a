"""``botlib demo``: the main job on the reference data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from botlib.cli._common import console, progress_bar
from botlib.cli._tables import leaderboard_table, metrics_rich_table
from botlib.settings import get_settings

#: The rule strategies the demo compares, with their parameters.
DEMO_STRATEGIES: dict[str, dict[str, float]] = {
    "sma_cross": {"fast": 24, "slow": 168},
    "rsi_reversion": {"window": 14, "lower": 25.0, "upper": 60.0, "stop_atr": 3.0},
}


def demo(
    symbol: Annotated[str, typer.Option(help="Market.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="Bar length.")] = "1h",
    start: Annotated[str, typer.Option(help="First bar (UTC).")] = "2023-01-01",
    end: Annotated[str | None, typer.Option(help="Stop before (UTC); default: all data.")] = None,
    report: Annotated[Path | None, typer.Option(help="HTML report path.")] = None,
    models: Annotated[bool, typer.Option(help="Also train every model family.")] = True,
) -> None:
    """Backtest the rule strategies on the reference candles, print their metrics beside
    buy-and-hold and flat, and write a plotly HTML report; then train every model family
    with a small budget (70 % train, 15 % validation) and print an out-of-sample
    leaderboard on the last 15 %; promote the best model, start Redis and the signal
    loop, replay the last bars of the reference data and print the signals emitted."""
    from botlib.backtest import get_strategy, run_backtest
    from botlib.backtest.report import metrics_table, write_report
    from botlib.data import fetch_ohlcv, load_ohlcv
    from botlib.data._store import find_dataset

    settings = get_settings()
    report = report or settings.reports_dir / "demo.html"
    if find_dataset(settings.datasets_dir, symbol, timeframe) is None:
        console.print(
            f"No reference dataset for {symbol} {timeframe} in "
            f"{settings.datasets_dir or '../shared/data'}; downloading it from "
            f"{settings.exchange_id}'s public API through ccxt into {settings.data_dir}."
        )
        with progress_bar(f"fetching {symbol} {timeframe}") as update:
            fetch_ohlcv(settings.exchange_id, symbol, timeframe, start, end, progress=update)
    candles = load_ohlcv(symbol, timeframe, start=start, end=end)
    console.print(
        f"Loaded {len(candles):,} {symbol} {timeframe} candles "
        f"{candles.index[0]:%Y-%m-%d} → {candles.index[-1]:%Y-%m-%d} from "
        f"{candles.attrs['source']} (market data: Binance)."
    )
    results = {}
    for name, overrides in DEMO_STRATEGIES.items():
        strat = get_strategy(name)
        signals = strat.signals(candles, **overrides)
        with progress_bar(f"backtesting {name}") as update:
            results[name] = run_backtest(candles, signals, timeframe=timeframe, progress=update)
    cfg = next(iter(results.values())).config
    console.print(
        metrics_rich_table(
            metrics_table(results),
            f"Rule strategies vs baselines (fee {cfg['fee']:.2%}, slippage {cfg['slippage']:.2%}, "
            "fills at next open)",
        )
    )
    path = write_report(results, candles, report, title=f"botlib demo: {symbol} {timeframe}")
    console.print(f"Report written to {path}")
    if models:
        _model_leaderboard(candles)
    console.print(
        "Also: `botlib train --help`, `botlib backtest --help`, `botlib strategies`, "
        "`botlib data info`."
    )


def _model_leaderboard(candles: Any) -> None:
    """The quick pipeline (every family, tiny budgets), then its leaderboard."""
    from botlib.pipeline import run_pipeline
    from botlib.tracking.compare import leaderboard

    console.print(
        "Running pipelines/quick.yaml: every model family with tiny budgets, "
        "tracked in MLflow (a few minutes)."
    )
    result = run_pipeline("quick", progress=lambda msg: console.print(msg))
    board = leaderboard("botlib-quick", parent_run_id=result.run_id)
    wanted = ["sharpe", "total_return", "max_drawdown", "trades"]
    wanted += [c for c in ("directional_accuracy", "persistence_accuracy") if c in board]
    table = board.set_index("run")[wanted]
    hold = board.iloc[0]
    table.loc["buy_and_hold"] = [hold.get(f"hold_{k}") for k in table.columns]
    console.print(
        leaderboard_table(
            table, "Model families, out of sample (last 15 % of the quick pipeline's window)"
        )
    )
    names = [s.outputs["model_name"] for s in result.steps if "model_name" in s.outputs]
    console.print(f"Registered models: {', '.join(names)}")
    uris = [str(u) for u in board.get("model_uri", []) if str(u).startswith("models:/")]
    if uris:
        from botlib.cli._live_demo import live_demo

        live_demo(uris, candles)
    console.print(
        "Look next: `make mlflow-ui` (runs, figures, executed notebooks, registry), "
        "`make lab` (the notebooks), `botlib pipeline show quick`."
    )
