"""``botlib demo``: the main job on the reference data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from botlib.backtest import get_strategy, run_backtest
from botlib.backtest.report import metrics_table, write_report
from botlib.cli._common import console, progress_bar
from botlib.cli._tables import metrics_rich_table
from botlib.data import fetch_ohlcv, load_ohlcv
from botlib.data._store import find_dataset
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
) -> None:
    """Backtest the rule strategies on the reference candles, print their metrics beside
    buy-and-hold and flat, and write a plotly HTML report."""
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
    console.print("Next: `botlib backtest --help`, `botlib strategies`, `botlib data info`.")
