"""Pipelines: YAML lists of notebook steps, executed with papermill and tracked in MLflow.

    name: quick
    experiment: botlib-quick
    parameters: {symbol: BTC/USDT, timeframe: 1h, start: "2024-06-01", end: "2025-06-01"}
    steps:
      - {name: lstm, notebook: train_nn, parameters: {algorithm: lstm, epochs: 1}}
      - name: ensemble
        notebook: train_ensemble
        parameters: {members: ["${steps.lstm.model_uri}"]}

Pipeline-level parameters (and ``-p`` overrides) reach every notebook whose
``parameters`` cell declares them; a step's own parameters win over the pipeline's,
command-line overrides win over both. ``${steps.NAME.run_id}``, ``${steps.NAME.model_uri}``
and ``${pipeline.run_id}`` refer to earlier results: steps hand each other run ids and
URIs, never objects. One MLflow parent run per pipeline, a child run per step; the
executed notebook is logged to its step's run, also when it fails, and the pipeline
stops at the first failure with a report naming the step, the cell and the error.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from botlib.errors import BotlibError, ConfigError
from botlib.params import parse_assignments, plain
from botlib.progress import advance
from botlib.settings import PROJECT_ROOT, get_settings

__all__ = [
    "Pipeline",
    "PipelineError",
    "PipelineResult",
    "find_pipeline",
    "list_pipelines",
    "load_pipeline",
    "run_pipeline",
]

PIPELINES_DIR = PROJECT_ROOT / "pipelines"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
_REF = re.compile(r"\$\{(steps\.([A-Za-z0-9_-]+)\.([a-z_]+)|pipeline\.run_id)\}")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    notebook: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    experiment: str = "botlib"
    parameters: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)


class PipelineError(BotlibError):
    """A step failed; the message names the step, the cell and the error."""


@dataclass
class StepResult:
    name: str
    run_id: str
    status: str
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    notebook: Path | None = None


@dataclass
class PipelineResult:
    name: str
    run_id: str
    steps: list[StepResult]


def list_pipelines(folder: Path = PIPELINES_DIR) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def find_pipeline(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.exists():
        return path
    candidate = PIPELINES_DIR / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if candidate.exists():
        return candidate
    from botlib.errors import unknown_name

    raise unknown_name("pipeline", name_or_path, [p.stem for p in list_pipelines()])


def load_pipeline(path: str | Path) -> Pipeline:
    path = find_pipeline(str(path))
    try:
        pipeline = Pipeline.model_validate(plain(yaml.safe_load(path.read_text())))
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: not a valid pipeline: {exc}") from exc
    names = [s.name for s in pipeline.steps]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: step names must be unique, got {names}")
    for step in pipeline.steps:
        if not _notebook_path(step.notebook).exists():
            raise ConfigError(
                f"{path}: step {step.name!r} names notebook {step.notebook!r}, "
                f"which is not in {NOTEBOOKS_DIR}"
            )
    return pipeline


def _notebook_path(name: str) -> Path:
    return NOTEBOOKS_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")


def _resolve(value: Any, outputs: Mapping[str, Mapping[str, str]], parent: str) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(1) == "pipeline.run_id":
                return parent
            step, key = match.group(2), match.group(3)
            if step not in outputs:
                raise ConfigError(f"{match.group(0)}: no earlier step named {step!r}")
            if key not in outputs[step]:
                raise ConfigError(
                    f"{match.group(0)}: step {step!r} has no output {key!r}; "
                    f"it has {sorted(outputs[step])}"
                )
            return outputs[step][key]

        return _REF.sub(sub, value)
    if isinstance(value, list):
        return [_resolve(v, outputs, parent) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, outputs, parent) for k, v in value.items()}
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``-p`` overrides, typed as ``botlib.params`` reads them (dates stay ISO strings)."""
    return parse_assignments(items)


