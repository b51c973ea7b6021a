"""The project's own redis-server, really started (no fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from botlib.transport import RedisServer, find_redis_server, free_port


def test_start_persist_restart_stop(tmp_path: Path) -> None:
    assert find_redis_server().exists()
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis").start()
    try:
        assert server.ping() and server.pid() is not None
        assert server.start() is server  # idempotent
        client = redis.Redis.from_url(server.url)
        assert client.info("persistence")["aof_enabled"] == 1
        client.xadd("botlib:test", {"n": "1"})
        client.close()
        assert server.stop()
        assert server.pid() is None and not server.ping()
        server.start()  # the append-only file brings the stream back
        client = redis.Redis.from_url(server.url)
        assert client.xlen("botlib:test") == 1
        client.close()
    finally:
        server.stop()
    assert not server.stop()


def test_password_is_required_when_set(tmp_path: Path) -> None:
    server = RedisServer(port=free_port(), data_dir=tmp_path / "r", password="s3cret").start()
    try:
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0))
        try:
            anonymous.ping()
            raise AssertionError("a password-protected server answered without AUTH")
        except redis.AuthenticationError:
            pass
        finally:
            anonymous.close()
        assert server.ping()
    finally:
        server.stop()


def test_cli_start_status_stop(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    port = free_port()
    env = {
        "BOTLIB_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "BOTLIB_REDIS_DATA_DIR": str(tmp_path / "redis"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def botlib(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "botlib", "redis", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        assert botlib("status").returncode == 1
        started = botlib("start")
        assert started.returncode == 0 and f"127.0.0.1:{port}" in started.stdout
        assert botlib("status").returncode == 0
        assert "users per role: loop, bridge, feed, paper, backend" in started.stdout
        import json

        users = json.loads(botlib("users", "--json").stdout)
        assert sorted(users) == ["admin", "backend", "bridge", "feed", "loop", "paper"]
        assert users["backend"].startswith("redis://botlib-backend:")
        assert botlib("url", "--role", "backend").stdout.strip() == users["backend"]
        wrong = botlib("url", "--role", "nobody")
        assert wrong.returncode == 2 and "--role must be one of" in wrong.stderr
        assert redis.Redis.from_url(users["backend"]).ping()
        assert (tmp_path / "redis" / f"appendonly-{port}.aof").exists() or any(
            (tmp_path / "redis").glob("appendonly*")
        )
    finally:
        assert "stopped" in botlib("stop").stdout
    assert botlib("status").returncode == 1


def test_the_local_server_is_locked(tmp_path: Path) -> None:
    """issue 15: a generated password (a file only its owner reads, never on the command
    line), and CONFIG / MODULE / DEBUG refused to everyone."""
    import stat
    import subprocess

    server = RedisServer(port=free_port(), data_dir=tmp_path / "r").start()
    try:
        secret = server.secret_file
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o700
        password = secret.read_text().strip()
        assert len(password) >= 32
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert password not in ps and "requirepass" not in ps
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        client = redis.Redis.from_url(server.url)
        for command in (("CONFIG", "SET", "dir", "/tmp"), ("MODULE", "LOAD", "/tmp/x.so"),
                        ("DEBUG", "SLEEP", "0")):  # fmt: skip
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)
        assert client.ping()
        client.close()
        log = (tmp_path / "r" / f"redis-{server.port}.log").read_text()
        assert password not in log
    finally:
        server.stop()
