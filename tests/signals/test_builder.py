from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from botlib.features import indicators as ind
from botlib.signals import SignalConfig, build_signal_frame, signal_records
from tests.conftest import synthetic_candles

DESIGN_SIGNAL_FIELDS = {
    "id",
    "model_id",
    "bot_id",
    "symbol",
    "signal_type",
    "signal_strength",
    "confidence",
    "predicted_price",
    "predicted_direction",
    "predicted_volatility",
    "risk_score",
    "expected_return",
    "stop_loss",
    "take_profit",
    "position_size",
    "reasoning",
    "metadata",
    "created_at",
    "expires_at",
    "executed_at",
    "status",
}


@pytest.fixture
def c() -> pd.DataFrame:
    return synthetic_candles(200, seed=4)


def _outputs(c: pd.DataFrame, **cols: object) -> pd.DataFrame:
    return pd.DataFrame(cols, index=c.index, dtype="float64")


def test_position_model_entries_exits_and_stops(c: pd.DataFrame) -> None:
    target = np.zeros(len(c))
    target[50:80] = 1.0
    cfg = SignalConfig(stop_mult=2.0, take_mult=3.0, risk_per_trade=0.01, max_position=0.8)
    frame = build_signal_frame(_outputs(c, target=target), c, config=cfg)
    kinds = frame["signal_type"]
    assert kinds.iloc[50] == "buy" and kinds.iloc[80] == "close"
    assert set(kinds.iloc[51:80]) == {"hold"}
    atr = ind.atr(c, window=14).iloc[50]
    close = c["close"].iloc[50]
    assert frame["stop_loss"].iloc[50] == pytest.approx(close - 2 * atr)
    assert frame["take_profit"].iloc[50] == pytest.approx(close + 3 * atr)
    size = min(0.8, 0.01 / (2 * atr / close))
    assert frame["target"].iloc[50] == pytest.approx(size)
    assert frame["position_size"].iloc[60] == pytest.approx(size)  # fixed while held
    assert frame["target"].iloc[80] == 0.0
    assert frame["target"].drop(frame.index[[50, 80]]).isna().all()


def test_probabilities_long_only_sell_is_close(c: pd.DataFrame) -> None:
    up = np.full(len(c), 0.2)
    down = np.full(len(c), 0.2)
    up[40:60] = 0.7
    down[90:] = 0.7
    side = 1 - up - down
    frame = build_signal_frame(_outputs(c, p_up=up, p_down=down, p_sideways=side), c)
    assert frame["signal_type"].iloc[40] == "buy"
    assert frame["signal_type"].iloc[90] == "close"
    assert (frame["signal_type"].iloc[41:90] == "hold").all()  # forecasters keep positions
    assert frame["predicted_direction"].iloc[45] == "up"
    assert frame["predicted_direction"].iloc[70] == "sideways"
    assert frame["confidence"].iloc[45] == pytest.approx(0.7)
    shorting = build_signal_frame(
        _outputs(c, p_up=up, p_down=down, p_sideways=side), c, config=SignalConfig(allow_short=True)
    )
    assert shorting["signal_type"].iloc[90] == "sell" and shorting["target"].iloc[90] < 0
    assert shorting["stop_loss"].iloc[90] > c["close"].iloc[90]


def test_expected_return_and_volatility_scale_the_signal(c: pd.DataFrame) -> None:
    vol = np.full(len(c), 0.01)
    er = np.full(len(c), 0.0)
    er[30] = 0.02
    frame = build_signal_frame(_outputs(c, expected_return=er, volatility=vol), c, horizon=4)
    assert frame["score"].iloc[30] == pytest.approx(min(0.02 / (0.01 * 2), 1.0))
    close = c["close"].iloc[30]
    assert frame["predicted_price"].iloc[30] == pytest.approx(close * np.exp(0.02))
    # stop distance from the forecast volatility: 2 * close * sigma * sqrt(horizon)
    assert frame["stop_loss"].iloc[30] == pytest.approx(close - 2 * close * 0.01 * 2)
    only_vol = build_signal_frame(_outputs(c, volatility=vol), c)
    assert set(only_vol["signal_type"]) == {"hold"}


def test_previous_target_is_respected(c: pd.DataFrame) -> None:
    target = np.ones(len(c))
    fresh = build_signal_frame(_outputs(c, target=target), c)
    held = build_signal_frame(_outputs(c, target=target), c, previous_target=0.5)
    assert fresh["signal_type"].iloc[0] == "buy"
    assert (held["signal_type"] == "hold").all()


def test_records_carry_every_design_field(c: pd.DataFrame) -> None:
    target = np.zeros(len(c))
    target[20:] = 1.0
    frame = build_signal_frame(_outputs(c, target=target), c)
    records = signal_records(
        frame.iloc[19:22],
        model_id="ga_rules/3",
        symbol="BTC/USDT",
        bar=timedelta(hours=1),
        horizon=1,
    )
    assert [r.signal_type for r in records] == ["hold", "buy", "hold"]
    data = records[1].model_dump(mode="json")
    assert set(data) == DESIGN_SIGNAL_FIELDS
    assert data["status"] == "pending" and data["stop_loss"] < data["take_profit"]
    # the backend's reasoning column is JSONB: an object, with a line for people
    assert data["reasoning"]["summary"].startswith(data["model_id"])
    assert data["reasoning"]["stop_loss"] == data["stop_loss"]
    assert records[1].created_at == c.index[20].to_pydatetime() + timedelta(hours=1)
    again = signal_records(
        frame.iloc[20:21],
        model_id="ga_rules/3",
        symbol="BTC/USDT",
        bar=timedelta(hours=1),
        horizon=1,
    )
    assert again[0].id == records[1].id  # idempotent ids


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="max_position"):
        SignalConfig(max_position=2.0)


def test_realized_volatility_from_a_start_row_is_bit_identical() -> None:
    """The live loop asks only for its new rows; they must be the very same numbers."""
    from botlib.signals._builder import _realized_volatility

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(3, 400))
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        window = int(rng.integers(3, 40))
        full = _realized_volatility(close, window)
        # any start, and the last few rows (the live step's own arithmetic)
        for start in (int(rng.integers(0, n)), n - 1, max(n - 4, 0)):
            tail = _realized_volatility(close, window, start)
            assert np.isnan(tail[:start]).all()
            np.testing.assert_array_equal(tail[start:], full[start:])
