"""``botlib rerun RUN_ID``: run a recorded run again from its manifest and say, metric by
metric, whether the results match.

Training and walk-forward runs are re-run through their session function with the
recorded arguments (nothing is registered); a pipeline run re-executes its recorded
``pipeline.yaml`` with the recorded overrides and compares every step by name. Metrics
match when they are equal (or both undefined); the data fingerprint is compared too,
so a changed dataset is named as the cause.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from botlib.errors import ConfigError
from botlib.tracking.runs import MANIFEST

__all__ = ["MetricCheck", "RerunReport", "rerun"]


@dataclass(frozen=True)
class MetricCheck:
    scope: str  # "" for a single run, the step name in a pipeline
    metric: str
    original: float
    rerun: float

    @property
    def matches(self) -> bool:
        a, b = self.original, self.rerun
        return (math.isnan(a) and math.isnan(b)) or a == b


@dataclass
class RerunReport:
    run_id: str
    rerun_id: str
    kind: str
    checks: list[MetricCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.matches for c in self.checks)

    def mismatches(self) -> list[MetricCheck]:
        return [c for c in self.checks if not c.matches]


def _manifest(client: MlflowClient, run_id: str) -> dict[str, Any]:
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MANIFEST)
    except Exception:
        raise ConfigError(
            f"run {run_id} has no {MANIFEST}: it was not recorded by a botlib session or "
            "pipeline (or predates manifests)"
        ) from None
    data: dict[str, Any] = json.loads(Path(local).read_text())
    return data


def _compare(scope: str, a: dict[str, float], b: dict[str, float]) -> list[MetricCheck]:
    keys = sorted(set(a) | set(b))
    return [
        MetricCheck(scope, k, float(a.get(k, math.nan)), float(b.get(k, math.nan))) for k in keys
    ]


def rerun(run_id: str) -> RerunReport:
    """Re-run ``run_id`` from its manifest and compare (see the module doc)."""
    from botlib.tracking import configure, mlflow_client

    client = mlflow_client()
    try:
        original = client.get_run(run_id)
    except Exception:
        raise ConfigError(f"no MLflow run {run_id!r} in {mlflow.get_tracking_uri()}") from None
    manifest = _manifest(client, run_id)
    kind, args = manifest["kind"], manifest["arguments"]
    experiment = client.get_experiment(original.info.experiment_id).name
    configure(experiment)
    notes = []
    if manifest.get("git_commit") and manifest.get("git_commit") != _git_commit():
        notes.append(f"recorded at commit {manifest['git_commit'][:10]}, now {_git_commit()[:10]}")
    if kind == "train_session":
        from botlib.tracking.session import train_session

        result = train_session(**args, register=False)
        new_id = result.run_id
        report = RerunReport(run_id, new_id, kind)
        report.checks = _compare("", original.data.metrics, client.get_run(new_id).data.metrics)
    elif kind == "walkforward_session":
        from botlib.tracking.walkforward import walkforward_session

        new_id, _ = walkforward_session(**args)
        report = RerunReport(run_id, new_id, kind)
        report.checks = _compare("", original.data.metrics, client.get_run(new_id).data.metrics)
    elif kind == "pipeline":
        report = _rerun_pipeline(client, run_id, args)
    else:
        raise ConfigError(f"run {run_id}: cannot re-run a {kind!r} run")
    client.set_tag(report.rerun_id, "rerun_of", run_id)
    old_fp = original.data.tags.get("data_fingerprint")
    new_fp = client.get_run(report.rerun_id).data.tags.get("data_fingerprint")
    if old_fp and new_fp and old_fp != new_fp:
        notes.append(f"the data changed: fingerprint {old_fp} then, {new_fp} now")
    report.notes = notes
    return report


def _rerun_pipeline(client: MlflowClient, run_id: str, args: dict[str, Any]) -> RerunReport:
    from botlib.pipeline import run_pipeline

    spec = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="pipeline.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args['pipeline']}.yaml"
        path.write_text(Path(spec).read_text())
        result = run_pipeline(path, overrides=args.get("overrides") or {})
    report = RerunReport(run_id, result.run_id, "pipeline")
    old_children = client.search_runs(
        [client.get_run(run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
    )
    by_step = {r.data.tags.get("pipeline_step"): r for r in old_children}
    for step in result.steps:
        before = by_step.get(step.name)
        if before is None:
            report.notes.append(f"step {step.name} is new")
            continue
        after = client.get_run(step.run_id)
        report.checks += _compare(step.name, before.data.metrics, after.data.metrics)
    return report


def _git_commit() -> str:
    from botlib.tracking.runs import git_state

    return git_state()["git_commit"]
