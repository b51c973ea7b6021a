"""Paper accounts: every served model's signals traded on paper, beside its shadow
backtest (issue 18 §2).

``botlib paper`` reads the records the loop wrote to ``botlib:signals`` — what the
backend receives, so a signal lost between the loop and the backend shows — and, per
model version and market, trades their targets on the bars of the market's stream with
the backtest's conventions, through the backtests' own compiled book
(``botlib.backtest.kernel.simulate_from``, continued bar after bar). Each account's
book, its bars and its equity are kept in Redis and written in one transaction with
the position it has read the signal stream to, so a killed process continues where
the last write ended, never twice. A new promotion of a version starts its account
afresh; nothing else resets it.

Beside it runs the **shadow backtest**: every ``shadow_every`` bars (and when the signal
stream is idle) the model's own backtest over the same bars — its features from the
bar the loop started the model's state at (``origin|{model_id}|{stream}`` in
``botlib:loop:state``), its signal frame, the same book. Paper and shadow must agree
(targets, stops, equity, to ``tolerance`` relative); a bar where they do not is a
**parity break**, counted, reported with the first bar and why, and alerted once on
``botlib:alerts`` / ``python:model_alert``. A bar on the stream without its signal is a
break at that bar (the account keeps its target there, as a backtest keeps a target
between signals).

Keys (``RedisNames``): ``botlib:paper`` (account JSON per ``{model_id}|{stream}``),
``botlib:paper:curve:{account}`` (one JSON row per bar: time, OHLCV, target, stop,
take, equity, units, missing), ``botlib:paper:fills`` (stream), ``botlib:paper:stats``
and ``botlib:paper:cursor``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from botlib.data import timeframe_seconds
from botlib.live._market import Market, frame, seed_window
from botlib.transport import BarError, RedisNames, connect, decode_bar, dumps, redis_names
from botlib.transport.stats import PaperCounter

__all__ = ["Account", "PaperBook", "PaperConfig"]

log = logging.getLogger("botlib.paper")

_RETRYABLE: tuple[type[BaseException], ...]
try:  # redis' connection errors: a restart of Redis is waited out, never fatal
    import redis as _redis

    _RETRYABLE = (_redis.ConnectionError, _redis.TimeoutError)
except ImportError:  # pragma: no cover
    _RETRYABLE = ()


#: why an account's shadow backtest stops: it starts from the account's first bar
_TRIMMED = (
    "the curve keeps only its newest bars and the shadow backtest needs every bar since "
    "the account's first: not checked (a new promotion starts a new account)"
)


@dataclass(frozen=True)
class PaperConfig:
    """Settings of the paper accounts; ``cash`` / ``fee`` / ``slippage`` default to the
    backtests' (settings ``initial_cash``, ``fee``, ``slippage``)."""

    cash: float | None = None
    fee: float | None = None
    slippage: float | None = None
    #: signal records read per step
    batch: int = 500
    block_ms: int = 200
    #: bars between two shadow backtests of an account (also run when idle)
    shadow_every: int = 24
    #: relative tolerance of the parity check (targets, stops, equity)
    tolerance: float = 1e-9
    #: bars with a price this factor from the last close are skipped, as the loop does
    max_price_jump: float = 10.0
    #: most bars kept per account's curve in Redis
    max_curve: int = 200_000
    #: the accounts' ``live`` runs in MLflow (``botlib.live.live_runs``): updated at
    #: most every ``live_every_s`` seconds (and when the signal stream goes idle)
    live_runs: bool = True
    live_every_s: float = 300.0

    def __post_init__(self) -> None:
        from botlib.errors import ConfigError

        if self.batch < 1 or self.shadow_every < 1 or not 0 <= self.block_ms <= 2000:
            raise ConfigError("need batch >= 1, shadow_every >= 1 and 0 <= block_ms <= 2000")
        if not self.tolerance > 0:
            raise ConfigError(f"tolerance must be > 0, got {self.tolerance}")


