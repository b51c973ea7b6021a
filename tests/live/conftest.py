"""A real MLflow store with registered models and a real redis-server per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from botlib.settings import get_settings
from botlib.transport import RedisServer, free_port

#: the window the models train on (70 / 15 / 15) and the bars replayed after it
TRAIN = ("2025-01-01", "2025-04-01")
REPLAY_START = "2025-04-01"
TINY_LSTM = {"epochs": 1, "units": 8, "seq_len": 8}
TINY_GA = {"population": 8, "generations": 2, "min_trades": 1}


@dataclass(frozen=True)
class Store:
    uri: str
    artifacts: Path
    lstm: str  # registered names
    ga: str


def _use(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(store.artifacts))
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def live_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """lstm v1 and v2 (two seeds) and ga_rules v1, trained and registered for real."""
    from botlib.tracking import configure
    from botlib.tracking.session import train_session

    root = tmp_path_factory.mktemp("mlflow")
    store = Store(f"sqlite:///{root}/mlflow.db", root / "artifacts", "", "")
    with pytest.MonkeyPatch.context() as mp:
        _use(store, mp)
        configure("live-tests")
        lstm = ""
        for seed in (0, 1):
            lstm = train_session(
                "lstm", start=TRAIN[0], end=TRAIN[1], params=dict(TINY_LSTM), seed=seed
            ).model_name
        ga = train_session("ga_rules", start=TRAIN[0], end=TRAIN[1], params=dict(TINY_GA))
    get_settings.cache_clear()
    return Store(store.uri, store.artifacts, lstm, ga.model_name)


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
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis").start()
    monkeypatch.setenv("BOTLIB_REDIS_URL", server.url)
    get_settings.cache_clear()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()
