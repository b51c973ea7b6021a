"""The per-model step: a model's outputs on the newest bars → THE signal builder with
the runtime signal settings and the position held → signal records.

One function for everyone who makes a live signal — the signal loop on every bar, the
bridge's on-demand ``generate_signal``, the benchmarks — so the same model, candles,
settings and position give the same signal wherever it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from botlib.models import BaseModel
from botlib.signals import SignalConfig, build_signal_frame, signal_records

__all__ = ["ModelStep", "model_step", "signal_payloads", "signals_step"]


@dataclass(frozen=True)
class ModelStep:
    """What one model made of the ``k`` newest bars."""

    #: the model's outputs, one row per new bar (NaN where it has none yet)
    tail: pd.DataFrame
    #: the builder's frame for the new bars (signal, size, stops, ``target``)
    signals: pd.DataFrame
    #: which new bars have outputs
    ready: np.ndarray
    #: target position after the newest bar (fraction of equity, signed)
    position: float


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
    return signals_step(model, tail, candles, config=config, position=position)


def signals_step(
    model: BaseModel,
    tail: pd.DataFrame,
    candles: pd.DataFrame,
    *,
    config: SignalConfig,
    position: float,
    atr: np.ndarray | None = None,
) -> ModelStep:
    """THE builder on a model's outputs for the newest bars (``tail``, the last rows of
    ``candles``; older rows are history), from the held ``position``. ``atr``: the
    builder's ATR per row of ``candles`` when the caller streams it (the live loop),
    else it is computed from ``candles``."""
    signals = build_signal_frame(
        tail.reindex(candles.index),
        candles,
        horizon=model.meta.horizon,
        config=config,
        previous_target=position,
        start=tail.index[0],
        atr=atr,
    )
    for target in signals["target"].to_numpy():
        if np.isfinite(target):
            position = float(target)
    ready = tail.notna().any(axis=1).to_numpy()
    return ModelStep(tail, signals, ready, position)


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
    carries the builder's target position)."""
    ready = step.signals.loc[step.ready]
    records = signal_records(
        ready, model_id=model_id, symbol=symbol, bar=bar, horizon=horizon,
        metadata=metadata, bot_id=bot_id,
    )  # fmt: skip
    out = []
    for sig, target in zip(records, ready["target"].to_numpy(), strict=True):
        data = sig.model_dump(mode="json")
        data["metadata"]["target"] = float(target) if np.isfinite(target) else None
        out.append(data)
    return out