@dataclass
class Account:
    """One model version's paper book on one market (JSON in ``botlib:paper``)."""

    key: str
    model_id: str
    model_name: str
    version: str
    stream: str
    exchange: str
    market: str
    timeframe: str
    symbol: str
    bar_ms: int
    promoted_at: float | None
    cash0: float
    first_ts: int
    #: the position the loop's builder held before the first bar (a version that
    #: inherited its name's position): where the shadow backtest's builder starts
    start_position: float = 0.0
    #: the stream entry of the first bar (where the shadow's history ends)
    first_bar_id: str | None = None
    #: the last bar applied, and its stream entry (where the next bars are read from)
    last_ts: int | None = None
    bar_id: str | None = None
    last_close: float | None = None
    #: the compiled book's state (``kernel.simulate_from``)
    book: list[float] = field(default_factory=list)
    equity: float = 0.0
    units: float = 0.0
    peak: float = 0.0
    max_drawdown: float = 0.0
    fills: int = 0
    bars: int = 0
    missing: int = 0
    first_missing: int | None = None
    #: bars since the last shadow backtest
    shadow_due: int = 0
    #: the shadow backtest's last verdict (see ``PaperBook._shadow``)
    parity: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0
    #: the MLflow run ``live`` of this account (``botlib.live.live_runs``)
    live_run: str | None = None
    #: figures not yet in the live run (an update was not due)
    live_pending: bool = False

    @property
    def total_return(self) -> float:
        return self.equity / self.cash0 - 1.0 if self.cash0 else float("nan")


def _iso(ts: int | None) -> str | None:
    return None if ts is None else pd.Timestamp(ts, unit="ms", tz="UTC").isoformat()


