"""``make lab`` and ``make mlflow-ui`` start for any user (root included: these machines
and containers run as root) and print the URL to open (issue 16)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from botlib.transport import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _serve_and_fetch(target: str, port_var: str, path: str, env: dict[str, str]) -> str:
    """Run ``make TARGET``, wait for ``path`` to answer 200, stop it; return its output."""
    port = free_port()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", target, f"{port_var}={port}"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"make {target} exited: {proc.communicate()[0][-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                    assert resp.status == 200
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, f"make {target} never answered on {port}"
                time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0]
    return out.replace(str(port), "PORT")


def test_make_lab_serves_jupyterlab_for_root_too() -> None:
    out = _serve_and_fetch(
        "lab", "LAB_PORT", "/lab?token=botlib-test", {"JUPYTER_TOKEN": "botlib-test"}
    )
    assert "JupyterLab on http://127.0.0.1:PORT/lab" in out
    if os.geteuid() == 0:
        assert "Running as root is not recommended" not in out


def test_make_mlflow_ui_serves_the_store() -> None:
    out = _serve_and_fetch("mlflow-ui", "MLFLOW_PORT", "/", {})
    assert "open http://127.0.0.1:PORT" in out
