"""The built-in streaming features compiled (numba): one call per bar for a whole
feature set, instead of a Python call per feature (``streaming.StreamingFeatures``
uses it when every feature of its spec is built in).

The arithmetic is the Python one-row forms' and recursive steps', operation for
operation (no fast-math, no fused multiply-add), so every value has the same bits:
NumPy's pairwise sum is reproduced as ``_kernels.numpy_sum`` does it, and the logs
come from NumPy itself (its log and the C library's differ in the last bit), taken
by the caller between ``push`` and ``row`` on the ratios ``push`` returns.

Layout (built by ``streaming._Compiled``):

* ``ring`` (5, cap): the last ``cap`` bars, oldest first, OHLCV rows; ``meta[0]`` of
  them are filled (``meta[1]``: bars seen).
* ``prog`` (features, 6): code, three integer parameters, where the feature's logs
  start in ``logs`` and where its state starts in ``st``; ``slots`` (features, 3): the
  output column of each of its values (-1: none); ``fk``: a float parameter
  (Bollinger's ``k``).
* ``st``: every recursive feature's state, flat (see ``streaming._Compiled``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from botlib.features.streaming import _fmax as python_fmax

CLOSE, VOLUME, RETURNS, LOG_RETURNS, SMA, BOLLINGER, RVOL, VOLZ = 0, 1, 2, 3, 4, 5, 6, 7
EMA, RSI, MACD, ATR, OBV = 10, 11, 12, 13, 14
#: the built-in features the kernel computes, by name
CODES = {"close": CLOSE, "volume": VOLUME, "returns": RETURNS, "log_returns": LOG_RETURNS,
         "sma_ratio": SMA, "bollinger": BOLLINGER, "realized_volatility": RVOL,
         "volume_zscore": VOLZ, "ema_ratio": EMA, "rsi": RSI, "macd": MACD, "atr": ATR,
         "obv_slope": OBV}  # fmt: skip

_NAN = math.nan


@njit(cache=True)
def _nsum(a: np.ndarray) -> float:
    """``numpy_sum``: NumPy's pairwise float sum, bit for bit."""
    n = len(a)
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    if n <= 128:
        r = a[:8].copy()
        end = n - n % 8
        for i in range(8, end, 8):
            for j in range(8):
                r[j] += a[i + j]
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for i in range(end, n):
            res += a[i]
        return res  # type: ignore[no-any-return]
    half = n // 2
    half -= half % 8
    return _nsum(a[:half]) + _nsum(a[half:])


@njit(cache=True)
def _mean_std(a: np.ndarray, ddof: int) -> tuple[float, float]:
    n = len(a)
    mean = _nsum(a) / n
    squares = np.empty(n)
    for i in range(n):
        squares[i] = (a[i] - mean) * (a[i] - mean)
    return mean, math.sqrt(_nsum(squares) / max(n - ddof, 0))


@njit(cache=True)
def _ewm(st: np.ndarray, at: int, x: float, alpha: float, min_periods: int) -> float:
    """``streaming._Ewm.push`` on ``st[at]`` (y) and ``st[at + 1]`` (count)."""
    if st[at + 1] == 0.0:
        if not math.isfinite(x):
            return _NAN
        st[at] = alpha * x + (1.0 - alpha) * x
    else:
        st[at] = alpha * x + (1.0 - alpha) * st[at]
    st[at + 1] += 1.0
    return st[at] if st[at + 1] >= min_periods else _NAN


#: ``np.fmax`` as NumPy computes it (NaN loses): the Python forms' own function
_fmax = njit(cache=True)(python_fmax)


@njit(cache=True)
def _pymax0(x: float) -> float:
    """Python's ``max(x, 0.0)``: the first argument unless the second is greater."""
    return 0.0 if x < 0.0 else x


@njit(cache=True)
def push(ring: np.ndarray, meta: np.ndarray, bar: np.ndarray, prog: np.ndarray,
         nlogs: int) -> np.ndarray:  # fmt: skip
    """Append ``bar`` (OHLCV) to the ring; the ratios whose NumPy logs ``row`` needs."""
    cap = ring.shape[1]
    n = meta[0]
    if n < cap:
        for k in range(5):
            ring[k, n] = bar[k]
        n += 1
        meta[0] = n
    else:
        for k in range(5):
            for i in range(cap - 1):
                ring[k, i] = ring[k, i + 1]
            ring[k, cap - 1] = bar[k]
    meta[1] += 1
    c = ring[3, :n]
    ratios = np.full(nlogs, _NAN)
    for f in range(prog.shape[0]):
        code, p, at = prog[f, 0], prog[f, 1], prog[f, 4]
        if code == LOG_RETURNS and n > p:
            ratios[at] = c[n - 1] / c[n - 1 - p]
        elif code == RVOL and n > p and p >= 2:
            tail = c[n - p - 1 :]
            for i in range(p):
                ratios[at + i] = tail[i + 1] / tail[i]
    return ratios


