"""The product as deployed: ``botlib`` commands run as a user runs them.

Every service here is a subprocess started through the ``botlib`` command with the
environment a user has — ``PATH``, a fresh ``HOME``, ``BOTLIB_HOME`` naming the project
and ``BOTLIB_REDIS_URL`` — and nothing else: no ``MLFLOW_*`` variable (the test process
itself exports ``MLFLOW_TRACKING_URI`` once anything calls ``mlflow.set_tracking_uri``),
no ``PYTHONPATH``, and a working directory outside the checkout. The backend is played
by ``tests/backend/`` (Node.js + ioredis).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from botlib.transport import free_port
from tests.conftest import Store

ROOT = Path(__file__).resolve().parents[2]
BACKEND = ROOT / "tests" / "backend"
BIN = Path(sys.executable).parent
#: what a user's shell passes on beyond PATH/HOME (machine settings, not botlib's)
PASSED_ON = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass
class User:
    """A shell of a user of the project at ``home`` (the botlib home)."""

    home: Path
    cwd: Path
    env: dict[str, str]
    run_dir: Path
    _redis_urls: dict[str, str] = field(default_factory=dict)

    def botlib(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "botlib"), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"botlib {' '.join(args)} exited {done.returncode}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        return done

    def redis_url(self, role: str = "admin") -> str:
        """The user's Redis, started the way the README says (``botlib redis start``),
        and the URL of ``role``'s user with its password (``botlib redis url --role``):
        ``backend`` is what a backend is configured with. botlib's own commands find
        theirs themselves."""
        if role not in self._redis_urls:
            self.botlib("redis", "start")
            url = self.botlib("redis", "url", "--role", role).stdout.strip()
            self._redis_urls[role] = url
        return self._redis_urls[role]

    def acl_denials(self) -> list[dict[str, Any]]:
        """What Redis refused to any role since it started (``ACL LOG``): botlib's
        services, each under its own role, must never be refused."""
        if "admin" not in self._redis_urls:
            return []
        client = redis.Redis.from_url(self._redis_urls["admin"], decode_responses=True)
        try:
            return list(client.acl_log(count=50))
        except redis.ConnectionError:
            return []  # the test stopped it
        finally:
            client.close()

    def state(self) -> dict[str, Any]:
        """``botlib up``'s state file."""
        return dict(json.loads((self.run_dir / "up.json").read_text()))

    def child_pid(self, name: str) -> int:
        for child in self.state()["children"]:
            if child["name"] == name:
                return int(child["pid"])
        raise KeyError(name)


def user_env(home: Path, user_home: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(user_home),
        "BOTLIB_HOME": str(home),
        "BOTLIB_REDIS_URL": redis_url,
        **{k: os.environ[k] for k in PASSED_ON if k in os.environ},
        **extra,
    }
    assert not any(k.startswith("MLFLOW_") for k in env)
    return env


@pytest.fixture
def user(live_store: Store, tmp_path: Path) -> Iterator[User]:
    """A user of the session's trained project (its own Redis port and data folder);
    everything the test started is stopped afterwards."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=live_store.uri, registry_uri=live_store.uri)
    for model in client.search_registered_models():
        for alias in list(model.aliases or {}):
            client.delete_registered_model_alias(model.name, alias)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    (tmp_path / "user").mkdir()
    env = user_env(
        live_store.home,
        tmp_path / "user",
        f"redis://127.0.0.1:{free_port()}/0",
        BOTLIB_REDIS_DATA_DIR=str(tmp_path / "redis"),
        BOTLIB_LOGS_DIR=str(tmp_path / "logs"),
        BOTLIB_RUN_DIR=str(tmp_path / "run"),
    )
    shell = User(live_store.home, cwd, env, tmp_path / "run")
    try:
        yield shell
        denied = shell.acl_denials()
        assert not denied, f"Redis refused a botlib service: {denied}"
    finally:
        shell.botlib("down", check=False)
        shell.botlib("redis", "stop", check=False)
        strays = [p for p in (cwd, tmp_path / "user") for p in p.rglob("mlflow.db")]
        assert not strays, f"mlflow.db created outside the project's store: {strays}"


@pytest.fixture
def r(user: User) -> Iterator[redis.Redis]:
    """The user's Redis, started the way the README says (``botlib redis start``)."""
    client = redis.Redis.from_url(user.redis_url(), decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def node_backend() -> Path:
    """The backend stand-in's npm project, installed (``make test`` runs ``npm ci``)."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the backend stand-in needs Node.js 20")
    if not (BACKEND / "node_modules" / "ioredis").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BACKEND, check=True)
    return BACKEND


class Backend:
    """The running stand-in: ``summary()`` once it has exited."""

    def __init__(self, proc: subprocess.Popen[str], out: Path) -> None:
        self.proc, self.out = proc, out

    def wait(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)
        return dict(json.loads(self.out.read_text()))

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.wait(10)


@pytest.fixture
def backend(node_backend: Path, user: User, tmp_path: Path) -> Iterator[Any]:
    """``backend(until_signals=N)`` starts the stand-in and returns once subscribed."""
    started: list[subprocess.Popen[str]] = []

    def start(*, until_signals: int = 0, idle_ms: int = 0) -> Backend:
        out = tmp_path / f"backend-{len(started)}.json"
        proc = subprocess.Popen(
            ["node", str(node_backend / "standin.mjs"), "--out", str(out),
             "--until-signals", str(until_signals), "--idle-ms", str(idle_ms)],
            env={**user.env, "REDIS_URL": user.redis_url("backend")},
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "ready", f"backend stand-in did not start: {line!r}"
        return Backend(proc, out)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
