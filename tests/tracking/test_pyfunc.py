"""pyfunc round trip: log to a real MLflow store, load by URI in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from botlib.models import create_model
from botlib.settings import get_settings
from botlib.tracking import configure, log_model
from tests.conftest import TINY, Windows

pytestmark = pytest.mark.slow

_CHILD = """
import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
candles = pd.read_parquet(sys.argv[2])
out = {}
for uri in sys.argv[3:]:
    model = mlflow.pyfunc.load_model(uri)
    pred = model.predict(candles)
    last = model.predict(candles, params={"last_only": True})
    out[uri] = {"all": pred.to_numpy().tolist(), "last": last.to_numpy().tolist(),
                "hash": model.metadata.metadata["feature_schema_hash"]}
print(json.dumps(out))
"""


def test_models_load_by_uri_in_a_fresh_process(
    windows: Windows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    configure("pyfunc-test")
    expected, uris = {}, []
    recent = windows.all.iloc[-2_000:]
    for name in ("lstm", "ppo", "ga_rules"):
        model = create_model(name, **TINY[name])
        model.fit(windows.train, windows.valid)
        with mlflow.start_run():
            info = log_model(model, registered_model_name=f"test-{name}")
        uri = f"models:/test-{name}/1"
        uris.append(uri)
        expected[uri] = (model.predict(recent), model.meta.feature_schema_hash)
        assert info.model_uri.startswith("models:/") or info.model_uri.startswith("runs:/")
    recent.to_parquet(tmp_path / "recent.parquet")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            mlflow.get_tracking_uri(),
            str(tmp_path / "recent.parquet"),
            *uris,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for uri in uris:
        frame, schema_hash = expected[uri]
        np.testing.assert_allclose(
            np.array(got[uri]["all"], dtype="float64"), frame.to_numpy(), rtol=1e-6, equal_nan=True
        )
        np.testing.assert_allclose(
            np.array(got[uri]["last"], dtype="float64")[0], frame.iloc[-1].to_numpy(), rtol=1e-6
        )
        assert got[uri]["hash"] == schema_hash


def test_load_model_resolves_registry_uris(
    windows: Windows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botlib.models import load_model

    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    configure("resolver-test")
    model = create_model("de_rules", **TINY["de_rules"])
    model.fit(windows.train, windows.valid)
    with mlflow.start_run():
        log_model(model, registered_model_name="test-de")
    loaded = load_model("models:/test-de/1")
    pd.testing.assert_frame_equal(loaded.predict(windows.all), model.predict(windows.all))


def test_an_agent_acts_once_from_a_given_position_and_bad_input_is_named(
    windows: Windows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``position`` through pyfunc: one policy call from that position, the decision
    the whole replay makes at that bar; input is checked by botlib, with the reason."""
    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    configure("pyfunc-position")
    model = create_model("ppo", **TINY["ppo"])
    model.fit(windows.train, windows.valid)
    with mlflow.start_run():
        log_model(model, registered_model_name="test-ppo-position")
    pyfunc = mlflow.pyfunc.load_model("models:/test-ppo-position/1")
    recent = windows.all.iloc[-600:]
    replay = model.predict(recent)["target"].to_numpy()
    # bars whose previous position was flat: no entry price matters there
    flat_before = [t for t in range(len(recent) - 100, len(recent)) if replay[t - 1] == 0.0]
    assert flat_before, "the agent was never flat: the check would prove nothing"
    for t in flat_before[-5:]:
        once = pyfunc.predict(recent.iloc[: t + 1], params={"last_only": True, "position": 0.0})
        assert once["target"].iloc[0] == replay[t]
    bad = recent.astype({"close": "object"}).copy()
    bad.iloc[-1, bad.columns.get_loc("close")] = "n/a"
    with pytest.raises(Exception, match="expected numeric OHLCV columns"):
        pyfunc.predict(bad, params={"last_only": True})
    with pytest.raises(Exception, match="expected exactly the columns"):
        pyfunc.predict(recent.drop(columns="volume"), params={"last_only": True})
