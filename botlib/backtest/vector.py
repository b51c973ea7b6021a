"""A vectorized simulation of a signal frame with the backtrader engine's conventions.

It is the independent second computation that the parity tests hold against
backtrader, the buy-and-hold baseline, and the fast path for optimizers. Positions
are constant between target changes; one compiled pass over the bars
(``botlib.backtest.kernel``) applies the conventions below.

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


def simulate(
    candles: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    cash: float = 10_000.0,
    fee: float = 0.001,
    slippage: float = 0.0005,
) -> VectorResult:
    """Simulate a normalized signal frame (see ``normalize_signals``) over ``candles``
    (one compiled pass: ``botlib.backtest.kernel.simulate_arrays``)."""
    from botlib.backtest.kernel import REASONS, simulate_arrays

    def col(frame: pd.DataFrame, name: str) -> np.ndarray:
        return np.ascontiguousarray(frame[name].to_numpy(dtype="float64"))

    equity, units, bar, size, price, comm, reason = simulate_arrays(
        col(candles, "open"), col(candles, "high"), col(candles, "low"), col(candles, "close"),
        col(signals, "target"), col(signals, "stop_loss"), col(signals, "take_profit"),
        float(cash), float(fee), float(slippage),
    )  # fmt: skip
    index = candles.index
    fills = pd.DataFrame(
        {
            "time": index[bar] if len(bar) else index[:0],
            "size": size,
            "price": price,
            "commission": comm,
            "reason": [REASONS[int(r)] for r in reason],
        },
        columns=["time", "size", "price", "commission", "reason"],
    )
    return VectorResult(
        pd.Series(equity, index=index, name="equity"),
        pd.Series(units, index=index, name="units"),
        fills,
    )
