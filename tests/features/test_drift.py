"""Feature drift (issue 18 §3, the offline part): a model records its inputs'
distribution at training; bars from a regime it never saw — the same bars with their
returns scaled x3 — move the features that measure returns and volatility past the
threshold, and leave those built to stay put (bounded or scale-free ones, and volume's)
where they were."""

from __future__ import annotations

import numpy as np
import pandas as pd

from botlib.features import DEFAULT_SPEC, feature_matrix
from botlib.features.drift import DRIFT_THRESHOLD, drift_scores, profile_features, psi
from botlib.models import create_model, load_model
from tests.conftest import TINY, Windows

#: scale-free under a x3 of every return: RSI (a ratio of gains to losses), the position
#: within the Bollinger bands, and the volume's z-score and OBV slope (volume untouched,
#: the sign of each move unchanged)
STAY = ("rsi_14", "bb_pos", "vol_z_24", "obv_slope_24")


def returns_scaled(candles: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The same bars with every log return (close to close, and each price against its
    close) multiplied by ``factor``; volume unchanged."""
    close = candles["close"].to_numpy()
    moves = np.diff(np.log(close), prepend=np.log(close[0]))
    new_close = close[0] * np.exp(factor * np.cumsum(moves))
    out = candles.copy()
    for col in ("open", "high", "low"):
        out[col] = new_close * np.exp(factor * np.log(candles[col].to_numpy() / close))
    out["close"] = new_close
    prices = out[["open", "high", "low", "close"]]
    out["high"], out["low"] = prices.max(axis=1), prices.min(axis=1)
    return out


def test_a_profile_is_its_own_distribution(windows: Windows) -> None:
    matrix, names = feature_matrix(windows.train, DEFAULT_SPEC)
    profile = profile_features(matrix, names)
    assert set(profile["features"]) == set(names)
    for feature in profile["features"].values():
        shares = np.asarray(feature["shares"])
        assert abs(shares.sum() - 1) < 1e-12 and shares.max() < 0.2  # ~ deciles
    scores = drift_scores(profile, matrix[np.isfinite(matrix).all(axis=1)], names)
    assert max(scores.values()) < 1e-9


def test_returns_scaled_x3_move_exactly_the_features_that_measure_them(
    windows: Windows,
) -> None:
    model = create_model("lstm", **TINY["lstm"])
    model.fit(windows.train, windows.valid)
    assert model.feature_profile is not None
    history = windows.all.iloc[len(windows.train) - 400 :]  # warm-up, then unseen bars
    scores = {}
    for label, frame in (("as is", history), ("x3", returns_scaled(history, 3.0))):
        matrix, names = feature_matrix(frame, DEFAULT_SPEC)
        scores[label] = drift_scores(model.feature_profile, matrix[400:], names)
    assert max(scores["as is"].values()) < DRIFT_THRESHOLD, scores["as is"]
    moved = {n: s for n, s in scores["x3"].items() if s > DRIFT_THRESHOLD}
    assert set(moved) == set(scores["x3"]) - set(STAY), scores["x3"]
    assert all(scores["x3"][n] < 0.1 for n in STAY), scores["x3"]


def test_the_profile_is_saved_with_the_model(windows: Windows, tmp_path: object) -> None:
    from pathlib import Path

    model = create_model("ga_rules", **TINY["ga_rules"])
    model.fit(windows.train, windows.valid)
    assert model.feature_profile is None  # no feature spec: nothing to compare live
    net = create_model("lstm", **TINY["lstm"])
    net.fit(windows.train, windows.valid)
    again = load_model(net.save(Path(str(tmp_path)) / "lstm"))
    assert again.feature_profile == net.feature_profile
    column = np.asarray(feature_matrix(windows.test, DEFAULT_SPEC)[0][:, 0])
    assert psi(again.feature_profile["features"]["logret_1"], column) < DRIFT_THRESHOLD


def test_the_scores_of_all_columns_at_once_are_each_columns_psi() -> None:
    """``drift_scores`` scores the columns with as many bins together: each value has
    the bits of ``psi`` on that column alone — with columns of different bin counts,
    missing values, a feature the profile lacks, and no rows at all."""
    rng = np.random.default_rng(7)
    for trial in range(150):
        d, n = int(rng.integers(1, 18)), int(rng.integers(0, 600))
        train = rng.standard_normal((int(rng.integers(50, 1500)), d)) * rng.random(d) * 5
        for j in range(d):  # coarse features: repeated quantiles, fewer edges
            if rng.random() < 0.3:
                train[:, j] = np.round(train[:, j] * int(rng.integers(1, 3)))
        names = [f"f{j}" for j in range(d)]
        profile = profile_features(train, names, bins=int(rng.integers(2, 15)))
        if trial % 4 == 0:
            profile["features"].pop(names[0], None)
        live = rng.standard_normal((n, d)) * 2 + rng.random(d)
        if n and trial % 3 == 0:
            live[rng.integers(0, n), rng.integers(0, d)] = np.nan
        scores = drift_scores(profile, live, names)
        one_by_one = {
            name: psi(profile["features"][name], live[:, j])
            for j, name in enumerate(names)
            if name in profile["features"]
        }
        assert list(scores) == list(one_by_one)
        for name, value in one_by_one.items():
            assert np.array_equal(scores[name], value, equal_nan=True), (trial, name)
