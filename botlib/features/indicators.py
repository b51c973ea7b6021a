"""Technical indicators: pure functions of past and present bars only.

Every function takes a candle frame (or a price series) and keyword-only parameters,
returns a named ``Series`` (or a ``DataFrame`` of named columns) aligned to the input
index, and never looks at a later row: the value at ``t`` is unchanged when rows
after ``t`` are removed. Warm-up rows are NaN. Window lengths are in bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from botlib.features import _kernels as _k

__all__ = [
    "atr",
    "bollinger",
    "ema",
    "indicator_cache",
    "log_returns",
    "macd",
    "obv",
    "realized_volatility",
    "returns",
    "rsi",
    "sma",
    "volume_zscore",
]


def _check_window(window: int, name: str = "window") -> None:
    if int(window) != window or window < 1:
        raise ValueError(f"{name} must be a positive whole number of bars, got {window!r}")


def _series(values: np.ndarray, like: pd.Series | pd.DataFrame, name: str) -> pd.Series:
    return pd.Series(values, index=like.index, name=name)


def _values(x: pd.Series) -> np.ndarray:
    return x.to_numpy(dtype="float64")


# -- array level: what the feature builder uses (no pandas overhead) -----------------


def log_returns_values(c: np.ndarray, periods: int = 1) -> np.ndarray:
    return np.asarray(np.log(c / _k.shift(c, periods)))


def ema_values(c: np.ndarray, window: int) -> np.ndarray:
    return _k.ewm(c, 2.0 / (window + 1), min_periods=window)


def rsi_values(c: np.ndarray, window: int) -> np.ndarray:
    delta = c - _k.shift(c, 1)
    undefined = np.isnan(delta)
    up = np.where(undefined, np.nan, np.maximum(delta, 0.0))
    down = np.where(undefined, np.nan, np.maximum(-delta, 0.0))
    gain = _k.ewm(up, 1.0 / window, min_periods=window)
    loss = _k.ewm(down, 1.0 / window, min_periods=window)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + gain / loss)
    out = np.where(loss == 0.0, 100.0, out)
    out[np.isnan(gain)] = np.nan
    return out


def macd_values(
    c: np.ndarray, fast: int, slow: int, signal: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    line = ema_values(c, fast) - ema_values(c, slow)
    sig = _k.ewm(line, 2.0 / (signal + 1), signal)
    return line, sig, line - sig


def bollinger_values(
    c: np.ndarray, window: int, k: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mid = _k.rolling_mean(c, window)
    std = _k.rolling_std(c, window, ddof=0)
    return mid + k * std, mid, mid - k * std


def atr_values(high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int) -> np.ndarray:
    prev = _k.shift(close, 1)
    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    return _k.wilder_seeded(true_range, window)


def realized_volatility_values(c: np.ndarray, window: int) -> np.ndarray:
    return _k.rolling_std(log_returns_values(c), window, ddof=1)


def volume_zscore_values(v: np.ndarray, window: int) -> np.ndarray:
    mean = _k.rolling_mean(v, window)
    std = _k.rolling_std(v, window, ddof=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 0, (v - mean) / std, 0.0)
    z[np.isnan(mean)] = np.nan
    return z


def obv_values(c: np.ndarray, v: np.ndarray) -> np.ndarray:
    direction = np.sign(np.nan_to_num(c - _k.shift(c, 1)))
    return np.asarray(np.cumsum(direction * v))


# -- public, pandas level ---------------------------------------------------------------


def returns(close: pd.Series, *, periods: int = 1) -> pd.Series:
    """Simple return over ``periods`` bars: ``close_t / close_{t-periods} - 1``."""
    _check_window(periods, "periods")
    c = _values(close)
    return _series(c / _k.shift(c, periods) - 1.0, close, f"ret_{periods}")


def log_returns(close: pd.Series, *, periods: int = 1) -> pd.Series:
    """Log return over ``periods`` bars."""
    _check_window(periods, "periods")
    return _series(log_returns_values(_values(close), periods), close, f"logret_{periods}")


_CACHE: ContextVar[dict[Any, Any] | None] = ContextVar("botlib_indicator_cache", default=None)
_CACHE_LIMIT = 1024
F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def indicator_cache(store: dict[Any, Any] | None = None) -> Iterator[dict[Any, Any]]:
    """Within this block, ``sma``, ``ema``, ``rsi`` and ``atr`` of the same data with
    the same parameters are computed once (an optimizer trying 1,000 parameter sets of
    a strategy computes each distinct indicator once). Pass the same ``store`` to reuse
    it across blocks. Results are shared: do not modify them in place."""
    store = {} if store is None else store
    token = _CACHE.set(store)
    try:
        yield store
    finally:
        _CACHE.reset(token)


def _identity(data: pd.Series | pd.DataFrame) -> tuple[Any, ...]:
    """Which data this is: the address and length of its buffers and its index ends
    (the cache keeps the object alive, so an address cannot be reused meanwhile)."""
    frames = [data] if isinstance(data, pd.Series) else [data[c] for c in data.columns]
    parts: list[Any] = [len(data)]
    for col in frames:
        values = col.to_numpy()
        parts.append(values.__array_interface__["data"][0])
    if len(data):
        parts += [data.index[0], data.index[-1]]
    return tuple(parts)


def _memoized(fn: F) -> F:
    @wraps(fn)
    def wrapper(data: Any, **kwargs: Any) -> Any:
        store = _CACHE.get()
        if store is None:
            return fn(data, **kwargs)
        key = (fn.__name__, _identity(data), tuple(sorted(kwargs.items())))
        hit = store.get(key)
        if hit is None:
            if len(store) >= _CACHE_LIMIT:
                store.clear()
            hit = store[key] = (data, fn(data, **kwargs))
        return hit[1]

    return wrapper  # type: ignore[return-value]


@_memoized
def sma(close: pd.Series, *, window: int = 20) -> pd.Series:
    """Simple moving average over ``window`` bars."""
    _check_window(window)
    return _series(_k.rolling_mean(_values(close), window), close, f"sma_{window}")


@_memoized
def ema(close: pd.Series, *, window: int = 20) -> pd.Series:
    """Exponential moving average, ``alpha = 2 / (window + 1)``, recursive from the first
    bar; the first ``window - 1`` values are NaN (warm-up)."""
    _check_window(window)
    return _series(ema_values(_values(close), window), close, f"ema_{window}")


@_memoized
def rsi(close: pd.Series, *, window: int = 14) -> pd.Series:
    """Relative strength index (Wilder smoothing, ``alpha = 1 / window``), 0..100."""
    _check_window(window)
    return _series(rsi_values(_values(close), window), close, f"rsi_{window}")


def macd(close: pd.Series, *, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """MACD line (EMA fast - EMA slow), its signal line (EMA of the line) and histogram."""
    for value, name in ((fast, "fast"), (slow, "slow"), (signal, "signal")):
        _check_window(value, name)
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
    line, sig, hist = macd_values(_values(close), fast, slow, signal)
    return pd.DataFrame({"macd": line, "macd_signal": sig, "macd_hist": hist}, index=close.index)


def bollinger(close: pd.Series, *, window: int = 20, k: float = 2.0) -> pd.DataFrame:
    """Bollinger bands (population std), and width = (upper - lower) / middle."""
    _check_window(window)
    upper, mid, lower = bollinger_values(_values(close), window, k)
    return pd.DataFrame(
        {"bb_upper": upper, "bb_mid": mid, "bb_lower": lower, "bb_width": (upper - lower) / mid},
        index=close.index,
    )


@_memoized
def atr(candles: pd.DataFrame, *, window: int = 14) -> pd.Series:
    """Average true range (Wilder, seeded with the mean of the first ``window`` true
    ranges), in quote currency."""
    _check_window(window)
    high, low, close = (_values(candles[c]) for c in ("high", "low", "close"))
    return _series(atr_values(high, low, close, window), candles, f"atr_{window}")


def realized_volatility(
    close: pd.Series, *, window: int = 24, periods_per_year: float | None = None
) -> pd.Series:
    """Rolling standard deviation of 1-bar log returns; annualized when
    ``periods_per_year`` is given (e.g. 8760 for hourly bars)."""
    _check_window(window)
    vol = realized_volatility_values(_values(close), window)
    if periods_per_year is not None:
        vol = vol * np.sqrt(periods_per_year)
    return _series(vol, close, f"rvol_{window}")


def volume_zscore(volume: pd.Series, *, window: int = 24) -> pd.Series:
    """How unusual this bar's volume is against the last ``window`` bars (including it)."""
    _check_window(window)
    return _series(volume_zscore_values(_values(volume), window), volume, f"vol_z_{window}")


def obv(candles: pd.DataFrame) -> pd.Series:
    """On-balance volume: cumulative volume signed by the close-to-close direction
    (unchanged close: unchanged OBV)."""
    values = obv_values(_values(candles["close"]), _values(candles["volume"]))
    return _series(values, candles, "obv")
