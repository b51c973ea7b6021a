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


def wanted_name(entry: dict[str, Any]) -> str:
    return str(entry.get("model_id") or entry.get("name"))


def merge_current(
    candles: Any, current: dict[str, Any], bar_s: int, runtime: RuntimeConfig
) -> tuple[Any, dict[str, Any]]:
    """The backend's ``currentData`` as the newest bar of ``candles``: the bar at its
    ``timestamp`` (default: the bar after the newest stored one, the bar forming now),
    replacing a stored bar of the same time. Missing ``open`` is the previous close,
    ``volume`` the previous bar's, ``high``/``low`` span open and close. A ``close``
    more than ``current_data_max_gap`` (runtime setting, default 10 %) from the
    previous close is refused with both numbers; indicator values it sent (``rsi``,
    ``macd``) are reported beside botlib's own for the merged bar."""
    import math

    import pandas as pd

    from botlib.errors import ConfigError
    from botlib.features import indicators as ind

    last_ts, last = candles.index[-1], candles.iloc[-1]
    when = (
        _utc(current["timestamp"]) if current.get("timestamp") is not None
        else last_ts + pd.Timedelta(seconds=bar_s)
    )  # fmt: skip
    if when < last_ts:
        raise ConfigError(
            f"currentData.timestamp {when.isoformat()} is older than the newest stored "
            f"bar {last_ts.isoformat()}"
        )
    base = candles.iloc[:-1] if when == last_ts else candles
    prev_close = float(base["close"].to_numpy()[-1])
    close = float(current["close"])
    gap = abs(close / prev_close - 1.0)
    limit = runtime.current_data_max_gap
    if not math.isfinite(gap) or gap > limit:
        raise ConfigError(
            f"currentData.close {close:g} is {gap:.1%} from the market's last close "
            f"{prev_close:g} ({base.index[-1].isoformat()}); at most {limit:.0%} is accepted"
        )
    open_ = float(current.get("open") or prev_close)
    high = max(open_, close, float(current.get("high") or 0.0))
    low = min(open_, close, float(current.get("low") or math.inf))
    volume = current.get("volume")
    volume = float(volume) if volume is not None else float(last["volume"])
    row = pd.DataFrame([[open_, high, low, close, volume]], columns=candles.columns[:5],
                       index=pd.DatetimeIndex([when], name=candles.index.name))  # fmt: skip
    merged = pd.concat([base.iloc[:, :5], row])
    extra = {k: v for k, v in current.items()
             if k not in ("close", "open", "high", "low", "volume", "timestamp")}  # fmt: skip
    compared: dict[str, Any] = {}
    for key, given in extra.items():
        if key == "rsi":
            mine = float(ind.rsi(merged["close"], window=14).iloc[-1])
        elif key == "macd":
            mine = float(ind.macd(merged["close"])["macd"].to_numpy()[-1])
        else:
            compared[key] = {"given": given, "computed": None}
            continue
        compared[key] = {"given": given, "computed": mine}
    info = {"bar_time": when.isoformat(), "close": close, "previous_close": prev_close,
            "replaced_stored_bar": bool(when == last_ts), "indicators": compared}  # fmt: skip
    return merged, info


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
    elif p.get("model_id"):
        name, entry = next(
            ((n, e) for n, e in active.items() if e.get("model_id") == p["model_id"]),
            (None, None),
        )
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
        wanted = p["model"] or p.get("model_id") or f"{p['symbol']} {p['timeframe']}"
        raise ConfigError(f"no active model for {wanted}")
    if entry.get("symbol") != p["symbol"] and (p["model"] or p.get("model_id")):
        raise ConfigError(f"{wanted_name(entry)} serves {entry.get('symbol')}, not {p['symbol']}")
    model = load(entry)
    need = model.meta.required_history
    exchange = str(entry.get("exchange") or get_settings().exchange_id)
    stream = names.bar_stream(exchange, p["symbol"], p["timeframe"])
    if p["market_data"]:
        candles, source = _request_candles(p["market_data"]), "request"
    else:
        candles, source = _recent_candles(r, stream, need), "stream"
        if candles is None:  # the live stream does not hold enough yet: the data store
            candles, source = load_ohlcv(p["symbol"], p["timeframe"]).iloc[-need:], "store"
    merged: dict[str, Any] = {}
    if p.get("current_data"):
        candles, merged = merge_current(
            candles, p["current_data"], timeframe_seconds(p["timeframe"]), runtime
        )
        candles = candles.iloc[-need:]
    if len(candles) < need:
        raise ConfigError(
            f"{entry['model_id']} needs {need} candles of history, got {len(candles)}"
        )
    held = r.hget(names.loop_state, names.position_field(str(name), stream))
    position = float(held) if held else 0.0
    step = model_step(model, candles, 1, config=runtime.signal_config(), position=position)
    if not step.ready.any():
        raise ConfigError(f"{entry['model_id']} has no output for the last candle yet")
    symbol = str(entry.get("symbol_as") or p.get("symbol_as") or p["symbol"])
    data = signal_payloads(
        step,
        model_id=str(entry["model_id"]),
        symbol=symbol,
        bar=timedelta(seconds=timeframe_seconds(p["timeframe"])),
        horizon=model.meta.horizon,
        metadata={"on_demand": True, "market": p["symbol"], "timeframe": p["timeframe"],
                  "candles_from": source, "last_candle": candles.index[-1].isoformat(),
                  "position_held": position, "model_name": str(name),
                  "model_version": str(entry.get("version")),
                  **({"current_data": merged} if merged else {})},
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
