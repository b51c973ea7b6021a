"""NumPy kernels behind the indicators: the same values as the pandas idioms
(``rolling(w, min_periods=w)``, ``ewm(adjust=False, min_periods=m)``) at a fraction of
the per-call overhead, which matters when the live loop computes one window per bar.

Inputs may carry a NaN *prefix* (from a shift or a diff); values after the first finite
one are expected to be finite, as they are for validated candles.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

Array = np.ndarray


def shift(x: Array, n: int) -> Array:
    """``x`` moved ``n`` rows later (NaN-padded)."""
    out = np.full(len(x), np.nan)
    if n < len(x):
        out[n:] = x[: len(x) - n]
    return out


def rolling_mean(x: Array, window: int) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        out[window - 1 :] = sliding_window_view(x, window).mean(axis=1)
    return out


def rolling_std(x: Array, window: int, ddof: int = 0) -> Array:
    out = np.full(len(x), np.nan)
    if len(x) >= window and window > ddof:
        out[window - 1 :] = sliding_window_view(x, window).std(axis=1, ddof=ddof)
    return out


def ewm(x: Array, alpha: float, min_periods: int = 1) -> Array:
    """``y_t = alpha x_t + (1 - alpha) y_{t-1}``, started at the first finite value; the
    first ``min_periods - 1`` defined values are NaN."""
    out = np.full(len(x), np.nan)
    finite = np.flatnonzero(np.isfinite(x))
    if not len(finite):
        return out
    first = int(finite[0])
    body = x[first:]
    y, _ = lfilter([alpha], [1.0, alpha - 1.0], body, zi=[(1.0 - alpha) * body[0]])
    out[first:] = y
    out[first : first + min_periods - 1] = np.nan
    return out


def wilder_seeded(x: Array, window: int) -> Array:
    """Wilder smoothing seeded with the mean of the first ``window`` values (ATR)."""
    out = np.full(len(x), np.nan)
    if len(x) < window:
        return out
    seed = x[:window].mean()
    out[window - 1] = seed
    if len(x) > window:
        a = 1.0 / window
        y, _ = lfilter([a], [1.0, a - 1.0], x[window:], zi=[(1.0 - a) * seed])
        out[window:] = y
    return out


def numpy_sum(a: list[float]) -> float:
    """NumPy's float sum, bit for bit (its pairwise summation: eight accumulators over
    blocks of up to 128 values, halves above): a one-row form computed from a few
    values in plain Python gives the batch kernels' values exactly."""
    n = len(a)
    if n < 8:
        res = 0.0
        for v in a:
            res += v
        return res
    if n <= 128:
        r = a[:8]
        end = n - n % 8
        for i in range(8, end, 8):
            for j in range(8):
                r[j] += a[i + j]
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for v in a[end:]:
            res += v
        return res
    half = n // 2
    half -= half % 8
    return numpy_sum(a[:half]) + numpy_sum(a[half:])


def mean_std(a: list[float], ddof: int) -> tuple[float, float]:
    """``a.mean()`` and ``a.std(ddof=ddof)`` as NumPy computes them."""
    n = len(a)
    mean = numpy_sum(a) / n
    squares = [(v - mean) * (v - mean) for v in a]
    return mean, math.sqrt(numpy_sum(squares) / max(n - ddof, 0))
