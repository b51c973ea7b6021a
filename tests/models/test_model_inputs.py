from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from botlib.errors import DataError
from botlib.models import create_model, get_model_class
from tests.conftest import TINY, Windows


@pytest.fixture(scope="module")
def lstm(windows: Windows):  # type: ignore[no-untyped-def]
    model = create_model("lstm", **TINY["lstm"])
    model.fit(windows.train, windows.valid)
    return model


def test_window_shorter_than_needed(lstm, windows: Windows) -> None:  # type: ignore[no-untyped-def]
    need = lstm.meta.required_history
    with pytest.raises(DataError, match=f"needs at least {need} bars"):
        lstm.predict(windows.all.iloc[: need - 1])
    assert lstm.predict(windows.all.iloc[:need]).iloc[-1].notna().all()


def test_nan_in_candles(lstm, windows: Windows) -> None:  # type: ignore[no-untyped-def]
    bad = windows.all.copy()
    bad.iloc[-5, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinite values in 1 row\(s\)"):
        lstm.predict(bad)


def test_missing_and_extra_columns(lstm, windows: Windows) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=r"missing \['volume'\]"):
        lstm.predict(windows.all.drop(columns=["volume"]))
    with pytest.raises(DataError, match=r"unexpected \['rsi'\]"):
        lstm.predict(windows.all.assign(rsi=1.0))


def test_column_order_and_dtypes(lstm, windows: Windows) -> None:  # type: ignore[no-untyped-def]
    window = windows.all.iloc[-lstm.meta.required_history :]
    shuffled = window[["volume", "close", "open", "low", "high"]]
    pd.testing.assert_frame_equal(lstm.predict_last(shuffled), lstm.predict_last(window))
    text = window.astype({"close": object}).assign(close="n/a")
    with pytest.raises(DataError, match="expected numeric OHLCV columns"):
        lstm.predict_last(text)


def test_unknown_model_and_parameter_hints() -> None:
    with pytest.raises(ValueError, match="did you mean 'lstm'"):
        get_model_class("lstn")
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        create_model("gru", epoch=3)


def test_validation_must_follow_training(windows: Windows) -> None:
    model = create_model("ga_rules", **TINY["ga_rules"])
    with pytest.raises(DataError, match="must start after the training window"):
        model.fit(windows.valid.iloc[:0].pipe(lambda _: windows.train), windows.train.iloc[:50])


def test_scaler_is_fitted_on_training_rows_only(windows: Windows) -> None:
    model = create_model("lstm", **TINY["lstm"])
    model.fit(windows.train, windows.valid)
    from botlib.features import build_features

    train_feats = build_features(windows.train).dropna().to_numpy(dtype="float32")
    np.testing.assert_allclose(model._mu, train_feats.mean(axis=0), rtol=1e-4, atol=1e-6)
    everything = build_features(pd.concat([windows.train, windows.valid])).dropna()
    assert not np.allclose(model._mu, everything.to_numpy(dtype="float32").mean(axis=0))
