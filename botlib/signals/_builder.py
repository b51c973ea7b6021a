"""THE signal builder: model outputs + market state -> trading signals.

``build_signal_frame`` is the one function that turns per-bar model outputs into
signals. Backtests trade its ``target`` / ``stop_loss`` / ``take_profit`` columns; the
live loop calls the same function on the newest bar (passing the position it holds),
so a replay of history yields the signals the backtest traded.

Rules, per bar:

* **score** in [-1, 1]: the model's ``target`` if it has one, else its ``score``, else
  ``p_up - p_down``, else ``expected_return`` over the horizon's expected move
  (``sigma * sqrt(horizon)``), else 0 (volatility-only models never trade).
* **direction**: up / down when ``|score| >= entry_threshold``, else sideways.
* **stops**: ``stop_mult`` and ``take_mult`` units of price risk from the close; a unit is
  ``close * sigma * sqrt(horizon)`` when the model forecasts volatility, else ATR.
* **position size** (fraction of equity): ``risk_per_trade / stop distance``, capped at
  ``max_position``; fixed at entry, so a held position is not resized every bar.
* **type**: ``buy`` / ``sell`` when the wanted side changes to long / short, ``close``
  when it goes flat (a long-only book turns a sell into a close), else ``hold``.
  Position models (with ``target``) go flat when ``|target| < entry_threshold``;
  forecasting models keep their position until the opposite signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from botlib.errors import ConfigError
from botlib.features import indicators as ind
from botlib.features._kernels import mean_std
from botlib.signals._records import Signal, record_id

__all__ = [
    "SignalConfig",
    "build_signal_frame",
    "records_from_arrays",
    "signal_arrays",
    "signal_records",
]


@dataclass(frozen=True)
class SignalConfig:
    """Risk and threshold settings of the signal builder (fractions, not percent)."""

    entry_threshold: float = 0.1
    allow_short: bool = False
    risk_per_trade: float = 0.02
    max_position: float = 1.0
    stop_mult: float = 2.0
    take_mult: float = 4.0
    atr_window: int = 14
    vol_window: int = 24

    def __post_init__(self) -> None:
        if not 0 <= self.entry_threshold < 1:
            raise ConfigError(f"entry_threshold must be in [0, 1), got {self.entry_threshold}")
        if not 0 < self.max_position <= 1:
            raise ConfigError(f"max_position must be in (0, 1], got {self.max_position}")
        if not 0 < self.risk_per_trade <= 1:
            raise ConfigError(f"risk_per_trade must be in (0, 1], got {self.risk_per_trade}")
        if self.stop_mult < 0 or self.take_mult < 0:
            raise ConfigError("stop_mult and take_mult must be >= 0 (0 = no level)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TYPES = np.array(["hold", "buy", "sell", "close"])


def _realized_volatility(close: np.ndarray, window: int, start: int = 0) -> np.ndarray:
    """Sample std (ddof 1) of 1-bar log returns over the last ``window`` bars, from the
    second return on (fewer returns at the start). Only rows from ``start`` on are
    computed (the rest stay NaN): each row depends on its own window alone, so the
    values are the same bits as a computation of every row."""
    n = len(close)
    out = np.full(n, np.nan)
    if n < 3:
        return out
    r = np.log(close[1:] / close[:-1])  # r[i] is the return into bar i + 1
    for t in range(max(2, start), min(window, n)):  # partial windows: returns 1..t
        out[t] = r[:t].std(ddof=1)
    lo = max(window, start)
    if 0 < n - lo <= 4:  # a few rows (the live step): NumPy's arithmetic, without its calls
        for t in range(lo, n):
            out[t] = mean_std(r[t - window : t].tolist(), 1)[1]
    elif n > lo:  # full windows: out[t] = std(r[t - window : t])
        view = np.lib.stride_tricks.sliding_window_view(r[lo - window : n - 1], window)
        out[lo:] = view.std(axis=1, ddof=1)
    if n >= window and window - 1 >= start:
        out[window - 1] = r[: window - 1].std(ddof=1)
    return out


def build_signal_frame(
    outputs: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    horizon: int = 1,
    config: SignalConfig | None = None,
    previous_target: float = 0.0,
    start: Any = None,
    atr: np.ndarray | None = None,
) -> pd.DataFrame:
    """Signals for every bar of ``outputs`` (aligned with ``candles``) from bar ``start``
    on (a timestamp; default the first bar).

    Returns the signal fields (``signal_type``, ``signal_strength``, ``confidence``,
    ``predicted_direction``, ``predicted_price``, ``predicted_volatility``,
    ``expected_return``, ``risk_score``, ``stop_loss``, ``take_profit``,
    ``position_size``) plus ``score`` and the backtest's ``target`` (NaN = keep).
    ``previous_target`` is the position held before ``start``. Rows before ``start``
    are market history only: they seed ATR and realized volatility and are not in the
    result — so a backtest and the live loop, given the same history, size and place
    stops identically. ``atr``: the ATR (``atr_window``) of every row, when the caller
    keeps it bar by bar (the live loop's streaming state, equal to the values computed
    here over the same history); by default it is computed from ``candles``.
    """
    cfg = config or SignalConfig()
    if not outputs.index.equals(candles.index):
        raise ConfigError("outputs and candles must share one index")
    # rows before ``start`` are history only: their signal fields are never read
    first = 0 if start is None else int(candles.index.searchsorted(pd.Timestamp(start)))
    arrays = {str(c): outputs[c].to_numpy(dtype="float64") for c in outputs.columns}
    prices = candles[["close", "high", "low"]].to_numpy(dtype="float64")
    columns = signal_arrays(
        arrays, prices[:, 0], prices[:, 1], prices[:, 2],
        first=first, horizon=horizon, config=cfg, previous_target=previous_target, atr=atr,
    )  # fmt: skip
    return pd.DataFrame(columns, index=candles.index[first:])


_POSITION, _SCORE, _PROBS, _EXPECTED, _NONE = 0, 1, 2, 3, 4
_DIRECTIONS = np.array(["up", "down", "sideways"])


@njit(cache=True)
def _clip1(x: float) -> float:
    """``np.clip(x, -1, 1)`` (NaN stays NaN)."""
    if x != x:
        return x
    return -1.0 if x < -1.0 else (1.0 if x > 1.0 else x)


@njit(cache=True)
def _unit(x: float) -> float:
    """``np.clip(np.nan_to_num(x), 0, 1)``."""
    if x != x or x < 0.0:
        return 0.0
    return 1.0 if x > 1.0 else x


@njit(cache=True, error_model="numpy")  # IEEE division: x / 0 is inf or NaN, as NumPy's
def _builder_rows(
    close: np.ndarray, model_vol: np.ndarray, realized: np.ndarray, atr: np.ndarray,
    expected: np.ndarray, p_up: np.ndarray, p_down: np.ndarray, p_side: np.ndarray,
    given: np.ndarray, mode: int, has_vol: bool, by_probs: bool, first: int, horizon: int,
    entry_threshold: float, max_position: float, risk_per_trade: float, stop_mult: float,
    take_mult: float, allow_short: bool, previous_target: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
           np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The builder's rows from ``first`` on, in one compiled pass: score, signal kind,
    strength, confidence, direction (``by_probs``: the likeliest class), volatility,
    risk, stop, take, size held, target."""
    n = len(close)
    m = n - first
    score, kind = np.full(m, np.nan), np.zeros(m, dtype=np.int8)
    strength, confidence = np.zeros(m), np.zeros(m)
    direction, sigma_out = np.zeros(m, dtype=np.int8), np.full(m, np.nan)
    risk, stop, take = np.ones(m), np.full(m, np.nan), np.full(m, np.nan)
    held, target = np.zeros(m), np.full(m, np.nan)
    root_h = math.sqrt(horizon)
    edge = max(entry_threshold, 1e-12)
    current = previous_target
    for t in range(first, n):
        r = t - first
        c = close[t]
        sigma = model_vol[t] if np.isfinite(model_vol[t]) else realized[t]
        move = sigma * root_h
        if has_vol:  # noqa: SIM108 (the two sources of the price unit, apart)
            unit = c * move
        else:
            unit = atr[t] if np.isfinite(atr[t]) else c * move
        # the likeliest class (NumPy's argmax over the finite ones: the first on ties)
        likeliest, best = -np.inf, 0
        if by_probs or mode == _PROBS:
            for j, p in enumerate((p_up[t], p_down[t], p_side[t])):
                q = p if np.isfinite(p) else -np.inf
                if q > likeliest:
                    likeliest, best = q, j
        if mode in (_POSITION, _SCORE):
            s = _clip1(given[t])
            conf = abs(s)
        elif mode == _PROBS:
            s = p_up[t] - p_down[t]
            conf = likeliest
        elif mode == _EXPECTED:
            s = _clip1(expected[t] / move)
            conf = abs(s)
        else:
            s = 0.0 if np.isfinite(sigma) else np.nan
            conf = 0.0
        stop_dist = stop_mult * unit
        take_dist = take_mult * unit
        stop_frac = stop_dist / c
        size = min(max_position, risk_per_trade / stop_frac) if stop_frac > 0 else max_position
        if not np.isfinite(size):
            size = max_position
        if np.isfinite(s) and np.isfinite(c):
            if abs(s) >= entry_threshold:
                want = 1.0 if s > 0 else -1.0
            elif mode == _POSITION:
                want = 0.0
            else:
                want = math.copysign(1.0, current) if current != 0 else 0.0
            if want < 0 and not allow_short:
                want = 0.0
            side = 0.0 if current == 0 else math.copysign(1.0, current)
            if want != side:
                new = want * size
                target[r] = new
                kind[r] = 1 if new > 0 else (2 if new < 0 else 3)
                if new != 0:
                    if stop_mult > 0 and np.isfinite(stop_dist):
                        stop[r] = c - want * stop_dist
                    if take_mult > 0 and np.isfinite(take_dist):
                        take[r] = c + want * take_dist
                current = new
        held[r] = min(abs(current), 1.0)
        score[r] = s
        strength[r] = _unit(abs(s))
        confidence[r] = _unit(conf)
        sigma_out[r] = sigma
        if by_probs:
            direction[r] = best
        else:
            direction[r] = 0 if s >= edge else (1 if s <= -edge else 2)
        ratio = stop_frac / 0.05
        if ratio == ratio:  # NaN: no stop distance known, the highest risk
            risk[r] = 0.0 if ratio < 0 else (1.0 if ratio > 1 else ratio)
    return (score, kind, strength, confidence, direction, sigma_out, risk, stop, take,
            held, target)  # fmt: skip


