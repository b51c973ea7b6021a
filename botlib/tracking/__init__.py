"""The one module that talks to MLflow (store settings, pyfunc models, registry)."""

from __future__ import annotations

from pathlib import Path

import mlflow

from botlib.models import register_uri_resolver
from botlib.settings import PROJECT_ROOT, Settings, get_settings
from botlib.tracking.pyfunc import BotlibPyfunc, log_model, resolve_model_uri

__all__ = ["BotlibPyfunc", "configure", "log_model", "resolve_model_uri", "tracking_uri"]

register_uri_resolver("models", resolve_model_uri)
register_uri_resolver("runs", resolve_model_uri)


def tracking_uri(settings: Settings | None = None) -> str:
    """The tracking URI with a relative sqlite path anchored at the project root."""
    uri = (settings or get_settings()).mlflow_tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = PROJECT_ROOT / uri[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return uri


def configure(experiment: str = "botlib", settings: Settings | None = None) -> str:
    """Point MLflow at the configured store; create ``experiment`` with its artifacts
    under ``mlflow_artifacts_dir``. Returns the experiment id."""
    settings = settings or get_settings()
    mlflow.set_tracking_uri(tracking_uri(settings))
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment)
        return str(found.experiment_id)
    artifacts = Path(settings.mlflow_artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    exp_id = mlflow.create_experiment(experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment)
    return str(exp_id)
