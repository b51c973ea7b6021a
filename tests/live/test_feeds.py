"""Feeds: closed candles only, each once, resumed after a restart; ccxt's real code
against a local Binance-like server."""

from __future__ import annotations

import json
import time
from typing import Any

import ccxt
import pytest
import redis

from botlib.live import last_published, poll_ccxt
from tests.fake_binance import HOUR_MS, FakeBinance, make_candles

pytestmark = pytest.mark.network

START_MS = 1_735_689_600_000  # 2025-01-01
STREAM = "botlib:bars:binance:BTC/USDT:1h"


def _exchange(server: FakeBinance) -> Any:
    ex = ccxt.binance(
        {"enableRateLimit": True, "rateLimit": 1, "timeout": 700,
         "options": {"fetchMarkets": {"types": ["spot"]}}}
    )  # fmt: skip
    ex.urls["api"]["public"] = server.url
    return ex


def _ts(r: redis.Redis) -> list[int]:
    return [json.loads(f["data"])["ts"] for _, f in r.xrange(STREAM)]


def test_poll_publishes_closed_candles_once_and_resumes(r: redis.Redis) -> None:
    server = FakeBinance(make_candles(START_MS, START_MS + 100 * HOUR_MS))
    try:
        ex = _exchange(server)
        # "now" is 30 minutes into bar 99: bars 0..98 are closed, bar 99 is not
        now = [(START_MS + 99 * HOUR_MS + HOUR_MS // 2) / 1000]
        market = r.pubsub()
        market.subscribe("python:market_data")
        market.get_message(timeout=1)
        n = poll_ccxt(r, "BTC/USDT", "1h", exchange=ex, lookback=50, poll_s=0, max_polls=1,
                      clock=lambda: now[0])  # fmt: skip
        assert n == 50
        assert _ts(r) == [START_MS + i * HOUR_MS for i in range(49, 99)]
        heard = market.get_message(timeout=2)
        assert heard and json.loads(heard["data"])["ts"] == START_MS + 49 * HOUR_MS
        # a poll with nothing new publishes nothing
        assert poll_ccxt(r, "BTC/USDT", "1h", exchange=ex, poll_s=0, max_polls=1,
                         clock=lambda: now[0]) == 0  # fmt: skip
        # time moves on two bars; a *new* feed process resumes after the stream's last bar
        server.candles = make_candles(START_MS, START_MS + 102 * HOUR_MS)
        now[0] += 2 * 3600
        assert last_published(r, "binance", "BTC/USDT", "1h") == START_MS + 98 * HOUR_MS
        server.fail_429 = 1  # the first try fails: logged, retried at the next poll
        n = poll_ccxt(r, "BTC/USDT", "1h", exchange=_exchange(server), poll_s=0, max_polls=2,
                      clock=lambda: now[0])  # fmt: skip
        assert n == 2
        times = _ts(r)
        assert times[-3:] == [START_MS + i * HOUR_MS for i in (98, 99, 100)]
        assert len(times) == len(set(times)) == 52
        # the feed's health, as `botlib status` shows it: bars, last bar, the failed fetch
        from botlib.monitor import collect_status
        from botlib.transport import RedisNames

        (feed,) = collect_status(r, RedisNames())["feeds"]
        assert feed["feed"] == "ccxt binance BTC/USDT 1h" and feed["up"]
        assert feed["bars"] == 52 and feed["errors"] == 1 and "429" in feed["last_error"]
        assert feed["last_bar"] == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime((START_MS + 100 * HOUR_MS) / 1000)
        )
        market.close()
    finally:
        server.stop()


def _wait(predicate: Any, what: str, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_websocket_feed_resumes_a_dropped_connection_without_a_missing_candle(
    r: redis.Redis,
) -> None:
    import threading

    import ccxt.pro

    from botlib.live.watch import watch_ccxt
    from tests.fake_binance_ws import FakeBinanceWS

    candles = make_candles(START_MS, START_MS + 10 * HOUR_MS)
    rest, ws = FakeBinance(candles), FakeBinanceWS()
    ex = ccxt.pro.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
    ex.urls["api"]["public"] = rest.url
    ex.urls["api"]["ws"]["spot"] = ws.url
    now = [(START_MS + 2 * HOUR_MS + HOUR_MS // 2) / 1000]  # half-way through bar 2
    stop = threading.Event()
    feed = threading.Thread(
        target=watch_ccxt,
        args=(r, "BTC/USDT", "1h"),
        kwargs={"exchange": ex, "lookback": 2, "stop": stop.is_set, "clock": lambda: now[0]},
    )
    feed.start()
    try:
        _wait(lambda: ws.subscriptions == 1, "the subscription")
        assert _ts(r) == [START_MS, START_MS + HOUR_MS]  # closed bars 0, 1 over REST

        def partial(i: int) -> list[float]:
            row = list(candles[i])
            return [row[0], row[1], row[2], row[3], (row[1] + row[4]) / 2, row[5] / 3]

        ws.push(partial(2), HOUR_MS)
        ws.push(list(candles[2]), HOUR_MS, closed=True)
        ws.push(partial(3), HOUR_MS)  # bar 3 starts: bar 2 has closed
        _wait(lambda: len(_ts(r)) == 3, "bar 2")
        ws.push(list(candles[3]), HOUR_MS, closed=True)
        ws.push(partial(4), HOUR_MS)
        _wait(lambda: len(_ts(r)) == 4, "bar 3")

        # the connection drops during bar 4; by the time it is back, bars 4-6 closed
        now[0] = (START_MS + 7 * HOUR_MS + HOUR_MS // 4) / 1000
        ws.drop()
        _wait(lambda: ws.subscriptions == 2, "the re-subscription")
        _wait(lambda: len(_ts(r)) == 7, "bars 4-6 over REST")
        ws.push(list(candles[7]), HOUR_MS, closed=True)
        ws.push(partial(8), HOUR_MS)
        _wait(lambda: len(_ts(r)) == 8, "bar 7")
    finally:
        stop.set()
        feed.join(15)
        ws.stop()
        rest.stop()
    assert _ts(r) == [START_MS + i * HOUR_MS for i in range(8)]
    from botlib.monitor import collect_status
    from botlib.transport import RedisNames

    (health,) = collect_status(r, RedisNames())["feeds"]
    assert health["feed"] == "watch binance BTC/USDT 1h" and health["bars"] == 8
    assert health["errors"] == 1 and "Connection closed" in health["last_error"]
    published = [json.loads(f["data"]) for _, f in r.xrange(STREAM)]
    for i, bar in enumerate(published):  # the final values of every candle, not a partial
        assert bar["close"] == pytest.approx(round(candles[i][4], 2))
        assert bar["volume"] == pytest.approx(round(candles[i][5], 5))


def test_stream_history_skips_what_the_loop_sets_aside(r: redis.Redis) -> None:
    """A restarted loop seeds its window from the stream: poison bars there (before
    2009, off the grid, a price jump) must not enter it."""
    from botlib.live import bars_from_candles, publish_bars
    from botlib.live.feeds import stream_history
    from tests.live.helpers import window

    bars = bars_from_candles(window(40), exchange="binance", symbol="BTC/USDT", timeframe="1h")
    stream = "botlib:bars:binance:BTC/USDT:1h"
    publish_bars(r, bars[:30])
    base = bars[29].to_dict()
    for change in ({"ts": 1_212_278_400_000},  # 2008-06-01
                   {"ts": base["ts"] + HOUR_MS // 2},
                   {"ts": base["ts"] + HOUR_MS, "high": base["close"] * 50,
                    "close": base["close"] * 50}):  # fmt: skip
        r.xadd(stream, {"data": json.dumps({**base, **change})})
    publish_bars(r, bars[30:])
    times, values = stream_history(r, stream, 35, read=60, bar_ms=HOUR_MS)
    assert times == [b.ts for b in bars[5:]]
    assert [v[3] for v in values] == [b.close for b in bars[5:]]
