"""Walk-forward evaluation: retrain per fold, trade the next window, stitch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from botlib.models.walkforward import walk_forward
from botlib.settings import get_settings

pytestmark = pytest.mark.slow


def test_walk_forward_stitches_out_of_sample_folds(btc_1h: pd.DataFrame) -> None:
    candles = btc_1h.loc["2024-09-01":"2025-01-31"].copy()
    candles.attrs.update(btc_1h.attrs)
    result = walk_forward(
        "ga_rules", candles, train=1500, test=500, params={"population": 6, "generations": 1}
    )
    assert len(result.folds) == (len(candles) - 1500) // 500
    assert len(result.equity) == 500 * len(result.folds)
    # each test window starts right after its training window and trades only there
    for fold, res in zip(result.folds, result.results, strict=True):
        assert fold.test[0] == fold.train[-1] + 1
        assert res.equity.index[0] == candles.index[fold.test[0]]
    growth = np.prod([r.equity.iloc[-1] / 10_000.0 for r in result.results])
    assert result.equity.iloc[-1] == pytest.approx(10_000.0 * growth)
    assert result.metrics["total_return"] == pytest.approx(growth - 1.0)
    assert set(result.table().columns) >= {"sharpe", "hold_sharpe", "trades"}


def test_walkforward_session_logs_folds_and_overall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botlib.tracking import configure
    from botlib.tracking.walkforward import walkforward_session

    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    configure("wf-test")
    run_id, result = walkforward_session(
        "de_rules",
        start="2024-10-01",
        end="2025-01-01",
        train_bars=1200,
        test_bars=400,
        params={"population": 6, "generations": 1},
    )
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.metrics["wf.folds"] == len(result.folds) >= 2
    assert run.data.metrics["wf.total_return"] == pytest.approx(result.metrics["total_return"])
    assert "wf.buy_and_hold.sharpe" in run.data.metrics
    history = client.get_metric_history(run_id, "fold.total_return")
    assert [m.step for m in history] == list(range(len(result.folds)))
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "folds.csv" in artifacts and "figures" in artifacts
    assert run.data.tags["session_type"] == "walk_forward"
