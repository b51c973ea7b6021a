"""Scoring: a prediction whose horizon has passed gets what happened.

Every prediction waits in a per-market sorted set (``botlib:pending:…``) scored by
the bar time its horizon ends. When that bar has been processed, the prediction is
published again under the same id with ``actual_value``, ``accuracy`` (price and
trend: the direction was right, 1 or 0; volatility: 1 − relative error) and
``validated_at``, and its counters (``validated|…``, ``accuracy_milli|…``) move.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from botlib.live._market import Market
from botlib.live.step import EPOCH, bar_datetimes
from botlib.signals._columns import fit_decimals
from botlib.transport import Batch, Output, RedisNames, dumps
from botlib.transport.codec import loads
from botlib.transport.stats import LoopCounter, per_model

__all__ = ["score"]


def _sign(x: float) -> float:
    """``np.sign`` of one float (NaN stays NaN, so it equals nothing), without its
    per-call cost."""
    return x if x != x else float((x > 0) - (x < 0))


def score(
    r: Any,
    names: RedisNames,
    market: Market,
    times: np.ndarray,
    values: np.ndarray,
    batch: Batch,
    *,
    pending: list[tuple[str, float]] | None = None,
) -> None:
    """Predictions of ``market`` whose horizon has passed by the newest bar get their
    actual value and accuracy (written as a new record with the same id). ``pending``:
    the market's waiting predictions with their due times, when the caller read them
    already (the loop reads every market's in one round trip)."""
    key = names.pending_key(market.exchange, market.symbol, market.timeframe)
    if pending is None:
        due = list(r.zrangebyscore(key, "-inf", int(times[-1]), withscores=True))
    else:
        due = [(p, w) for p, w in pending if w <= times[-1]]
    # predictions made in this very step (a backlog read at once) are due too
    fresh = [(p, w) for k, w, p in batch.zadd if k == key and w <= times[-1]]
    batch.zadd = [z for z in batch.zadd if not (z[0] == key and z[1] <= times[-1])]
    closes = values[:, 3]
    for payload, when in due + fresh:
        data = loads(payload)
        j = int(np.searchsorted(times, int(when)))
        opened = datetime.fromisoformat(data["input_data"]["bar_time"])
        if opened.tzinfo is None:  # read as UTC, as pandas did
            opened = opened.replace(tzinfo=UTC)
        start_ts = (opened - EPOCH) // timedelta(milliseconds=1)
        i = int(np.searchsorted(times, start_ts))
        if j >= len(times) or i >= len(times) or times[i] != start_ts:
            batch.zrem.append((key, payload))  # history no longer held: drop, counted
            batch.hincr.append((names.loop_stats, LoopCounter.unscored, 1))
            continue
        base, actual_close = float(data["input_data"]["close"]), float(closes[j])
        value = data.get("prediction_value")
        ptype = data["prediction_type"]
        move = math.log(actual_close / base)
        if ptype == "price":
            actual = actual_close
            hit = value is not None and _sign(value - base) == _sign(actual - base)
            accuracy = float(hit)
        elif ptype == "volatility":
            rets = np.diff(np.log(closes[i : j + 1]))
            actual = float(np.sqrt(np.mean(rets**2))) if len(rets) else 0.0
            accuracy = (
                max(0.0, 1.0 - abs(float(value) - actual) / actual)
                if value is not None and actual > 0
                else 0.0
            )
        else:
            actual = move
            accuracy = float(value is not None and _sign(value) == _sign(move))
        data.update(
            actual_value=actual,
            accuracy=accuracy,
            validated_at=bar_datetimes([int(times[j]) + market.bar_ms])[0].isoformat(),
        )
        clipped = fit_decimals(data, "ai_predictions")  # within the table's DECIMALs
        if clipped:
            data["input_data"]["clipped"] = {**data["input_data"].get("clipped", {}), **clipped}
        out = dumps(data)
        batch.outputs.append(
            Output(
                names.predictions,
                out,
                names.prediction_channel,
                f"{names.seen_prefix}validated|{data['id']}",
                list_key=names.prediction_list_key(data["model_id"], data["symbol"]),
                replaces=payload,
            )
        )
        batch.zrem.append((key, payload))
        batch.hincr.append(
            (names.loop_stats, per_model(LoopCounter.validated, data["model_id"]), 1)
        )
        milli = round(accuracy * 1000)
        batch.hincr.append(
            (names.loop_stats, per_model(LoopCounter.accuracy_milli, data["model_id"]), milli)
        )
        if ptype != "volatility" and i >= 1:
            # the persistence baseline: the last bar's move, carried on over the horizon
            carried = float(_sign(float(closes[i] - closes[i - 1])) == _sign(actual_close - base))
            for counter, amount in (
                (LoopCounter.persistence_n, 1),
                (LoopCounter.persistence_milli, round(carried * 1000)),
            ):
                batch.hincr.append((names.loop_stats, per_model(counter, data["model_id"]),
                                    amount))  # fmt: skip
