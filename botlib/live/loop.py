"""``SignalLoop``: closed candles from Redis in, predictions and signals out.

Every active model (the ``botlib:active_models`` hash written by promotion) is served
on its market's bar stream ``botlib:bars:{exchange}:{symbol}:{timeframe}``, read
through one consumer group. One step of the loop:

1. reads up to ``batch`` bars per stream (its own pending entries first after a
   restart or an error, then entries idle too long at crashed consumers, then new ones);
2. checks each bar (``_market.check_bars``: a valid candle of this market, closed,
   after 2009, on the grid, strictly after the last one; ``plausible``: no price
   ``max_price_jump`` times away from the previous close) — a bad one goes to
   ``botlib:deadletter`` with its reason and the rest go on;
3. per market, appends the bars to a bounded window of history (seeded at the first
   bar from the stream itself, else from the local data store), runs every model on it
   (``predict_tail``: the network runs only on the new bars), and makes the records with
   THE signal builder, carrying each model's position from bar to bar;
4. scores earlier predictions whose horizon has passed (``actual_value``, ``accuracy``,
   ``validated_at``);
5. writes everything — outputs (each once, keyed by model version, symbol and bar),
   dead letters, positions, acknowledgements — in ONE atomic script.

So a crash or a Redis restart loses nothing and doubles nothing: unacknowledged bars are
read again and their outputs, if already written, are not written twice. Several loop
processes share the markets (``_ownership``: one owner per market, leases, takeover
with the window and positions rebuilt from Redis; the commit is fenced by the leases).
A bar that cannot be used, or a step that fails on one market, is dead-lettered with
its reason and acknowledged: one bad input never stalls a market. Promotions
are picked up between two steps: the new version loads in a background thread and takes
over at the next step; if it fails to load or its features cannot be computed the old
one keeps serving. A model older than ``max_model_age_days`` stops signalling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd
import redis

from botlib.data import OHLCV_COLUMNS, timeframe_seconds
from botlib.features.drift import drift_scores
from botlib.features.streaming import AverageTrueRange
from botlib.live._market import Market, Rejected, check_bars, frame, plausible, seed_window
from botlib.live._models import ActiveModels, Served
from botlib.live._ownership import Leases
from botlib.live._records import add_predictions, add_signals
from botlib.live._scoring import score
from botlib.live.step import model_step, signals_step
from botlib.models import ModelStream
from botlib.signals import SignalConfig
from botlib.transport import (
    Batch,
    Output,
    RedisNames,
    commit,
    connect,
    dumps,
    ensure_group,
    redis_names,
)
from botlib.transport.stats import LoopCounter, per_model, per_stream

__all__ = ["LoopConfig", "LoopStats", "SignalLoop"]

log = logging.getLogger("botlib.serve")
_T = TypeVar("_T")

_RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def _default_consumer() -> str:
    """Unique per process: two loops started without a name never share one. Give a
    stable name (``--consumer``) to have a restarted process take its markets back at
    once instead of after the lease expires."""
    return f"{socket.gethostname()}-serve-{os.getpid()}"


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the signal loop. Times in seconds unless named ``_ms``."""

    exchange: str = "binance"
    consumer: str = field(default_factory=_default_consumer)
    batch: int = 256
    block_ms: int = 100
    history: int = 1000
    claim_idle_ms: int = 60_000
    max_model_age_days: float | None = 30.0
    reload_check_s: float = 0.2
    backoff_start_s: float = 0.1
    backoff_max_s: float = 5.0
    bot_id: str | None = None
    signal: SignalConfig = field(default_factory=SignalConfig)
    #: a bar whose any price is more than this factor away from the previous close is
    #: set aside (a decimal slip or a bad print), not served
    max_price_jump: float = 10.0
    #: a bar must have closed (open time + one bar) by now + this allowance
    clock_skew_s: float = 60.0
    #: market leases among loop processes: a dead one's markets move after this long
    lease_ttl_s: float = 10.0
    #: feature drift (models with a recorded training distribution and a streaming
    #: state): the last ``drift_window`` feature rows are scored every ``drift_every``
    #: bars once ``drift_min_rows`` are held; a PSI above ``drift_threshold`` alerts
    drift_window: int = 500
    drift_every: int = 24
    drift_min_rows: int = 100
    drift_threshold: float = 0.25
    #: a model's streaming state is written to Redis every ``state_every`` bars of its
    #: market (it is several KB); a restart or a takeover restores the last one written
    #: and advances it over the window's bars since (the same steps: the same bits)
    state_every: int = 16

    def __post_init__(self) -> None:
        from botlib.errors import ConfigError

        if self.batch < 1 or self.history < 0:
            raise ConfigError("batch must be >= 1 and history >= 0")
        if not self.max_price_jump > 1:
            raise ConfigError(f"max_price_jump must be > 1, got {self.max_price_jump}")
        if not self.clock_skew_s >= 0:
            raise ConfigError(f"clock_skew_s must be >= 0, got {self.clock_skew_s}")
        if not self.lease_ttl_s >= 1:
            raise ConfigError(f"lease_ttl_s must be >= 1, got {self.lease_ttl_s}")
        if not 1 <= self.drift_min_rows <= self.drift_window or self.drift_every < 1:
            raise ConfigError(
                "need 1 <= drift_min_rows <= drift_window and drift_every >= 1, got "
                f"{self.drift_min_rows}, {self.drift_window}, {self.drift_every}"
            )
        if self.state_every < 1:
            raise ConfigError(f"state_every must be >= 1, got {self.state_every}")
        if not self.drift_threshold > 0:
            raise ConfigError(f"drift_threshold must be > 0, got {self.drift_threshold}")
        if not 0 <= self.block_ms <= 2000:
            # a blocking read must return well inside the client's 5 s socket timeout
            raise ConfigError(f"block_ms must be in [0, 2000], got {self.block_ms}")


