"""JSON encoding of what travels through Redis: closed candles in, records out.

Nothing read from Redis is ever unpickled or evaluated: a bar is JSON (or flat stream
fields) checked by a pydantic model, and a bad one is refused with a reason that the
loop writes to the dead-letter stream.

A bar (the ``python:market_data`` payload and the ``data`` field of a bar stream entry)::

    {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
     "ts": 1735689600000, "timestamp": "2025-01-01T00:00:00+00:00",
     "open": 93576.0, "high": 94509.42, "low": 93489.03, "close": 94401.14,
     "volume": 1064.11}

``ts`` is the bar's open time in epoch milliseconds (UTC); prices are in quote
currency, volume in base currency. ``o h l c v`` are accepted as short names.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["Bar", "BarError", "decode_bar", "dumps", "encode_bar"]

_SHORT = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}


class BarError(ValueError):
    """A bar that cannot be used; ``reason`` says what was wrong and what was expected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Bar(BaseModel):
    """One closed candle of one market."""

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False, frozen=True)

    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    timeframe: str = Field(min_length=1)
    ts: int = Field(ge=0, description="bar open time, epoch milliseconds UTC")
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)

    @model_validator(mode="after")
    def _ohlc(self) -> Bar:
        if self.high < max(self.open, self.close, self.low) or self.low > min(
            self.open, self.close
        ):
            raise ValueError(
                f"inconsistent prices: need low <= open, close <= high, got o={self.open} "
                f"h={self.high} l={self.low} c={self.close}"
            )
        return self

    @property
    def time(self) -> pd.Timestamp:
        return pd.Timestamp(self.ts, unit="ms", tz="UTC")

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump()
        data["timestamp"] = datetime.fromtimestamp(self.ts / 1000, tz=UTC).isoformat()
        return data


def encode_bar(bar: Bar) -> str:
    return json.dumps(bar.to_dict(), separators=(",", ":"))


def _flat_value(key: str, value: str) -> Any:
    if key in ("open", "high", "low", "close", "volume"):
        try:
            return float(value)
        except ValueError:
            raise BarError(f"field {key!r}: expected a number, got {value!r}") from None
    if key == "ts":
        try:
            return int(value)
        except ValueError:
            raise BarError(f"field 'ts': expected epoch milliseconds, got {value!r}") from None
    return value


def decode_bar(fields: dict[str, str]) -> Bar:
    """A bar from a stream entry: either ``{"data": "<json>"}`` or flat fields
    (``exchange``, ``symbol``, ``timeframe``, ``ts``, ``open`` …, all strings)."""
    if "data" in fields:
        try:
            raw = json.loads(fields["data"])
        except json.JSONDecodeError as exc:
            raise BarError(f"'data' is not valid JSON ({exc.msg} at {exc.pos})") from None
        if not isinstance(raw, dict):
            raise BarError(f"'data' must be a JSON object, got {type(raw).__name__}")
    else:
        raw = {k: _flat_value(_SHORT.get(k, k), v) for k, v in fields.items()}
    raw = {_SHORT.get(k, k): v for k, v in raw.items()}
    # JSON numbers may be ints (e.g. a price of 100); strings stay strings and fail
    for key in ("open", "high", "low", "close", "volume"):
        if isinstance(raw.get(key), int) and not isinstance(raw.get(key), bool):
            raw[key] = float(raw[key])
    for key, value in raw.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise BarError(f"field {key!r}: expected a finite number, got {value}")
    try:
        return Bar.model_validate(raw)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "bar"
            parts.append(f"{where}: {err['msg']}")
        raise BarError("; ".join(parts)) from None


def dumps(value: Any) -> str:
    """Compact JSON; NaN/inf become null; datetimes become ISO strings; NumPy scalars
    their values. orjson writes it (about ten times faster than ``json`` on a record:
    the loop writes several per market and bar); what orjson refuses (keys that are
    not strings, integers past 64 bits, text that is not UTF-8) goes through
    ``json``, as the same JSON values."""
    try:
        return orjson.dumps(value, default=_default).decode()
    except TypeError:
        return dumps_json(value)


def loads(text: str | bytes) -> Any:
    """JSON text as Python values (orjson; what it refuses, such as a ``NaN``
    literal, through ``json``)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps_json(value: Any) -> str:
    """``dumps`` through the standard library (the same JSON values; numbers may be
    written differently, e.g. ``1.2345e-05`` for orjson's ``0.000012345``)."""
    try:  # most values hold no NaN: the C encoder alone, without the walk
        return json.dumps(value, separators=(",", ":"), default=_default, allow_nan=False)
    except (ValueError, TypeError):  # NaN somewhere, or keys that are not strings
        return json.dumps(_clean(value), separators=(",", ":"), default=_default)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
