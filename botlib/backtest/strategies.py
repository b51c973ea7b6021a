"""Parameterized rule strategies, expressed as signal frames.

Each strategy is a pure function ``f(candles, **params) -> signal frame`` of past data
only, registered with typed, bounded parameters so optimizers can search them and
the CLI can validate ``--param name=value``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from botlib.errors import ConfigError, did_you_mean, unknown_name
from botlib.features import indicators as ind

__all__ = ["STRATEGIES", "Param", "RuleStrategy", "get_strategy", "rsi_reversion", "sma_cross"]


def _levels(
    candles: pd.DataFrame, target: pd.Series, stop_atr: float, take_atr: float, atr_window: int
) -> pd.DataFrame:
    """Attach ATR-scaled stop-loss / take-profit levels to each entry signal."""
    frame = pd.DataFrame({"target": target})
    if stop_atr <= 0 and take_atr <= 0:
        return frame
    atr = ind.atr(candles, window=atr_window)
    side = np.sign(target.ffill().fillna(0.0))
    close = candles["close"]
    if stop_atr > 0:
        frame["stop_loss"] = (close - side * stop_atr * atr).where(side != 0)
    if take_atr > 0:
        frame["take_profit"] = (close + side * take_atr * atr).where(side != 0)
    return frame


def sma_cross(
    candles: pd.DataFrame,
    *,
    fast: int = 20,
    slow: int = 100,
    allow_short: bool = False,
    stop_atr: float = 0.0,
    take_atr: float = 0.0,
    atr_window: int = 14,
) -> pd.DataFrame:
    """Long while the ``fast``-bar SMA of the close is above the ``slow``-bar SMA; flat
    (or short with ``allow_short``) otherwise. Optional stops at ``stop_atr`` /
    ``take_atr`` ATRs from the signal bar's close (0 = none)."""
    if fast >= slow:
        raise ConfigError(f"sma_cross: fast ({fast}) must be shorter than slow ({slow})")
    close = candles["close"]
    f, s = ind.sma(close, window=int(fast)), ind.sma(close, window=int(slow))
    down = -1.0 if allow_short else 0.0
    target = pd.Series(np.where(f > s, 1.0, down), index=candles.index).where(s.notna())
    return _levels(candles, target, stop_atr, take_atr, atr_window)


def rsi_reversion(
    candles: pd.DataFrame,
    *,
    window: int = 14,
    lower: float = 30.0,
    upper: float = 70.0,
    stop_atr: float = 0.0,
    take_atr: float = 0.0,
    atr_window: int = 14,
) -> pd.DataFrame:
    """Buy when RSI(``window``) closes below ``lower`` (oversold), sell back to flat when
    it closes above ``upper``; hold in between."""
    if not 0 < lower < upper < 100:
        raise ConfigError(f"rsi_reversion: need 0 < lower < upper < 100, got {lower}, {upper}")
    rsi = ind.rsi(candles["close"], window=int(window))
    target = pd.Series(np.nan, index=candles.index)
    target[rsi < lower] = 1.0
    target[rsi > upper] = 0.0
    return _levels(candles, target, stop_atr, take_atr, atr_window)


def _sma_cross_target(
    close: np.ndarray,
    cache: dict[Any, np.ndarray],
    *,
    fast: int,
    slow: int,
    allow_short: bool = False,
    **_: Any,
) -> np.ndarray:
    """``sma_cross``' normalized target as an array (indicators cached per window)."""
    from botlib.features import _kernels as k

    if fast >= slow:
        raise ConfigError(f"sma_cross: fast ({fast}) must be shorter than slow ({slow})")
    f = cache.get(("sma", fast))
    if f is None:
        f = cache[("sma", fast)] = k.rolling_mean(close, int(fast))
    sl = cache.get(("sma", slow))
    if sl is None:
        sl = cache[("sma", slow)] = k.rolling_mean(close, int(slow))
    down = -1.0 if allow_short else 0.0
    return np.where(np.isnan(sl), 0.0, np.where(f > sl, 1.0, down))


