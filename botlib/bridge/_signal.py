"""``generate_signal``: a signal now, made by the same per-model step as the loop's.

The named model (or the active one for the market) runs on the caller's candles,
else the market's live bar stream, else the data store; the signal uses the runtime
signal settings the loop uses and the position the loop holds for that model and
market, so for the same bar it says what the loop says.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from botlib.runtime import RuntimeConfig
from botlib.transport import RedisNames, dumps

__all__ = ["generate_signal"]


def _utc(value: int | str) -> Any:
    import pandas as pd

    if isinstance(value, int):
        return pd.Timestamp(value, unit="ms", tz="UTC")
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _recent_candles(r: Any, stream: str, need: int) -> Any:
    """The newest ``need`` valid bars of the market's live bar stream (what the signal
    loop sees), or ``None`` when it holds fewer."""
    import numpy as np

    from botlib.live._market import frame
    from botlib.live.feeds import stream_history

    # read a few more entries than needed: room for records set aside as invalid
    times, values = stream_history(r, stream, need, read=need + 50)
    if len(times) < need:
        return None
    return frame(np.array(times, "int64"), np.array(values, "float64"))


def _request_candles(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    stamps = [_utc(x["timestamp"]) for x in rows]
    return pd.DataFrame(
        [[x["open"], x["high"], x["low"], x["close"], x["volume"]] for x in rows],
        index=pd.DatetimeIndex(stamps, name="timestamp"),
        columns=["open", "high", "low", "close", "volume"],
        dtype="float64",
    ).sort_index()


def generate_signal(
    r: Any, names: RedisNames, p: dict[str, Any], load: Any, runtime: RuntimeConfig
) -> dict[str, Any]:
    """A signal now (see the module doc); also published on ``python:trading_signal``.
    Its metadata says where the candles came from, the last candle's time and the
    position it started from."""
    from botlib.data import load_ohlcv, timeframe_seconds
    from botlib.errors import ConfigError
    from botlib.live.step import model_step, signal_payloads
    from botlib.settings import get_settings
    from botlib.transport import active_models

    active = active_models(r, names)
    if p["model"]:
        name, entry = p["model"], active.get(p["model"])
    else:
        name, entry = next(
            (
                (n, e)
                for n, e in active.items()
                if e.get("symbol") == p["symbol"] and e.get("timeframe") == p["timeframe"]
            ),
            (None, None),
        )
    if entry is None:
        raise ConfigError(f"no active model for {p['model'] or p['symbol'] + ' ' + p['timeframe']}")
    model = load(str(entry["model_uri"]))
    need = model.meta.required_history
    exchange = str(entry.get("exchange") or get_settings().exchange_id)
    stream = names.bar_stream(exchange, p["symbol"], p["timeframe"])
    if p["market_data"]:
        candles, source = _request_candles(p["market_data"]), "request"
    else:
        candles, source = _recent_candles(r, stream, need), "stream"
        if candles is None:  # the live stream does not hold enough yet: the data store
            candles, source = load_ohlcv(p["symbol"], p["timeframe"]).iloc[-need:], "store"
    if len(candles) < need:
        raise ConfigError(
            f"{entry['model_id']} needs {need} candles of history, got {len(candles)}"
        )
    held = r.hget(names.loop_state, names.position_field(str(name), stream))
    position = float(held) if held else 0.0
    step = model_step(model, candles, 1, config=runtime.signal_config(), position=position)
    if not step.ready.any():
        raise ConfigError(f"{entry['model_id']} has no output for the last candle yet")
    data = signal_payloads(
        step,
        model_id=str(entry["model_id"]),
        symbol=p["symbol"],
        bar=timedelta(seconds=timeframe_seconds(p["timeframe"])),
        horizon=model.meta.horizon,
        metadata={"on_demand": True, "timeframe": p["timeframe"], "candles_from": source,
                  "last_candle": candles.index[-1].isoformat(), "position_held": position},
    )[0]  # fmt: skip
    r.publish(names.signal_channel, dumps(data))
    # the answer also carries what the backend's generateTradingSignal reads, in its names
    return {
        **data,
        "signalType": data["signal_type"],
        "strength": data["signal_strength"],
        "predictedPrice": data["predicted_price"],
        "stopLoss": data["stop_loss"],
        "takeProfit": data["take_profit"],
        "positionSize": data["position_size"],
        "userId": entry.get("user_id"),
    }
