"""Backtest objectives for optimizers, by name. Fitness is measured with the vectorized
twin of the backtest engine (the parity tests hold it to backtrader), so a search of
hundreds of individuals takes seconds."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from botlib.backtest import compute_metrics, normalize_signals, simulate
from botlib.backtest.strategies import RuleStrategy
from botlib.errors import ConfigError, unknown_name

__all__ = ["OBJECTIVES", "get_objective", "rule_objective"]

Scorer = Callable[[Mapping[str, float]], float]


def _return_dd(m: Mapping[str, float]) -> float:
    """Total return less twice the depth of the worst drawdown."""
    return m["total_return"] - 2.0 * abs(m["max_drawdown"])


OBJECTIVES: dict[str, Scorer] = {
    "sharpe": lambda m: m["sharpe"],
    "sortino": lambda m: m["sortino"],
    "calmar": lambda m: m["calmar"],
    "return_dd": _return_dd,
}


def get_objective(name: str) -> Scorer:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise unknown_name("objective", name, OBJECTIVES) from None


def rule_objective(
    strategy: RuleStrategy,
    candles: pd.DataFrame,
    *,
    objective: str = "sharpe",
    fixed: Mapping[str, Any] | None = None,
    timeframe: str,
    cash: float = 10_000.0,
    fee: float = 0.001,
    slippage: float = 0.0005,
    min_trades: int = 1,
) -> Callable[[dict[str, Any]], float]:
    """A function ``params -> objective`` backtesting ``strategy`` on ``candles``.
    Invalid combinations (e.g. fast >= slow) and runs with fewer than ``min_trades``
    round trips score ``-inf`` (the search treats it as a penalty)."""
    scorer = get_objective(objective)

    def evaluate(params: dict[str, Any]) -> float:
        try:
            signals = strategy.fn(candles, **{**dict(fixed or {}), **params})
        except ConfigError:
            return -math.inf
        sig = normalize_signals(signals, pd.DatetimeIndex(candles.index), allow_short=True)
        sim = simulate(candles, sig, cash=cash, fee=fee, slippage=slippage)
        metrics = compute_metrics(
            sim.equity, timeframe=timeframe, initial_cash=cash, fills=sim.fills
        )
        if metrics["trades"] < min_trades:
            return -math.inf
        value = scorer(metrics)
        return value if math.isfinite(value) else -math.inf

    return evaluate