def _rsi_reversion_target(
    close: np.ndarray,
    cache: dict[Any, np.ndarray],
    *,
    window: int,
    lower: float,
    upper: float,
    **_: Any,
) -> np.ndarray:
    """``rsi_reversion``' normalized target as an array (RSI cached per window)."""
    from botlib.backtest.kernel import ffill_zero

    if not 0 < lower < upper < 100:
        raise ConfigError(f"rsi_reversion: need 0 < lower < upper < 100, got {lower}, {upper}")
    rsi = cache.get(("rsi", window))
    if rsi is None:
        rsi = cache[("rsi", window)] = ind.rsi_values(close, int(window))
    target = np.full(len(close), np.nan)
    with np.errstate(invalid="ignore"):
        target[rsi < lower] = 1.0
        target[rsi > upper] = 0.0
    return ffill_zero(target)


@dataclass(frozen=True)
class Param:
    """A strategy parameter: its type, default and search bounds (inclusive)."""

    kind: type
    default: Any
    low: float
    high: float

    def parse(self, name: str, raw: Any) -> Any:
        try:
            value = self.kind(float(raw)) if self.kind is int else self.kind(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {name}={raw!r}: expected {self.kind.__name__}") from None
        if self.kind is int and float(raw) != int(float(raw)):
            raise ConfigError(f"parameter {name}={raw!r}: expected a whole number")
        if not self.low <= value <= self.high:
            raise ConfigError(f"parameter {name}={value} outside [{self.low}, {self.high}]")
        return value


@dataclass(frozen=True)
class RuleStrategy:
    name: str
    fn: Callable[..., pd.DataFrame]
    params: Mapping[str, Param]
    description: str
    #: pairs ``(a, b)`` that must satisfy ``a < b`` (a search proposes only such sets)
    ordered: tuple[tuple[str, str], ...] = ()
    #: the normalized target as an array from the closes, without stops (the optimizers'
    #: compiled path): ``fn(close, cache, **params) -> target``
    target_array: Callable[..., np.ndarray] | None = None

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``overrides`` (parsed, bounds-checked)."""
        values = {k: p.default for k, p in self.params.items()}
        for key, raw in overrides.items():
            if key not in self.params:
                raise ConfigError(
                    f"{self.name} has no parameter {key!r}{did_you_mean(key, self.params)}"
                    + f"; parameters: {', '.join(self.params)}"
                )
            values[key] = self.params[key].parse(key, raw)
        return values

    def signals(self, candles: pd.DataFrame, **overrides: Any) -> pd.DataFrame:
        return self.fn(candles, **self.resolve(overrides))


_STOPS = {
    "stop_atr": Param(float, 0.0, 0.0, 20.0),
    "take_atr": Param(float, 0.0, 0.0, 50.0),
    "atr_window": Param(int, 14, 2, 200),
}

STRATEGIES: dict[str, RuleStrategy] = {
    "sma_cross": RuleStrategy(
        "sma_cross",
        sma_cross,
        {"fast": Param(int, 20, 2, 200), "slow": Param(int, 100, 5, 1000), **_STOPS},
        "long while the fast SMA is above the slow SMA",
        ordered=(("fast", "slow"),),
        target_array=_sma_cross_target,
    ),
    "rsi_reversion": RuleStrategy(
        "rsi_reversion",
        rsi_reversion,
        {
            "window": Param(int, 14, 2, 100),
            "lower": Param(float, 30.0, 1.0, 50.0),
            "upper": Param(float, 70.0, 50.0, 99.0),
            **_STOPS,
        },
        "buy oversold RSI, sell when overbought",
        ordered=(("lower", "upper"),),
        target_array=_rsi_reversion_target,
    ),
}


def get_strategy(name: str) -> RuleStrategy:
    """A registered rule strategy by name, with a did-you-mean hint."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise unknown_name("strategy", name, STRATEGIES) from None