@njit(cache=True)
def row(ring: np.ndarray, meta: np.ndarray, prog: np.ndarray, slots: np.ndarray,
        fk: np.ndarray, st: np.ndarray, logs: np.ndarray, out: np.ndarray) -> None:  # fmt: skip
    """The newest bar's feature row into ``out`` (non-finite values as NaN); the
    recursive features' states advance."""
    n = meta[0]
    c, v = ring[3, :n], ring[4, :n]
    close, volume, high, low = c[n - 1], v[n - 1], ring[1, n - 1], ring[2, n - 1]
    for f in range(prog.shape[0]):
        code, p1, p2, p3 = prog[f, 0], prog[f, 1], prog[f, 2], prog[f, 3]
        at, s = prog[f, 4], prog[f, 5]
        s0, s1, s2 = slots[f, 0], slots[f, 1], slots[f, 2]
        if code == CLOSE:
            out[s0] = close
        elif code == VOLUME:
            out[s0] = volume
        elif code == RETURNS:
            out[s0] = close / c[n - 1 - p1] - 1.0 if n > p1 else _NAN
        elif code == LOG_RETURNS:
            out[s0] = logs[at] if n > p1 else _NAN
        elif code == SMA:
            out[s0] = close / (_nsum(c[n - p1 :]) / p1) - 1.0 if n >= p1 else _NAN
        elif code == BOLLINGER:
            if n < p1:
                out[s0], out[s1] = _NAN, _NAN
            else:
                mid, std = _mean_std(c[n - p1 :], 0)
                k = fk[f]
                upper, lower = mid + k * std, mid - k * std
                span = upper - lower
                out[s0] = 0.5 if span == 0 else (close - lower) / span
                out[s1] = span / mid if mid != 0.0 else _NAN
        elif code == RVOL:
            if n <= p1 or p1 < 2:
                out[s0] = _NAN
            else:
                out[s0] = _mean_std(logs[at : at + p1], 1)[1]
        elif code == VOLZ:
            if n < p1:
                out[s0] = _NAN
            else:
                mean, std = _mean_std(v[n - p1 :], 0)
                out[s0] = (volume - mean) / std if std > 0 else 0.0
        elif code == EMA:  # st: ewm
            out[s0] = close / _ewm(st, s, close, 2.0 / (p1 + 1), p1) - 1.0
        elif code == RSI:  # st: prev, gain ewm, loss ewm
            delta = close - st[s]
            st[s] = close
            up = _NAN if math.isnan(delta) else _pymax0(delta)
            down = _NAN if math.isnan(delta) else _pymax0(-delta)
            g = _ewm(st, s + 1, up, 1.0 / p1, p1)
            dn = _ewm(st, s + 3, down, 1.0 / p1, p1)
            if math.isnan(g):
                out[s0] = _NAN
            elif dn == 0.0:
                out[s0] = 100.0
            else:
                out[s0] = 100.0 - 100.0 / (1.0 + g / dn)
        elif code == MACD:  # st: fast, slow, signal ewm
            line = _ewm(st, s, close, 2.0 / (p1 + 1), p1) - _ewm(
                st, s + 2, close, 2.0 / (p2 + 1), p2
            )
            sig = _ewm(st, s + 4, line, 2.0 / (p3 + 1), p3)
            out[s0], out[s1], out[s2] = line / close, sig / close, (line - sig) / close
        elif code == ATR:  # st: prev, y, filled, first[p1]
            c0 = st[s]
            tr = _fmax(high - low, _fmax(abs(high - c0), abs(low - c0)))
            st[s] = close
            filled = int(st[s + 2])
            if filled < p1:
                st[s + 3 + filled] = tr
                filled += 1
                st[s + 2] = filled
                if filled == p1:
                    st[s + 1] = _nsum(st[s + 3 : s + 3 + p1]) / p1
            else:
                a = 1.0 / p1
                st[s + 1] = a * tr + (1.0 - a) * st[s + 1]
            out[s0] = st[s + 1] / close
        elif code == OBV:  # st: obv, prev, npast, past[p1 + 1], nvol, vols[p1]
            move = close - st[s + 1]
            direction = 0.0 if (math.isnan(move) or move == 0.0) else (1.0 if move > 0 else -1.0)
            st[s] += direction * volume
            st[s + 1] = close
            past, npast = s + 3, int(st[s + 2])
            if npast < p1 + 1:
                st[past + npast] = st[s]
                npast += 1
                st[s + 2] = npast
            else:
                for i in range(p1):
                    st[past + i] = st[past + i + 1]
                st[past + p1] = st[s]
            vols = past + p1 + 2
            nvol = int(st[vols - 1])
            if nvol < p1:
                st[vols + nvol] = volume
                nvol += 1
                st[vols - 1] = nvol
            else:
                for i in range(p1 - 1):
                    st[vols + i] = st[vols + i + 1]
                st[vols + p1 - 1] = volume
            if npast <= p1 or nvol < p1:
                out[s0] = _NAN
            else:
                change = st[past + npast - 1] - st[past]
                mean_vol = _nsum(st[vols : vols + p1]) / p1
                out[s0] = change / (mean_vol * p1) if mean_vol > 0 else 0.0
    for j in range(len(out)):
        if not math.isfinite(out[j]):
            out[j] = _NAN
