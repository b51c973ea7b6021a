"""The backtest in one compiled pass over arrays (numba), for optimizers and the
vectorized twin alike.

``simulate_arrays`` walks the bars once with the engine's conventions (see
``botlib.backtest.vector``): the signal of bar ``t`` fills at ``t+1``'s open, orders only
when the target changes, fees and slippage on every fill (slippage clamped to the
bar's range), stops live from the bar after the entry, the stop beating the take profit
in one bar, shorts, sizing from the liquidation value. ``metrics_from_arrays`` gives
``compute_metrics``' figures from its arrays without building pandas objects. Compiled
once per machine (numba's on-disk cache), not per call or per process.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "REASONS",
    "STATE_SIZE",
    "ffill_zero",
    "fresh_state",
    "metrics_from_arrays",
    "simulate_arrays",
    "simulate_from",
    "trade_pnls",
]

#: fill reasons by code
REASONS = ("signal", "stop_loss", "take_profit")
_CASH_BUFFER = 1e-9


@njit(cache=True)
def _liquidation(cash: float, units: float, open_: float, fee: float, slip: float) -> float:
    exit_price = open_ * (1.0 - slip) if units > 0 else open_ * (1.0 + slip)
    return cash + units * exit_price - abs(units * exit_price) * fee


#: the book between two calls of ``simulate_from`` (a float64 array of this length):
#: units, cash, stop, take, entry bar (relative to the next call's first bar), and the
#: last bars' target (two), stop loss and take profit (the signal a next open fills)
STATE_SIZE = 9


def fresh_state(cash: float) -> np.ndarray:
    """The book before the first bar: flat, ``cash`` in hand, no signal yet."""
    return np.array([0.0, float(cash), np.nan, np.nan, -1.0, 0.0, 0.0, np.nan, np.nan])


@njit(cache=True)
def simulate_from(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    target: np.ndarray,
    sl: np.ndarray,
    tp: np.ndarray,
    state: np.ndarray,
    fee: float,
    slip: float,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:
    """``simulate_arrays`` continued from ``state`` (``fresh_state`` or what the call
    before returned): the same arithmetic in the same order, so bars simulated in
    several calls give the bits of one call over all of them (the paper accounts'
    incremental book). Returns the arrays of ``simulate_arrays`` and the new state."""
    n = len(c)
    units_at = np.zeros(n)
    cash_at = np.zeros(n)
    fill_bar = np.empty(2 * n + 1, dtype=np.int64)
    fill_size = np.empty(2 * n + 1)
    fill_price = np.empty(2 * n + 1)
    fill_comm = np.empty(2 * n + 1)
    fill_reason = np.empty(2 * n + 1, dtype=np.int64)
    k = 0
    units, money = state[0], state[1]
    stop, take = state[2], state[3]
    entry = int(state[4])
    for t in range(n):
        last = target[t - 1] if t >= 1 else state[6]
        before = target[t - 2] if t >= 2 else (state[6] if t == 1 else state[5])
        if last != before:
            sig_sl = sl[t - 1] if t >= 1 else state[7]
            sig_tp = tp[t - 1] if t >= 1 else state[8]
            equity_open = _liquidation(money, units, o[t], fee, slip)
            want = last * equity_open / (o[t] * (1.0 + slip) * (1.0 + fee) * (1.0 + _CASH_BUFFER))
            delta = want - units
            if equity_open > 0 and abs(delta) * o[t] > 1e-9 * max(equity_open, 1.0):
                if delta > 0:
                    price = min(o[t] * (1.0 + slip), h[t])
                else:
                    price = max(o[t] * (1.0 - slip), lo[t])
                comm = abs(delta * price) * fee
                money -= delta * price + comm
                units += delta
                fill_bar[k], fill_size[k], fill_price[k] = t, delta, price
                fill_comm[k], fill_reason[k] = comm, 0
                k += 1
            stop, take, entry = sig_sl, sig_tp, t
        elif units != 0.0 and t > entry and not (np.isnan(stop) and np.isnan(take)):
            long = units > 0
            hit_sl = (lo[t] <= stop if long else h[t] >= stop) if not np.isnan(stop) else False
            hit_tp = (h[t] >= take if long else lo[t] <= take) if not np.isnan(take) else False
            if hit_sl or hit_tp:
                if hit_sl:
                    reason = 1
                    if long:
                        base = o[t] if o[t] <= stop else stop
                        price = max(base * (1.0 - slip), lo[t])
                    else:
                        base = o[t] if o[t] >= stop else stop
                        price = min(base * (1.0 + slip), h[t])
                else:
                    reason = 2
                    if long:
                        price = max(o[t] * (1.0 - slip), take) if o[t] >= take else take
                    else:
                        price = min(o[t] * (1.0 + slip), take) if o[t] <= take else take
                comm = abs(units * price) * fee
                money += units * price - comm
                fill_bar[k], fill_size[k], fill_price[k] = t, -units, price
                fill_comm[k], fill_reason[k] = comm, reason
                k += 1
                units = 0.0
        units_at[t] = units
        cash_at[t] = money
    equity = cash_at + units_at * c
    out = state.copy()
    out[0], out[1], out[2], out[3] = units, money, stop, take
    out[4] = float(entry - n)
    if n >= 2:
        out[5], out[6] = target[n - 2], target[n - 1]
    elif n == 1:
        out[5], out[6] = state[6], target[0]
    if n >= 1:
        out[7], out[8] = sl[n - 1], tp[n - 1]
    return (equity, units_at, fill_bar[:k], fill_size[:k], fill_price[:k], fill_comm[:k],
            fill_reason[:k], out)  # fmt: skip


def simulate_arrays(
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    target: np.ndarray,
    sl: np.ndarray,
    tp: np.ndarray,
    cash: float,
    fee: float,
    slip: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equity and units per bar, and the fills (bar, size, price, commission, reason
    code), for a normalized signal frame's columns (``target`` without NaN), from a
    flat book holding ``cash``."""
    return simulate_from(o, h, lo, c, target, sl, tp, fresh_state(cash), fee, slip)[:7]


