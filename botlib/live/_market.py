"""Per-market state of the signal loop — a bounded window of recent closed candles —
and the checks a bar passes before it enters it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from botlib.data import OHLCV_COLUMNS
from botlib.transport import Bar, BarError, decode_bar

__all__ = ["EARLIEST_MS", "Market", "check_bars", "frame", "plausible", "seed_window"]

log = logging.getLogger("botlib.serve")


@dataclass
class Market:
    """One bar stream: ``exchange`` ``symbol`` ``timeframe``, its last processed bar and
    at most ``capacity`` recent candles (times in epoch ms, OHLCV as float64)."""

    stream: str
    exchange: str
    symbol: str
    timeframe: str
    bar_ms: int
    capacity: int
    times: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="int64"))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), dtype="float64"))
    last_ts: int | None = None
    bootstrapped: bool = False
    #: open time of the oldest bar of the first window ever seeded (kept in Redis): a
    #: process that takes the market over rebuilds the same window from it
    window_from: int | None = None

    def extended(self, bars: list[Bar]) -> tuple[np.ndarray, np.ndarray]:
        """Times and values with ``bars`` appended (nothing is changed until
        ``commit``): the whole window stays in front of them, so even the first bar of a
        large batch has its full history."""
        times = np.concatenate([self.times, np.array([b.ts for b in bars], dtype="int64")])
        new = np.array([[b.open, b.high, b.low, b.close, b.volume] for b in bars], "float64")
        values = np.concatenate([self.values, new.reshape(-1, 5)])
        return times, values

    def commit(self, times: np.ndarray, values: np.ndarray) -> None:
        """Keep the newest ``capacity`` rows of ``times`` / ``values``."""
        self.times, self.values = times[-self.capacity :], values[-self.capacity :]
        if len(times):
            self.last_ts = int(times[-1])

    def seed(self, times: np.ndarray, values: np.ndarray) -> None:
        """History from before the first bar the loop processes (warm-up)."""
        self.times, self.values = times[-self.capacity :], values[-self.capacity :]
        self.bootstrapped = True


def frame(times: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """A candle frame (UTC bar open times) over the given arrays."""
    ns = times.astype("datetime64[ms]").astype("datetime64[ns]")
    index = pd.DatetimeIndex(ns, tz="UTC", name="timestamp")
    return pd.DataFrame(values, index=index, columns=list(OHLCV_COLUMNS))


#: 2009-01-01 UTC in epoch ms: no crypto market has a candle before it
EARLIEST_MS = 1_230_768_000_000

#: a bar set aside: (stream entry id, its fields, why)
Rejected = tuple[str, Any, str]


def off_grid(ts: int, bar_ms: int) -> bool:
    """Whether an open time is off its timeframe's grid (checked up to daily bars)."""
    return bool(bar_ms <= 86_400_000 and ts % bar_ms)


def price_jump(bar: Bar, previous: float) -> float:
    """The largest factor between any of the bar's prices and ``previous``."""
    return max(max(p / previous, previous / p) for p in (bar.open, bar.high, bar.low, bar.close))


def check_bars(
    market: Market, items: list[Any], *, clock_skew_s: float, now_s: float | None = None
) -> tuple[list[tuple[str, Bar]], list[Rejected]]:
    """Split stream entries into usable bars and rejects with their reasons: not a bar,
    another market's bar, before 2009, not closed yet (beyond ``clock_skew_s``), off
    the timeframe's grid, a repeat or out of order (open times strictly increase)."""
    good: list[tuple[str, Bar]] = []
    rejected: list[Rejected] = []
    last = market.last_ts
    closed_by = int(((time.time() if now_s is None else now_s) + clock_skew_s) * 1000)
    for entry_id, fields in items:
        try:
            bar = decode_bar(fields or {})
        except BarError as exc:
            rejected.append((entry_id, fields, exc.reason))
            continue
        where = (bar.exchange, bar.symbol, bar.timeframe)
        if where != (market.exchange, market.symbol, market.timeframe):
            why = f"bar for {'/'.join(where)} on stream {market.stream}"
        elif bar.ts < EARLIEST_MS:
            why = f"ts {bar.ts} ({bar.time.isoformat()}) is before 2009: not a real candle"
        elif bar.ts + market.bar_ms > closed_by:
            why = (
                f"ts {bar.ts} ({bar.time.isoformat()}): this {market.timeframe} bar cannot "
                f"have closed yet (clock skew allowed: {clock_skew_s:g} s)"
            )
        elif off_grid(bar.ts, market.bar_ms):
            why = f"ts {bar.ts} is not on a {market.timeframe} boundary"
        elif last is not None and bar.ts == last:
            why = f"duplicate bar: ts {bar.ts} was already processed"
        elif last is not None and bar.ts < last:
            why = f"out of order: ts {bar.ts} is before the last bar {last}"
        else:
            good.append((entry_id, bar))
            last = bar.ts
            continue
        rejected.append((entry_id, fields, why))
    return good, rejected


def plausible(
    market: Market, good: list[tuple[str, Bar]], *, max_jump: float
) -> tuple[list[tuple[str, Bar]], list[Rejected]]:
    """Bars whose every price is within ``max_jump`` times the previous close (the
    window's last, then the last kept bar); the others rejected with the figures."""
    previous = float(market.values[-1, 3]) if len(market.values) else None
    kept: list[tuple[str, Bar]] = []
    rejected: list[Rejected] = []
    for entry_id, bar in good:
        if previous is not None:
            worst = price_jump(bar, previous)
            if worst > max_jump:
                why = (
                    f"price jump: o={bar.open} h={bar.high} l={bar.low} c={bar.close} is "
                    f"{worst:.1f}x the previous close {previous} (at most {max_jump:g}x)"
                )
                rejected.append((entry_id, bar.to_dict(), why))
                continue
        kept.append((entry_id, bar))
        previous = bar.close
    return kept, rejected


def seed_window(r: Any, market: Market, need: int, first_id: str, first_ts: int) -> int:
    """Seed ``market``'s window with the history before its first new bar (stream
    entry ``first_id``, open time ``first_ts``), from the stream, then the data store.

    A market served for the first time gets what the models need (``need`` bars) and
    remembers where that window starts (``window_from``); one served before — after a
    restart or a takeover — gets the same window the earlier process held, from that
    start, as a backtest of the same span does. Returns the bars seeded."""
    from botlib.live.feeds import stream_history

    count = need
    if market.window_from is not None and first_ts > market.window_from:
        held = (first_ts - market.window_from) // market.bar_ms
        count = max(need, min(market.capacity, int(held)))
    times, values = stream_history(
        r, market.stream, count, before_id=f"({first_id}", before_ts=first_ts,
        read=count + 50, bar_ms=market.bar_ms,
    )  # fmt: skip
    missing = count - len(times)
    if missing > 0:
        from botlib.data import load_ohlcv
        from botlib.errors import BotlibError

        end = pd.Timestamp(times[0] if times else first_ts, unit="ms", tz="UTC")
        try:
            stored = load_ohlcv(market.symbol, market.timeframe, end=end)
            stored = stored.loc[stored.index < end].iloc[-missing:]
            t = pd.DatetimeIndex(stored.index).as_unit("ms").asi8.astype("int64")
            times = [*t.tolist(), *times]
            values = [*stored.to_numpy("float64").tolist(), *values]
        except BotlibError as exc:
            log.warning("%s: no stored history before %s (%s)", market.stream, end, exc)
    market.seed(np.array(times, dtype="int64"), np.array(values, "float64").reshape(-1, 5))
    if market.window_from is None and times:
        market.window_from = int(times[0])
    return len(times)