@dataclass
class LoopStats:
    bars: int = 0
    predictions: int = 0
    signals: int = 0
    validated: int = 0
    deadletters: int = 0
    reloads: int = 0
    refused_models: int = 0
    takeovers: int = 0
    streamed: int = 0
    windowed: int = 0
    stream_seeds: int = 0
    errors: int = 0
    last_error: str = ""


@dataclass
class _Infer:
    """A network call a market's step needs: ``model.infer(x)``."""

    model: Any
    x: np.ndarray


@runtime_checkable
class _Batchable(Protocol):
    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


def _run_alone(gen: Generator[_Infer, dict[str, np.ndarray], _T]) -> _T:
    """Run a step generator on its own, answering its network calls one by one."""
    try:
        request = next(gen)
        while True:
            request = gen.send(request.model.infer(request.x))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _drive(
    gens: dict[str, Generator[_Infer, dict[str, np.ndarray], int]],
) -> dict[str, int | Exception]:
    """Run the markets' step generators together: each round, the windows every market
    asks of one model go through one network call (fixed batches: the same bits as
    separate calls), and the answers are sent back. Returns each market's bar count,
    or the exception its processing raised (Redis errors propagate)."""
    outcome: dict[str, int | Exception] = {}
    waiting: dict[str, _Infer] = {}

    def advance(stream: str, answer: Any = None, error: Exception | None = None) -> None:
        gen = gens[stream]
        try:
            waiting[stream] = gen.throw(error) if error is not None else gen.send(answer)
        except StopIteration as stop:
            outcome[stream] = stop.value
        except _RETRYABLE:
            raise
        except Exception as exc:
            outcome[stream] = exc

    for stream in gens:
        advance(stream)
    while waiting:
        by_model: dict[int, list[tuple[str, _Infer]]] = {}
        for stream, request in waiting.items():
            by_model.setdefault(id(request.model), []).append((stream, request))
        waiting.clear()
        for group in by_model.values():
            model = group[0][1].model
            try:
                decoded = model.infer(np.concatenate([req.x for _, req in group]))
            except _RETRYABLE:
                raise
            except Exception as exc:  # each market's model step falls back on its own
                for stream, _ in group:
                    advance(stream, error=exc)
                continue
            offset = 0
            for stream, req in group:
                size = len(req.x)
                advance(stream, {c: v[offset : offset + size] for c, v in decoded.items()})
                offset += size
    return outcome


def _phase(key: tuple[str, str], every: int) -> int:
    """A (model, market)'s own offset in ``[0, every)``, the same in every process."""
    return zlib.crc32("|".join(key).encode()) % every


def _on_schedule(key: tuple[str, str], every: int, ts: int, k: int, bar_ms: int) -> bool:
    """Whether one of a step's ``k`` new bars (the newest opening at ``ts``) is one of
    the (model, market)'s scheduled bars: every ``every``-th bar of the market's time
    grid, from the pair's own phase. Fixed to the bars' times, the schedule survives
    a backlog read in big steps and a restart, and markets served together keep
    their scheduled work (drift, state writes) on different bars."""
    n = ts // bar_ms + _phase(key, every)
    return n // every != (n - k) // every


def _by_score(members: dict[str, float]) -> list[tuple[str, float]]:
    """A sorted set's members as ZRANGE lists them: by score, then by member."""
    return sorted(members.items(), key=lambda item: (item[1], item[0]))


class _Window:
    """One step's view of a market: its window with the ``k`` new bars appended. The
    candle frame is built only if a model needs the window path."""

    def __init__(self, times: np.ndarray, values: np.ndarray, k: int) -> None:
        self.times, self.values, self.k = times, values, k
        self._candles: pd.DataFrame | None = None
        self._bars: list[dict[str, float]] | None = None
        #: the builder's streaming ATR over these rows, once computed this step
        self.atr: np.ndarray | None = None

    @property
    def candles(self) -> pd.DataFrame:
        if self._candles is None:
            self._candles = frame(self.times, self.values)
        return self._candles

    def new_bars(self) -> list[dict[str, float]]:
        """The new bars as dicts (built once per step, shared by the market's models)."""
        if self._bars is None:
            cols = list(OHLCV_COLUMNS)
            rows = self.values[-self.k :].tolist()
            self._bars = [dict(zip(cols, row, strict=True)) for row in rows]
        return self._bars


