"""generate_signal's ``currentData`` (api.md §4): merged with the candles as their
newest bar, refused with the numbers when its close is far from the market's."""

from __future__ import annotations

import pandas as pd
import pytest

from botlib.bridge._signal import merge_current
from botlib.errors import ConfigError
from botlib.runtime import RuntimeConfig
from tests.conftest import synthetic_candles


def test_current_data_is_the_bar_after_the_newest_stored_one() -> None:
    candles = synthetic_candles(200)
    last = float(candles["close"].iloc[-1])
    merged, info = merge_current(candles, {"close": last * 1.01, "rsi": 45, "macd": 0.5,
                                           "adx": 20}, 3600, RuntimeConfig())  # fmt: skip
    assert len(merged) == 201 and merged.index[-1] == candles.index[-1] + pd.Timedelta(hours=1)
    bar = merged.iloc[-1]
    assert bar["open"] == last and bar["close"] == pytest.approx(last * 1.01)
    assert bar["high"] >= bar["close"] and bar["low"] <= bar["open"]
    assert bar["volume"] == candles["volume"].iloc[-1]  # not sent: the previous bar's
    assert info["indicators"]["rsi"]["given"] == 45
    assert 0 <= info["indicators"]["rsi"]["computed"] <= 100
    assert info["indicators"]["adx"]["computed"] is None  # reported, not compared
    # the same time as the newest stored bar replaces it
    same, info = merge_current(candles, {"close": last, "timestamp": str(candles.index[-1])},
                               3600, RuntimeConfig())  # fmt: skip
    assert len(same) == 200 and info["replaced_stored_bar"]


def test_a_close_far_from_the_market_is_refused_with_both_numbers() -> None:
    candles = synthetic_candles(200)
    last = float(candles["close"].iloc[-1])
    with pytest.raises(ConfigError, match=r"currentData.close .* from the market's last close"):
        merge_current(candles, {"close": last * 2}, 3600, RuntimeConfig())
    loose = RuntimeConfig(current_data_max_gap=1.5)
    merged, _ = merge_current(candles, {"close": last * 2}, 3600, loose)
    assert merged["close"].iloc[-1] == pytest.approx(2 * last)
    with pytest.raises(ConfigError, match="older than the newest stored bar"):
        merge_current(candles, {"close": last, "timestamp": str(candles.index[0])}, 3600,
                      RuntimeConfig())  # fmt: skip
