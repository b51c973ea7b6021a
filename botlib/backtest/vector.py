"""A vectorized simulation of a signal frame with the backtrader engine's conventions.

It is the independent second computation that the parity tests hold against
backtrader, the buy-and-hold baseline, and the fast path for optimizers. Positions
are constant between target changes, so equity is computed segment by segment with
numpy; stops are found with a vectorized scan of each segment.

Conventions (shared with ``botlib.backtest.engine``):

* the signal of bar ``t`` fills at bar ``t+1``'s open; orders only on target changes;
* units after a fill: ``target * equity / (open * (1 + slippage) * (1 + fee))``, where
  ``equity`` is the liquidation value at the open after worst-case slippage and fees
  (less a 1e-9 relative buffer against rounding);
* buys fill at ``min(open * (1 + slippage), high)``, sells at ``max(open * (1 - slippage),
  low)``; fee = ``fee * |units * price|`` on every fill;
* a stop loss is live from the bar after the entry; a gap through it fills at the
  slipped open, an intrabar touch at the slipped stop price (clamped to the bar's
  range); a take profit fills at its level, or at the better slipped open on a gap;
  when both could fill in one bar the stop wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["VectorResult", "liquidation_value", "simulate", "target_units"]

#: Relative cash kept back on a full-size entry so rounding never overdraws the account.
_CASH_BUFFER = 1e-9


def liquidation_value(
    cash: float, units: float, open_: float, fee: float, slippage: float
) -> float:
    """Cash after closing ``units`` at ``open_`` with worst-case slippage and the fee."""
    exit_price = open_ * (1.0 - slippage) if units > 0 else open_ * (1.0 + slippage)
    return cash + units * exit_price - abs(units * exit_price) * fee


def target_units(
    target: float, cash: float, units: float, open_: float, fee: float, slippage: float
) -> float:
    """Units to hold for ``target`` (a fraction of equity) when filling at ``open_``.

    Equity is the book's liquidation value at the open; the new position is sized so
    that the worst-case fill price and the fee still fit in it, so cash never goes
    negative, even when a short flips to a long in one order."""
    base = liquidation_value(cash, units, open_, fee, slippage)
    return target * base / (open_ * (1.0 + slippage) * (1.0 + fee) * (1.0 + _CASH_BUFFER))


@dataclass(frozen=True)
class VectorResult:
    equity: pd.Series
    units: pd.Series
    fills: pd.DataFrame


def _buy_price(open_: float, high: float, slip: float) -> float:
    return min(open_ * (1.0 + slip), high)


def _sell_price(open_: float, low: float, slip: float) -> float:
    return max(open_ * (1.0 - slip), low)


def _exit_scan(
    units: float,
    sl: float,
    tp: float,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    slip: float,
) -> tuple[int, float, str] | None:
    """First bar (offset) in the arrays where the stop or the take profit fills."""
    n = len(o)
    if n == 0:
        return None
    long = units > 0
    hit_sl = np.zeros(n, dtype=bool)
    hit_tp = np.zeros(n, dtype=bool)
    if not np.isnan(sl):
        hit_sl = lo <= sl if long else h >= sl
    if not np.isnan(tp):
        hit_tp = h >= tp if long else lo <= tp
    hits = hit_sl | hit_tp
    if not hits.any():
        return None
    k = int(np.argmax(hits))
    if hit_sl[k]:
        if long:
            base = o[k] if o[k] <= sl else sl
            return k, max(base * (1.0 - slip), lo[k]), "stop_loss"
        base = o[k] if o[k] >= sl else sl
        return k, min(base * (1.0 + slip), h[k]), "stop_loss"
    if long:
        price = max(o[k] * (1.0 - slip), tp) if o[k] >= tp else tp
        return k, price, "take_profit"
    price = min(o[k] * (1.0 + slip), tp) if o[k] <= tp else tp
    return k, price, "take_profit"


def simulate(
    candles: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    cash: float = 10_000.0,
    fee: float = 0.001,
    slippage: float = 0.0005,
) -> VectorResult:
    """Simulate a normalized signal frame (see ``normalize_signals``) over ``candles``."""
    o = candles["open"].to_numpy(dtype="float64")
    h = candles["high"].to_numpy(dtype="float64")
    lo = candles["low"].to_numpy(dtype="float64")
    c = candles["close"].to_numpy(dtype="float64")
    n = len(c)
    index = candles.index  # indexed only at fills (a list of 40k Timestamps costs 25 ms)
    target = signals["target"].to_numpy(dtype="float64")
    sl_col = signals["stop_loss"].to_numpy(dtype="float64")
    tp_col = signals["take_profit"].to_numpy(dtype="float64")

    prev = np.concatenate([[0.0], target[:-1]])
    events = np.flatnonzero(target != prev)
    fill_bars = events + 1
    keep = fill_bars < n
    events, fill_bars = events[keep], fill_bars[keep]

    units_at = np.zeros(n)
    cash_at = np.full(n, float(cash))
    fills: list[tuple[pd.Timestamp, float, float, float, str]] = []
    units, money = 0.0, float(cash)
    boundaries = [*fill_bars.tolist(), n]
    # bars before the first fill: flat
    for j, (sig_bar, bar) in enumerate(zip(events, fill_bars, strict=True)):
        equity_open = liquidation_value(money, units, o[bar], fee, slippage)
        want = target_units(target[sig_bar], money, units, o[bar], fee, slippage)
        delta = want - units
        if equity_open > 0 and abs(delta) * o[bar] > 1e-9 * max(equity_open, 1.0):
            price = (
                _buy_price(o[bar], h[bar], slippage)
                if delta > 0
                else _sell_price(o[bar], lo[bar], slippage)
            )
            money -= delta * price + abs(delta * price) * fee
            units += delta
            fills.append((index[int(bar)], delta, price, abs(delta * price) * fee, "signal"))
        end = boundaries[j + 1]
        units_at[bar] = units
        cash_at[bar] = money
        seg = slice(bar + 1, end)
        exit_ = None
        if units != 0.0 and not (np.isnan(sl_col[sig_bar]) and np.isnan(tp_col[sig_bar])):
            exit_ = _exit_scan(
                units, sl_col[sig_bar], tp_col[sig_bar], o[seg], h[seg], lo[seg], slippage
            )
        if exit_ is None:
            units_at[seg] = units
            cash_at[seg] = money
            continue
        k, price, reason = exit_
        hit = bar + 1 + k
        units_at[bar + 1 : hit] = units
        cash_at[bar + 1 : hit] = money
        money += units * price - abs(units * price) * fee
        fills.append((index[int(hit)], -units, price, abs(units * price) * fee, reason))
        units = 0.0
        units_at[hit:end] = 0.0
        cash_at[hit:end] = money
    equity = pd.Series(cash_at + units_at * c, index=candles.index, name="equity")
    fill_frame = pd.DataFrame(fills, columns=["time", "size", "price", "commission", "reason"])
    return VectorResult(equity, pd.Series(units_at, index=candles.index, name="units"), fill_frame)