class SignalLoop:
    """The live loop. ``run()`` until ``stop()``; ``step()`` does one read-process-write."""

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        config: LoopConfig | None = None,
        names: RedisNames | None = None,
        maxlen: int | None = None,
        config_file: Path | None = None,
    ) -> None:
        from botlib.runtime import RuntimeConfig, RuntimeConfigWatcher
        from botlib.settings import get_settings

        settings = get_settings()
        self.config = config or LoopConfig(exchange=settings.exchange_id)
        # typed as Any: with decode_responses every reply is str, which the stubs ignore
        self.r: Any = client if client is not None else connect(role="loop")
        self.names = names or redis_names()
        self.maxlen = maxlen or settings.redis_stream_maxlen
        self.stats = LoopStats()
        #: thresholds, risk and model age: may change at runtime (``botlib config set``)
        self.runtime = RuntimeConfigWatcher(
            self.r,
            self.names,
            "serve",
            path=config_file,
            base=RuntimeConfig.from_parts(self.config.signal, self.config.max_model_age_days),
        )
        self.signal_config = self.config.signal
        self.max_model_age_days = self.config.max_model_age_days
        self.models = ActiveModels(self.r, self.names, self._refused)
        self.leases = Leases(self.r, self.names, self.config.consumer, self.config.lease_ttl_s)
        self.markets: dict[str, Market] = {}
        self._stop = threading.Event()
        self._next_reload_check = 0.0
        self._next_claim = 0.0
        self._recover = True  # read own pending entries first
        self._groups: set[str] = set()
        self._stale_warned: set[str] = set()
        self._positions: dict[str, float] = {}
        self._by_stream: dict[str, list[Served]] = {}
        self._by_stream_key: tuple[int, ...] = ()
        #: pending predictions per market, read for all markets of a step at once
        self._pending: dict[str, list[tuple[str, float]]] = {}
        #: each market's predictions waiting to be scored (payload -> due ms), as in Redis
        self._pending_held: dict[str, dict[str, float]] = {}
        #: (model id, stream) -> the model's streaming state and the bar it is at
        self._states: dict[tuple[str, str], tuple[ModelStream, int | None]] = {}
        #: stream -> the builder's streaming ATR and the bar it is at
        self._atr: dict[str, tuple[AverageTrueRange, int | None]] = {}
        #: (model id, stream) whose streaming state is to be written at its next step
        self._state_due: set[tuple[str, str]] = set()
        self._alerting: dict[tuple[str, str], bool] = {}
        #: (model id, stream) whose origin (``RedisNames.origin_field``) is recorded
        self._origins: set[tuple[str, str]] = set()
        self.on_step: Callable[[int], None] | None = None

    # -- models and runtime settings ----------------------------------------------
    @property
    def served(self) -> dict[str, Served]:
        return self.models.served

    def _refused(self, message: str) -> None:
        self.stats.refused_models += 1
        self._error(message)

    def load_active(self, *, wait: bool = True) -> None:
        """Read the active models and load any that changed (see ``ActiveModels``)."""
        self.models.load(wait=wait)
        self.stats.reloads = self.models.reloads

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now >= self._next_reload_check:
            self._next_reload_check = now + self.config.reload_check_s
            pipe = self.r.pipeline(transaction=False)
            pipe.get(self.names.active_revision)
            pipe.get(self.names.runtime_config)
            pipe.hset(self.names.loop_stats, LoopCounter.heartbeat, repr(time.time()))
            revision, config_text, _ = pipe.execute()
            self._apply_runtime(self.runtime.poll(config_text))
            if revision != self.models.revision:
                self.load_active(wait=not self.served)
        self.models.swap()
        self.stats.reloads = self.models.reloads
        # a version no longer served keeps no streaming state in memory
        serving = {s.model_id for s in self.served.values()}
        for key in [k for k in self._states if k[0] not in serving]:
            del self._states[key]

    def _apply_runtime(self, config: Any) -> None:
        if config is None:
            return
        self.signal_config = config.signal_config()
        self.max_model_age_days = config.max_model_age_days
        self._stale_warned.clear()

    # -- markets and their ownership ------------------------------------------------
    def _stream_of(self, served: Served) -> str:
        return served.stream(self.names, self.config.exchange)

    def _serving(self, stream: str) -> list[Served]:
        """The served models on ``stream`` (the map is rebuilt when the served set
        changes: a step looks it up once per market and model)."""
        key = tuple(map(id, self.served.values()))
        if key != self._by_stream_key:
            by_stream: dict[str, list[Served]] = {}
            for served in self.served.values():
                by_stream.setdefault(self._stream_of(served), []).append(served)
            self._by_stream, self._by_stream_key = by_stream, key
        return self._by_stream.get(stream, [])

    def _market(self, served: Served) -> Market:
        entry = served.entry
        stream = self._stream_of(served)
        market = self.markets.get(stream)
        need = max(s.required_history for s in self._serving(stream))
        capacity = need + self.config.history
        if market is None:
            timeframe = str(entry["timeframe"])
            market = Market(
                stream,
                str(entry.get("exchange") or self.config.exchange),
                str(entry["symbol"]),
                timeframe,
                timeframe_seconds(timeframe) * 1000,
                capacity,
            )
            last, since = self.r.hmget(
                self.names.loop_state,
                self.names.last_ts_field(stream),
                self.names.window_from_field(stream),
            )
            market.last_ts = int(last) if last else None
            market.window_from = int(since) if since else None
            self.markets[stream] = market
        market.capacity = max(market.capacity, capacity)
        return market

    def _forget(self, stream: str) -> None:
        """Drop what this process holds of a market; it is rebuilt from Redis."""
        self.markets.pop(stream, None)
        self._pending_held.pop(stream, None)
        for key in [k for k in self._positions if k.endswith(f"|{stream}")]:
            del self._positions[key]
        self._forget_streams(stream)

    def _forget_streams(self, stream: str) -> None:
        """Drop a market's streaming states (advanced past what was committed, or
        another owner's now): they are read from Redis again, or rebuilt."""
        for key in [k for k in self._states if k[1] == stream]:
            del self._states[key]
        self._atr.pop(stream, None)

    def _rebalance(self) -> None:
        """Renew this process's market leases, take free ones up to its share."""
        wanted = sorted({self._stream_of(s) for s in self.served.values()})
        gained, lost = self.leases.tick(wanted)
        for stream in lost:
            log.info("%s: no longer served by this process", stream)
            self._forget(stream)
        for stream in gained:
            self._forget(stream)
            ensure_group(self.r, stream, self.names.consumer_group)
            self._groups.add(stream)
            claimed = self._claim_all(stream)
            self.stats.takeovers += 1
            self.r.hincrby(self.names.loop_stats, LoopCounter.takeovers, 1)
            log.info("%s: now served by %s (%d unacknowledged bars claimed)",
                     stream, self.config.consumer, claimed)  # fmt: skip
            self._recover = True

    def _claim_all(self, stream: str) -> int:
        """Every bar of ``stream`` read but not acknowledged by an earlier owner."""
        group, me, start, total = self.names.consumer_group, self.config.consumer, "0-0", 0
        while True:
            result = self.r.xautoclaim(
                stream, group, me, min_idle_time=0, start_id=start, count=1000
            )
            start, total = result[0], total + len(result[1])
            if start in ("0-0", b"0-0"):
                return total

    def _streams(self) -> dict[str, Market]:
        streams = {}
        for served in self.served.values():
            stream = self._stream_of(served)
            if stream not in self.leases.owned:
                continue
            market = self._market(served)
            streams[stream] = market
            if stream not in self._groups:
                ensure_group(self.r, stream, self.names.consumer_group)
                self._groups.add(stream)
        return streams

    def _bootstrap(self, market: Market, first_id: str, first_ts: int, batch: Batch) -> None:
        need = max(s.required_history for s in self._serving(market.stream))
        first_window = market.window_from is None
        n = seed_window(self.r, market, need, first_id, first_ts)
        if first_window and market.window_from is not None:
            field_name = self.names.window_from_field(market.stream)
            batch.hset.append((self.names.loop_state, field_name, str(market.window_from)))
        log.info("%s: %d bars of history", market.stream, n)

    # -- reading ----------------------------------------------------------------
    def _read(self, streams: dict[str, Market]) -> list[tuple[str, list[Any]]]:
        group, me, count = self.names.consumer_group, self.config.consumer, self.config.batch
        if self._recover:
            got = self.r.xreadgroup(group, me, {s: "0" for s in streams}, count=count)
            pending = [(s, items) for s, items in (got or []) if items]
            if pending:
                return pending
            self._recover = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.config.claim_idle_ms / 2000
            claimed = []
            for s in streams:
                result = self.r.xautoclaim(
                    s, group, me, min_idle_time=self.config.claim_idle_ms, count=count
                )
                items = [it for it in result[1] if it and it[1] is not None]
                if items:
                    log.warning("%s: reclaimed %d bars from a stopped consumer", s, len(items))
                    claimed.append((s, items))
            if claimed:
                return claimed
        got = self.r.xreadgroup(
            group,
            me,
            {s: ">" for s in streams},
            count=count,
            block=self.config.block_ms or None,  # BLOCK 0 would wait forever
        )
        return [(s, items) for s, items in (got or []) if items]

    # -- processing -------------------------------------------------------------
    def _deadletter(self, batch: Batch, stream: str, rejected: Rejected) -> None:
        entry_id, fields, why = rejected
        payload = dumps(
            {
                "source": stream,
                "entry_id": entry_id,
                "reason": why,
                "fields": fields if isinstance(fields, dict) else str(fields),
                "at": time.time(),
            }
        )
        batch.outputs.append(
            Output(
                self.names.deadletter,
                payload,
                dedupe=f"{self.names.seen_prefix}dl|{stream}|{entry_id}",
            )
        )
        batch.hincr.append((self.names.loop_stats, LoopCounter.deadletters, 1))

    def _process(
        self, market: Market, items: list[Any], batch: Batch, after: list[Callable[[], None]]
    ) -> Generator[_Infer, dict[str, np.ndarray], int]:
        """One market's part of the step (see ``_drive``): yields the network calls its
        streaming models need, so that markets served by one model share one call;
        returns the number of valid bars."""
        for entry_id, _ in items:
            batch.ack(market.stream, entry_id)
        good, rejected = check_bars(market, items, clock_skew_s=self.config.clock_skew_s)
        if good and not market.bootstrapped:
            self._bootstrap(market, good[0][0], good[0][1].ts, batch)
        good, implausible = plausible(market, good, max_jump=self.config.max_price_jump)
        for reject in [*rejected, *implausible]:
            self._deadletter(batch, market.stream, reject)
        if not good:
            return 0
        bars = [b for _, b in good]
        times, values = market.extended(bars)
        window = _Window(times, values, len(bars))
        k = len(bars)
        bar_delta = timedelta(milliseconds=market.bar_ms)
        state_updates: list[tuple[str, str, str]] = []
        positions: dict[str, float] = {}
        for served in self._serving(market.stream):
            part, later = Batch(), list[Callable[[], None]]()
            try:
                pos = yield from self._model_outputs(
                    served, market, window, bar_delta, part, later=later
                )
                batch.extend(part)
                after.extend(later)
            except _RETRYABLE:
                raise
            except Exception:  # one model failing never stops the others, nor other bars
                self._states.pop((served.model_id, market.stream), None)
                pos = self._bar_by_bar(served, market, window.candles, good, bar_delta, batch)
            key = self.names.position_field(served.name, market.stream)
            positions[key] = pos
            state_updates.append((self.names.loop_state, key, repr(pos)))
        score(self.r, self.names, market, times, values, batch,
              pending=self._pending.get(market.stream))  # fmt: skip
        state_updates.append(
            (self.names.loop_state, self.names.last_ts_field(market.stream), str(bars[-1].ts))
        )
        # how late the newest bar was processed after it closed (the loop's lag)
        lag_ms = int(time.time() * 1000) - (bars[-1].ts + market.bar_ms)
        lag_field = per_stream(LoopCounter.lag_ms, market.stream)
        state_updates.append((self.names.loop_stats, lag_field, str(lag_ms)))
        batch.hset.extend(state_updates)
        batch.hincr.append((self.names.loop_stats, LoopCounter.bars, k))

        def apply() -> None:
            market.commit(times, values)
            self._positions.update(positions)

        after.append(apply)
        return k

    # -- streaming state ------------------------------------------------------------
    def _saved_state(self, field_name: str, ts: int | None) -> dict[str, Any] | None:
        """A streaming state kept in Redis, if it is at bar ``ts`` (the market's last)."""
        data = self._read_state(field_name)
        return data if data is not None and data.get("ts") == ts else None

    def _read_state(self, field_name: str) -> dict[str, Any] | None:
        saved = self.r.hget(self.names.loop_state, field_name)
        if not saved:
            return None
        try:
            data = json.loads(saved)
        except ValueError:
            log.warning("unreadable streaming state %s: rebuilt from the window", field_name)
            return None
        return data if isinstance(data, dict) else None

    def _new_stream(self, served: Served) -> ModelStream | None:
        stream = served.model.stream()
        if stream is not None and served.model.feature_profile is not None:
            stream.watch(self.config.drift_window)
        return stream

    def _model_stream(
        self, served: Served, market: Market, window: _Window, batch: Batch
    ) -> ModelStream | None:
        """The model's streaming state on ``market`` at the market's last bar: held in
        memory, else read from Redis (a restart, a takeover) and advanced over the
        window's bars after it, else built from the window; None for a model without
        an incremental form (the window path)."""
        key = (served.model_id, market.stream)
        held = self._states.get(key)
        if held is not None and held[1] == market.last_ts:
            return held[0]
        stream = self._new_stream(served)
        if stream is None:
            return None
        field_name = self.names.stream_state_field(served.model_id, market.stream)
        saved = self._read_state(field_name)
        # the window's bars after the saved state's bar (the state is written every
        # ``state_every`` bars): it continues over them, so it must be in the window
        since = None
        if saved is not None and market.last_ts is not None:
            at = np.flatnonzero(market.times == saved.get("ts"))
            since = int(at[0]) + 1 if len(at) else None
        if saved is not None and since is not None:
            try:
                stream.restore(saved["state"])
                if since < len(market.times):
                    stream.seed(frame(market.times[since:], market.values[since:]))
                    log.info("%s on %s: streaming state restored and advanced over %d bars",
                             served.model_id, market.stream, len(market.times) - since)  # fmt: skip
                self._states[key] = (stream, market.last_ts)
                return stream
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                log.warning("%s: saved streaming state unusable (%s): rebuilt", field_name, exc)
                stream = self._new_stream(served)
                assert stream is not None
        # from the market's whole window before the new bars (the seeded history at
        # the first bar: where a backtest's features start too)
        history = frame(market.times, market.values)
        stream.seed(history)
        batch.hincr.append((self.names.loop_stats, LoopCounter.stream_seeds, 1))
        if len(market.times):  # where a backtest giving this state's outputs starts
            self._set_origin(served, market, int(market.times[0]), batch)
        log.info("%s on %s: streaming state built from %d bars",
                 served.model_id, market.stream, len(history))  # fmt: skip
        self._states[key] = (stream, market.last_ts)
        self._state_due.add(key)  # written at its first step
        return stream

    def _set_origin(self, served: Served, market: Market, ts: int, batch: Batch, *,
                    keep: bool = False) -> None:  # fmt: skip
        """Record the first bar of the history a model's outputs on ``market`` start
        from (its shadow backtest's start, ``botlib paper``); ``keep``: only if none is
        recorded yet (the window path: any window of the model's history gives them)."""
        key = (served.model_id, market.stream)
        field_name = self.names.origin_field(served.model_id, market.stream)
        if not (keep and self.r.hexists(self.names.loop_state, field_name)):
            batch.hset.append((self.names.loop_state, field_name, str(ts)))
        self._origins.add(key)

    def _builder_atr(self, market: Market, window: _Window, batch: Batch,
                     later: list[Callable[[], None]]) -> np.ndarray:  # fmt: skip
        """The signal builder's ATR over the window's rows (NaN before the new bars),
        continued from its streaming state like the models' features."""
        if window.atr is not None:
            return window.atr
        w = int(self.signal_config.atr_window)
        held = self._atr.get(market.stream)
        if held is not None and held[1] == market.last_ts and held[0].window == w:
            atr = held[0]
        else:
            atr = AverageTrueRange(w)
            saved = self._saved_state(self.names.atr_state_field(market.stream), market.last_ts)
            if saved is not None and saved.get("window") == w:
                atr.restore(saved["state"])
            else:
                for _, high, low, close, _ in market.values:
                    atr.push(high, low, close)
                batch.hincr.append((self.names.loop_stats, LoopCounter.stream_seeds, 1))
        out = np.full(len(window.values), np.nan)
        for j, (_, high, low, close, _) in enumerate(window.values[-window.k :]):
            out[len(out) - window.k + j] = atr.push(high, low, close)
        ts = int(window.times[-1])
        payload = json.dumps({"ts": ts, "window": w, "state": atr.state()})
        batch.hset.append((self.names.loop_state, self.names.atr_state_field(market.stream),
                           payload))  # fmt: skip
        later.append(lambda: self._atr.__setitem__(market.stream, (atr, ts)))
        window.atr = out
        return out

    def _bar_by_bar(
        self,
        served: Served,
        market: Market,
        candles: pd.DataFrame,
        good: list[tuple[str, Any]],
        bar_delta: timedelta,
        batch: Batch,
    ) -> float:
        """After a model failed on several new bars at once: each bar on its own, so
        only the bars it fails on are set aside (with the reason); the position is
        carried over the ones it served."""
        position = self._position(served, market)
        k = len(good)
        for j, (entry_id, bar) in enumerate(good):
            upto = candles.iloc[: len(candles) - k + j + 1]
            part = Batch()
            try:
                position = _run_alone(
                    self._model_outputs(served, market, upto, bar_delta, part, position=position)
                )
                batch.extend(part)
            except _RETRYABLE:
                raise
            except Exception as exc:
                why = f"model {served.model_id} failed: {type(exc).__name__}: {exc}"
                self._error(why)
                self._deadletter(batch, market.stream, (entry_id, bar.to_dict(), why))
        return position

    def _position(self, served: Served, market: Market) -> float:
        key = self.names.position_field(served.name, market.stream)
        if key not in self._positions:
            stored = self.r.hget(self.names.loop_state, key)
            self._positions[key] = float(stored) if stored else 0.0
        return self._positions[key]

    def _stale(self, served: Served) -> bool:
        """Whether the model is older than the runtime's ``max_model_age_days`` (said
        once per model)."""
        age_days = (time.time() * 1000 - float(served.entry.get("registered_at") or 0)) / 86.4e6
        max_age = self.max_model_age_days
        stale = max_age is not None and age_days > max_age
        if stale and served.model_id not in self._stale_warned:
            self._stale_warned.add(served.model_id)
            self._error(
                f"{served.model_id} is {age_days:.1f} days old (> {max_age}): it no longer "
                "signals; retrain and promote a newer version"
            )
        return stale

    def _model_outputs(
        self,
        served: Served,
        market: Market,
        window: _Window | pd.DataFrame,
        bar_delta: timedelta,
        batch: Batch,
        *,
        position: float | None = None,
        later: list[Callable[[], None]] | None = None,
    ) -> Generator[_Infer, dict[str, np.ndarray], float]:
        """The per-model step on the new bars, its records into ``batch``; returns the
        position held after them. With ``later`` (the normal step) a model that has a
        streaming state advances it by the new bars only; otherwise, and for models
        without one, the window is recomputed (``window`` may then be a candle frame)."""
        if position is None:
            position = self._position(served, market)
        stream = None
        if later is not None and isinstance(window, _Window):
            stream = self._model_stream(served, market, window, batch)
        if stream is not None and isinstance(window, _Window) and later is not None:
            k = window.k
            bars = window.new_bars()
            split: Any = stream  # a network's stream: its windows, then its rows
            if isinstance(served.model, _Batchable) and hasattr(split, "windows"):
                x, ready = split.windows(bars)
                decoded = (yield _Infer(served.model, x)) if len(x) else {}
                rows = split.assemble(decoded, ready, k)
            else:
                rows = stream.steps(bars)
            n = min(len(window.values), k + self.signal_config.vol_window + 1)
            short = window.values[-n:]
            atr = self._builder_atr(market, window, batch, later)[-n:]
            step = signals_step(served.meta.horizon, np.asarray(rows, dtype="float64"),
                                tuple(served.model.outputs), window.times[-k:], short,
                                config=self.signal_config, position=position, atr=atr)  # fmt: skip
            closes = short[:, 3]
            key = (served.model_id, market.stream)
            ts = int(window.times[-1])
            every = self.config.state_every
            due = key in self._state_due or _on_schedule(key, every, ts, k, market.bar_ms)
            if due:
                payload = json.dumps({"ts": ts, "state": stream.state()})
                field_name = self.names.stream_state_field(served.model_id, market.stream)
                batch.hset.append((self.names.loop_state, field_name, payload))
            batch.hincr.append((self.names.loop_stats, LoopCounter.streamed, 1))

            def held() -> None:
                self._states[key] = (stream, ts)
                self._state_due.discard(key)

            later.append(held)
            self._check_drift(served, market, stream, ts, k, batch, later)
        else:
            candles = window.candles if isinstance(window, _Window) else window
            closes = candles["close"].to_numpy()
            if (served.model_id, market.stream) not in self._origins:
                self._set_origin(served, market, int(candles.index[0].value // 10**6), batch,
                                 keep=True)  # fmt: skip
            step = model_step(served.model, candles, window.k if isinstance(window, _Window)
                              else 1, config=self.signal_config, position=position)  # fmt: skip
            batch.hincr.append((self.names.loop_stats, LoopCounter.windowed, 1))
        if not step.ready.any():
            return step.position
        add_predictions(batch, self.names, served, market, step, closes, bar_delta)
        if not self._stale(served):
            add_signals(batch, self.names, served, market, step, bar_delta, self.config.bot_id)
        return step.position

    def _check_drift(self, served: Served, market: Market, stream: ModelStream, ts: int,
                     k: int, batch: Batch, later: list[Callable[[], None]]) -> None:  # fmt: skip
        """Every ``drift_every`` bars, the model's recent feature rows against its
        training distribution (``botlib:drift``); a feature past the threshold raises
        an alert (``botlib:alerts`` and ``python:model_alert``) once, until it recovers."""
        key = (served.model_id, market.stream)
        field_name = f"{served.model_id}|{market.stream}"
        profile = served.model.feature_profile
        if profile is None:
            if key not in self._alerting:
                why = "no recorded distribution: trained before botlib recorded it"
                unknown = {"model_id": served.model_id, "market": market.stream, "unknown": why}
                batch.hset.append((self.names.drift, field_name, dumps(unknown)))
                later.append(lambda: self._alerting.__setitem__(key, False))
            return
        # on the pair's own schedule: markets served together are not all scored on
        # the same bar (a step's latency would jump every ``drift_every`` bars)
        rows = stream.recent
        cfg = self.config
        if rows is None or len(rows) < cfg.drift_min_rows:
            return
        if not _on_schedule(key, cfg.drift_every, ts, k, market.bar_ms):
            return
        names = list(getattr(stream, "features").columns)  # noqa: B009 (streams that watch)
        scores = drift_scores(profile, rows.matrix(), names)
        moved = sorted(n for n, v in scores.items() if v > cfg.drift_threshold)
        bar_time = pd.Timestamp(ts, unit="ms", tz="UTC").isoformat()
        record: dict[str, Any] = {
            "model_id": served.model_id, "symbol": served.record_symbol(market.symbol),
            "market": market.symbol, "exchange": market.exchange,
            "timeframe": market.timeframe, "bar_time": bar_time, "rows": len(rows),
            "threshold": cfg.drift_threshold, "moved": moved,
            "scores": {n: round(v, 6) for n, v in scores.items()},
        }  # fmt: skip
        batch.hset.append((self.names.drift, field_name, dumps(record)))
        if moved and not self._alerting.get(key, False):
            alert = {"type": "feature_drift", "at": time.time(), **record}
            dedupe = f"{self.names.seen_prefix}alert|{served.model_id}|{market.stream}|{ts}"
            batch.outputs.append(
                Output(self.names.alerts, dumps(alert), self.names.model_alert_channel, dedupe)
            )
            batch.hincr.append(
                (self.names.loop_stats, per_model(LoopCounter.drift_alerts, served.model_id), 1)
            )
            log.warning("%s on %s: feature drift in %s (PSI > %s)", served.model_id,
                        market.stream, ", ".join(moved), cfg.drift_threshold)  # fmt: skip

        def done() -> None:
            self._alerting[key] = bool(moved)

        later.append(done)

    # -- the loop ---------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message
        log.error(message)
        with contextlib.suppress(redis.RedisError):
            pipe = self.r.pipeline(transaction=False)
            pipe.hincrby(self.names.loop_stats, LoopCounter.errors, 1)
            pipe.hset(
                self.names.loop_stats,
                mapping={
                    LoopCounter.last_error: message[:500],
                    LoopCounter.last_error_at: repr(time.time()),
                },
            )
            pipe.execute()

    def _set_aside(self, stream: str, items: list[Any], exc: Exception) -> Batch:
        """A stream's bars that could not be processed: dead-lettered with the reason
        and acknowledged, so the next step goes on with the next bars."""
        why = f"processing {stream} failed: {type(exc).__name__}: {exc}"
        log.exception(why)
        self._error(why)
        batch = Batch()
        for entry_id, fields in items:
            batch.ack(stream, entry_id)
            self._deadletter(batch, stream, (entry_id, fields, why))
        return batch

    def _reset(self) -> None:
        """Trust nothing held in memory: markets, positions and leases are read from
        Redis again (after a Redis error or a lost lease)."""
        self.markets.clear()
        self._pending_held.clear()
        self._positions.clear()
        self._states.clear()
        self._atr.clear()
        self._origins.clear()
        self.leases.drop()
        self._recover = True
        self._groups.clear()

    def step(self) -> int:
        """Read, process and write one batch; returns the number of valid bars."""
        self._maybe_reload()
        if not self.served:
            time.sleep(self.config.block_ms / 1000)
            return 0
        if self.leases.due():
            self._rebalance()
        streams = self._streams()
        if not streams:
            time.sleep(self.config.block_ms / 1000)
            return 0
        got = self._read(streams)
        if not got:
            return 0
        batch = Batch()
        after: list[Callable[[], None]] = []
        n = 0
        parts = {stream: (Batch(), list[Callable[[], None]]()) for stream, _ in got}
        # the predictions waiting to be scored: read once per market (every market of
        # the step in one trip), then kept as this process's commits change them
        missing = [stream for stream, _ in got if stream not in self._pending_held]
        if missing:
            pipe = self.r.pipeline(transaction=False)
            for stream in missing:
                pipe.zrange(self._pending_key(streams[stream]), 0, -1, withscores=True)
            for stream, due in zip(missing, pipe.execute(), strict=True):
                self._pending_held[stream] = {str(p): float(w) for p, w in due}
        self._pending = {stream: _by_score(self._pending_held[stream]) for stream, _ in got}
        outcome = _drive(
            {stream: self._process(streams[stream], items, *parts[stream]) for stream, items in got}
        )
        for stream, items in got:
            part, later = parts[stream]
            result = outcome[stream]
            if isinstance(result, Exception):  # never crash-loop on the same pending entries
                part, later = self._set_aside(stream, items, result), []
                self._forget_streams(stream)
            else:
                n += result
            batch.extend(part)
            after.extend(later)
        fence = self.leases.fence([stream for stream, _ in got])
        written = commit(
            self.r, batch, group=self.names.consumer_group, maxlen=self.maxlen, fence=fence
        )
        if written < 0:
            log.warning("a market lease was lost mid-step: nothing written, state re-read")
            self._reset()
            return 0
        for apply in after:
            apply()
        self._hold_pending({self._pending_key(streams[stream]): stream for stream, _ in got},
                           batch)  # fmt: skip
        for key, field_name, value in batch.hincr:
            if key == self.names.loop_stats and hasattr(self.stats, field_name):
                setattr(self.stats, field_name, getattr(self.stats, field_name) + value)
            elif field_name.startswith(f"{LoopCounter.validated}|"):
                self.stats.validated += value
        log.debug("step: %d bars, %d outputs written", n, written)
        if self.on_step is not None:
            self.on_step(n)
        return n

    def _pending_key(self, market: Market) -> str:
        return self.names.pending_key(market.exchange, market.symbol, market.timeframe)

    def _hold_pending(self, keys: dict[str, str], batch: Batch) -> None:
        """What a committed batch did to the markets' waiting predictions, as the
        commit script does it (every ZADD, then every ZREM)."""
        for key, when, payload in batch.zadd:
            if key in keys and keys[key] in self._pending_held:
                self._pending_held[keys[key]][payload] = float(when)
        for key, payload in batch.zrem:
            if key in keys and keys[key] in self._pending_held:
                self._pending_held[keys[key]].pop(payload, None)

    def run(self, *, idle_exit_s: float | None = None, max_bars: int | None = None) -> LoopStats:
        """Serve until ``stop()`` (or SIGTERM in the CLI), ``max_bars`` bars, or
        ``idle_exit_s`` seconds without a bar. Redis outages are retried with backoff;
        afterwards every market's state is read from Redis again. On the way out the
        market leases are released, so another process takes over at once."""
        backoff = self.config.backoff_start_s
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    n = self.step()
                    backoff = self.config.backoff_start_s
                except _RETRYABLE as exc:
                    log.warning("redis unavailable (%s); retrying in %.1f s", exc, backoff)
                    self.stats.errors += 1
                    self.stats.last_error = f"redis: {exc}"
                    self._reset()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
                if n:
                    idle_since = time.monotonic()
                if max_bars is not None and self.stats.bars >= max_bars:
                    break
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
        finally:
            with contextlib.suppress(redis.RedisError):
                self.leases.release_all()
        return self.stats

    def stop(self) -> None:
        self._stop.set()
