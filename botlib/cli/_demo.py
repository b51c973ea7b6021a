"""``botlib demo``: the main job on the reference data."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from botlib.backtest import get_strategy, run_backtest
from botlib.backtest.report import metrics_table, write_report
from botlib.cli._common import console, progress_bar
from botlib.cli._tables import leaderboard_table, metrics_rich_table
from botlib.data import fetch_ohlcv, load_ohlcv
from botlib.data._store import find_dataset
from botlib.settings import get_settings

#: Model families the demo trains, with small budgets (a minute on 2 cores).
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "lstm": {"epochs": 3, "units": 16, "seq_len": 24},
    "gru": {"epochs": 3, "units": 16, "seq_len": 24, "horizon": 24},
    "transformer": {"epochs": 3, "units": 16, "seq_len": 24, "heads": 2},
    "dqn": {"timesteps": 3_000},
    "ppo": {"timesteps": 3_000},
    "ga_rules": {"population": 16, "generations": 6},
    "de_rules": {"population": 16, "generations": 6},
}

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
    leaderboard on the last 15 %."""
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
        "Next: `botlib train --help`, `botlib backtest --help`, `botlib strategies`, "
        "`botlib data info`."
    )


def _model_leaderboard(candles: Any) -> None:
    from botlib.models.evaluate import train_and_backtest

    rows: dict[str, dict[str, float]] = {}
    baselines: dict[str, dict[str, float]] = {}
    saved: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        names = [*DEMO_MODELS, "ensemble"]
        with progress_bar("training model families") as update:
            for i, name in enumerate(names):
                update(i, len(names))
                params = DEMO_MODELS.get(name, {"members": saved})
                model, _, result = train_and_backtest(name, candles, params=params)
                if name in ("lstm", "ga_rules", "de_rules"):
                    saved.append(str(model.save(f"{tmp}/{name}")))
                rows[name] = result.metrics
                baselines = result.baselines
        rows.update(baselines)
        test = result.equity.index
        console.print(
            leaderboard_table(
                pd.DataFrame(rows).T,
                f"Model families, out of sample {test[0]:%Y-%m-%d} → {test[-1]:%Y-%m-%d} "
                f"({len(test):,} bars; small training budgets)",
            )
        )
