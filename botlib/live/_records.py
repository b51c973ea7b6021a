"""Records of one model step: predictions and signals as the backend's tables have
them, each an ``Output`` of the step's batch (stream + channel, written once: keyed
by its record id), with the counters that ``botlib status`` reads."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from botlib.live._market import Market
from botlib.live._models import Served
from botlib.live.step import ModelStep, bar_datetimes, signal_payloads
from botlib.signals import Prediction, record_id
from botlib.transport import Batch, Output, RedisNames, dumps
from botlib.transport.stats import LoopCounter, per_model

__all__ = ["add_predictions", "add_signals"]


def _prediction_value(ptype: str, out: dict[str, float], close: float) -> float:
    if ptype == "price":
        return close * math.exp(out.get("expected_return", float("nan")))
    if ptype == "volatility":
        return out.get("volatility", float("nan"))
    if ptype == "trend":
        return out.get("p_up", float("nan")) - out.get("p_down", float("nan"))
    for key in ("target", "score"):
        if key in out:
            return out[key]
    return float("nan")


def add_predictions(
    batch: Batch,
    names: RedisNames,
    served: Served,
    market: Market,
    step: ModelStep,
    closes: np.ndarray,
    bar: timedelta,
) -> None:
    """One prediction per ready new bar; each also waits to be scored."""
    meta = served.meta
    ready = step.ready
    k = len(step.outputs)
    bar_ms = int(bar.total_seconds() * 1000)
    horizon_min = int(meta.horizon * bar.total_seconds() // 60)
    pending_key = names.pending_key(market.exchange, market.symbol, market.timeframe)
    closes = closes[-k:]
    symbol = served.record_symbol(market.symbol)
    opened = bar_datetimes(step.times)
    rows = step.outputs.tolist()  # Python floats: the same values, cheaper per test
    for i, ts in enumerate(opened):
        if not ready[i]:
            continue
        out = {c: v for c, v in zip(step.names, rows[i], strict=True) if math.isfinite(v)}
        created = ts + bar
        pred = Prediction(
            id=record_id("prediction", served.model_id, symbol, created),
            model_id=served.model_id,
            symbol=symbol,
            prediction_type=meta.prediction_type,  # type: ignore[arg-type]
            input_data={
                "bar_time": ts.isoformat(),
                "close": float(closes[i]),
                "outputs": out,
                "market": market.symbol,
                "exchange": market.exchange,
                "timeframe": market.timeframe,
                "model_name": served.name,
                "model_version": str(served.entry.get("version")),
            },
            prediction_value=_prediction_value(meta.prediction_type, out, float(closes[i])),
            confidence=float(step.columns["confidence"][i]),
            prediction_horizon=horizon_min,
            created_at=created,
        )
        payload = dumps(pred.model_dump(mode="json"))
        batch.outputs.append(
            Output(
                names.predictions,
                payload,
                names.prediction_channel,
                f"{names.seen_prefix}{pred.id}",
                list_key=names.prediction_list_key(served.model_id, symbol),
            )
        )
        due = int(step.times[i]) + meta.horizon * bar_ms
        batch.zadd.append((pending_key, float(due), payload))
    n = int(np.count_nonzero(ready))
    batch.hincr.append((names.loop_stats, LoopCounter.predictions, n))
    batch.hincr.append((names.loop_stats, per_model(LoopCounter.predictions, served.model_id), n))


def add_signals(
    batch: Batch,
    names: RedisNames,
    served: Served,
    market: Market,
    step: ModelStep,
    bar: timedelta,
    bot_id: str | None,
) -> None:
    """One signal per ready new bar, from the step's builder frame."""
    records = signal_payloads(
        step,
        model_id=served.model_id,
        symbol=served.record_symbol(market.symbol),
        bar=bar,
        horizon=served.meta.horizon,
        metadata={
            "market": market.symbol,
            "exchange": market.exchange,
            "timeframe": market.timeframe,
            "model_name": served.name,
            "model_version": str(served.entry.get("version")),
        },
        bot_id=bot_id,
    )
    for data in records:
        batch.outputs.append(
            Output(
                names.signals,
                dumps(data),
                names.signal_channel,
                f"{names.seen_prefix}{data['id']}",
            )
        )
    n = len(records)
    batch.hincr.append((names.loop_stats, LoopCounter.signals, n))
    batch.hincr.append((names.loop_stats, per_model(LoopCounter.signals, served.model_id), n))
