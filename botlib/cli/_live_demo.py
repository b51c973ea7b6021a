"""The end of ``botlib demo``: promotion -> Redis -> signal loop -> signals."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.table import Table

from botlib.cli._common import console

if TYPE_CHECKING:
    from botlib.transport import RedisServer

#: bars of the reference data replayed through the loop
REPLAY_BARS = 200


def _promote_best(uris: list[str], url: str) -> tuple[str, str]:
    """The first model of the leaderboard that passes the gate; if none does, the
    leaderboard's best, promoted with ``force`` and said so."""
    from botlib.cli._live import _checks
    from botlib.promotion import evaluate_gate, promote

    results = []
    for uri in uris:
        name, version = uri.removeprefix("models:/").rsplit("/", 1)
        result = evaluate_gate(name, version)
        results.append(result)
        if result.passed:
            promote(name, version, redis_url=url)
            console.print(f"Promoted {name} v{version}: it passed every check of the gate.")
            _checks(result)
            return name, version
    best = results[0]
    _checks(best)
    console.print(
        f"[yellow]No model of the quick pipeline passed the promotion gate[/] (tiny budgets "
        f"rarely beat buy-and-hold). For the demo only, the leaderboard's best, {best.name} "
        f"v{best.version}, is promoted with --force; the failed checks are recorded on the "
        "version and in its Redis entry."
    )
    promote(best.name, best.version, force=True, redis_url=url)
    return best.name, best.version


def live_demo(uris: list[str], candles: pd.DataFrame) -> None:
    import tempfile

    from botlib.settings import get_settings
    from botlib.transport import RedisServer, free_port

    settings = get_settings()
    # the demo's own throwaway redis-server: the project's Redis is left as it was
    scratch = tempfile.TemporaryDirectory(prefix="botlib-demo-redis-")
    server = RedisServer(port=free_port(), data_dir=Path(scratch.name)).start()
    console.print(f"a throwaway redis-server for the demo on 127.0.0.1:{server.port}")
    try:
        _serve_demo(uris, candles, server, settings.exchange_id)
    finally:
        server.stop()
        scratch.cleanup()
    console.print("That redis-server is gone. Run the trading server yourself: "
                  "`botlib up --feed replay --replay-last 500` (it serves the registry's "
                  "@champion), then `botlib status`, `botlib ps`, `botlib down`.")  # fmt: skip


def _serve_demo(uris: list[str], candles: pd.DataFrame, server: RedisServer, exchange: str) -> None:
    from botlib.live import LoopConfig, SignalLoop, replay
    from botlib.transport import connect, redis_names

    name, version = _promote_best(uris, server.url)
    r: Any = connect(server.url)
    names = redis_names()
    symbol, timeframe = str(candles.attrs["symbol"]), str(candles.attrs["timeframe"])
    last = candles.iloc[-REPLAY_BARS:]
    # the loop and the feed each under their own Redis user, as `botlib up` runs them
    loop = SignalLoop(
        connect(server.role_url("loop")), config=LoopConfig(exchange=exchange, consumer="demo")
    )
    loop.load_active()
    runner = threading.Thread(target=loop.run, kwargs={"idle_exit_s": 2.0})
    runner.start()
    feed = connect(server.role_url("feed"))
    replay(feed, last, exchange=exchange, symbol=symbol, timeframe=timeframe, speed=0)
    feed.close()
    runner.join()
    _print_signals(r, names.signals, f"{name}:{version}")
    stats = loop.stats
    console.print(
        f"Signal loop: {stats.bars} bars → {stats.predictions} predictions, {stats.signals} "
        f"signals, {stats.validated} predictions scored, {stats.deadletters} dead-lettered."
    )
    from botlib.cli._ops import _print_status
    from botlib.monitor import collect_status

    console.print("\n[bold]botlib status[/]:")
    _print_status(collect_status(r, names, exchange=exchange))
    r.close()


def _print_signals(r: Any, stream: str, model_id: str) -> None:
    import json

    rows = [json.loads(f["data"]) for _, f in r.xrange(stream)]
    rows = [x for x in rows if x["model_id"] == model_id]
    trades = [x for x in rows if x["signal_type"] != "hold"]
    table = Table(
        title=f"Signals of {model_id} on the last {REPLAY_BARS} bars ({len(rows)} signals, "
        f"{len(trades)} not 'hold'; all on botlib:signals and python:trading_signal)"
    )
    for col in ("created_at", "type", "size", "confidence", "stop_loss", "take_profit"):
        table.add_column(col)
    shown = trades[-12:] or rows[-5:]
    for x in shown:
        table.add_row(
            x["created_at"],
            x["signal_type"],
            f"{x['position_size']:.2f}",
            f"{x['confidence']:.2f}",
            f"{x['stop_loss']:,.2f}" if x["stop_loss"] else "–",
            f"{x['take_profit']:,.2f}" if x["take_profit"] else "–",
        )
    console.print(table)
