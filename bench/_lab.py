"""Set-up shared by the benchmarks that need a registered champion and a Redis: a
throw-away MLflow store and redis-server, and an LSTM champion trained on reference
data (32 units, 32-bar windows, one epoch: speed, not skill)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def scratch_dir(prefix: str) -> Path:
    """A new temporary folder, removed when the bench exits (a run leaves nothing in the
    temp dir; a store with a trained model is some 14 MB)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def _stop_quietly(server: Any) -> None:
    with contextlib.suppress(Exception):
        server.stop()


def throwaway_lab(prefix: str) -> tuple[Path, Any]:
    """A temporary folder holding an MLflow store and a started redis-server, with the
    settings pointed at both. Returns the folder and the server (stop it when done; at
    exit the server is stopped, if it still runs, and the folder removed)."""
    logging.disable(logging.WARNING)
    tmp = scratch_dir(prefix)
    os.environ["BOTLIB_MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    os.environ["BOTLIB_MLFLOW_ARTIFACTS_DIR"] = str(tmp / "artifacts")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

    from botlib.settings import get_settings
    from botlib.transport import RedisServer, free_port

    server = RedisServer(free_port(), tmp / "redis").start()
    # registered after the folder's removal, so it runs first: the server goes, then its files
    atexit.register(_stop_quietly, server)
    os.environ["BOTLIB_REDIS_URL"] = server.url
    get_settings.cache_clear()
    return tmp, server


def lstm_champion(experiment: str) -> Any:
    """Train the LSTM on 2024, register it and promote it (gate forced). Returns the
    training session (``model_name`` …)."""
    from botlib.promotion import GateConfig, promote
    from botlib.tracking import configure
    from botlib.tracking.session import train_session

    configure(experiment)
    print("training the LSTM champion (1 epoch) ...", flush=True)
    session = train_session(
        "lstm",
        start="2024-01-01",
        end="2025-01-01",
        params={"epochs": 1, "units": 32, "seq_len": 32},
    )
    promote(session.model_name, gate=GateConfig(margin=-10, min_trades=0), force=True)
    return session
