"""Backtest objectives for optimizers, by name. Fitness is measured with the vectorized
twin of the backtest engine (the parity tests hold it to backtrader), so a search of
hundreds of individuals takes seconds."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from botlib.backtest import compute_metrics, normalize_signals, simulate
from botlib.backtest.strategies import RuleStrategy
from botlib.errors import ConfigError, unknown_name

__all__ = ["OBJECTIVES", "RuleObjective", "get_objective", "rule_objective"]

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


class RuleObjective:
    """``params -> objective``: backtests ``strategy`` on ``candles`` with the
    vectorized twin of the engine. Invalid combinations (e.g. fast >= slow) and runs
    with fewer than ``min_trades`` round trips score ``-inf`` (a penalty to the search).
    Indicators are computed once per distinct parameter value (per process) and shared
    by every individual. Picklable, so a process pool or a Dask cluster can run it."""

    def __init__(
        self,
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
    ) -> None:
        get_objective(objective)  # unknown names fail here, not in a worker
        self.strategy, self.candles, self.objective = strategy, candles, objective
        self.fixed = dict(fixed or {})
        self.timeframe, self.cash, self.fee, self.slippage = timeframe, cash, fee, slippage
        self.min_trades = min_trades
        self._indicators: dict[Any, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_indicators"] = {}  # each worker builds its own
        return state

    def _arrays(self) -> dict[str, Any]:
        arrays = self._indicators.get("arrays")
        if arrays is None:
            from botlib.data import bars_per_year

            arrays = self._indicators["arrays"] = {
                name: np.ascontiguousarray(self.candles[name].to_numpy(dtype="float64"))
                for name in ("open", "high", "low", "close")
            }
            arrays["per_year"] = bars_per_year(self.timeframe)
            arrays["nan"] = np.full(len(self.candles), np.nan)
        return arrays

    def _compiled(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The compiled path (``target_array`` and the kernel) when the strategy has one
        and no stops are asked for; None otherwise (or raises ``ConfigError``)."""
        fn = self.strategy.target_array
        merged = {**self.fixed, **params}
        if fn is None or any(merged.get(k, 0) for k in ("stop_atr", "take_atr")):
            return None
        from botlib.backtest.kernel import simulate_arrays

        a = self._arrays()
        values = {**{k: p.default for k, p in self.strategy.params.items()}, **merged}
        cache = self._indicators.setdefault("target_cache", {})
        target = fn(a["close"], cache, **values)
        return simulate_arrays(a["open"], a["high"], a["low"], a["close"], target,
                               a["nan"], a["nan"], self.cash, self.fee, self.slippage)  # fmt: skip

    def metrics(self, params: Mapping[str, Any]) -> dict[str, float] | None:
        """The fast backtest's metrics for ``params`` (None: an invalid combination)."""
        from botlib.features.indicators import indicator_cache

        try:
            compiled = self._compiled(params)
        except ConfigError:
            return None
        if compiled is not None:
            from botlib.backtest.kernel import metrics_from_arrays

            equity, _, _, size, price, comm, _ = compiled
            return metrics_from_arrays(
                equity, per_year=self._arrays()["per_year"], initial_cash=self.cash,
                size=size, price=price, comm=comm,
            )  # fmt: skip
        candles = self.candles
        try:
            with indicator_cache(self._indicators):
                signals = self.strategy.fn(candles, **{**self.fixed, **params})
        except ConfigError:
            return None
        sig = normalize_signals(signals, pd.DatetimeIndex(candles.index), allow_short=True)
        sim = simulate(candles, sig, cash=self.cash, fee=self.fee, slippage=self.slippage)
        return compute_metrics(
            sim.equity, timeframe=self.timeframe, initial_cash=self.cash, fills=sim.fills
        )

    def returns(self, params: Mapping[str, Any]) -> Any:
        """Per-bar returns of the strategy's equity for ``params`` (None: invalid)."""
        from botlib.features.indicators import indicator_cache

        try:
            compiled = self._compiled(params)
        except ConfigError:
            return None
        if compiled is not None:
            equity = compiled[0]
            return equity / np.concatenate([[self.cash], equity[:-1]]) - 1.0

        try:
            with indicator_cache(self._indicators):
                signals = self.strategy.fn(self.candles, **{**self.fixed, **params})
        except ConfigError:
            return None
        sig = normalize_signals(signals, pd.DatetimeIndex(self.candles.index), allow_short=True)
        sim = simulate(self.candles, sig, cash=self.cash, fee=self.fee, slippage=self.slippage)
        equity = sim.equity.to_numpy(dtype="float64")
        return equity / np.concatenate([[self.cash], equity[:-1]]) - 1.0

    def __call__(self, params: dict[str, Any]) -> float:
        metrics = self.metrics(params)
        if metrics is None or metrics["trades"] < self.min_trades:
            return -math.inf
        value = get_objective(self.objective)(metrics)
        return value if math.isfinite(value) else -math.inf


#: the historical name: ``rule_objective(strategy, candles, timeframe="1h", ...)``
rule_objective = RuleObjective
