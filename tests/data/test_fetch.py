"""ccxt's real binance code against a local server that answers like Binance."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import ccxt
import numpy as np
import pandas as pd
import pytest

from botlib.data import DataError, fetch_ohlcv, load_ohlcv
from botlib.data._store import cache_path, read_cache
from botlib.errors import FetchError
from botlib.settings import Settings
from tests.fake_binance import HOUR_MS, FakeBinance, make_candles

pytestmark = pytest.mark.network

START = pd.Timestamp("2024-01-01T00:00Z")
START_MS = int(START.value // 10**6)


def _client(server: FakeBinance, rate_limit_ms: int = 1) -> Any:
    ex = ccxt.binance(
        {
            "enableRateLimit": True,
            "rateLimit": rate_limit_ms,
            "timeout": 700,
            "options": {"fetchMarkets": {"types": ["spot"]}},
        }
    )
    ex.urls["api"]["public"] = server.url
    return ex


@pytest.fixture
def server() -> Iterator[FakeBinance]:
    now_ms = int(time.time() * 1000)
    srv = FakeBinance(make_candles(START_MS, now_ms + HOUR_MS))  # includes the open candle
    yield srv
    srv.stop()


def _expected(server: FakeBinance, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    rows = server.candles
    lo, hi = start.value // 10**6, end.value // 10**6
    return rows[(rows[:, 0] >= lo) & (rows[:, 0] < hi)]


def test_pages_until_end_and_caches(server: FakeBinance, isolated_settings: Settings) -> None:
    end = START + pd.Timedelta(hours=2_500)
    frame = fetch_ohlcv(_client(server), "BTC/USDT", "1h", START, end, page_limit=500)
    assert len(frame) == 2_500
    assert frame.index[0] == START and frame.index[-1] == end - pd.Timedelta(hours=1)
    np.testing.assert_allclose(
        frame["close"].to_numpy(), _expected(server, START, end)[:, 4], rtol=1e-6
    )
    assert len(server.kline_starts) == 5
    cached = read_cache(cache_path(isolated_settings.data_dir, "binance", "BTC/USDT", "1h"))
    assert cached is not None and len(cached) == 2_500
    # the cache is what load_ohlcv reads for that exchange
    assert len(load_ohlcv("BTC/USDT", "1h", exchange="binance")) == 2_500


def test_second_call_fetches_only_the_tail(server: FakeBinance) -> None:
    ex = _client(server)
    fetch_ohlcv(ex, "BTC/USDT", "1h", START, START + pd.Timedelta(hours=1_000), page_limit=400)
    first_calls = len(server.kline_starts)
    frame = fetch_ohlcv(
        ex, "BTC/USDT", "1h", START, START + pd.Timedelta(hours=1_300), page_limit=400
    )
    new_starts = server.kline_starts[first_calls:]
    assert new_starts == [START_MS + 1_000 * HOUR_MS]
    assert len(frame) == 1_300 and frame.index.is_unique
    # nothing missing: a third call asks for nothing
    fetch_ohlcv(ex, "BTC/USDT", "1h", START, START + pd.Timedelta(hours=1_300), page_limit=400)
    assert len(server.kline_starts) == first_calls + 1


def test_unfinished_last_candle_is_dropped(server: FakeBinance) -> None:
    now = pd.Timestamp.now(tz="UTC")
    frame = fetch_ohlcv(_client(server), "BTC/USDT", "1h", now - pd.Timedelta(hours=30))
    assert frame.index[-1] + pd.Timedelta(hours=1) <= now
    assert frame.index[-1] + pd.Timedelta(hours=2) > now  # the last closed bar is there


def test_429_and_timeouts_are_retried(server: FakeBinance) -> None:
    server.fail_429 = 2
    server.stall = 1
    frame = fetch_ohlcv(
        _client(server),
        "BTC/USDT",
        "1h",
        START,
        START + pd.Timedelta(hours=900),
        page_limit=300,
        backoff=0.05,
    )
    assert len(frame) == 900 and frame.index.is_unique
    assert server.fail_429 == 0 and server.stall == 0


def test_rate_limit_is_honoured(server: FakeBinance) -> None:
    # unthrottled, pages arrive ~25 ms apart here; ccxt weighs a spot kline request
    # 0.4 units, so a 300 ms rate limit must space them >= 120 ms apart
    fetch_ohlcv(
        _client(server, rate_limit_ms=300),
        "BTC/USDT",
        "1h",
        START,
        START + pd.Timedelta(hours=4_000),
        page_limit=1000,
    )
    gaps = np.diff(server.kline_times)
    assert len(gaps) == 3 and gaps.min() >= 0.11


def test_exchanges_are_made_with_rate_limiting_on() -> None:
    from botlib.data import make_exchange

    assert make_exchange("binance").enableRateLimit is True


def test_server_dies_mid_download_then_resumes(
    server: FakeBinance, isolated_settings: Settings
) -> None:
    end = START + pd.Timedelta(hours=2_000)
    server.die_after = 2
    with pytest.raises(FetchError, match="attempt"):
        fetch_ohlcv(
            _client(server), "BTC/USDT", "1h", START, end, page_limit=500, retries=2, backoff=0.01
        )
    path = cache_path(isolated_settings.data_dir, "binance", "BTC/USDT", "1h")
    partial = read_cache(path)
    assert partial is not None and len(partial) == 1_000 and partial.index.is_unique
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    revived = FakeBinance(server.candles)
    try:
        frame = fetch_ohlcv(_client(revived), "BTC/USDT", "1h", START, end, page_limit=500)
        assert revived.kline_starts[0] == START_MS + 1_000 * HOUR_MS
        assert len(frame) == 2_000 and frame.index.is_unique
        np.testing.assert_allclose(
            frame["open"].to_numpy(), _expected(revived, START, end)[:, 1], rtol=1e-6
        )
    finally:
        revived.stop()


def test_unknown_symbol_and_timeframe(server: FakeBinance) -> None:
    with pytest.raises(DataError, match=r"no market 'ETH/USDT'"):
        fetch_ohlcv(_client(server), "ETH/USDT", "1h", START, START + pd.Timedelta(hours=5))
    with pytest.raises(DataError, match="does not serve timeframe '7m'"):
        fetch_ohlcv(_client(server), "BTC/USDT", "7m", START, START + pd.Timedelta(hours=5))


def test_end_before_start(server: FakeBinance) -> None:
    with pytest.raises(DataError, match="not after start"):
        fetch_ohlcv(_client(server), "BTC/USDT", "1h", START, START - pd.Timedelta(hours=5))
