"""Technical indicators: pure functions of past and present bars only.

Every function takes a candle frame (or a price series) and keyword-only parameters,
returns a named ``Series`` (or a ``DataFrame`` of named columns) aligned to the input
index, and never looks at a later row: the value at ``t`` is unchanged when rows
after ``t`` are removed. Warm-up rows are NaN. Window lengths are in bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "atr",
    "bollinger",
    "ema",
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


def returns(close: pd.Series, *, periods: int = 1) -> pd.Series:
    """Simple return over ``periods`` bars: ``close_t / close_{t-periods} - 1``."""
    _check_window(periods, "periods")
    return close.pct_change(periods, fill_method=None).rename(f"ret_{periods}")


def log_returns(close: pd.Series, *, periods: int = 1) -> pd.Series:
    """Log return over ``periods`` bars."""
    _check_window(periods, "periods")
    return pd.Series(
        np.log(close / close.shift(periods)), index=close.index, name=f"logret_{periods}"
    )


def sma(close: pd.Series, *, window: int = 20) -> pd.Series:
    """Simple moving average over ``window`` bars."""
    _check_window(window)
    return close.rolling(window, min_periods=window).mean().rename(f"sma_{window}")


def ema(close: pd.Series, *, window: int = 20) -> pd.Series:
    """Exponential moving average, ``alpha = 2 / (window + 1)``, recursive from the first
    bar; the first ``window - 1`` values are NaN (warm-up)."""
    _check_window(window)
    out = close.ewm(span=window, adjust=False, min_periods=window).mean()
    return out.rename(f"ema_{window}")


def _wilder(values: pd.Series, window: int) -> pd.Series:
    """Wilder's smoothing (``alpha = 1 / window``)."""
    return values.ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()


def rsi(close: pd.Series, *, window: int = 14) -> pd.Series:
    """Relative strength index (Wilder), 0..100."""
    _check_window(window)
    delta = close.diff()
    gain = _wilder(delta.clip(lower=0.0), window)
    loss = _wilder(-delta.clip(upper=0.0), window)
    with np.errstate(divide="ignore", invalid="ignore"):
        rs = gain / loss
    out = 100.0 - 100.0 / (1.0 + rs)
    out = out.where(loss != 0.0, 100.0).where(gain.notna())
    return out.rename(f"rsi_{window}")


def macd(close: pd.Series, *, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """MACD line (EMA fast - EMA slow), its signal line (EMA of the line) and histogram."""
    for value, name in ((fast, "fast"), (slow, "slow"), (signal, "signal")):
        _check_window(value, name)
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
    line = ema(close, window=fast) - ema(close, window=slow)
    sig = line.ewm(span=signal, adjust=False, min_periods=signal).mean()
    return pd.DataFrame(
        {"macd": line, "macd_signal": sig, "macd_hist": line - sig}, index=close.index
    )


def bollinger(close: pd.Series, *, window: int = 20, k: float = 2.0) -> pd.DataFrame:
    """Bollinger bands (population std), and width = (upper - lower) / middle."""
    _check_window(window)
    mid = close.rolling(window, min_periods=window).mean()
    std = close.rolling(window, min_periods=window).std(ddof=0)
    upper, lower = mid + k * std, mid - k * std
    return pd.DataFrame(
        {"bb_upper": upper, "bb_mid": mid, "bb_lower": lower, "bb_width": (upper - lower) / mid},
        index=close.index,
    )


def atr(candles: pd.DataFrame, *, window: int = 14) -> pd.Series:
    """Average true range (Wilder), in quote currency."""
    _check_window(window)
    prev_close = candles["close"].shift(1)
    true_range = pd.concat(
        [
            candles["high"] - candles["low"],
            (candles["high"] - prev_close).abs(),
            (candles["low"] - prev_close).abs(),
        ],
        axis=1,
    ).max(axis=1, skipna=False)
    true_range.iloc[0] = candles["high"].iloc[0] - candles["low"].iloc[0]
    # seeded with the simple mean of the first `window` true ranges, then Wilder
    values = true_range.to_numpy(dtype="float64")
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        out[window - 1] = values[:window].mean()
        for i in range(window, len(values)):
            out[i] = (out[i - 1] * (window - 1) + values[i]) / window
    return pd.Series(out, index=candles.index, name=f"atr_{window}")


def realized_volatility(
    close: pd.Series, *, window: int = 24, periods_per_year: float | None = None
) -> pd.Series:
    """Rolling standard deviation of 1-bar log returns; annualized when
    ``periods_per_year`` is given (e.g. 8760 for hourly bars)."""
    _check_window(window)
    vol = log_returns(close).rolling(window, min_periods=window).std(ddof=1)
    if periods_per_year is not None:
        vol = vol * np.sqrt(periods_per_year)
    return vol.rename(f"rvol_{window}")


def volume_zscore(volume: pd.Series, *, window: int = 24) -> pd.Series:
    """How unusual this bar's volume is against the last ``window`` bars (including it)."""
    _check_window(window)
    mean = volume.rolling(window, min_periods=window).mean()
    std = volume.rolling(window, min_periods=window).std(ddof=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (volume - mean) / std
    return z.where(std > 0, 0.0).where(mean.notna()).rename(f"vol_z_{window}")


def obv(candles: pd.DataFrame) -> pd.Series:
    """On-balance volume: cumulative volume signed by the close-to-close direction."""
    direction = np.sign(candles["close"].diff().fillna(0.0).to_numpy())
    signed = pd.Series(direction * candles["volume"].to_numpy(), index=candles.index)
    return signed.cumsum().rename("obv")