@njit(cache=True)
def trade_pnls(size: np.ndarray, price: np.ndarray, comm: np.ndarray) -> np.ndarray:
    """Net P&L of each round trip (``trades_from_fills``' rule: a trade opens when the
    position leaves zero and closes when it returns to zero or flips)."""
    out = np.empty(len(size) + 1)
    m = 0
    position, cash_flow, fees = 0.0, 0.0, 0.0
    open_ = False
    for i in range(len(size)):
        s, p, cm = size[i], price[i], comm[i]
        remaining = s
        if open_ and position * s < 0:
            closing = -position if abs(s) >= abs(position) else s
            share = abs(closing / s)
            cash_flow -= closing * p
            fees += cm * share
            position += closing
            remaining = s - closing
            if abs(position) < 1e-12:
                position = 0.0
                out[m] = cash_flow - fees
                m += 1
                open_ = False
                cash_flow, fees = 0.0, 0.0
            cm *= 1.0 - share
        if abs(remaining) > 1e-12:
            open_ = True
            cash_flow -= remaining * p
            fees += cm
            position += remaining
    return out[:m]


@njit(cache=True)
def ffill_zero(values: np.ndarray) -> np.ndarray:
    """NaN keeps the previous value; leading NaN is 0 (a flat book)."""
    out = np.empty(len(values))
    last = 0.0
    for i in range(len(values)):
        if not np.isnan(values[i]):
            last = values[i]
        out[i] = last
    return out


def metrics_from_arrays(
    equity: np.ndarray,
    *,
    per_year: float,
    initial_cash: float,
    units: np.ndarray | None = None,
    size: np.ndarray | None = None,
    price: np.ndarray | None = None,
    comm: np.ndarray | None = None,
) -> dict[str, float]:
    """``compute_metrics``' figures from arrays (same formulas, no pandas)."""
    from botlib.backtest.metrics import equity_metrics

    values = equity
    n = len(values)
    years = n / per_year
    out = equity_metrics(values, per_year=per_year, initial_cash=initial_cash)
    if size is not None and price is not None and comm is not None:
        pnl = trade_pnls(size, price, comm)
        gains, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
        out["trades"] = float(len(pnl))
        out["win_rate"] = float((pnl > 0).mean()) if len(pnl) else math.nan
        out["profit_factor"] = _finite(gains / losses) if losses > 0 else math.nan
        traded = float((np.abs(size) * price).sum()) if len(size) else 0.0
        out["turnover"] = traded / float(np.mean(values)) / years if n else 0.0
        out["fees_paid"] = float(comm.sum()) if len(comm) else 0.0
    if units is not None:
        out["exposure"] = float((units != 0).mean()) if n else 0.0
    return out


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else math.nan
