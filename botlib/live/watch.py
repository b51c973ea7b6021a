"""A websocket feed: ccxt's ``watch_ohlcv`` (ccxt.pro, bundled with ccxt) where the
exchange streams candles.

A candle is published once it has closed, which on a stream means once the exchange
has started sending the *next* candle (messages arrive in order, so the closed candle's
last update came first). Whenever the connection drops, and whenever the stream skips
a candle, the missing closed candles are fetched over REST first — so a reconnect never
loses a candle, and nothing is published twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from botlib.data import timeframe_seconds
from botlib.live.feeds import FeedHealth, bars_from_candles, last_published, publish_bars
from botlib.transport import RedisNames

__all__ = ["watch_ccxt", "watch_ccxt_async"]

log = logging.getLogger("botlib.feed")


def _pro_exchange(exchange_id: str) -> Any:
    import ccxt.pro

    from botlib.errors import ConfigError
    from botlib.settings import get_settings

    if not hasattr(ccxt.pro, exchange_id):
        raise ConfigError(
            f"{exchange_id} has no websocket API in ccxt; use `botlib feed ccxt` (REST polling)"
        )
    settings = get_settings()
    config: dict[str, Any] = {"enableRateLimit": True}
    if settings.exchange_options:
        config["options"] = dict(settings.exchange_options)
    ex = getattr(ccxt.pro, exchange_id)(config)
    for key, url in settings.exchange_urls.items():
        ex.urls["api"][key] = url
    if not ex.has.get("watchOHLCV"):
        raise ConfigError(f"{exchange_id} does not stream candles (watchOHLCV) in ccxt")
    return ex


class _Publisher:
    def __init__(
        self, client: Any, ex_id: str, symbol: str, timeframe: str, names: RedisNames | None
    ) -> None:
        self.client, self.ex_id, self.symbol, self.timeframe = client, ex_id, symbol, timeframe
        self.names = names
        self.bar_ms = timeframe_seconds(timeframe) * 1000
        self.last = last_published(client, ex_id, symbol, timeframe, names)
        self.published = 0
        self.health = FeedHealth(client, names, f"watch {ex_id} {symbol} {timeframe}", 1.0)

    def publish(self, rows: Sequence[Sequence[float]]) -> None:
        fresh = sorted(
            (list(r) for r in rows if self.last is None or int(r[0]) > self.last),
            key=lambda r: r[0],
        )
        if not fresh:
            return
        frame = pd.DataFrame(
            [r[1:6] for r in fresh],
            index=pd.to_datetime([int(r[0]) for r in fresh], unit="ms", utc=True),
            columns=["open", "high", "low", "close", "volume"],
            dtype="float64",
        )
        bars = bars_from_candles(
            frame, exchange=self.ex_id, symbol=self.symbol, timeframe=self.timeframe
        )
        self.published += publish_bars(self.client, bars, names=self.names)
        self.health.published(bars)
        self.last = bars[-1].ts


async def _backfill(ex: Any, pub: _Publisher, now_ms: int, lookback: int, until: int) -> None:
    """Closed candles over REST from after the last published one up to ``until``."""
    since = (
        pub.last + pub.bar_ms
        if pub.last is not None
        else (now_ms // pub.bar_ms - lookback) * pub.bar_ms
    )
    while since < until:
        rows = await ex.fetch_ohlcv(pub.symbol, pub.timeframe, since=since, limit=1000)
        closed = [r for r in rows if int(r[0]) < until and int(r[0]) + pub.bar_ms <= now_ms]
        pub.publish(closed)
        if len(rows) < 1000 or not closed:
            return
        since = int(closed[-1][0]) + pub.bar_ms


async def watch_ccxt_async(
    client: Any,
    symbol: str,
    timeframe: str,
    *,
    exchange: str | Any | None = None,
    lookback: int = 500,
    names: RedisNames | None = None,
    stop: Callable[[], bool] | None = None,
    max_bars: int | None = None,
    clock: Callable[[], float] = time.time,
    close_exchange: bool | None = None,
) -> int:
    """Stream ``symbol`` ``timeframe`` candles until ``stop()`` or ``max_bars``; returns
    the number published. ``exchange`` is a ccxt.pro exchange or its id; it is closed at
    the end if it was made here (or ``close_exchange``)."""
    from botlib.settings import get_settings

    own = exchange is None or isinstance(exchange, str)
    ex: Any = _pro_exchange(str(exchange or get_settings().exchange_id)) if own else exchange
    pub = _Publisher(client, str(ex.id), symbol, timeframe, names)
    backoff, backfill = 0.5, True
    # candles seen on the stream and not yet published (ccxt hands over only updates)
    open_rows: dict[int, list[float]] = {}
    import ccxt

    try:
        while not (stop is not None and stop()):
            if max_bars is not None and pub.published >= max_bars:
                break
            pub.health.beat()
            try:
                now_ms = int(clock() * 1000)
                if backfill:
                    await _backfill(ex, pub, now_ms, lookback, until=now_ms)
                    backfill = False
                candles = await asyncio.wait_for(ex.watch_ohlcv(symbol, timeframe), timeout=1)
            except TimeoutError:
                candles = []  # nothing new: look at the cache, check stop(), wait again
            except ccxt.NetworkError as exc:
                log.warning(
                    "%s %s websocket: %s; reconnecting in %.1f s", ex.id, symbol, exc, backoff
                )
                pub.health.error(f"websocket: {type(exc).__name__}: {exc}")
                backfill = True
                open_rows.clear()  # REST has the final values of whatever closed meanwhile
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            # ccxt returns only the updates that woke us; its cache also holds updates that
            # arrived while nobody was waiting
            cached = ex.ohlcvs.get(ex.symbol(symbol), {}).get(timeframe) or []
            for row in [*cached, *candles]:
                if pub.last is None or int(row[0]) > pub.last:
                    open_rows[int(row[0])] = list(row)
            if not open_rows:
                continue
            newest = max(open_rows)
            closed = [open_rows.pop(t) for t in sorted(open_rows) if t < newest]
            closed = [c for c in closed if pub.last is None or int(c[0]) > pub.last]
            if closed and pub.last is not None and int(closed[0][0]) > pub.last + pub.bar_ms:
                # the stream skipped candles (e.g. one closed while we re-subscribed)
                await _backfill(ex, pub, int(clock() * 1000), lookback, until=int(closed[0][0]))
            pub.publish(closed)
    finally:
        if own if close_exchange is None else close_exchange:
            await ex.close()
    return pub.published


def watch_ccxt(client: Any, symbol: str, timeframe: str, **kwargs: Any) -> int:
    """``watch_ccxt_async`` run to completion on a fresh event loop (which the exchange's
    connections cannot outlive: it is closed at the end)."""
    kwargs.setdefault("close_exchange", True)
    return asyncio.run(watch_ccxt_async(client, symbol, timeframe, **kwargs))
