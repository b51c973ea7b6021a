"""Run records: what every training, backtest and optimization run logs to MLflow.

A run carries params, per-step metrics (epochs / timesteps / generations), tags that
make it reproducible (a fingerprint of the exact data rows, the feature-schema hash,
the seed, the git commit and whether the tree was dirty, package versions), figures as
HTML, and the model — registered under a conventional name such as
``nn-lstm-btc_usdt-1h``. The tags also map onto the backend's ``ai_training_sessions``
row (``session_to_row``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from botlib.backtest import BacktestResult
from botlib.models import BaseModel, FitReport
from botlib.settings import PROJECT_ROOT

__all__ = [
    "MANIFEST",
    "data_fingerprint",
    "git_state",
    "log_backtest",
    "log_figure",
    "log_fit_report",
    "log_manifest",
    "registry_name",
    "reproducibility_tags",
    "run",
]

_FAMILY = {
    "neural_network": "nn",
    "reinforcement_learning": "rl",
    "evolutionary": "evo",
    "ensemble": "ens",
}
_PACKAGES = (
    "botlib",
    "numpy",
    "pandas",
    "tensorflow-cpu",
    "keras",
    "torch",
    "stable-baselines3",
    "gymnasium",
    "deap",
    "backtrader",
    "mlflow",
    "ccxt",
)


def registry_name(model: BaseModel, symbol: str, timeframe: str) -> str:
    """``nn-lstm-btc_usdt-1h``: family, model, market, timeframe."""
    family = _FAMILY.get(model.model_type, model.model_type)
    market = symbol.lower().replace("/", "_").replace(":", "_")
    return f"{family}-{model.name}-{market}-{timeframe}"


def data_fingerprint(candles: pd.DataFrame) -> str:
    """SHA-256 (first 16 hex digits) of the exact rows used: timestamps and OHLCV values."""
    digest = hashlib.sha256()
    digest.update(candles.index.asi8.tobytes() if hasattr(candles.index, "asi8") else b"")
    digest.update(candles[["open", "high", "low", "close", "volume"]].to_numpy("float64").tobytes())
    return digest.hexdigest()[:16]


def git_state(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Commit and dirty flag of the checkout (``unknown`` outside git)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=20
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


MANIFEST = "manifest.json"


def log_manifest(kind: str, arguments: Mapping[str, Any]) -> None:
    """What ``botlib rerun`` needs to run this again: the entry point (``kind``), its
    arguments, the git commit (and, when the tree is dirty, the diff as ``git.diff``),
    and the package versions. Data fingerprint and seed are tags of the run."""
    import json

    state = git_state()
    manifest = {
        "kind": kind,
        "arguments": dict(arguments),
        **state,
        "versions": _versions(),
    }
    mlflow.log_text(json.dumps(manifest, indent=2, default=str), MANIFEST)
    if state["git_dirty"] == "true":
        out = subprocess.run(
            ["git", "diff", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        )
        if out.stdout:
            mlflow.log_text(out.stdout, "git.diff")


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def reproducibility_tags(
    candles: pd.DataFrame | None = None,
    *,
    seed: int | None = None,
    schema_hash: str | None = None,
) -> dict[str, str]:
    tags = {**git_state(), **_versions()}
    if candles is not None:
        tags.update(
            {
                "data_fingerprint": data_fingerprint(candles),
                "data_start": str(candles.index[0]),
                "data_end": str(candles.index[-1]),
                "data_points": str(len(candles)),
            }
        )
        for key in ("symbol", "timeframe", "source", "source_name"):
            if key in candles.attrs:
                tags[f"data_{key}"] = str(candles.attrs[key])
    if seed is not None:
        tags["seed"] = str(seed)
    if schema_hash is not None:
        tags["feature_schema_hash"] = schema_hash
    return tags


@contextmanager
def run(
    name: str,
    *,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    nested: bool = False,
) -> Iterator[Any]:
    """Start (or resume, with ``run_id``) an MLflow run; an escaping exception marks it
    FAILED (and is re-raised)."""
    from botlib.tracking import use_store

    use_store()
    with mlflow.start_run(
        run_id=run_id, run_name=None if run_id else name, nested=nested
    ) as active:
        if params:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
        if tags:
            mlflow.set_tags(dict(tags))
        try:
            yield active
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and math.isfinite(float(v))
    }


def log_fit_report(report: FitReport) -> None:
    """Curves as stepped metrics (``train.loss`` at step = epoch, etc.), final figures."""
    for key, values in report.history.items():
        for step, value in enumerate(values):
            if math.isfinite(value):
                mlflow.log_metric(f"train.{key}", float(value), step=step)
    mlflow.log_metrics({f"fit.{k}": v for k, v in _finite(report.metrics).items()})
    if report.best_epoch is not None:
        mlflow.log_metric("fit.best_epoch", report.best_epoch)
    mlflow.log_metric("fit.epochs", report.epochs)


def log_backtest(result: BacktestResult, prefix: str = "test") -> None:
    """Strategy metrics as ``{prefix}.*`` and the baselines as ``{prefix}.buy_and_hold.*``
    and ``{prefix}.flat.*``."""
    mlflow.log_metrics({f"{prefix}.{k}": v for k, v in _finite(result.metrics).items()})
    for base, metrics in result.baselines.items():
        mlflow.log_metrics({f"{prefix}.{base}.{k}": v for k, v in _finite(metrics).items()})


def log_figure(figure: Any, name: str) -> None:
    """A plotly figure as a self-contained HTML artifact under ``figures/``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.html"
        figure.write_html(path, include_plotlyjs="cdn")
        mlflow.log_artifact(str(path), artifact_path="figures")
