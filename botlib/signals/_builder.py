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
    builder itself, on plain arrays (the live step calls it without building frames)."""
    cfg = config
    n = len(close)
    h = max(int(horizon), 1)
    cols = set(outputs)

    def col(name: str) -> np.ndarray:
        return outputs[name] if name in cols else np.full(n, np.nan)

    realized = _realized_volatility(close, cfg.vol_window, first)
    model_vol = col("volatility")
    sigma = np.where(np.isfinite(model_vol), model_vol, realized)
    move = sigma * math.sqrt(h)
    if "volatility" in cols:
        unit = close * move
    else:
        unit = ind.atr_values(high, low, close, cfg.atr_window) if atr is None else atr
        unit = np.where(np.isfinite(unit), unit, close * move)

    expected = col("expected_return")
    probs = {k: col(k) for k in ("p_up", "p_down", "p_sideways")}
    is_position_model = "target" in cols
    if is_position_model:
        score = np.clip(col("target"), -1, 1)
        confidence = np.abs(score)
    elif "score" in cols:
        score = np.clip(col("score"), -1, 1)
        confidence = np.abs(score)
    elif "p_up" in cols:
        score = probs["p_up"] - probs["p_down"]
        stacked = np.vstack([probs["p_up"], probs["p_down"], probs["p_sideways"]])
        confidence = np.nanmax(np.where(np.isfinite(stacked), stacked, -np.inf), axis=0)
    elif "expected_return" in cols:
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.clip(expected / move, -1, 1)
        confidence = np.abs(score)
    else:
        score = np.where(np.isfinite(sigma), 0.0, np.nan)
        confidence = np.zeros(n)

    thr = cfg.entry_threshold
    stop_dist = cfg.stop_mult * unit
    take_dist = cfg.take_mult * unit
    with np.errstate(divide="ignore", invalid="ignore"):
        stop_frac = stop_dist / close
        size = np.where(
            stop_frac > 0,
            np.minimum(cfg.max_position, cfg.risk_per_trade / stop_frac),
            cfg.max_position,
        )
    size = np.where(np.isfinite(size), size, cfg.max_position)

    target = np.full(n, np.nan)
    kind = np.zeros(n, dtype=np.int8)  # index into _TYPES
    stop = np.full(n, np.nan)
    take = np.full(n, np.nan)
    held = np.full(n, np.nan)
    current = float(previous_target)
    held[:first] = current
    for t in range(first, n):
        s = score[t]
        if not np.isfinite(s) or not np.isfinite(close[t]):
            held[t] = current
            continue
        if abs(s) >= thr:
            want = 1.0 if s > 0 else -1.0
        elif is_position_model:
            want = 0.0
        else:
            want = math.copysign(1.0, current) if current != 0 else 0.0
        if want < 0 and not cfg.allow_short:
            want = 0.0
        side = 0.0 if current == 0 else math.copysign(1.0, current)
        if want != side:
            new = want * float(size[t])
            target[t] = new
            kind[t] = 1 if new > 0 else (2 if new < 0 else 3)
            if new != 0:
                if cfg.stop_mult > 0 and np.isfinite(stop_dist[t]):
                    stop[t] = close[t] - want * stop_dist[t]
                if cfg.take_mult > 0 and np.isfinite(take_dist[t]):
                    take[t] = close[t] + want * take_dist[t]
            current = new
        held[t] = current

    # the frame holds the rows from ``start`` on (the ones that carry signals)
    rows = slice(first, n)
    sc = score[rows]
    direction = np.where(
        sc >= max(thr, 1e-12), "up", np.where(sc <= -max(thr, 1e-12), "down", "sideways")
    )
    if "p_up" in cols and not is_position_model:
        stacked = np.vstack([probs["p_up"], probs["p_down"], probs["p_sideways"]])[:, rows]
        best = np.argmax(np.where(np.isfinite(stacked), stacked, -np.inf), axis=0)
        direction = np.array(["up", "down", "sideways"])[best]
    with np.errstate(invalid="ignore"):
        risk = np.clip(stop_frac[rows] / 0.05, 0.0, 1.0)
    return {
        "score": sc,
        "signal_type": _TYPES[kind[rows]],
        "signal_strength": np.clip(np.nan_to_num(np.abs(sc)), 0, 1),
        "confidence": np.clip(np.nan_to_num(confidence[rows]), 0, 1),
        "predicted_direction": direction,
        "predicted_price": close[rows] * np.exp(expected[rows]),
        "predicted_volatility": sigma[rows],
        "expected_return": expected[rows],
        "risk_score": np.nan_to_num(risk, nan=1.0),
        "stop_loss": stop[rows],
        "take_profit": take[rows],
        "position_size": np.clip(np.abs(held[rows]), 0, 1),
        "target": target[rows],
    }


def _opt(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


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
    for ts, values in zip(index, zip(*columns.values(), strict=True), strict=True):
        row: dict[str, Any] = dict(zip(names, values, strict=True))
        created = ts + bar
        parts = [
            f"score {row['score']:+.2f}" if np.isfinite(row["score"]) else "no score yet",
            f"direction {row['predicted_direction']}",
        ]
        if np.isfinite(row["predicted_volatility"]):
            parts.append(f"volatility {row['predicted_volatility']:.2%}/bar")
        if np.isfinite(row["stop_loss"]):
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
