"""Performance metrics, computed on a strategy's own equity curve.

All ratios are annualized for the bar's timeframe with crypto's calendar: a year
has ``365 * 24`` hourly bars (not 252 trading days). Returns and drawdowns are
fractions (``0.12`` = 12 %); money is in quote currency.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from botlib.data import bars_per_year

__all__ = ["METRIC_NAMES", "compute_metrics", "equity_metrics", "trades_from_fills"]

METRIC_NAMES = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "trades",
    "win_rate",
    "profit_factor",
    "exposure",
    "turnover",
    "fees_paid",
    "final_equity",
)


def trades_from_fills(fills: pd.DataFrame) -> pd.DataFrame:
    """Round trips from a fill list (``time, size, price, commission``).

    A trade opens when the position leaves zero and closes when it returns to zero or
    flips sign (a flip closes one trade and opens the next). ``pnl`` is net of all
    commissions paid on the trade's fills.
    """
    rows: list[dict[str, Any]] = []
    position = 0.0
    current: dict[str, Any] | None = None
    for fill in fills.itertuples(index=False):
        size, price = float(fill.size), float(fill.price)  # type: ignore[arg-type]
        comm = float(fill.commission)  # type: ignore[arg-type]
        remaining = size
        if current is not None and position * size < 0:
            closing = -position if abs(size) >= abs(position) else size
            share = abs(closing / size)
            current["cash"] -= closing * price
            current["commission"] += comm * share
            position += closing
            remaining = size - closing
            if abs(position) < 1e-12:
                position = 0.0
                current.update(
                    exit_time=fill.time,
                    exit_price=price,
                    exit_reason=getattr(fill, "reason", "signal"),
                )
                current["pnl"] = current["cash"] - current["commission"]
                current["return"] = current["pnl"] / current["entry_value"]
                rows.append(current)
                current = None
            comm *= 1.0 - share
        if abs(remaining) > 1e-12:
            if current is None:
                current = {
                    "entry_time": fill.time,
                    "side": "long" if remaining > 0 else "short",
                    "size": abs(remaining),
                    "entry_price": price,
                    "cash": 0.0,
                    "commission": 0.0,
                    "entry_value": abs(remaining) * price,
                }
            else:
                current["size"] += abs(remaining)
                current["entry_value"] += abs(remaining) * price
            current["cash"] -= remaining * price
            current["commission"] += comm
            position += remaining
    columns = [
        "entry_time",
        "exit_time",
        "side",
        "size",
        "entry_price",
        "exit_price",
        "pnl",
        "return",
        "commission",
        "exit_reason",
    ]
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=columns) if rows else pd.DataFrame(columns=columns)


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else float("nan")


def equity_metrics(values: np.ndarray, *, per_year: float, initial_cash: float) -> dict[str, float]:
    """The figures of an equity curve alone (see ``compute_metrics``), from its array."""
    n = len(values)
    prev = np.concatenate([[initial_cash], values[:-1]])
    rets = values / prev - 1.0
    years = n / per_year
    total = values[-1] / initial_cash - 1.0 if n else 0.0
    cagr = (values[-1] / initial_cash) ** (1.0 / years) - 1.0 if n and values[-1] > 0 else -1.0
    std = rets.std(ddof=1) if n > 1 else 0.0
    sharpe = rets.mean() / std * math.sqrt(per_year) if std > 0 else float("nan")
    downside = math.sqrt(float(np.mean(np.minimum(rets, 0.0) ** 2))) if n else 0.0
    sortino = rets.mean() / downside * math.sqrt(per_year) if downside > 0 else float("nan")
    peak = np.maximum.accumulate(np.concatenate([[initial_cash], values]))[1:]
    max_dd = float((values / peak - 1.0).min()) if n else 0.0
    calmar = cagr / abs(max_dd) if max_dd < 0 else float("nan")
    return {
        "total_return": float(total),
        "cagr": float(cagr),
        "sharpe": _finite(sharpe),
        "sortino": _finite(sortino),
        "max_drawdown": max_dd,
        "calmar": _finite(calmar),
        "final_equity": float(values[-1]) if n else float(initial_cash),
    }


def compute_metrics(
    equity: pd.Series,
    *,
    timeframe: str,
    initial_cash: float,
    units: pd.Series | None = None,
    fills: pd.DataFrame | None = None,
    trades: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Metrics of an equity curve sampled at each bar's close.

    ``sharpe`` and ``sortino`` use per-bar simple returns (the first measured from
    ``initial_cash``), risk-free rate 0, annualized by ``sqrt(bars_per_year)``;
    ``sortino``'s downside deviation is ``sqrt(mean(min(r, 0)^2))``. ``max_drawdown``
    is the deepest fall from a running peak (negative). ``calmar`` = CAGR / |max
    drawdown|. ``exposure`` = share of bars closing with a position. ``turnover`` =
    traded value / mean equity, per year. Undefined ratios are NaN.
    """
    values = equity.to_numpy(dtype="float64")
    n = len(values)
    per_year = bars_per_year(timeframe)
    years = n / per_year
    out = equity_metrics(values, per_year=per_year, initial_cash=initial_cash)
    if trades is None and fills is not None:
        trades = trades_from_fills(fills)
    if trades is not None:
        pnl = trades["pnl"].astype("float64")
        gains, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
        out["trades"] = float(len(trades))
        out["win_rate"] = float((pnl > 0).mean()) if len(trades) else float("nan")
        out["profit_factor"] = _finite(gains / losses) if losses > 0 else float("nan")
    if units is not None:
        out["exposure"] = float((units.to_numpy() != 0).mean()) if n else 0.0
    if fills is not None:
        traded = float((fills["size"].abs() * fills["price"]).sum()) if len(fills) else 0.0
        out["turnover"] = traded / float(np.mean(values)) / years if n else 0.0
        out["fees_paid"] = float(fills["commission"].sum()) if len(fills) else 0.0
    return out
