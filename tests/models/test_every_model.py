"""The same end-to-end check for every registered model name (as FreqAI does): train
with a tiny budget on the reference data, save, load, predict the same values, and
backtest on the window after validation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from botlib.models import MODEL_NAMES, create_model, load_model
from botlib.models.evaluate import backtest_model
from botlib.signals import build_signal_frame
from tests.conftest import TINY, Windows


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_save_load_predict_backtest(
    name: str,
    windows: Windows,
    trained_rules: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # what the libraries write there
    params = TINY.get(name, {"members": [str(p) for p in trained_rules]})
    model = create_model(name, **params)
    report = model.fit(windows.train, windows.valid)
    assert report.metrics, "fit reports validation figures"
    assert not list(scratch.glob("SB3-*")), "training leaves no log folder in the temp dir"
    out = model.predict(windows.all)
    meta = model.meta
    assert list(out.columns) == list(meta.outputs)
    assert out.index.equals(windows.all.index)
    assert out.iloc[meta.required_history :].notna().all().all(), "NaN after warm-up"
    assert out.iloc[-1].notna().all()

    loaded = load_model(model.save(tmp_path / name))
    again = loaded.predict(windows.all)
    np.testing.assert_allclose(
        again.to_numpy(), out.to_numpy(), rtol=1e-6, atol=1e-9, equal_nan=True
    )
    assert loaded.meta.feature_schema_hash == meta.feature_schema_hash
    last = loaded.predict_last(windows.all)
    np.testing.assert_allclose(last.to_numpy(), again.iloc[[-1]].to_numpy(), rtol=1e-6)
    assert last.index[0] == windows.all.index[-1]

    history = windows.all.loc[: windows.valid.index[-1]]
    result = backtest_model(loaded, history, windows.test)
    assert len(result.equity) == len(windows.test)
    assert np.isfinite(result.equity).all()
    assert "buy_and_hold" in result.baselines and "sharpe" in result.metrics
    # the backtest traded exactly the builder's signals
    context = pd.concat([history.iloc[-meta.required_history :], windows.test])
    frame = build_signal_frame(
        loaded.predict(context).loc[windows.test.index], windows.test, horizon=meta.horizon
    )
    changes = frame["target"].dropna()
    changes = changes[changes.index < windows.test.index[-1]]
    signal_fills = result.fills[result.fills["reason"] == "signal"]
    assert len(signal_fills) <= len(changes)
    filled_at = set(signal_fills["time"])
    nxt = {windows.test.index[windows.test.index.get_loc(t) + 1] for t in changes.index}
    assert filled_at <= nxt
