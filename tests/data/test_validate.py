from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from botlib.data import DataError, validate_ohlcv
from tests.conftest import synthetic_candles


def _rule(frame: pd.DataFrame, timeframe: str = "1h") -> DataError:
    with pytest.raises(DataError) as info:
        validate_ohlcv(frame, timeframe)
    return info.value


def test_clean_frame_passes_and_is_canonical() -> None:
    frame, report = validate_ohlcv(synthetic_candles(50), "1h")
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
    assert report.rows == 50 and report.gaps == ()


def test_duplicate_timestamp_names_the_rows() -> None:
    frame = synthetic_candles(20)
    frame = pd.concat([frame.iloc[:10], frame.iloc[9:]])
    err = _rule(frame)
    assert err.rule == "duplicate-timestamps"
    assert str(frame.index[9]) in str(err)


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", -1.0, "non-positive-price"),
        ("open", 0.0, "non-positive-price"),
        ("volume", -5.0, "negative-volume"),
        ("close", np.nan, "nan-values"),
    ],
)
def test_bad_values(column: str, value: float, rule: str) -> None:
    frame = synthetic_candles(20)
    frame.iloc[7, frame.columns.get_loc(column)] = value
    err = _rule(frame)
    assert err.rule == rule
    assert err.rows == [str(frame.index[7])]


def test_high_below_low() -> None:
    frame = synthetic_candles(20)
    frame.iloc[3, frame.columns.get_loc("high")] = frame["low"].iloc[3] * 0.9
    assert _rule(frame).rule == "high-below-low"


@pytest.mark.parametrize("column", ["open", "close"])
def test_open_close_outside_range(column: str) -> None:
    frame = synthetic_candles(20)
    frame.iloc[5, frame.columns.get_loc(column)] = frame["high"].iloc[5] * 1.01
    err = _rule(frame)
    assert err.rule == f"{column}-outside-range"
    assert str(frame.index[5]) in err.rows


def test_unsorted_index() -> None:
    frame = synthetic_candles(20)
    order = list(range(20))
    order[4], order[5] = order[5], order[4]
    assert _rule(frame.iloc[order]).rule == "unsorted-index"


def test_missing_column_names_it() -> None:
    err = _rule(synthetic_candles(20).drop(columns=["volume"]))
    assert err.rule == "missing-columns" and "volume" in str(err)


def test_timeframe_mismatch() -> None:
    err = _rule(synthetic_candles(50), "5m")
    assert err.rule == "timeframe-mismatch"
    assert "1:00:00" in str(err)


def test_off_grid_spacing() -> None:
    frame = synthetic_candles(20)
    index = frame.index.tolist()
    index[10] = index[10] + pd.Timedelta(minutes=30)
    frame.index = pd.DatetimeIndex(index)
    assert _rule(frame).rule == "timeframe-mismatch"


def test_unknown_timeframe() -> None:
    assert _rule(synthetic_candles(20), "1y").rule == "unknown-timeframe"


def test_gaps_reported_and_forward_filled() -> None:
    frame = synthetic_candles(30).drop(synthetic_candles(30).index[[10, 11, 12, 20]])
    kept, report = validate_ohlcv(frame, "1h")
    assert len(kept) == 26
    assert [g.missing for g in report.gaps] == [3, 1]
    assert report.gaps[0].after == frame.index[9]
    filled, report2 = validate_ohlcv(frame, "1h", gaps="ffill")
    assert len(filled) == 30 and report2.filled == 4
    gap_row = filled.iloc[10]
    prev_close = filled["close"].iloc[9]
    assert gap_row["open"] == gap_row["close"] == prev_close and gap_row["volume"] == 0.0
