"""Feeds: closed candles onto ``botlib:bars:{exchange}:{symbol}:{timeframe}`` (durable,
read by the loop) and ``python:market_data`` (the backend's channel).

* ``replay``: a stored window (reference or user data), at a speed factor;
* ``poll_ccxt``: closed candles polled through ccxt's REST ``fetch_ohlcv``;
* ``watch_ccxt``: candles pushed by ccxt's ``watch_ohlcv`` websockets (see
  ``botlib.live.watch``).

A feed never publishes a candle that has not closed, and resumes after the newest bar
already on the stream, so a restarted feed neither repeats nor skips a candle.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
import redis

from botlib.data import timeframe_seconds
from botlib.transport import Bar, BarError, RedisNames, decode_bar, encode_bar, redis_names
from botlib.transport.client import trim_read_many
from botlib.transport.stats import FeedCounter, feed_field

__all__ = ["bars_from_candles", "last_published", "poll_ccxt", "publish_bars", "replay"]

log = logging.getLogger("botlib.feed")

_RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def bars_from_candles(
    candles: pd.DataFrame, *, exchange: str, symbol: str, timeframe: str
) -> list[Bar]:
    """``Bar`` records for the rows of a canonical candle frame."""
    ts = pd.DatetimeIndex(candles.index).as_unit("ms").asi8.tolist()
    rows = candles[["open", "high", "low", "close", "volume"]].to_numpy("float64").tolist()
    return [
        Bar(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            ts=int(t),
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=v,
        )
        for t, (o, h, lo, c, v) in zip(ts, rows, strict=True)
    ]


def stream_history(
    client: Any,
    stream: str,
    count: int,
    *,
    before_id: str = "+",
    before_ts: int | None = None,
    read: int | None = None,
    bar_ms: int | None = None,
    max_jump: float = 10.0,
) -> tuple[list[int], list[list[float]]]:
    """Up to ``count`` newest valid bars of ``stream``, oldest first, as open times (ms)
    and ``[open, high, low, close, volume]`` rows. Reads at most ``read`` entries
    (default ``count``) back from ``before_id`` (``"(ID"``: before that entry) and keeps
    bars strictly before ``before_ts``. Skipped, as the loop sets them aside: records
    that are not valid bars, repeat or go back in time, lie before 2009, are off the
    ``bar_ms`` grid, or have a price more than ``max_jump`` times from the next bar's."""
    from botlib.live._market import EARLIEST_MS, off_grid, price_jump

    times: list[int] = []
    values: list[list[float]] = []
    for _, fields in client.xrevrange(stream, max=before_id, count=read or count):
        try:
            bar = decode_bar(fields)
        except BarError:
            continue
        bound = times[-1] if times else before_ts
        if bar.ts < EARLIEST_MS or (bar_ms and off_grid(bar.ts, bar_ms)):
            continue
        if values and price_jump(bar, values[-1][3]) > max_jump:
            continue
        if bound is None or bar.ts < bound:
            times.append(bar.ts)
            values.append([bar.open, bar.high, bar.low, bar.close, bar.volume])
            if len(times) >= count:
                break
    times.reverse()
    values.reverse()
    return times, values


def last_published(
    client: Any, exchange: str, symbol: str, timeframe: str, names: RedisNames | None = None
) -> int | None:
    """Open time (ms) of the newest valid bar on the market's stream, if any."""
    names = names or redis_names()
    times, _ = stream_history(client, names.bar_stream(exchange, symbol, timeframe), 1, read=50)
    return times[-1] if times else None