def signal_arrays(
    outputs: dict[str, np.ndarray],
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    *,
    first: int,
    horizon: int,
    config: SignalConfig,
    previous_target: float,
    atr: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``build_signal_frame``'s columns as arrays, for the rows from ``first`` on: the
    builder itself, on plain arrays (the live step calls it without building frames),
    its rows in one compiled pass (``_builder_rows``)."""
    cfg = config
    n = len(close)
    cols = set(outputs)
    missing = np.full(n, np.nan)

    def col(name: str) -> np.ndarray:
        return np.asarray(outputs[name], dtype="float64") if name in cols else missing

    close = np.ascontiguousarray(close, dtype="float64")
    realized = _realized_volatility(close, cfg.vol_window, first)
    has_vol = "volatility" in cols
    if has_vol:
        unit = missing
    elif atr is None:
        unit = ind.atr_values(high, low, close, cfg.atr_window)
    else:
        unit = np.asarray(atr, dtype="float64")
    if "target" in cols:
        mode, given = _POSITION, col("target")
    elif "score" in cols:
        mode, given = _SCORE, col("score")
    elif "p_up" in cols:
        mode, given = _PROBS, missing
    elif "expected_return" in cols:
        mode, given = _EXPECTED, missing
    else:
        mode, given = _NONE, missing
    expected = col("expected_return")
    sc, kind, strength, conf, direction, sigma, risk, stop, take, held, target = _builder_rows(
        close, col("volatility"), realized, unit, expected, col("p_up"), col("p_down"),
        col("p_sideways"), given, mode, has_vol, "p_up" in cols and mode != _POSITION, first,
        max(int(horizon), 1),
        float(cfg.entry_threshold), float(cfg.max_position), float(cfg.risk_per_trade),
        float(cfg.stop_mult), float(cfg.take_mult), bool(cfg.allow_short),
        float(previous_target),
    )  # fmt: skip
    return {
        "score": sc,
        "signal_type": _TYPES[kind],
        "signal_strength": strength,
        "confidence": conf,
        "predicted_direction": _DIRECTIONS[direction],
        "predicted_price": close[first:] * np.exp(expected[first:]),
        "predicted_volatility": sigma,
        "expected_return": expected[first:],
        "risk_score": risk,
        "stop_loss": stop,
        "take_profit": take,
        "position_size": held,
        "target": target,
    }


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _opt(value: Any) -> float | None:
    return float(value) if _finite(value) else None


def signal_records(
    frame: pd.DataFrame,
    *,
    model_id: str,
    symbol: str,
    bar: timedelta,
    horizon: int,
    metadata: dict[str, Any] | None = None,
    bot_id: str | None = None,
) -> list[Signal]:
    """``Signal`` records for the rows of a ``build_signal_frame`` result. A signal is
    created when its bar closes and expires ``horizon`` bars later."""
    columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    opened = [ts.to_pydatetime() for ts in frame.index]
    return records_from_arrays(
        columns, opened, model_id=model_id, symbol=symbol, bar=bar, horizon=horizon,
        metadata=metadata, bot_id=bot_id,
    )  # fmt: skip


def records_from_arrays(
    columns: dict[str, np.ndarray],
    index: Sequence[datetime],
    *,
    model_id: str,
    symbol: str,
    bar: timedelta,
    horizon: int,
    metadata: dict[str, Any] | None = None,
    bot_id: str | None = None,
) -> list[Signal]:
    """``signal_records`` on ``signal_arrays``' columns (rows opened at ``index``, UTC
    datetimes)."""
    records = []
    names = list(columns)
    # Python floats and strings (the same values): cheaper to test and format per row
    lists = [np.asarray(v).tolist() for v in columns.values()]
    for ts, values in zip(index, zip(*lists, strict=True), strict=True):
        row: dict[str, Any] = dict(zip(names, values, strict=True))
        created = ts + bar
        parts = [
            f"score {row['score']:+.2f}" if _finite(row["score"]) else "no score yet",
            f"direction {row['predicted_direction']}",
        ]
        if _finite(row["predicted_volatility"]):
            parts.append(f"volatility {row['predicted_volatility']:.2%}/bar")
        if _finite(row["stop_loss"]):
            parts.append(f"stop {row['stop_loss']:,.2f}, take {row['take_profit']:,.2f}")
        records.append(
            Signal(
                id=record_id("signal", model_id, symbol, created),
                model_id=model_id,
                bot_id=bot_id,
                symbol=symbol,
                signal_type=row["signal_type"],
                signal_strength=float(row["signal_strength"]),
                confidence=float(row["confidence"]),
                predicted_price=_opt(row["predicted_price"]),
                predicted_direction=row["predicted_direction"],
                predicted_volatility=_opt(row["predicted_volatility"]),
                risk_score=float(row["risk_score"]),
                expected_return=_opt(row["expected_return"]),
                stop_loss=_opt(row["stop_loss"]),
                take_profit=_opt(row["take_profit"]),
                position_size=float(row["position_size"]),
                reasoning={
                    "summary": f"{model_id}: " + "; ".join(parts),
                    "score": _opt(row["score"]),
                    "direction": str(row["predicted_direction"]),
                    "predicted_volatility": _opt(row["predicted_volatility"]),
                    "stop_loss": _opt(row["stop_loss"]),
                    "take_profit": _opt(row["take_profit"]),
                },
                metadata=dict(metadata or {}),
                created_at=created,
                expires_at=created + bar * max(int(horizon), 1),
            )
        )
    return records
