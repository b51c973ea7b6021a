"""The optimizers' fast path: backtests per second on a parameter grid, and a GA.

    python bench/fast_path.py [--start 2024-01-01 --end 2026-01-01] [--repeat 3]

On two years of reference hourly BTC/USDT bars, all in this process:

* the **baseline**: a plain-numpy SMA-crossover backtest (position from the cross,
  returns from open to open, a fee per change of position: no slippage clamp, no
  sizing, no stops) over a 100-combination (fast, slow) grid — the speed floor;
* the **compiled fast path**: ``RuleObjective`` (the optimizers' fitness: the engine's
  conventions in one compiled pass, ``botlib.backtest.kernel``) over the same grid;
* the **pandas path** it replaced (signal frame, normalization, simulation with pandas
  objects per evaluation), the same grid.

Then a GA of 50 individuals over 20 generations on ``sma_cross`` with each path: wall
seconds and the best individual (they must be the same). Medians of ``--repeat`` runs;
ratios against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time

import numpy as np

from botlib.backtest import get_strategy
from botlib.data import load_ohlcv
from botlib.features import _kernels as k
from botlib.models.evolve.objectives import RuleObjective
from botlib.models.evolve.search import Bound, genetic_algorithm

FEE, SLIPPAGE = 0.001, 0.0005
GRID = [(f, s) for f in range(5, 55, 5) for s in range(60, 260, 20)]


def numpy_grid(open_: np.ndarray, close: np.ndarray) -> list[float]:
    """Sharpe of each grid point, plain numpy (the floor the fast path is held to)."""
    cache: dict[int, np.ndarray] = {}
    step = open_[1:] / open_[:-1] - 1.0
    out = []
    for fast, slow in GRID:
        for window in (fast, slow):
            if window not in cache:
                cache[window] = k.rolling_mean(close, window)
        f, s = cache[fast], cache[slow]
        held = (f > s)[:-2].astype("float64")  # the signal of t is held from open t+1
        rets = held * step[1:]
        rets[1:] -= FEE * np.abs(np.diff(held))
        std = rets.std(ddof=1)
        out.append(float(rets.mean() / std * math.sqrt(365 * 24)) if std > 0 else math.nan)
    return out


def objective(candles, compiled: bool) -> RuleObjective:  # type: ignore[no-untyped-def]
    obj = RuleObjective(get_strategy("sma_cross"), candles, timeframe="1h", fee=FEE,
                        slippage=SLIPPAGE, min_trades=3)  # fmt: skip
    if not compiled:
        obj._compiled = lambda params: None  # type: ignore[method-assign]
    return obj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2026-01-01")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    candles = load_ohlcv("BTC/USDT", "1h", start=args.start, end=args.end)
    open_ = candles["open"].to_numpy(dtype="float64")
    close = candles["close"].to_numpy(dtype="float64")
    print(f"{len(candles):,} hourly bars {candles.index[0]:%Y-%m-%d} → "
          f"{candles.index[-1]:%Y-%m-%d}; grid of {len(GRID)} (fast, slow); "
          f"median of {args.repeat}")  # fmt: skip
    objective(candles, True)({"fast": 10, "slow": 100})  # compile (or load the cache) first
    times: dict[str, list[float]] = {"numpy": [], "compiled": [], "pandas": []}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        numpy_grid(open_, close)
        times["numpy"].append(time.perf_counter() - t0)
        for label in ("compiled", "pandas"):
            obj = objective(candles, label == "compiled")  # indicators cached per run
            t0 = time.perf_counter()
            for fast, slow in GRID:
                obj({"fast": fast, "slow": slow})
            times[label].append(time.perf_counter() - t0)
    base = statistics.median(times["numpy"])
    print(f"{'path':<28}{'median s':>10}{'backtests/s':>14}{'vs numpy':>10}")
    for label, name in (("numpy", "baseline: plain numpy"), ("compiled", "compiled fast path"),
                        ("pandas", "pandas path (before)")):  # fmt: skip
        wall = statistics.median(times[label])
        print(f"{name:<28}{wall:>10.4f}{len(GRID) / wall:>14,.0f}{base / wall:>9.3f}×")

    bounds = [Bound("fast", int, 5, 100), Bound("slow", int, 20, 400)]
    print("GA 50 × 20 generations on sma_cross, serial:")
    for label in ("compiled", "pandas"):
        walls, best = [], None
        for _ in range(args.repeat if label == "compiled" else 1):
            t0 = time.perf_counter()
            result = genetic_algorithm(objective(candles, label == "compiled"), bounds,
                                       population=50, generations=20, seed=42,
                                       ordered=[("fast", "slow")])  # fmt: skip
            walls.append(time.perf_counter() - t0)
            best = (result.best_params, round(result.best_objective, 10))
        print(f"  {label:<10} {statistics.median(walls):7.2f} s  best {best}")


if __name__ == "__main__":
    main()
