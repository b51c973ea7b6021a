"""The project's own redis-server, really started (no fakes)."""

from __future__ import annotations

from pathlib import Path

import redis

from botlib.transport import RedisServer, find_redis_server, free_port


def test_start_persist_restart_stop(tmp_path: Path) -> None:
    assert find_redis_server().exists()
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis").start()
    try:
        assert server.ping() and server.pid() is not None
        assert server.start() is server  # idempotent
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
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
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
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
        assert (tmp_path / "redis" / f"appendonly-{port}.aof").exists() or any(
            (tmp_path / "redis").glob("appendonly*")
        )
    finally:
        assert "stopped" in botlib("stop").stdout
    assert botlib("status").returncode == 1
