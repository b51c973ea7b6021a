from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from botlib.features import (
    DEFAULT_SPEC,
    FeatureDef,
    FeatureSpec,
    build_features,
    direction,
    forward_return,
    forward_volatility,
    get_feature_spec,
)


@pytest.fixture(scope="module")
def c(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return btc_1h.iloc[-3_000:]


def test_no_feature_changes_when_later_rows_are_removed(c: pd.DataFrame) -> None:
    full = build_features(c)
    rng = np.random.default_rng(3)
    for t in sorted(rng.choice(np.arange(400, len(c) - 1), size=25, replace=False)):
        truncated = build_features(c.iloc[: t + 1])
        np.testing.assert_allclose(
            truncated.iloc[-1].to_numpy(),
            full.iloc[t].to_numpy(),
            rtol=1e-9,
            atol=1e-12,
            err_msg=f"feature at {c.index[t]} changed when rows after it were removed",
        )


def test_features_ignore_altered_future_prices(c: pd.DataFrame) -> None:
    altered = c.copy()
    altered.iloc[2_000:, :4] *= 1.5
    a, b = build_features(c), build_features(altered)
    pd.testing.assert_frame_equal(a.iloc[:2_000], b.iloc[:2_000])
    assert not a.iloc[2_000:].equals(b.iloc[2_000:])  # the check can fail


def test_default_frame_shape(c: pd.DataFrame) -> None:
    frame = build_features(c)
    assert frame.index.equals(c.index)
    assert frame.columns.is_unique and len(frame.columns) == 16
    assert frame.iloc[DEFAULT_SPEC.warmup :].notna().all().all()
    assert np.isfinite(frame.dropna().to_numpy()).all()


def test_schema_hash_is_stable_and_sensitive() -> None:
    same = FeatureSpec.from_dict(DEFAULT_SPEC.to_dict())
    assert same.schema_hash == DEFAULT_SPEC.schema_hash
    other = FeatureSpec(
        "default", (*DEFAULT_SPEC.features[:-1], FeatureDef("obv_slope", {"window": 12}))
    )
    assert other.schema_hash != DEFAULT_SPEC.schema_hash


def test_unknown_names_hint() -> None:
    with pytest.raises(ValueError, match="did you mean 'rsi'"):
        FeatureDef("rsii")
    with pytest.raises(ValueError, match="did you mean 'default'"):
        get_feature_spec("defualt")


def test_labels_look_forward_and_carry_horizon(c: pd.DataFrame) -> None:
    label = forward_return(4)
    y = label(c)
    assert label.horizon == 4 and y.iloc[-4:].isna().all() and y.iloc[:-4].notna().all()
    np.testing.assert_allclose(y.iloc[10], np.log(c["close"].iloc[14] / c["close"].iloc[10]))
    d = direction(1, threshold=0.002)(c)
    assert set(d.dropna().unique()) <= {-1.0, 0.0, 1.0}
    r = c["close"].shift(-1) / c["close"] - 1
    assert (d[r > 0.002] == 1).all() and (d[r < -0.002] == -1).all()
    v = forward_volatility(24)(c)
    logret = np.log(c["close"] / c["close"].shift(1))
    np.testing.assert_allclose(v.iloc[100], logret.iloc[101:125].std(ddof=1))
    assert v.iloc[-24:].isna().all()


def test_tail_rows_are_the_same_bits_as_the_whole_matrix() -> None:
    """The live loop computes only its newest rows: they must equal a full computation."""
    from botlib.features._spec import LOOKBACK, feature_matrix
    from tests.conftest import synthetic_candles

    wide = FeatureSpec(
        "wide",
        (
            FeatureDef("returns", {"periods": 3}),
            FeatureDef("log_returns", {"periods": 7}),
            FeatureDef("sma_ratio", {"window": 50}),
            FeatureDef("bollinger", {"window": 30, "k": 1.5}),
            FeatureDef("realized_volatility", {"window": 48}),
            FeatureDef("volume_zscore", {"window": 12}),
            FeatureDef("ema_ratio", {"window": 10}),
            FeatureDef("close"),
            FeatureDef("volume"),
        ),
    )
    assert {f.name for f in wide.features} >= set(LOOKBACK)
    rng = np.random.default_rng(3)
    for spec in (DEFAULT_SPEC, wide):
        for seed in range(5):
            candles = synthetic_candles(int(rng.integers(60, 900)), seed=seed)
            full, names = feature_matrix(candles, spec)
            for tail in (0, 1, 2, 33, len(candles) - 1, len(candles), len(candles) + 5):
                part, same = feature_matrix(candles, spec, tail=tail)
                assert same == names and part.shape == (min(tail, len(candles)), len(names))
                np.testing.assert_array_equal(part, full[len(full) - len(part) :])


def test_a_list_of_feature_names_is_a_spec_with_their_defaults() -> None:
    """The backend's ``trainingData.features``: raw close and volume, and indicators
    with their default parameters written out (so warm-up and schema hash see them)."""
    from botlib.errors import ConfigError
    from botlib.features._spec import feature_matrix
    from tests.conftest import synthetic_candles

    spec = get_feature_spec(["close", "volume", "rsi", "macd"])
    assert [f.name for f in spec.features] == ["close", "volume", "rsi", "macd"]
    assert dict(spec.features[3].params) == {"fast": 12, "slow": 26, "signal": 9}
    assert spec.warmup >= 26
    candles = synthetic_candles(300)
    matrix, names = feature_matrix(candles, spec)
    assert names[:3] == ["close", "volume", "rsi_14"]
    assert (matrix[:, 0] == candles["close"].to_numpy()).all()
    with pytest.raises(ConfigError, match="did you mean 'rsi'"):
        get_feature_spec(["close", "rsii"])