def run_pipeline(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Execute every step in order; raise ``PipelineError`` at the first failure."""
    import papermill as pm

    from botlib.tracking import configure, mlflow_client
    from botlib.tracking.runs import reproducibility_tags

    pipeline = load_pipeline(path)
    overrides = dict(overrides or {})
    takes: set[str] = set()
    for step in pipeline.steps:
        takes |= set(pm.inspect_notebook(str(_notebook_path(step.notebook))))
    unknown = sorted(set(overrides) - takes - {"experiment", "run_id"})
    if unknown:
        raise ConfigError(
            f"-p {unknown[0]}: no step of pipeline {pipeline.name!r} takes it; its notebooks "
            f"take {', '.join(sorted(takes - {'experiment', 'run_id'}))}"
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # kernels inherit it: quiet TF
    say = progress or (lambda _msg: None)
    experiment_id = configure(pipeline.experiment)
    client = mlflow_client()
    out_dir = get_settings().reports_dir / "pipelines" / pipeline.name
    results: list[StepResult] = []
    outputs: dict[str, dict[str, str]] = {}
    with mlflow.start_run(run_name=f"pipeline-{pipeline.name}") as parent:
        parent_id = parent.info.run_id
        mlflow.set_tags({"pipeline": pipeline.name, **reproducibility_tags()})
        mlflow.log_params(
            {f"pipeline.{k}": str(v) for k, v in {**pipeline.parameters, **overrides}.items()}
        )
        mlflow.log_text(Path(find_pipeline(str(path))).read_text(), "pipeline.yaml")
        from botlib.tracking.runs import log_manifest

        log_manifest("pipeline", {"pipeline": pipeline.name, "overrides": overrides})
        run_dir = out_dir / parent_id
        run_dir.mkdir(parents=True, exist_ok=True)
        for i, step in enumerate(pipeline.steps, start=1):
            notebook = _notebook_path(step.notebook)
            declared = set(pm.inspect_notebook(str(notebook)))
            params = {k: v for k, v in pipeline.parameters.items() if k in declared}
            params.update(step.parameters)
            params.update({k: v for k, v in overrides.items() if k in declared})
            params = _resolve(params, outputs, parent_id)
            params["experiment"] = pipeline.experiment
            child = client.create_run(
                experiment_id,
                run_name=step.name,
                tags={
                    "mlflow.parentRunId": parent_id,
                    "pipeline": pipeline.name,
                    "pipeline_step": step.name,
                },
            )
            child_id = child.info.run_id
            if "run_id" in declared:
                params["run_id"] = child_id
            executed = run_dir / f"{i:02d}-{step.name}.ipynb"
            say(f"[{i}/{len(pipeline.steps)}] {step.name} ({notebook.name})")
            advance(f"pipeline {pipeline.name}", i - 1, len(pipeline.steps))
            started = time.monotonic()
            try:
                pm.execute_notebook(
                    str(notebook),
                    str(executed),
                    parameters=params,
                    kernel_name="python3",
                    progress_bar=False,
                    cwd=str(PROJECT_ROOT),
                    log_output=False,
                )
            except pm.PapermillExecutionError as exc:
                _finish_child(client, child_id, executed, "FAILED")
                mlflow.set_tag("failed_step", step.name)
                raise PipelineError(
                    f"pipeline {pipeline.name!r} stopped at step {step.name!r} "
                    f"({notebook.name}), cell {exc.exec_count}: {exc.ename}: {exc.evalue}. "
                    f"Executed notebook: {executed}; step run {child_id}"
                ) from None
            except Exception as exc:
                _finish_child(client, child_id, executed, "FAILED")
                raise PipelineError(
                    f"pipeline {pipeline.name!r} could not run step {step.name!r}: {exc}"
                ) from exc
            _finish_child(client, child_id, executed, "FINISHED")
            tags = client.get_run(child_id).data.tags
            outputs[step.name] = {
                "run_id": child_id,
                **{k: tags[k] for k in ("model_uri", "model_name", "model_version") if k in tags},
            }
            results.append(
                StepResult(
                    step.name,
                    child_id,
                    "FINISHED",
                    time.monotonic() - started,
                    outputs[step.name],
                    executed,
                )
            )
        mlflow.log_metric("steps", len(results))
    return PipelineResult(pipeline.name, parent_id, results)


def _finish_child(client: Any, run_id: str, executed: Path, status: str) -> None:
    if executed.exists():
        client.log_artifact(run_id, str(executed), artifact_path="notebook")
    info = client.get_run(run_id).info
    if info.status in ("RUNNING", "SCHEDULED") or status == "FAILED":
        client.set_terminated(run_id, status)
