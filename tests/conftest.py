from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from botlib.data import load_ohlcv
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
