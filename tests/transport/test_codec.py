"""Bars are JSON checked by pydantic; every refusal names the field and what was wanted."""

from __future__ import annotations

import json
import math

import pytest

from botlib.transport import Bar, BarError, decode_bar, dumps, encode_bar

GOOD = {
    "exchange": "binance",
    "symbol": "BTC/USDT",
    "timeframe": "1h",
    "ts": 1_735_689_600_000,
    "open": 100.0,
    "high": 110.0,
    "low": 95.0,
    "close": 105.0,
    "volume": 12.5,
}


def test_round_trip_json_and_flat_fields() -> None:
    bar = decode_bar({"data": json.dumps(GOOD)})
    assert decode_bar({"data": encode_bar(bar)}) == bar
    assert json.loads(encode_bar(bar))["timestamp"] == "2025-01-01T00:00:00+00:00"
    flat = {k: str(v) for k, v in GOOD.items()}
    assert decode_bar(flat) == bar
    short = {**{k: v for k, v in GOOD.items() if k not in ("open", "close")}, "o": 100, "c": 105}
    assert decode_bar({"data": json.dumps(short)}) == bar
    assert isinstance(decode_bar({"data": json.dumps({**GOOD, "open": 100})}).open, float)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"open": None}, "open"),
        ({"open": "100.0"}, "open"),
        ({"ts": "soon"}, "ts"),
        ({"close": math.nan}, "finite"),
        ({"high": 90.0}, "inconsistent prices"),
        ({"volume": -1.0}, "volume"),
        ({"symbol": ""}, "symbol"),
        ({"open": True}, "open"),
    ],
)
def test_bad_bars_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    raw = {**GOOD, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(BarError) as info:
        decode_bar({"data": json.dumps(raw)})
    assert reason in info.value.reason


def test_not_json_and_not_an_object() -> None:
    with pytest.raises(BarError, match="not valid JSON"):
        decode_bar({"data": "{open: 1"})
    with pytest.raises(BarError, match="JSON object"):
        decode_bar({"data": "[1, 2]"})
    with pytest.raises(BarError, match="expected a number"):
        decode_bar({**{k: str(v) for k, v in GOOD.items()}, "open": "abc"})


def test_dumps_makes_nan_null() -> None:
    assert json.loads(dumps({"a": math.nan, "b": [math.inf, 1.0]})) == {"a": None, "b": [None, 1.0]}
    assert Bar.model_validate(GOOD).time.isoformat() == "2025-01-01T00:00:00+00:00"


def test_dumps_writes_the_same_json_values_as_the_standard_library() -> None:
    """orjson writes the records; whatever it is given, the JSON reads back as the
    standard library's would (numbers may be spelled differently: 1e-7 for 1e-07)."""
    from datetime import UTC, date, datetime, timedelta, timezone

    import numpy as np
    import pandas as pd

    from botlib.transport.codec import dumps_json, loads

    rng = np.random.default_rng(3)
    floats = (rng.normal(size=3000) * 10.0 ** rng.integers(-320, 300, 3000)).tolist()
    cases: list[object] = [
        floats,
        {"a": math.nan, "b": [math.inf, -math.inf, -0.0, 5e-324, 1e16, 1e-7]},
        {
            "f64": np.float64(1.5),
            "nan": np.float64("nan"),
            "i": np.int64(3),
            "b": np.bool_(True),
            "f32": np.float32(0.1),
            "one": np.array([2.0]),
        },
        {
            "utc": datetime(2025, 1, 1, tzinfo=UTC),
            "naive": datetime(2025, 1, 1, 2, 3, 4, 567),
            "ts": pd.Timestamp("2025-01-01 01:00", tz="UTC"),
            "day": date(2025, 1, 2),
            "cet": datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        },
        {1: "int key", 2.5: "float key"},  # orjson refuses: the standard library's path
        {"big": 2**70, "text": 'é€ " \\ \n', "surrogate": "\ud800"},
        (1, [2, {"nested": [math.nan, {"deep": math.inf}]}]),
    ]
    for case in cases:
        assert json.loads(dumps(case)) == json.loads(dumps_json(case)), case
    with pytest.raises(TypeError, match="cannot encode set"):
        dumps({"s": {1, 2}})
    assert loads(dumps(cases[1])) == json.loads(dumps_json(cases[1]))
    assert loads('{"a": NaN}')["a"] != loads('{"a": NaN}')["a"]  # json's reading of NaN