def publish_bars(
    client: Any,
    bars: Sequence[Bar],
    *,
    names: RedisNames | None = None,
    maxlen: int | None = None,
    retry_for_s: float = 60.0,
) -> int:
    """Append ``bars`` to their streams and publish them on the market-data channel,
    in one transaction; a Redis outage is retried with backoff for ``retry_for_s``."""
    if not bars:
        return 0
    names = names or redis_names()
    if maxlen is None:
        from botlib.settings import get_settings

        maxlen = get_settings().redis_stream_maxlen
    deadline, backoff = time.monotonic() + retry_for_s, 0.05
    while True:
        try:
            pipe = client.pipeline(transaction=True)
            streams = []
            for bar in bars:
                payload = encode_bar(bar)
                stream = names.bar_stream(bar.exchange, bar.symbol, bar.timeframe)
                pipe.xadd(stream, {"data": payload})
                pipe.publish(names.market_data_channel, payload)
                if stream not in streams:
                    streams.append(stream)
            pipe.execute()
            break
        except _RETRYABLE as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("redis unavailable (%s); retrying in %.2f s", exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
    # bounded, but never past bars the signal loop has not read yet. Not inside the
    # transaction: a Redis restarted between loading the script and the transaction's
    # retry would fail it after its XADDs had run (no rollback), and a retry would
    # publish the bars twice; a trim missed here is done by the next publish. Every
    # stream in one round trip
    try:
        trim_read_many(client, streams, maxlen)
    except _RETRYABLE as exc:
        log.warning("streams %s not trimmed this time (%s)", ", ".join(streams), exc)
    return len(bars)


class FeedHealth:
    """A live feed's counters in the hash ``botlib:feed:stats`` (fields
    ``{feed}|bars``, ``|last_bar``, ``|heartbeat``, ``|interval_s``, ``|errors``,
    ``|last_error``), read by ``botlib status``. Never raises: health reporting must not
    stop a feed."""

    def __init__(self, client: Any, names: RedisNames | None, feed: str, interval_s: float):
        self.client, self.names, self.feed = client, names or redis_names(), feed
        self.interval_s = interval_s
        self._next_beat = 0.0

    def _write(self, incr: dict[FeedCounter, int], values: dict[FeedCounter, Any]) -> None:
        key = self.names.feed_stats
        with contextlib.suppress(redis.RedisError):
            pipe = self.client.pipeline(transaction=False)
            for name, n in incr.items():
                pipe.hincrby(key, feed_field(self.feed, name), n)
            values = {
                FeedCounter.heartbeat: repr(time.time()),
                FeedCounter.interval_s: self.interval_s,
                **values,
            }
            pipe.hset(key, mapping={feed_field(self.feed, k): str(v) for k, v in values.items()})
            pipe.execute()

    def beat(self) -> None:
        """At most once a second: the feed is alive."""
        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + 1.0
            self._write({}, {})

    def published(self, bars: Sequence[Bar]) -> None:
        if bars:
            self._write({FeedCounter.bars: len(bars)}, {FeedCounter.last_bar: bars[-1].ts})

    def error(self, message: str) -> None:
        self._write(
            {FeedCounter.errors: 1},
            {FeedCounter.last_error: message[:500], FeedCounter.last_error_at: time.time()},
        )


def replay(
    client: Any,
    candles: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    speed: float = 0.0,
    chunk: int = 100,
    names: RedisNames | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Publish ``candles`` bar by bar. ``speed`` is a multiple of real time (3600 with
    hourly bars = one bar a second); 0 publishes as fast as Redis takes them, in
    transactions of ``chunk`` bars. Returns the number of bars published."""
    bars = bars_from_candles(candles, exchange=exchange, symbol=symbol, timeframe=timeframe)
    pause = timeframe_seconds(timeframe) / speed if speed > 0 else 0.0
    step = 1 if pause else max(1, chunk)
    done = 0
    next_at = time.monotonic()
    for i in range(0, len(bars), step):
        if stop is not None and stop():
            break
        if pause:
            next_at += pause
            time.sleep(max(0.0, next_at - time.monotonic()))
        done += publish_bars(client, bars[i : i + step], names=names)
        if progress is not None:
            progress(done, len(bars))
    return done


def _closed(rows: Iterable[Sequence[float]], bar_ms: int, now_ms: int) -> list[list[float]]:
    return [list(r) for r in rows if int(r[0]) + bar_ms <= now_ms]


def poll_ccxt(
    client: Any,
    symbol: str,
    timeframe: str,
    *,
    exchange: str | Any | None = None,
    poll_s: float = 10.0,
    lookback: int = 500,
    names: RedisNames | None = None,
    stop: Callable[[], bool] | None = None,
    max_polls: int | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Poll ``fetch_ohlcv`` every ``poll_s`` and publish each newly closed candle once.
    Starts after the newest bar on the stream (or ``lookback`` bars back). Network
    errors are logged and retried at the next poll. Returns bars published."""
    from botlib.data._fetch import make_exchange
    from botlib.settings import get_settings

    ex = exchange if exchange is not None and not isinstance(exchange, str) else None
    if ex is None:
        ex = make_exchange(str(exchange or get_settings().exchange_id))
    ex_id = str(ex.id)
    bar_ms = timeframe_seconds(timeframe) * 1000
    last = last_published(client, ex_id, symbol, timeframe, names)
    health = FeedHealth(client, names, f"ccxt {ex_id} {symbol} {timeframe}", max(poll_s, 1.0))
    published = polls = 0
    while not (stop is not None and stop()):
        health.beat()
        now_ms = int(clock() * 1000)
        since = last + bar_ms if last is not None else (now_ms // bar_ms - lookback) * bar_ms
        try:
            rows = ex.fetch_ohlcv(symbol, timeframe, since=since, limit=1000)
        except Exception as exc:  # ccxt NetworkError / ExchangeError: try again next poll
            log.warning("%s %s %s: fetch failed (%s)", ex_id, symbol, timeframe, exc)
            health.error(f"fetch failed: {type(exc).__name__}: {exc}")
            rows = []
        fresh = [r for r in _closed(rows, bar_ms, now_ms) if last is None or int(r[0]) > last]
        if fresh:
            frame = pd.DataFrame(
                [r[1:6] for r in fresh],
                index=pd.to_datetime([int(r[0]) for r in fresh], unit="ms", utc=True),
                columns=["open", "high", "low", "close", "volume"],
                dtype="float64",
            )
            bars = bars_from_candles(frame, exchange=ex_id, symbol=symbol, timeframe=timeframe)
            published += publish_bars(client, bars, names=names)
            health.published(bars)
            last = bars[-1].ts
            if len(rows) >= 1000:
                continue  # more closed candles are waiting: page on at once
        polls += 1
        if max_polls is not None and polls >= max_polls:
            break
        time.sleep(poll_s)
    return published
