"""The per-model step: a model's outputs on the newest bars → THE signal builder with
the runtime signal settings and the position held → signal records.

One function for everyone who makes a live signal — the signal loop on every bar, the
bridge's on-demand ``generate_signal``, the benchmarks — so the same model, candles,
settings and position give the same signal wherever it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from botlib.data import ohlcv_values
from botlib.models import BaseModel
from botlib.signals import SignalConfig, records_from_arrays, signal_arrays

__all__ = ["EPOCH", "ModelStep", "bar_datetimes", "model_step", "signal_payloads", "signals_step"]


#: the Unix epoch, as the UTC datetime bar open times count from
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bar_datetimes(times_ms: np.ndarray | list[int]) -> list[datetime]:
    """Bar open times (epoch ms) as UTC datetimes (``Timestamp.to_pydatetime``'s)."""
    return [EPOCH + timedelta(milliseconds=int(t)) for t in times_ms]


@dataclass(frozen=True)
class ModelStep:
    """What one model made of the ``k`` newest bars."""

    #: the model's outputs, one row per new bar (NaN where it has none yet)
    outputs: np.ndarray
    #: the output columns (``model.outputs``)
    names: tuple[str, ...]
    #: the new bars' open times, epoch ms
    times: np.ndarray
    #: the builder's columns for the new bars (signal, size, stops, ``target``)
    columns: dict[str, np.ndarray]
    #: which new bars have outputs
    ready: np.ndarray
    #: target position after the newest bar (fraction of equity, signed)
    position: float
    #: the position held before each new bar (where the builder started it from)
    before: np.ndarray | None = None

    @cached_property
    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(
            self.times.astype("datetime64[ms]").astype("datetime64[ns]"), tz="UTC",
            name="timestamp",
        )  # fmt: skip

    @property
    def tail(self) -> pd.DataFrame:
        """The model's outputs as a frame (rows: the new bars)."""
        return pd.DataFrame(self.outputs, index=self.index, columns=list(self.names))

    @property
    def signals(self) -> pd.DataFrame:
        """The builder's frame for the new bars (``build_signal_frame``'s rows)."""
        return pd.DataFrame(self.columns, index=self.index)


def model_step(
    model: BaseModel,
    candles: pd.DataFrame,
    k: int,
    *,
    config: SignalConfig,
    position: float,
    checked: bool = True,
) -> ModelStep:
    """Run ``model`` on the ``k`` newest bars of ``candles`` (older rows are history)
    and build their signals, starting from the held ``position`` (the window path)."""
    tail = model.predict_tail(candles, k, checked=checked)
    times = np.asarray(pd.DatetimeIndex(tail.index).as_unit("ms").asi8, dtype="int64")
    outputs = tail.to_numpy(dtype="float64")
    names = tuple(str(c) for c in tail.columns)
    return signals_step(
        model.meta.horizon, outputs, names, times, candles, config=config, position=position
    )


def signals_step(
    horizon: int,
    outputs: np.ndarray,
    names: tuple[str, ...],
    times: np.ndarray,
    candles: pd.DataFrame | np.ndarray,
    *,
    config: SignalConfig,
    position: float,
    atr: np.ndarray | None = None,
) -> ModelStep:
    """THE builder on the ``outputs`` of a model of ``horizon`` bars (rows: the newest
    bars, opened at ``times``, epoch ms; the last rows of ``candles``, whose older rows
    are history), from the held ``position``. ``candles`` may be a frame or its OHLCV
    values (rows as in ``OHLCV_COLUMNS``). ``atr``: the builder's ATR per row of
    ``candles`` when the caller streams it (the live loop), else it is computed from
    ``candles``."""
    values = candles if isinstance(candles, np.ndarray) else ohlcv_values(candles)
    values = np.asarray(values, dtype="float64")
    n, k = len(values), len(outputs)
    full_rows = {}
    for j, c in enumerate(names):
        full = np.full(n, np.nan)
        full[n - k :] = outputs[:, j]
        full_rows[c] = full
    columns = signal_arrays(
        full_rows, values[:, 3], values[:, 1], values[:, 2], first=n - k,
        horizon=horizon, config=config, previous_target=position, atr=atr,
    )  # fmt: skip
    before = np.empty(k)
    for i, target in enumerate(columns["target"]):
        before[i] = position
        if np.isfinite(target):
            position = float(target)
    ready = np.asarray((~np.isnan(outputs)).any(axis=1), dtype=bool)
    return ModelStep(outputs, names, times, columns, ready, position, before)


def signal_payloads(
    step: ModelStep,
    *,
    model_id: str,
    symbol: str,
    bar: timedelta,
    horizon: int,
    metadata: dict[str, Any],
    bot_id: str | None = None,
) -> list[dict[str, Any]]:
    """The signal records of the ready bars, as JSON-ready dicts (``metadata.target``
    carries the builder's target position, ``metadata.position_before`` the position
    it started the bar from)."""
    every = bool(step.ready.all())  # the usual step: no row to leave out
    ready = step.columns if every else {c: v[step.ready] for c, v in step.columns.items()}
    records = records_from_arrays(
        ready, bar_datetimes(step.times if every else step.times[step.ready]),
        model_id=model_id, symbol=symbol, bar=bar,
        horizon=horizon, metadata=metadata, bot_id=bot_id,
    )  # fmt: skip
    if step.before is None:
        before: Any = [None] * len(records)
    else:
        before = step.before if every else step.before[step.ready]
    out = []
    for sig, target, held in zip(records, ready["target"], before, strict=True):
        data = sig.model_dump(mode="json")
        data["metadata"]["target"] = float(target) if np.isfinite(target) else None
        # the position the builder held before this bar (a paper account's shadow
        # backtest of a version that inherited a position starts from it)
        data["metadata"]["position_before"] = None if held is None else float(held)
        out.append(data)
    return out
