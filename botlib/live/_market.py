"""Per-market state of the signal loop: a bounded window of recent closed candles."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from botlib.data import OHLCV_COLUMNS
from botlib.transport import Bar

__all__ = ["Market"]


@dataclass
class Market:
    """One bar stream: ``exchange`` ``symbol`` ``timeframe``, its last processed bar and
    at most ``capacity`` recent candles (times in epoch ms, OHLCV as float64)."""

    stream: str
    exchange: str
    symbol: str
    timeframe: str
    bar_ms: int
    capacity: int
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="int64"))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), dtype="float64"))
    last_ts: int | None = None
    bootstrapped: bool = False

    def extended(self, bars: list[Bar]) -> tuple[np.ndarray, np.ndarray]:
        """Times and values with ``bars`` appended, trimmed to ``capacity`` (nothing is
        changed until ``commit``)."""
        times = np.concatenate([self.times, np.array([b.ts for b in bars], dtype="int64")])
        new = np.array([[b.open, b.high, b.low, b.close, b.volume] for b in bars], "float64")
        values = np.concatenate([self.values, new.reshape(-1, 5)])
        return times[-self.capacity :], values[-self.capacity :]

    def commit(self, times: np.ndarray, values: np.ndarray) -> None:
        self.times, self.values = times, values
        if len(times):
            self.last_ts = int(times[-1])

    def seed(self, times: np.ndarray, values: np.ndarray) -> None:
        """History from before the first bar the loop processes (warm-up)."""
        self.times, self.values = times[-self.capacity :], values[-self.capacity :]
        self.bootstrapped = True


def frame(times: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """A candle frame (UTC bar open times) over the given arrays."""
    ns = times.astype("datetime64[ms]").astype("datetime64[ns]")
    index = pd.DatetimeIndex(ns, tz="UTC", name="timestamp")
    return pd.DataFrame(values, index=index, columns=list(OHLCV_COLUMNS))
