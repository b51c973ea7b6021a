"""A real MLflow store with registered models and a real redis-server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from botlib.settings import get_settings
from botlib.transport import RedisServer, free_port
from tests.conftest import REPLAY_START, TINY_GA, TINY_LSTM, TRAIN, Store, _use  # noqa: F401


@pytest.fixture
def store(live_store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The shared store, with every alias cleared (each test promotes what it needs)."""
    from mlflow import MlflowClient

    from botlib.tracking import configure

    _use(live_store, monkeypatch)
    configure("live-tests")
    client = MlflowClient()
    for model in client.search_registered_models():
        for alias in list(model.aliases or {}):
            client.delete_registered_model_alias(model.name, alias)
    return live_store


@pytest.fixture
def redis_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A real redis-server with its users per role (Redis 7+), started the way ``botlib
    redis start`` starts it; services in the test find their role's credentials in its
    data folder, as deployed. Afterwards no role may have been refused anything
    (``ACL LOG``) unless the test resets the log itself."""
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis").start()
    monkeypatch.setenv("BOTLIB_REDIS_URL", server.url)
    monkeypatch.setenv("BOTLIB_REDIS_DATA_DIR", str(server.data_dir))
    get_settings.cache_clear()
    try:
        yield server
        if server.ping():
            admin = redis.Redis.from_url(server.url, decode_responses=True)
            denied = admin.acl_log(count=50)
            admin.close()
            assert not denied, f"Redis refused a botlib service: {denied}"
    finally:
        server.stop()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()
