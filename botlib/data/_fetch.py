"""Downloading candles through ccxt into the parquet cache.

Paging is done here, with ``since``, until ``end`` (ccxt's own ``paginate`` option
silently ignores an old ``since``). Transient failures (``ccxt.NetworkError``: timeouts,
HTTP 429, refused connections) are retried with exponential backoff; the exchange's
rate limit is honoured by ccxt's throttle. Each page is merged into the cache as soon
as it arrives, with an atomic rename: a failure mid-download leaves a consistent cache
and the next call resumes from the last stored candle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from difflib import get_close_matches
from typing import Any, TypeVar

import ccxt
import pandas as pd

from botlib.data._load import _slice, to_utc
from botlib.data._store import cache_path, check_symbol, read_cache, write_cache
from botlib.data._timeframe import timeframe_seconds
from botlib.data._validate import OHLCV_COLUMNS, validate_ohlcv
from botlib.errors import ConfigError, DataError, FetchError
from botlib.settings import Settings, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
ProgressFn = Callable[[int, int], None]


def make_exchange(
    exchange_id: str, settings: Settings | None = None, *, private: bool = False
) -> Any:
    """A ccxt exchange with rate limiting on. The configured API keys are handed over
    only with ``private`` (an account call); candles are public, so botlib's own
    fetches and feeds never hold them — a leaked client object leaks no key."""
    settings = settings or get_settings()
    if exchange_id not in ccxt.exchanges:
        hint = get_close_matches(exchange_id, ccxt.exchanges, n=1)
        raise ConfigError(
            f"unknown exchange {exchange_id!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        )
    config: dict[str, Any] = {"enableRateLimit": True}
    if settings.exchange_options:
        config["options"] = dict(settings.exchange_options)
    if private and settings.exchange_api_key is not None:
        config["apiKey"] = settings.exchange_api_key.get_secret_value()
    if private and settings.exchange_api_secret is not None:
        config["secret"] = settings.exchange_api_secret.get_secret_value()
    exchange = getattr(ccxt, exchange_id)(config)
    if settings.exchange_urls:
        api = exchange.urls.get("api")
        if isinstance(api, dict):
            api.update(settings.exchange_urls)
        else:
            exchange.urls["api"] = settings.exchange_urls.get("public", api)
    return exchange


def _with_retries(call: Callable[[], T], *, what: str, retries: int, backoff: float) -> T:
    for attempt in range(retries + 1):
        try:
            return call()
        except ccxt.NetworkError as exc:
            if attempt == retries:
                raise FetchError(
                    f"{what} failed after {retries + 1} attempt(s): {type(exc).__name__}: {exc}"
                ) from exc
            delay = min(backoff * 2**attempt, 30.0)
            log.warning(
                "%s: %s (%s); retry %d/%d in %.2fs",
                what,
                type(exc).__name__,
                str(exc)[:120],
                attempt + 1,
                retries,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _rows_to_frame(rows: list[list[Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        [r[:6] for r in rows], columns=["timestamp", *OHLCV_COLUMNS], dtype="float64"
    )
    index = pd.DatetimeIndex(
        pd.to_datetime(frame.pop("timestamp").astype("int64"), unit="ms", utc=True),
        name="timestamp",
    )
    frame.index = index
    return frame


def fetch_ohlcv(
    exchange: str | Any,
    symbol: str,
    timeframe: str,
    start: Any,
    end: Any = None,
    *,
    settings: Settings | None = None,
    page_limit: int = 1000,
    retries: int = 5,
    backoff: float = 1.0,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Download ``symbol`` candles ``start <= t < end`` (``end`` defaults to now) into the
    cache and return them validated.

    ``exchange`` is a ccxt id (``"binance"``) or a configured ccxt exchange instance.
    Only the bars the cache lacks are requested: a second call fetches just the
    missing head or tail. The still-open last candle is never stored.
    ``progress(done_ms, total_ms)`` is called after each page.
    """
    settings = settings or get_settings()
    ex = make_exchange(exchange, settings) if isinstance(exchange, str) else exchange
    symbol = check_symbol(symbol)
    step_ms = timeframe_seconds(timeframe) * 1000
    start_ms = int(to_utc(start).value // 1_000_000)
    now_ms = int(ex.milliseconds())
    end_ms = int(to_utc(end).value // 1_000_000) if end is not None else now_ms
    if end_ms <= start_ms:
        raise DataError("bad-window", f"end {to_utc(end_ms)} is not after start {to_utc(start_ms)}")

    _with_retries(ex.load_markets, what=f"{ex.id} load_markets", retries=retries, backoff=backoff)
    if symbol not in ex.markets:
        hint = get_close_matches(symbol, list(ex.markets), n=1)
        raise DataError(
            "unknown-symbol",
            f"{ex.id} has no market {symbol!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""),
        )
    if getattr(ex, "timeframes", None) and timeframe not in ex.timeframes:
        raise DataError(
            "unknown-timeframe",
            f"{ex.id} does not serve timeframe {timeframe!r}; it serves {sorted(ex.timeframes)}",
        )

    path = cache_path(settings.data_dir, ex.id, symbol, timeframe)
    cached = read_cache(path)
    windows: list[tuple[int, int]] = []
    if cached is None or cached.empty:
        windows.append((start_ms, end_ms))
    else:
        first_ms = int(cached.index[0].value // 1_000_000)
        last_ms = int(cached.index[-1].value // 1_000_000)
        if start_ms < first_ms:
            windows.append((start_ms, min(first_ms, end_ms)))
        if last_ms + step_ms < end_ms:
            windows.append((max(last_ms + step_ms, start_ms), end_ms))
    total = sum(b - a for a, b in windows)
    done = 0
    for lo, hi in windows:
        since = lo
        while since < hi:

            def page(since: int = since) -> list[list[Any]]:
                return list(ex.fetch_ohlcv(symbol, timeframe, since=since, limit=page_limit))

            rows = _with_retries(
                page,
                what=f"{ex.id} fetch_ohlcv {symbol} {timeframe}",
                retries=retries,
                backoff=backoff,
            )
            # keep bars inside the window that have closed (open + one bar <= now)
            kept = [r for r in rows if since <= r[0] < hi and r[0] + step_ms <= now_ms]
            if not kept:
                break
            cached = _merge(cached, _rows_to_frame(kept), timeframe)
            write_cache(path, cached)
            newest = int(max(r[0] for r in kept))
            done += newest + step_ms - since
            since = newest + step_ms
            if progress is not None:
                progress(min(done, total), total)
    if cached is None:
        raise DataError(
            "no-data", f"{ex.id} returned no {symbol} {timeframe} candles in the window"
        )
    window = _slice(cached, to_utc(start_ms), to_utc(end_ms))
    frame, _ = validate_ohlcv(window, timeframe)
    return frame


def _merge(cached: pd.DataFrame | None, new: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Union of cache and a new page; a re-sent candle replaces the cached one."""
    combined = new if cached is None else pd.concat([cached, new])
    combined = combined[~combined.index.duplicated(keep="last")].sort_index()
    frame, _ = validate_ohlcv(combined, timeframe)
    return frame
