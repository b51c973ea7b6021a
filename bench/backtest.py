"""Backtest engine speed on the reference data.

    python bench/backtest.py [--repeats 5] [--bars 40000]

Prints medians over ``--repeats`` runs of: a bare backtrader run over the same feed
(an empty strategy: the floor any backtrader engine pays), botlib's engine on an
SMA-crossover signal frame, and the vectorized twin on the same frame — with bars per
second and ratios against the bare backtrader baseline, all measured in this process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pandas as pd

from botlib.backtest import normalize_signals, run_backtest, simulate, sma_cross
from botlib.backtest._compat import bt
from botlib.data import load_ohlcv


def _bare_backtrader(candles: pd.DataFrame) -> None:
    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True, runonce=False)
    frame = candles.copy()
    frame.index = frame.index.tz_localize(None)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None))
    cerebro.addstrategy(bt.Strategy)
    cerebro.run()


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--bars", type=int, default=40_193, help="most recent bars to use")
    args = parser.parse_args()

    candles = load_ohlcv("BTC/USDT", "1h").iloc[-args.bars :]
    signals = sma_cross(candles, fast=20, slow=100)
    normalized = normalize_signals(signals, pd.DatetimeIndex(candles.index))
    n = len(candles)
    cases = {
        "bare backtrader (baseline)": lambda: _bare_backtrader(candles),
        "botlib engine (backtrader)": lambda: run_backtest(candles, signals, timeframe="1h"),
        "vectorized twin": lambda: simulate(candles, normalized),
    }
    print(
        f"BTC/USDT 1h reference data: {n:,} bars, SMA 20/100 crossover, "
        f"median of {args.repeats} runs"
    )
    print(f"{'case':<30}{'median s':>10}{'bars/s':>12}{'vs baseline':>14}")
    base = None
    for name, fn in cases.items():
        fn()  # warm-up
        seconds = _median_seconds(fn, args.repeats)
        base = base or seconds
        print(f"{name:<30}{seconds:>10.3f}{n / seconds:>12,.0f}{base / seconds:>13.2f}x")


if __name__ == "__main__":
    main()
