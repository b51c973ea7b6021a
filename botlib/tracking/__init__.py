"""The one module that talks to MLflow (store settings, pyfunc models, registry).

Every entry point that touches MLflow — training, promotion, the signal loop and the
bridge loading ``models:/…``, the CLI, notebooks — goes through :func:`use_store` (or
:func:`configure`, which calls it) first: MLflow is pointed at botlib's own settings
(``BOTLIB_MLFLOW_TRACKING_URI``, the home's ``mlruns/`` by default), never at whatever
``MLFLOW_TRACKING_URI``, the working directory or an earlier caller left behind.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

# MLflow's artifact downloads draw a progress bar on stderr for every model a command
# loads: noise on botlib's console (a user who wants them sets the variable to true)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow

from botlib.models import register_uri_resolver
from botlib.settings import Settings, get_settings
from botlib.tracking.pyfunc import BotlibPyfunc, log_model, resolve_model_uri

__all__ = [
    "BotlibPyfunc",
    "configure",
    "log_model",
    "mlflow_client",
    "resolve_model_uri",
    "tracking_uri",
    "use_store",
]

_LOCK = threading.Lock()


def _resolve(uri: str) -> Path:
    use_store()
    return resolve_model_uri(uri)


register_uri_resolver("models", _resolve)
register_uri_resolver("runs", _resolve)


def tracking_uri(settings: Settings | None = None) -> str:
    """The configured tracking URI (a relative sqlite path is anchored at the home by
    the settings); the sqlite file's folder is created."""
    uri = (settings or get_settings()).mlflow_tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        Path(uri[len(prefix) - 1 :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def use_store(settings: Settings | None = None) -> str:
    """Point MLflow's tracking and registry at botlib's store; cheap when already so.
    Returns the tracking URI."""
    settings = settings or get_settings()
    uri = tracking_uri(settings)
    if uri.startswith(("http://", "https://")) and settings.mlflow_tracking_username:
        # MLflow's REST client reads its credentials from these variables only; botlib's
        # own settings (BOTLIB_MLFLOW_TRACKING_USERNAME/PASSWORD) are the user's interface
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_tracking_username
        password = settings.mlflow_tracking_password
        if password is not None:
            os.environ["MLFLOW_TRACKING_PASSWORD"] = password.get_secret_value()
    with _LOCK:
        if mlflow.get_tracking_uri() != uri:
            mlflow.set_tracking_uri(uri)
        if mlflow.get_registry_uri() != uri:
            mlflow.set_registry_uri(uri)
    return uri


def mlflow_client(settings: Settings | None = None) -> mlflow.MlflowClient:
    """An ``MlflowClient`` on botlib's store (tracking and registry named explicitly)."""
    uri = use_store(settings)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def configure(experiment: str = "botlib", settings: Settings | None = None) -> str:
    """Point MLflow at the configured store; create ``experiment`` with its artifacts
    under ``mlflow_artifacts_dir``. Returns the experiment id."""
    settings = settings or get_settings()
    use_store(settings)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        mlflow.set_experiment(experiment)
        return str(found.experiment_id)
    if tracking_uri(settings).startswith(("http://", "https://")):
        exp_id = mlflow.create_experiment(experiment)  # the server keeps the artifacts
        mlflow.set_experiment(experiment)
        return str(exp_id)
    artifacts = Path(settings.mlflow_artifacts_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    exp_id = mlflow.create_experiment(experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(experiment)
    return str(exp_id)