def _num(value: Any) -> float:
    """A record's number (None / missing -> NaN)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _close(a: float, b: float, tol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(abs(a), abs(b), 1e-12)


class PaperBook:
    """The paper accounts. ``run()`` until ``stop()``; ``step()`` reads and applies one
    batch of signal records."""

    def __init__(
        self,
        client: Any = None,
        *,
        config: PaperConfig | None = None,
        names: RedisNames | None = None,
    ) -> None:
        from botlib.runtime import RuntimeConfigWatcher
        from botlib.settings import get_settings

        settings = get_settings()
        self.config = config or PaperConfig()
        self.cash = float(self.config.cash if self.config.cash is not None
                          else settings.initial_cash)  # fmt: skip
        self.fee = float(self.config.fee if self.config.fee is not None else settings.fee)
        self.slippage = float(self.config.slippage if self.config.slippage is not None
                              else settings.slippage)  # fmt: skip
        self.r: Any = client if client is not None else connect(role="paper")
        self.names = names or redis_names()
        self.maxlen = settings.redis_stream_maxlen
        self.runtime = RuntimeConfigWatcher(self.r, self.names, "paper")
        self.accounts: dict[str, Account] = {}
        self._loaded = False
        self._cursor: str | None = None
        self._active: dict[str, dict[str, Any]] = {}  # model_id -> active entry
        self._revision: str | None = "-"
        self._models: dict[str, Any] = {}  # name:version -> loaded model (shadows)
        self._fresh: set[str] = set()  # accounts created this step: curves start empty
        #: (account, origin, first bar) -> the bars before the account's first (shadows)
        self._history: dict[tuple[str, int, int], pd.DataFrame] = {}
        self._next_poll = 0.0
        self._stop = threading.Event()
        self.live = None
        if self.config.live_runs:
            from botlib.live.live_runs import LiveRuns

            self.live = LiveRuns(every_s=self.config.live_every_s)
        self.applied = 0  # signal records applied by this process
        self.on_step: Callable[[int], None] | None = None

    # -- state ------------------------------------------------------------------
    def _load(self) -> None:
        if self._loaded:
            return
        self._cursor = self.r.get(self.names.paper_cursor) or "0-0"
        for key, raw in self.r.hgetall(self.names.paper).items():
            try:
                self.accounts[key] = Account(**json.loads(raw))
            except (ValueError, TypeError) as exc:
                log.warning("paper account %s unreadable (%s): started afresh", key, exc)
        self._loaded = True

    def _poll(self) -> None:
        now = time.monotonic()
        if now < self._next_poll:
            return
        self._next_poll = now + 0.5
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.names.active_revision)
        pipe.get(self.names.runtime_config)
        pipe.hset(self.names.paper_stats, PaperCounter.heartbeat, repr(time.time()))
        revision, config_text, _ = pipe.execute()
        self.runtime.poll(config_text)
        if revision != self._revision:
            from botlib.transport import active_models

            self._revision = revision
            self._active = {}
            for name, entry in active_models(self.r, self.names).items():
                model_id = str(entry.get("model_id") or f"{name}:{entry.get('version')}")
                self._active[model_id] = entry

    # -- reading --------------------------------------------------------------------
    def _first_bar_id(self, stream: str, ts: int) -> str | None:
        """The stream entry of the first valid bar at open time ``ts`` (searched from
        the newest back)."""
        found, upper = None, "+"
        while True:
            page = self.r.xrevrange(stream, max=upper, count=500)
            if not page:
                return found
            for entry_id, fields in page:
                try:
                    bar = decode_bar(fields)
                except BarError:
                    continue
                if bar.ts == ts:
                    found = entry_id
                elif bar.ts < ts:
                    return found
            upper = f"({page[-1][0]}"

    def _bars_until(self, acc: Account, ts: int) -> list[tuple[str, list[float], int]]:
        """The stream's valid bars after the account's last one, up to open time ``ts``:
        (entry id, OHLCV, open time). Skipped as the loop skips them: records that are
        not bars, repeat or go back in time, lie off the grid or jump in price."""
        out: list[tuple[str, list[float], int]] = []
        after, last_ts, last_close = acc.bar_id, acc.last_ts, acc.last_close
        while True:
            page = self.r.xrange(acc.stream, min=f"({after}", count=500)
            if not page:
                return out
            for entry_id, fields in page:
                after = entry_id
                try:
                    bar = decode_bar(fields)
                except BarError:
                    continue
                if last_ts is not None and bar.ts <= last_ts:
                    continue
                if bar.ts % acc.bar_ms:
                    continue
                if last_close and max(bar.high / last_close, last_close / max(bar.low, 1e-300)) \
                        > self.config.max_price_jump:  # fmt: skip
                    continue
                if bar.ts > ts:
                    return out
                row = [bar.open, bar.high, bar.low, bar.close, bar.volume]
                out.append((entry_id, row, bar.ts))
                last_ts, last_close = bar.ts, bar.close
                if bar.ts == ts:
                    return out

    # -- applying signals ------------------------------------------------------------
    def _account(self, record: dict[str, Any], ts: int) -> Account | None:
        meta = record.get("metadata") or {}
        exchange, market = meta.get("exchange"), meta.get("market")
        timeframe = meta.get("timeframe")
        if not (exchange and market and timeframe):
            raise ValueError("signal without metadata.exchange / market / timeframe")
        model_id = str(record["model_id"])
        stream = self.names.bar_stream(str(exchange), str(market), str(timeframe))
        key = f"{model_id}|{stream}"
        entry = self._active.get(model_id)
        promoted_at = _num(entry.get("promoted_at")) if entry else float("nan")
        acc = self.accounts.get(key)
        if (
            acc is not None
            and entry is not None
            and not math.isnan(promoted_at)
            and (acc.promoted_at is None or promoted_at > acc.promoted_at)
            and ts > (acc.last_ts or 0)
        ):
            log.info("%s promoted again: its paper account starts afresh", model_id)
            acc = None  # a new promotion: a new account
        if acc is not None:
            return acc
        bar_ms = timeframe_seconds(str(timeframe)) * 1000
        first_id = self._first_bar_id(stream, ts)
        if first_id is None:
            raise ValueError(f"bar {_iso(ts)} of {stream} is not on the stream (trimmed?)")
        from botlib.backtest.kernel import fresh_state

        acc = Account(
            key=key, model_id=model_id,
            model_name=str(meta.get("model_name") or model_id.split(":")[0]),
            version=str(meta.get("model_version") or ""), stream=stream,
            exchange=str(exchange), market=str(market), timeframe=str(timeframe),
            symbol=str(record.get("symbol") or market), bar_ms=bar_ms,
            promoted_at=None if math.isnan(promoted_at) else promoted_at,
            cash0=self.cash, first_ts=ts, last_ts=ts - bar_ms,
            start_position=_num(meta.get("position_before") or 0.0),
            first_bar_id=first_id, bar_id=self._before(stream, first_id),
            book=fresh_state(self.cash).tolist(),
            equity=self.cash, peak=self.cash,
        )  # fmt: skip
        self.accounts[key] = acc
        self._fresh.add(key)  # its curve starts empty (a reset drops the last account's)
        return acc

    def _before(self, stream: str, entry_id: str) -> str:
        """The id just before ``entry_id`` (an exclusive lower bound that includes it)."""
        ms, _, seq = entry_id.partition("-")
        if int(seq or 0) > 0:
            return f"{ms}-{int(seq) - 1}"
        return f"{int(ms) - 1}-18446744073709551615" if int(ms) > 0 else "0-0"

    def _apply(
        self, acc: Account, signals: list[tuple[int, float, float, float]], writes: list[Any]
    ) -> None:
        """Advance ``acc`` over the bars up to its last new signal; ``signals`` are (bar
        open time, target, stop, take) in order."""
        from botlib.backtest.kernel import REASONS, simulate_from

        wanted = {ts: (tgt, sl, tp) for ts, tgt, sl, tp in signals if ts > (acc.last_ts or 0)}
        if not wanted:
            return
        bars = self._bars_until(acc, max(wanted))
        if not bars or bars[-1][2] != max(wanted):
            raise ValueError(
                f"{acc.stream}: the bar of the signal at {_iso(max(wanted))} is not on the "
                "stream after the account's last bar"
            )
        n = len(bars)
        ohlcv = np.array([row for _, row, _ in bars], dtype="float64")
        times = [ts for _, _, ts in bars]
        book = np.array(acc.book, dtype="float64")
        prev = float(book[6])
        target, sl, tp = np.empty(n), np.full(n, np.nan), np.full(n, np.nan)
        missing = np.zeros(n, dtype=bool)
        for i, ts in enumerate(times):
            got = wanted.get(ts)
            if got is None:  # a bar on the stream without its signal: the target is kept
                missing[i] = True
                target[i] = prev
                continue
            tgt, sl[i], tp[i] = got
            target[i] = prev = prev if math.isnan(tgt) else tgt
        equity, units, fbar, fsize, fprice, fcomm, freason, state = simulate_from(
            np.ascontiguousarray(ohlcv[:, 0]), np.ascontiguousarray(ohlcv[:, 1]),
            np.ascontiguousarray(ohlcv[:, 2]), np.ascontiguousarray(ohlcv[:, 3]),
            target, sl, tp, book, self.fee, self.slippage,
        )  # fmt: skip
        rows = []
        for i, ts in enumerate(times):
            rows.append(json.dumps([ts, *ohlcv[i].tolist(), float(target[i]), _opt(sl[i]),
                                    _opt(tp[i]), float(equity[i]), float(units[i]),
                                    int(missing[i])]))  # fmt: skip
            acc.peak = max(acc.peak, float(equity[i]))
            if acc.peak > 0:
                acc.max_drawdown = max(acc.max_drawdown, 1.0 - float(equity[i]) / acc.peak)
        curve = self.names.paper_curve_key(acc.key)
        writes.append(("rpush", curve, rows))
        for j in range(len(fbar)):
            fill = {
                "account": acc.key, "model_id": acc.model_id, "market": acc.market,
                "exchange": acc.exchange, "timeframe": acc.timeframe,
                "bar_time": _iso(times[int(fbar[j])]), "size": float(fsize[j]),
                "price": float(fprice[j]), "commission": float(fcomm[j]),
                "reason": REASONS[int(freason[j])],
            }  # fmt: skip
            writes.append(("fill", dumps(fill)))
        if missing.any():
            first = times[int(np.flatnonzero(missing)[0])]
            if acc.first_missing is None:
                acc.first_missing = first
                self._alert(acc, first, "signal missing: a bar on the stream has no signal "
                            "in botlib:signals", writes)  # fmt: skip
            log.warning("%s: %d bar(s) without a signal, the first at %s", acc.key,
                        int(missing.sum()), _iso(first))  # fmt: skip
        acc.book = state.tolist()
        acc.last_ts, acc.bar_id, acc.last_close = times[-1], bars[-1][0], float(ohlcv[-1, 3])
        acc.equity, acc.units = float(equity[-1]), float(units[-1])
        acc.fills += len(fbar)
        acc.bars += n
        acc.missing += int(missing.sum())
        acc.shadow_due += n
        acc.updated_at = time.time()
        writes.append(("stat", PaperCounter.bars, n))
        writes.append(("stat", PaperCounter.fills, len(fbar)))
        writes.append(("stat", PaperCounter.missing, int(missing.sum())))

    def _alert(self, acc: Account, ts: int, why: str, writes: list[Any]) -> None:
        alert = {
            "type": "parity_break", "at": time.time(), "model_id": acc.model_id,
            "market": acc.market, "exchange": acc.exchange, "timeframe": acc.timeframe,
            "account": acc.key, "bar_time": _iso(ts), "why": why,
        }  # fmt: skip
        writes.append(("alert", dumps(alert)))
        writes.append(("stat", PaperCounter.parity_breaks, 1))

    def _commit(self, writes: list[Any], touched: set[str], cursor: str | None) -> None:
        pipe = self.r.pipeline(transaction=True)
        for item in writes:
            kind = item[0]
            if kind == "del":
                pipe.delete(item[1])
            elif kind == "rpush":
                pipe.rpush(item[1], *item[2])
                pipe.ltrim(item[1], -self.config.max_curve, -1)
            elif kind == "fill":
                pipe.xadd(self.names.paper_fills, {"data": item[1]}, maxlen=self.maxlen,
                          approximate=True)  # fmt: skip
            elif kind == "alert":
                pipe.xadd(self.names.alerts, {"data": item[1]}, maxlen=self.maxlen,
                          approximate=True)  # fmt: skip
                pipe.publish(self.names.model_alert_channel, item[1])
            elif kind == "stat":
                if item[2]:
                    pipe.hincrby(self.names.paper_stats, item[1], item[2])
            elif kind == "error":
                pipe.hincrby(self.names.paper_stats, PaperCounter.errors, 1)
                pipe.hset(self.names.paper_stats, mapping={
                    PaperCounter.last_error: item[1], PaperCounter.last_error_at: repr(time.time())
                })  # fmt: skip
        for key in touched:
            pipe.hset(self.names.paper, key, json.dumps(asdict(self.accounts[key])))
        if cursor is not None:
            pipe.set(self.names.paper_cursor, cursor)
        pipe.execute()

    def step(self) -> int:
        """Read one batch of signal records and apply them; returns how many."""
        self._load()
        self._poll()
        got = self.r.xread({self.names.signals: self._cursor or "0-0"},
                           count=self.config.batch, block=self.config.block_ms or None)  # fmt: skip
        entries = got[0][1] if got else []
        if not entries:
            self._shadows(idle=True)
            return 0
        writes: list[Any] = []
        per_account: dict[str, list[tuple[int, float, float, float]]] = {}
        for entry_id, fields in entries:
            try:
                record = json.loads(fields["data"])
                if not isinstance(record, dict) or not isinstance(record.get("metadata"), dict):
                    raise ValueError("not a signal record (an object with metadata)")
                meta = record["metadata"]
                created = pd.Timestamp(record["created_at"])
                bar_ms = timeframe_seconds(str(meta.get("timeframe"))) * 1000
                ts = int(created.value // 1_000_000) - bar_ms
                acc = self._account(record, ts)
                if acc is None:
                    continue
                target = _num(meta.get("target"))
                per_account.setdefault(acc.key, []).append(
                    (ts, target, _num(record.get("stop_loss")), _num(record.get("take_profit")))
                )
            except _RETRYABLE:
                raise
            except Exception as exc:  # a bad record is set aside with its reason, never fatal
                why = f"signal {entry_id} set aside: {type(exc).__name__}: {exc}"
                log.warning("%s", why)
                writes.append(("error", why))
        writes[:0] = [("del", self.names.paper_curve_key(k)) for k in sorted(self._fresh)]
        self._fresh.clear()
        touched = set()
        for key, signals in per_account.items():
            acc = self.accounts[key]
            try:
                self._apply(acc, signals, writes)
                touched.add(key)
            except _RETRYABLE:
                raise
            except Exception as exc:  # one account failing never stops the others
                why = f"{key}: {exc}"
                log.warning("paper account not advanced: %s", why)
                writes.append(("error", why))
        writes.append(("stat", PaperCounter.signals, len(entries)))
        self._commit(writes, touched, entries[-1][0])
        self._cursor = entries[-1][0]
        self.applied += len(entries)
        self._shadows(idle=False)
        if self.on_step is not None:
            self.on_step(len(entries))
        return len(entries)

    # -- the shadow backtest ------------------------------------------------------------
    def _model(self, acc: Account) -> Any:
        """The account's model version: as served, or (no longer served) from the
        registry, its artifacts' digest checked either way; None if it is gone."""
        key = f"{acc.model_name}:{acc.version}"  # a bound model_id spans versions
        if key not in self._models:
            from botlib.tracking.verify import load_verified

            entry = self._active.get(acc.model_id)
            if entry is not None and acc.version and str(entry.get("version")) != acc.version:
                entry = None  # the id now serves another version: this one from the registry
            if entry is None and acc.version:
                entry = {"model_uri": f"models:/{acc.model_name}/{acc.version}",
                         "version": acc.version}  # fmt: skip
            if entry is None:
                return None
            self._models[key] = load_verified(entry)
        return self._models[key]

    def _shadows(self, *, idle: bool) -> None:
        for acc in list(self.accounts.values()):
            pending = idle and acc.live_pending and self.live is not None
            if pending or (acc.shadow_due and (idle or acc.shadow_due >= self.config.shadow_every)):
                try:
                    self._shadow(acc, idle=idle)
                except _RETRYABLE:
                    raise
                except Exception as exc:  # a shadow that cannot run never stops the book
                    why = f"{acc.key}: shadow backtest failed: {type(exc).__name__}: {exc}"
                    log.warning("%s", why)
                    acc.parity = {**acc.parity, "error": why}
                    acc.shadow_due = 0
                    self._commit([("error", why)], {acc.key}, None)

    def _context(self, acc: Account, origin: int) -> pd.DataFrame:
        """The bars the loop started the model's state from (before the account's first
        bar), as the loop read them: the stream, then the data store."""
        memo = (acc.key, origin, acc.first_ts)  # fixed for the account's life
        if memo not in self._history:
            need = max(0, (acc.first_ts - origin) // acc.bar_ms)
            first_id = acc.first_bar_id or self._first_bar_id(acc.stream, acc.first_ts)
            m = Market(acc.stream, acc.exchange, acc.market, acc.timeframe, acc.bar_ms, need or 1)
            if need and first_id is not None:
                seed_window(self.r, m, need, first_id, acc.first_ts)
            self._history[memo] = frame(m.times, m.values)
        return self._history[memo]

    def _shadow(self, acc: Account, *, idle: bool = False) -> None:
        """The model's backtest over the account's bars, against the account."""
        from botlib.backtest import normalize_signals
        from botlib.backtest.kernel import fresh_state, simulate_from
        from botlib.models.evaluate import model_signal_frame

        model = self._model(acc)
        checked = {"checked_at": time.time(), "bars": acc.bars}
        if model is None:
            acc.parity = {**acc.parity, **checked, "skipped": "the model version is unknown"}
            acc.shadow_due = 0
            self._commit([], {acc.key}, None)
            return
        origin_raw = self.r.hget(self.names.loop_state,
                                 self.names.origin_field(acc.model_id, acc.stream))  # fmt: skip
        origin = int(origin_raw) if origin_raw else acc.first_ts - (
            model.meta.required_history * acc.bar_ms)  # fmt: skip
        raw = [json.loads(x) for x in self.r.lrange(self.names.paper_curve_key(acc.key), 0, -1)]
        if not raw:
            return
        rows = np.array([[np.nan if v is None else v for v in row] for row in raw], "float64")
        times = rows[:, 0].astype("int64")
        if times[0] != acc.first_ts:  # the curve was trimmed at max_curve bars
            if not str(acc.parity.get("skipped", "")).startswith(_TRIMMED):
                log.warning("%s: %s", acc.key, _TRIMMED)
            acc.parity = {**checked, "skipped": f"{_TRIMMED} (max_curve: {len(raw):,} of "
                          f"{acc.bars:,} bars kept)"}  # fmt: skip
            acc.shadow_due = 0
            acc.live_pending = True  # the live run still follows the paper equity
            writes_: list[Any] = []
            self._live_update(acc, times, rows[:, 9], None, writes_, force=idle)
            self._commit(writes_, {acc.key}, None)
            return
        live = frame(times, rows[:, 1:6])
        history = self._context(acc, origin) if origin < acc.first_ts else live.iloc[:0]
        context = pd.concat([history, live]) if len(history) else live
        cfg = self.runtime.current.signal_config()
        shadow = model_signal_frame(model, context, live.index[0], config=cfg,
                                    previous_target=acc.start_position)  # fmt: skip
        index = pd.DatetimeIndex(live.index)
        columns = shadow[["target", "stop_loss", "take_profit"]]
        sig = normalize_signals(columns, index, allow_short=cfg.allow_short)
        s_target = sig["target"].to_numpy("float64")
        s_sl = sig["stop_loss"].to_numpy("float64")
        s_tp = sig["take_profit"].to_numpy("float64")
        o, h, lo, c = (np.ascontiguousarray(rows[:, j]) for j in (1, 2, 3, 4))
        s_equity = simulate_from(o, h, lo, c, s_target, s_sl, s_tp, fresh_state(acc.cash0),
                                 self.fee, self.slippage)[0]  # fmt: skip
        tol = self.config.tolerance
        p_target, p_sl, p_tp, p_equity = rows[:, 6], rows[:, 7], rows[:, 8], rows[:, 9]
        p_missing = rows[:, 11].astype(bool)
        why: list[str | None] = []
        for i in range(len(rows)):
            if p_missing[i]:
                why.append("signal missing")
            elif not _close(p_target[i], s_target[i], tol):
                why.append(f"target {p_target[i]!r} != backtest {s_target[i]!r}")
            elif not (_close(p_sl[i], s_sl[i], tol) and _close(p_tp[i], s_tp[i], tol)):
                why.append(f"stop/take {p_sl[i]!r}/{p_tp[i]!r} != backtest "
                           f"{s_sl[i]!r}/{s_tp[i]!r}")  # fmt: skip
            elif not _close(p_equity[i], s_equity[i], tol):
                why.append(f"equity {p_equity[i]!r} != backtest {s_equity[i]!r}")
            else:
                why.append(None)
        broken = [i for i, w in enumerate(why) if w is not None]
        before = int(acc.parity.get("breaks") or 0)
        verdict: dict[str, Any] = {
            **checked, "checked_to": _iso(int(times[-1])), "breaks": len(broken),
            "shadow_equity": float(s_equity[-1]), "paper_equity": float(p_equity[-1]),
            "ok": not broken, "origin": _iso(origin),
        }  # fmt: skip
        writes: list[Any] = []
        if broken:
            i = broken[0]
            verdict["first_break"] = {
                "bar_time": _iso(int(times[i])), "why": why[i],
                "paper": {"target": _opt(p_target[i]), "equity": float(p_equity[i])},
                "backtest": {"target": _opt(s_target[i]), "equity": float(s_equity[i])},
            }  # fmt: skip
            first_before = (acc.parity.get("first_break") or {}).get("bar_time")
            if first_before != verdict["first_break"]["bar_time"] and not (
                why[i] == "signal missing" and acc.first_missing == int(times[i])
            ):  # a missing signal was alerted when it was found
                self._alert(acc, int(times[i]), str(why[i]), writes)
            log.warning("%s: parity break at %s (%s); %d bar(s) differ", acc.key,
                        verdict["first_break"]["bar_time"], why[i], len(broken))  # fmt: skip
        elif before:
            log.info("%s: paper and shadow agree again", acc.key)
        writes.append(("stat", PaperCounter.shadow_checks, 1))
        acc.parity = verdict
        acc.shadow_due = 0
        acc.live_pending = True
        self._live_update(acc, times, p_equity, s_equity, writes, force=idle)
        self._commit(writes, {acc.key}, None)

    def _live_update(
        self,
        acc: Account,
        times: np.ndarray,
        paper: np.ndarray,
        shadow: np.ndarray | None,
        writes: list[Any],
        *,
        force: bool,
    ) -> None:
        """The account's figures to its MLflow ``live`` run, when due (or ``force``);
        MLflow failing is reported, never fatal to the book."""
        if self.live is None or not (force or self.live.due(acc.key)):
            return
        stats = self.r.hgetall(self.names.loop_stats)

        def per_model(counter: str) -> float:
            return _num(stats.get(f"{counter}|{acc.model_id}"))

        figures: dict[str, float] = {
            "paper_equity": acc.equity, "paper_return": acc.total_return,
            "max_drawdown": acc.max_drawdown, "fills": acc.fills,
            "missing_signals": acc.missing,
            "parity_breaks": float(acc.parity.get("breaks") or 0),
            "shadow_equity": float(shadow[-1]) if shadow is not None else float("nan"),
        }  # fmt: skip
        scored = per_model("validated")
        if scored > 0:
            figures["hit_rate"] = per_model("accuracy_milli") / 1000 / scored
            figures["scored_predictions"] = scored
        if per_model("persistence_n") > 0:
            figures["persistence_hit_rate"] = (
                per_model("persistence_milli") / 1000 / per_model("persistence_n")
            )
        drift = self.r.hget(self.names.drift, f"{acc.model_id}|{acc.stream}")
        if drift:
            scores = json.loads(drift).get("scores") or {}
            for name, value in scores.items():
                figures[f"drift.{name}"] = _num(value)
            finite = [v for v in map(_num, scores.values()) if math.isfinite(v)]
            if finite:
                figures["drift.max"] = max(finite)
        try:
            acc.live_run = self.live.update(
                acc, entry=self._active.get(acc.model_id), times=times, paper_equity=paper,
                shadow_equity=shadow, figures=figures,
            )  # fmt: skip
            acc.live_pending = False
        except Exception as exc:  # MLflow down: the book goes on, the update waits
            why = f"{acc.key}: live run not updated: {type(exc).__name__}: {exc}"
            log.warning("%s", why)
            writes.append(("error", why))

    # -- the service ----------------------------------------------------------------
    def run(self, *, idle_exit_s: float | None = None, max_signals: int | None = None) -> int:
        """Apply signals until ``stop()`` (or ``idle_exit_s`` without one, or
        ``max_signals`` applied); Redis outages are waited out. Returns the count."""
        idle_since = time.monotonic()
        backoff = 0.1
        while not self._stop.is_set():
            try:
                n = self.step()
                backoff = 0.1
            except Exception as exc:  # state re-read from Redis, then retried
                if isinstance(exc, _RETRYABLE):
                    log.warning("redis unavailable (%s); retrying in %.1f s", exc, backoff)
                else:  # reported
                    why = f"paper step failed: {type(exc).__name__}: {exc}"
                    log.error("%s", why)
                    with contextlib.suppress(*_RETRYABLE):
                        self._commit([("error", why)], set(), None)
                self._loaded = False
                self.accounts.clear()
                self._fresh.clear()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if n:
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
            if max_signals is not None and self.applied >= max_signals:
                break
        return self.applied

    def stop(self) -> None:
        self._stop.set()


def _opt(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
