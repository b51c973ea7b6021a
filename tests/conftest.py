from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from botlib.data import load_ohlcv
from botlib.models import BaseModel, create_model
from botlib.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Every test gets its own cache and reports folder; the reference datasets stay."""
    monkeypatch.setenv("BOTLIB_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BOTLIB_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def btc_1h() -> pd.DataFrame:
    """The reference Binance BTC/USDT hourly candles (read from ../shared/data)."""
    return load_ohlcv("BTC/USDT", "1h", settings=Settings())


@pytest.fixture(scope="session")
def btc_1h_2y(btc_1h: pd.DataFrame) -> pd.DataFrame:
    frame = btc_1h.loc["2024-01-01":"2025-12-31"].copy()
    frame.attrs.update(btc_1h.attrs)
    return frame


def synthetic_candles(n: int = 500, *, seed: int = 0, freq: str = "1h") -> pd.DataFrame:
    """A random-walk candle frame that passes validation."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    index = pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC", name="timestamp")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(1, 10, n)},
        index=index,
    )
    frame.attrs["timeframe"] = "1h" if freq == "1h" else freq
    return frame


@pytest.fixture
def candles() -> pd.DataFrame:
    return synthetic_candles()


#: Tiny budgets: every family trains in seconds.
TINY: dict[str, dict[str, Any]] = {
    "lstm": {"epochs": 1, "units": 8, "seq_len": 8},
    "gru": {"epochs": 1, "units": 8, "seq_len": 8, "horizon": 12},
    "transformer": {"epochs": 1, "units": 8, "seq_len": 8, "heads": 2},
    "dqn": {"timesteps": 64, "window": 4, "hidden": 16, "episode_length": 128},
    "ppo": {"timesteps": 64, "window": 4, "hidden": 16, "episode_length": 128},
    "ga_rules": {"population": 6, "generations": 2},
    "de_rules": {"population": 6, "generations": 2},
}


class Windows:
    """Reference candles: training, validation after it, test after that."""

    def __init__(self, candles: pd.DataFrame) -> None:
        self.all = candles
        self.train = candles.iloc[:2_000]
        self.valid = candles.iloc[2_000:2_500]
        self.test = candles.iloc[2_500:]
        for part in (self.train, self.valid, self.test):
            part.attrs.update(candles.attrs)


@pytest.fixture(scope="session")
def windows(btc_1h: pd.DataFrame) -> Windows:
    frame = btc_1h.iloc[-3_000:].copy()
    frame.attrs.update(btc_1h.attrs)
    return Windows(frame)


@pytest.fixture(scope="session")
def trained_rules(windows: Windows, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two cheap saved members for ensemble tests."""
    paths = []
    for name in ("ga_rules", "de_rules"):
        model: BaseModel = create_model(name, **TINY[name])
        model.fit(windows.train, windows.valid)
        paths.append(model.save(tmp_path_factory.mktemp(name)))
    return paths


#: the window the models train on (70 / 15 / 15) and the bars replayed after it
TRAIN = ("2025-01-01", "2025-04-01")
REPLAY_START = "2025-04-01"
TINY_LSTM = {"epochs": 1, "units": 8, "seq_len": 8}
TINY_GA = {"population": 8, "generations": 2, "min_trades": 1}


@dataclass(frozen=True)
class Store:
    """A botlib home whose MLflow store holds trained, registered models."""

    uri: str
    artifacts: Path
    lstm: str  # registered names
    ga: str

    @property
    def home(self) -> Path:
        """The botlib home the store lives in (its default ``mlruns/`` layout)."""
        return self.artifacts.parent.parent


def _use(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(store.artifacts))
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def live_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """lstm v1 and v2 (two seeds) and ga_rules v1, trained and registered for real, in
    the default store of a botlib home (``HOME/mlruns``) that the services started by
    the end-to-end tests find by ``BOTLIB_HOME`` alone. Trained once per session."""
    from botlib.tracking import configure
    from botlib.tracking.session import train_session

    root = tmp_path_factory.mktemp("home") / "mlruns"
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
