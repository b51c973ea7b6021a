"""Genetic-algorithm optimization of rule strategies: backtrader vs the fast evaluator.

    python bench/optimize.py [--population 16] [--generations 4] [--start 2024-01-01]

The GA (seeded, the same settings in every case) tunes SMA crossover (fast, slow) and
RSI reversion (window, lower, upper) for Sharpe on two years of the reference hourly
BTC/USDT data (fee 0.10 %, slippage 0.05 %), four ways, all in this process:

(a) backtrader per individual — every fitness is a run of botlib's backtrader engine;
(b) backtrader's own ``optstrategy`` over a grid about as large as (a)'s distinct
    evaluations (native backtrader strategies, Sharpe from the same metrics code);
(c) the fast evaluator, serially (vectorized twin + indicators cached per value);
(d) the fast evaluator on a 2-worker Dask LocalCluster (cluster start-up excluded,
    printed apart).

For each: wall seconds, distinct evaluations per second, the best Sharpe found, and the
ratio of wall time to (a). The best parameters of (c) are re-run in backtrader.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from botlib.backtest import compute_metrics, get_strategy, run_backtest
from botlib.backtest._compat import bt
from botlib.compute import open_mapper
from botlib.data import load_ohlcv
from botlib.models.evolve.objectives import get_objective, rule_objective
from botlib.models.evolve.search import Bound, genetic_algorithm

FEE, SLIPPAGE = 0.001, 0.0005
SPACES = {
    "sma_cross": [Bound("fast", int, 5, 100), Bound("slow", int, 20, 400)],
    "rsi_reversion": [
        Bound("window", int, 5, 50),
        Bound("lower", float, 10.0, 45.0),
        Bound("upper", float, 55.0, 90.0),
    ],
}


class _BacktraderObjective:
    """Fitness = Sharpe of a botlib backtrader run (the slow reference path)."""

    def __init__(self, name: str, candles: pd.DataFrame) -> None:
        self.strategy, self.candles = get_strategy(name), candles

    def __call__(self, params: dict[str, Any]) -> float:
        try:
            signals = self.strategy.fn(self.candles, **params)
        except ValueError:
            return -math.inf
        result = run_backtest(
            self.candles, signals, timeframe="1h", fee=FEE, slippage=SLIPPAGE, allow_short=True
        )
        if result.metrics["trades"] < 3:
            return -math.inf
        value = get_objective("sharpe")(result.metrics)
        return value if math.isfinite(value) else -math.inf


class _SmaCross(bt.Strategy):  # type: ignore[misc]
    """Long 98 % of equity while the fast SMA is above the slow one (fractional size:
    backtrader's percent-target orders round BTC sizes down to whole units)."""

    params = (("fast", 20), ("slow", 100))

    def __init__(self) -> None:
        self.cross = bt.indicators.CrossOver(
            bt.indicators.SMA(period=self.p.fast), bt.indicators.SMA(period=self.p.slow)
        )

    def next(self) -> None:
        if self.cross > 0 and not self.position:
            self.buy(size=0.98 * self.broker.getvalue() / self.data.close[0])
        elif self.cross < 0 and self.position:
            self.close()


class _RsiReversion(bt.Strategy):  # type: ignore[misc]
    params = (("window", 14), ("lower", 30.0), ("upper", 70.0))

    def __init__(self) -> None:
        self.rsi = bt.indicators.RSI(period=self.p.window, safediv=True)

    def next(self) -> None:
        if self.rsi < self.p.lower and not self.position:
            self.buy(size=0.98 * self.broker.getvalue() / self.data.close[0])
        elif self.rsi > self.p.upper and self.position:
            self.close()


def _optstrategy(name: str, candles: pd.DataFrame, size: int) -> tuple[float, dict[str, Any], int]:
    """backtrader's optstrategy over a grid of about ``size`` points; best Sharpe."""
    bounds = SPACES[name]
    per_axis = max(2, round(size ** (1 / len(bounds))))
    axes = {b.name: sorted({b.decode(x) for x in np.linspace(0, 1, per_axis)}) for b in bounds}
    frame = candles.copy()
    frame.index = frame.index.tz_localize(None)
    cerebro = bt.Cerebro(stdstats=False, optreturn=False, maxcpus=1)
    feed = bt.feeds.PandasData(
        dataname=frame, openinterest=None, timeframe=bt.TimeFrame.Minutes, compression=60
    )
    cerebro.adddata(feed)
    cerebro.broker.setcash(10_000.0)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_slippage_perc(SLIPPAGE)
    cerebro.addanalyzer(bt.analyzers.TimeReturn, _name="returns")
    cls = _SmaCross if name == "sma_cross" else _RsiReversion
    if name == "sma_cross":
        grid = [(f, s) for f, s in itertools.product(axes["fast"], axes["slow"]) if f < s]
        cerebro.optstrategy(
            cls, fast=sorted({f for f, _ in grid}), slow=sorted({s for _, s in grid})
        )
    else:
        cerebro.optstrategy(cls, **axes)
    best, best_params, runs = -math.inf, {}, 0
    for result in cerebro.run():
        strat = result[0]
        runs += 1
        params = {k: getattr(strat.p, k) for k in axes}
        if name == "sma_cross" and params["fast"] >= params["slow"]:
            continue
        rets = pd.Series(strat.analyzers.returns.get_analysis()).astype("float64")
        equity = 10_000.0 * (1.0 + rets).cumprod()
        sharpe = compute_metrics(equity, timeframe="1h", initial_cash=10_000.0)["sharpe"]
        if math.isfinite(sharpe) and sharpe > best:
            best, best_params = sharpe, params
    return best, best_params, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2026-01-01")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    candles = load_ohlcv("BTC/USDT", "1h", start=args.start, end=args.end)
    ga = {"population": args.population, "generations": args.generations, "seed": 42}
    print(
        f"{len(candles):,} hourly bars {candles.index[0]:%Y-%m-%d} → {candles.index[-1]:%Y-%m-%d}; "
        f"GA population {args.population}, {args.generations} generations, seed 42"
    )
    rows = []
    startup = 0.0
    for name, bounds in SPACES.items():
        t0 = time.perf_counter()
        slow = genetic_algorithm(_BacktraderObjective(name, candles), bounds, **ga)
        wall_a = time.perf_counter() - t0
        rows.append(
            (name, "(a) backtrader per individual", wall_a, slow.evaluations, slow.best_objective)
        )

        t0 = time.perf_counter()
        best_b, _, runs_b = _optstrategy(name, candles, slow.evaluations)
        rows.append(
            (name, "(b) backtrader optstrategy grid", time.perf_counter() - t0, runs_b, best_b)
        )

        fast_objective = rule_objective(
            get_strategy(name), candles, timeframe="1h", fee=FEE, slippage=SLIPPAGE, min_trades=3
        )
        t0 = time.perf_counter()
        fast = genetic_algorithm(fast_objective, bounds, **ga)
        rows.append(
            (
                name,
                "(c) fast evaluator, serial",
                time.perf_counter() - t0,
                fast.evaluations,
                fast.best_objective,
            )
        )

        t0 = time.perf_counter()
        with open_mapper("dask:2") as pmap:
            startup += time.perf_counter() - t0
            t1 = time.perf_counter()
            remote = genetic_algorithm(fast_objective, bounds, mapper=pmap, **ga)
            wall_d = time.perf_counter() - t1
        rows.append(
            (
                name,
                "(d) fast evaluator, Dask 2 workers",
                wall_d,
                remote.evaluations,
                remote.best_objective,
            )
        )
        check = _BacktraderObjective(name, candles)(fast.best_params)
        shown = {k: round(v, 2) for k, v in fast.best_params.items()}
        recheck = f"    (c)'s best {shown} in backtrader"
        rows.append((name, recheck, float("nan"), 0, check))
        assert remote.best_params == fast.best_params, "Dask and serial disagree"

    print()
    print(
        f"{'strategy':<14} {'case':<60} {'wall s':>8} {'evals':>6} {'evals/s':>8} "
        f"{'best Sharpe':>11} {'vs (a)':>8}"
    )
    base: dict[str, float] = {}
    for name, case, wall, evals, best in rows:
        if case.startswith("(a)"):
            base[name] = wall
        speed = f"{evals / wall:8.1f}" if wall == wall and wall > 0 else f"{'':>8}"
        ratio = f"{base[name] / wall:7.1f}x" if wall == wall and wall > 0 else f"{'':>8}"
        shown = f"{wall:8.2f}" if wall == wall else f"{'':>8}"
        print(f"{name:<14} {case:<60} {shown} {evals or '':>6} {speed} {best:>11.4f} {ratio}")
    print(f"Dask LocalCluster start-up (not in (d)): {startup / len(SPACES):.2f} s per start")


if __name__ == "__main__":
    main()
