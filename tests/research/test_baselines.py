"""Forecasts beside a coin, persistence and a random walk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from botlib.research.baselines import forecast_metrics
from tests.conftest import synthetic_candles


def test_an_oracle_beats_every_baseline_and_noise_does_not() -> None:
    candles = synthetic_candles(600, seed=3)
    close = candles["close"]
    future = np.log(close.shift(-1) / close)
    oracle = pd.DataFrame({"expected_return": future}, index=candles.index)
    good = forecast_metrics(oracle, candles, horizon=1)
    assert good["directional_accuracy"] == 1.0 and good["rmse"] == pytest.approx(0.0, abs=1e-15)
    assert good["random_walk_rmse"] > 0 and good["coin_accuracy"] == 0.5
    assert good["scored_bars"] == 599  # the last bar has no outcome yet
    rng = np.random.default_rng(0)
    noise = pd.DataFrame({"expected_return": rng.normal(0, 0.01, 600)}, index=candles.index)
    bad = forecast_metrics(noise, candles, horizon=1)
    assert 0.4 < bad["directional_accuracy"] < 0.6
    assert bad["rmse"] > bad["random_walk_rmse"]


def test_persistence_and_volatility_baselines() -> None:
    candles = synthetic_candles(400, seed=5)
    close = candles["close"]
    past = np.log(close / close.shift(2))
    same_as_persistence = pd.DataFrame({"score": np.sign(past)}, index=candles.index)
    m = forecast_metrics(same_as_persistence, candles, horizon=2)
    assert m["directional_accuracy"] == pytest.approx(m["persistence_accuracy"])
    trailing = np.log(close / close.shift(1)).rolling(4).std(ddof=1)
    vol = pd.DataFrame({"volatility": trailing}, index=candles.index)
    v = forecast_metrics(vol, candles, horizon=4)
    assert v["vol_rmse"] == pytest.approx(v["vol_persistence_rmse"])
    assert forecast_metrics(pd.DataFrame(index=candles.index), candles, horizon=1) == {}
