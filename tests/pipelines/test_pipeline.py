"""Pipelines end to end: papermill runs the real notebooks, MLflow's real store records
them, and an MLflow server's REST API is what the checks read."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import nbformat
import papermill as pm
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from botlib.cli import app
from botlib.pipeline import PipelineError, load_pipeline, run_pipeline
from botlib.rerun import rerun
from botlib.settings import get_settings
from botlib.tracking import tracking_uri
from botlib.tracking.compare import training_session_row

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    return tmp_path


def _mini(tmp_path: Path, steps: list[dict[str, Any]], name: str = "mini") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "experiment": f"test-{name}",
                "parameters": {
                    "symbol": "BTC/USDT",
                    "timeframe": "1h",
                    "start": "2025-01-01",
                    "end": "2025-05-01",
                    "seed": 0,
                },
                "steps": steps,
            }
        )
    )
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(store: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**__import__("os").environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(url: str, endpoint: str, **query: str) -> dict[str, Any]:
    full = f"{url}{endpoint}?{urllib.parse.urlencode(query)}" if query else f"{url}{endpoint}"
    with urllib.request.urlopen(full, timeout=30) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def _post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


@pytest.mark.slow
def test_quick_pipeline_is_recorded_and_served(store: Path, mlflow_server: str) -> None:
    result = run_pipeline("quick", overrides={"epochs": 2})
    spec = load_pipeline("quick")
    assert [s.name for s in result.steps] == [s.name for s in spec.steps]

    url = mlflow_server
    exp = _get(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="botlib-quick")
    exp_id = exp["experiment"]["experiment_id"]
    runs = _post(
        url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 100}
    )["runs"]
    by_id = {r["info"]["run_id"]: r for r in runs}
    parent = by_id[result.run_id]
    assert parent["info"]["status"] == "FINISHED"

    def tags(r: dict[str, Any]) -> dict[str, str]:
        return {t["key"]: t["value"] for t in r["data"].get("tags", [])}

    children = [r for r in runs if tags(r).get("mlflow.parentRunId") == result.run_id]
    assert len(children) == len(spec.steps)
    for child in children:
        step = tags(child)["pipeline_step"]
        assert child["info"]["status"] == "FINISHED", step
        listed = _get(
            url, "/api/2.0/mlflow/artifacts/list", run_id=child["info"]["run_id"], path="notebook"
        )
        assert any(f["path"].endswith(".ipynb") for f in listed.get("files", [])), step
        if step == "compare":
            continue
        metrics = {m["key"]: m["value"] for m in child["data"]["metrics"]}
        assert "test.sharpe" in metrics or "test.total_return" in metrics, step
        assert "test.buy_and_hold.total_return" in metrics, step
        figures = _get(
            url, "/api/2.0/mlflow/artifacts/list", run_id=child["info"]["run_id"], path="figures"
        )
        assert {Path(f["path"]).name for f in figures["files"]} >= {
            "equity.html",
            "drawdown.html",
        }, step
        versions = _get(
            url,
            "/api/2.0/mlflow/model-versions/search",
            filter=f"run_id='{child['info']['run_id']}'",
        )
        assert versions.get("model_versions"), f"{step}: no registered model version"
        child_tags = tags(child)
        for key in (
            "data_fingerprint",
            "feature_schema_hash",
            "seed",
            "git_commit",
            "git_dirty",
            "version.mlflow",
        ):
            assert key in child_tags, (step, key)
    # -p epochs=2 reached the notebooks that declare it, and no others
    params = {
        tags(c)["pipeline_step"]: {p["key"]: p["value"] for p in c["data"].get("params", [])}
        for c in children
    }
    assert params["lstm"]["epochs"] == "2" and params["transformer"]["epochs"] == "2"
    assert "epochs" not in params["ppo"]
    # per-epoch curves are logged with steps
    history = _get(
        url,
        "/api/2.0/mlflow/metrics/get-history",
        run_id=result.steps[0].run_id,
        metric_key="train.loss",
    )
    assert [m["step"] for m in history["metrics"]] == [0, 1]


@pytest.mark.slow
def test_rerun_reproduces_a_pipeline_and_names_a_difference(store: Path, tmp_path: Path) -> None:
    path = _mini(
        tmp_path,
        [
            {
                "name": "lstm",
                "notebook": "train_nn",
                "parameters": {"algorithm": "lstm", "epochs": 1, "units": 8, "seq_len": 8},
            },
            {
                "name": "ga",
                "notebook": "optimize",
                "parameters": {"algorithm": "ga_rules", "population": 6, "generations": 2},
            },
        ],
    )
    first = run_pipeline(path)
    client = MlflowClient()
    row = training_session_row(first.steps[0].run_id)
    assert row["status"] == "completed" and row["symbol"] == "BTC/USDT"
    assert row["training_epochs"] == 1 and row["data_points"] == 2_880
    assert "test.sharpe" in row["results"]
    assert str(row["results"]["model_uri"]).startswith("models:/")
    # `botlib rerun` re-executes the recorded pipeline.yaml: every step's metrics match
    report = rerun(first.run_id)
    assert report.kind == "pipeline" and report.ok, report.mismatches()
    assert {c.scope for c in report.checks} == {"lstm", "ga"}
    assert any(c.metric == "test.sharpe" for c in report.checks)
    assert client.get_run(report.rerun_id).data.tags["rerun_of"] == first.run_id
    # a single training run, through the CLI; a tampered metric is named
    ga_run = first.steps[1].run_id
    client.log_metric(ga_run, "test.total_return", 123.0)
    out = CliRunner().invoke(app, ["rerun", ga_run])
    assert out.exit_code == 1, out.output
    assert "test.total_return" in out.output and "DIFFERS" in out.output
    assert "NOT reproduced" in out.output


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"algorithm": "lstn"}, "did you mean 'lstm'"),
        ({"start": "2025-05-01", "end": "2025-01-01"}, "must be after start"),
        ({"epochs": 0}, "epochs must be a positive integer"),
    ],
    ids=["unknown-algorithm", "end-before-start", "zero-epochs"],
)
def test_bad_parameter_fails_fast(
    store: Path, tmp_path: Path, override: dict[str, Any], named: str
) -> None:
    path = _mini(
        tmp_path,
        [{"name": "nn", "notebook": "train_nn", "parameters": {"algorithm": "lstm", "epochs": 1}}],
    )
    with pytest.raises(PipelineError) as info:
        run_pipeline(path, overrides=override)
    message = str(info.value)
    assert "step 'nn'" in message and "cell" in message and named in message
    client = MlflowClient()
    exp = mlflow.get_experiment_by_name("test-mini")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.status for r in runs} == {"FAILED"}
    assert not client.search_model_versions("name LIKE '%'")
    failed = next(r for r in runs if r.data.tags.get("pipeline_step") == "nn")
    assert [a.path for a in client.list_artifacts(failed.info.run_id, "notebook")]


def test_unknown_reference_is_named(store: Path, tmp_path: Path) -> None:
    path = _mini(
        tmp_path,
        [
            {
                "name": "cmp",
                "notebook": "compare",
                "parameters": {"parent_run_id": "${steps.nope.run_id}"},
            }
        ],
    )
    with pytest.raises(Exception, match="no earlier step named 'nope'"):
        run_pipeline(path)


@pytest.mark.parametrize("name", ["backtest", "data_explore", "walkforward"])
def test_other_notebooks_run_with_tiny_parameters(store: Path, tmp_path: Path, name: str) -> None:
    params: dict[str, Any] = {"start": "2025-11-01", "end": "2025-12-01"}
    if name == "backtest":
        params["experiment"] = "test-backtest"
    if name == "walkforward":
        params.update(
            experiment="test-walkforward",
            start="2025-09-01",
            train_bars=1000,
            test_bars=400,
            hyperparameters={"population": 6, "generations": 1},
        )
    pm.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters=params,
        kernel_name="python3",
        progress_bar=False,
    )
    if name == "walkforward":
        mlflow.set_tracking_uri(tracking_uri())
        exp = mlflow.get_experiment_by_name("test-walkforward")
        assert exp is not None
        run = MlflowClient().search_runs([exp.experiment_id])[0]
        assert run.info.status == "FINISHED" and "wf.sharpe" in run.data.metrics
    if name == "backtest":
        mlflow.set_tracking_uri(tracking_uri())
        exp = mlflow.get_experiment_by_name("test-backtest")
        assert exp is not None
        run = MlflowClient().search_runs([exp.experiment_id])[0]
        assert run.info.status == "FINISHED" and "test.sharpe" in run.data.metrics


def test_notebooks_are_thin_and_stripped() -> None:
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {b.stem for b in books} >= {
        "data_explore",
        "train_nn",
        "train_rl",
        "optimize",
        "backtest",
        "compare",
    }
    for path in books:
        book = nbformat.read(path, as_version=4)
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path
                assert "def " not in cell.source and "class " not in cell.source, path


def test_every_pipeline_file_is_valid() -> None:
    for name in ("quick", "train_all", "walkforward"):
        spec = load_pipeline(name)
        assert spec.steps and spec.name == name
