"""Streaming features (issue 17 §1): one bar at a time, equal to the batch matrix over
the same history — bit for bit where the arithmetic allows, else within 1e-12."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from botlib.features import DEFAULT_SPEC, FeatureDef, FeatureSpec, feature_matrix, get_feature_spec
from botlib.features.streaming import StreamingFeatures, streamable

ALL = get_feature_spec(["close", "volume", "returns", "log_returns", "sma_ratio",
                        "ema_ratio", "rsi", "macd", "bollinger", "atr",
                        "realized_volatility", "volume_zscore", "obv_slope"])  # fmt: skip


def test_every_feature_streams_as_the_batch_computes_it(btc_1h: pd.DataFrame) -> None:
    candles = btc_1h.iloc[:10_000]
    for spec in (ALL, DEFAULT_SPEC):
        assert streamable(spec)
        batch, names = feature_matrix(candles, spec)
        stream = StreamingFeatures(spec)
        stream.seed(candles.iloc[:300])  # a bootstrap history, then bar by bar
        rows = [stream.update(bar) for bar in candles.iloc[300:].to_dict("records")]
        streamed = np.vstack(rows)
        assert stream.columns == names
        expected = batch[300:]
        assert np.array_equal(np.isnan(streamed), np.isnan(expected))
        both = ~np.isnan(expected)
        scale = np.maximum(np.abs(expected), 1.0)
        worst = np.max(np.where(both, np.abs(streamed - expected) / scale, 0.0), axis=0)
        assert (worst <= 1e-12).all(), dict(zip(names, worst, strict=True))
        exact = [n for n, w in zip(names, worst, strict=True) if w == 0.0]
        # the finite-memory features are bit-identical by construction (their one-row
        # forms sum as NumPy does)
        for name in ("close", "volume", "ret_1", "logret_1", "close_over_sma_20", "bb_pos",
                     "bb_width", "rvol_24", "vol_z_24"):  # fmt: skip
            if name in names:
                assert name in exact, name


def test_numpys_sum_is_reproduced_bit_for_bit() -> None:
    from botlib.features._kernels import mean_std, numpy_sum

    rng = np.random.default_rng(5)
    for n in (1, 3, 7, 8, 9, 16, 20, 24, 100, 128, 129, 300):
        a = rng.normal(size=n) * 1e4 + 9e4
        assert numpy_sum(a.tolist()) == a.sum(), n
        for ddof in (0, 1):
            if n > ddof:
                assert mean_std(a.tolist(), ddof) == (a.mean(), a.std(ddof=ddof)), n


def test_a_feature_without_an_incremental_form_keeps_the_window_path() -> None:
    from botlib.features import FeatureDef, FeatureSpec
    from botlib.features._spec import FEATURES

    FEATURES["_no_stream"] = lambda b: {"x": b["close"]}
    try:
        spec = FeatureSpec("custom", (FeatureDef("_no_stream", {}),))
        assert not streamable(spec)
    finally:
        del FEATURES["_no_stream"]


def test_the_builders_atr_streams_and_its_state_continues(btc_1h: pd.DataFrame) -> None:
    import json

    from botlib.features import indicators as ind
    from botlib.features.streaming import AverageTrueRange

    c = btc_1h.iloc[:3_000]
    high, low, close = (c[k].to_numpy() for k in ("high", "low", "close"))
    expected = ind.atr_values(high, low, close, 14)
    atr = AverageTrueRange(14)
    got = [atr.push(high[i], low[i], close[i]) for i in range(1_000)]
    again = AverageTrueRange(14)
    again.restore(json.loads(json.dumps(atr.state())))
    got += [again.push(high[i], low[i], close[i]) for i in range(1_000, 3_000)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)


#: unusual but valid parameters: the shortest windows, a window past the 128 values
#: where NumPy's sum splits, the same column written twice (the later value wins)
ODD = FeatureSpec("odd", tuple(FeatureDef(name, params) for name, params in (
    ("log_returns", {"periods": 1}), ("returns", {"periods": 0}),
    ("sma_ratio", {"window": 200}), ("bollinger", {"window": 7, "k": 1.5}),
    ("realized_volatility", {"window": 2}), ("realized_volatility", {"window": 130}),
    ("volume_zscore", {"window": 3}), ("atr", {"window": 1}), ("obv_slope", {"window": 1}),
    ("log_returns", {"periods": 1}), ("rsi", {"window": 2}),
    ("macd", {"fast": 3, "slow": 5, "signal": 2}), ("ema_ratio", {"window": 1}),
)))  # fmt: skip


def test_the_compiled_features_give_the_python_forms_bits_and_states(
    btc_1h: pd.DataFrame,
) -> None:
    """The compiled form (``_stream_kernel``) against the plain-Python one: every row
    bit for bit over 10,000 bars, and the same saved state, which either form
    continues from (a restart of a loop running the other form)."""
    bars = btc_1h.iloc[:10_000].to_dict("records")
    for spec in (ALL, DEFAULT_SPEC, ODD):
        python, compiled = StreamingFeatures(spec, compiled=False), StreamingFeatures(spec)
        assert compiled._compiled is not None and python._compiled is None
        differing = 0
        for i, bar in enumerate(bars):
            a, b = python.update(bar), compiled.update(bar)
            differing += not np.array_equal(a.view("u8"), b.view("u8"))
            if i in (0, 6, 150, 4_000):  # warming up, then warm: swap the forms' states
                saved_p, saved_c = json.dumps(python.state()), json.dumps(compiled.state())
                assert saved_p == saved_c, (spec.name, i)
                python = StreamingFeatures(spec, compiled=False)
                python.restore(json.loads(saved_c))
                compiled = StreamingFeatures(spec)
                compiled.restore(json.loads(saved_p))
        assert differing == 0, spec.name
        assert compiled.columns == python.columns


def test_features_the_kernel_does_not_know_keep_the_python_forms() -> None:
    from botlib.features._spec import FEATURES, LOOKBACK

    assert StreamingFeatures(ALL)._compiled is not None
    # a built-in name a plugin replaced: its own function, through the Python forms
    builtin = FEATURES["sma_ratio"]
    FEATURES["sma_ratio"] = lambda b, window=20: builtin(b, window=window)
    try:
        assert StreamingFeatures(ALL)._compiled is None
    finally:
        FEATURES["sma_ratio"] = builtin
    # a plugin's finite-memory feature
    FEATURES["_mine"], LOOKBACK["_mine"] = (lambda b: {"mine": b["close"]}), (lambda: 0)
    try:
        spec = FeatureSpec("mine", (FeatureDef("_mine", {}), FeatureDef("rsi", {"window": 14})))
        stream = StreamingFeatures(spec)
        assert stream._compiled is None
        bar = dict.fromkeys(("open", "high", "low", "close", "volume"), 1.0)
        assert stream.update(bar)[0] == 1.0
    finally:
        del FEATURES["_mine"], LOOKBACK["_mine"]
    # parameters of another type than the kernel takes
    floats = FeatureSpec("f", (FeatureDef("rsi", {"window": 14.0}),))
    assert StreamingFeatures(floats)._compiled is None
