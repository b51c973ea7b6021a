"""Labels (targets): the only code in botlib allowed to look into the future.

Each ``Label`` records its ``horizon`` in bars, so splits can purge training samples
whose label window overlaps a test window and embargo the bars after it. The label at
``t`` describes bars ``t+1 .. t+horizon``; the last ``horizon`` rows are NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Label", "direction", "forward_return", "forward_volatility"]

UP, SIDEWAYS, DOWN = 1.0, 0.0, -1.0


@dataclass(frozen=True)
class Label:
    """A target series and the number of future bars it depends on."""

    name: str
    horizon: int
    compute: Callable[[pd.DataFrame], pd.Series]

    def __call__(self, candles: pd.DataFrame) -> pd.Series:
        return self.compute(candles).rename(self.name)


def _check(horizon: int) -> None:
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive whole number of bars, got {horizon!r}")


def forward_return(horizon: int = 1, *, log: bool = True) -> Label:
    """Return from the close at ``t`` to the close at ``t + horizon``."""
    _check(horizon)

    def compute(candles: pd.DataFrame) -> pd.Series:
        close = candles["close"]
        ratio = close.shift(-horizon) / close
        return pd.Series(np.log(ratio), index=close.index) if log else ratio - 1.0

    return Label(f"fwd_{'log' if log else ''}ret_{horizon}", horizon, compute)


def direction(horizon: int = 1, *, threshold: float = 0.002) -> Label:
    """+1 (up), 0 (sideways) or -1 (down): the forward simple return against ``threshold``
    (a fraction, 0.002 = 0.2 %). NaN where the future is unknown."""
    _check(horizon)
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    ret = forward_return(horizon, log=False)

    def compute(candles: pd.DataFrame) -> pd.Series:
        r = ret.compute(candles)
        out = pd.Series(
            np.where(r > threshold, UP, np.where(r < -threshold, DOWN, SIDEWAYS)),
            index=candles.index,
        )
        return out.where(r.notna())

    return Label(f"direction_{horizon}", horizon, compute)


def forward_volatility(horizon: int = 24) -> Label:
    """Standard deviation of the 1-bar log returns over bars ``t+1 .. t+horizon``."""
    _check(horizon)
    if horizon < 2:
        raise ValueError("forward volatility needs a horizon of at least 2 bars")

    def compute(candles: pd.DataFrame) -> pd.Series:
        close = candles["close"]
        logret = pd.Series(np.log(close / close.shift(1)), index=close.index)
        past = logret.rolling(horizon, min_periods=horizon).std(ddof=1)
        return past.shift(-horizon)

    return Label(f"fwd_vol_{horizon}", horizon, compute)
