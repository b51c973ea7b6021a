"""``CommandService``: answers every request the backend makes over Redis.

Commands arrive on ``elysia:command`` (pub/sub) and on the durable ``botlib:commands``
stream (consumer group ``botlib-bridge``). Each is validated (``parse_command``); a
refused one is dead-lettered with its reason and answered on ``python:command_error``
with its request id. Per-user limits on ``train``, ``optimize`` and
``generate_signal`` answer an excess request with a ``rate_limited`` error, never
silence; the limits follow the runtime configuration (``botlib config set
rate_limits.train=10/3600``) without a restart. Quick commands (``get_predictions``,
``promote``, ``rollback``, ``generate_signal``) run on a few threads (a slow one never
holds up the listener) and are answered on ``python:command_result``; models are
loaded once per version and cached. Long ones
(``train``, ``optimize``, ``backtest``) run in a bounded pool of worker processes —
excess work waits and is reported as ``queued``, beyond ``max_queue`` it is answered
``busy`` — and end with
``python:model_trained`` / ``python:optimization_complete`` / a result, or an error
event carrying the request id and the reason. Every answer is also appended to the
durable ``botlib:events`` stream. Counters (handled, refused, rate limited, done,
failed, running, queued, model loads, last error, heartbeat) are kept in the hash
``botlib:bridge:stats`` that ``botlib status`` reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from botlib.bridge import _work
from botlib.bridge.commands import Command, Rejection, parse_command
from botlib.runtime import RateLimit, RuntimeConfig, RuntimeConfigWatcher
from botlib.transport import RedisNames, connect, dumps, ensure_group, redis_names

__all__ = ["BridgeConfig", "CommandService"]

log = logging.getLogger("botlib.bridge")

LONG = {"train": _work.train, "optimize": _work.optimize, "backtest": _work.backtest}


@dataclass(frozen=True)
class BridgeConfig:
    """``rate_limits``: command -> (requests, per seconds), per user."""

    workers: int = 1
    #: long commands allowed to wait for a worker; beyond it a request is answered ``busy``
    max_queue: int = 20
    #: threads answering quick commands (generate_signal, promote, …)
    quick_workers: int = 4
    #: loaded models kept (by version URI) for generate_signal
    model_cache: int = 8
    reload_check_s: float = 0.2
    experiment: str = "botlib-bridge"
    consumer: str = "bridge"
    #: default: the runtime configuration's defaults
    rate_limits: dict[str, tuple[int, int]] = field(
        default_factory=lambda: RuntimeConfig().limits()
    )


class CommandService:
    def __init__(
        self,
        client: Any | None = None,
        *,
        config: BridgeConfig | None = None,
        names: RedisNames | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.r: Any = client if client is not None else connect()
        self.config = config or BridgeConfig()
        self.names = names or redis_names()
        self._pool: ProcessPoolExecutor | None = None
        self._quick_pool = ThreadPoolExecutor(
            self.config.quick_workers, thread_name_prefix="bridge-quick"
        )
        self._quick: set[Future[Any]] = set()
        self._running: dict[Future[Any], Command] = {}
        self._stop = threading.Event()
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._models_lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self.handled = 0
        limits = {
            k: RateLimit(requests=n, per_s=s) for k, (n, s) in self.config.rate_limits.items()
        }
        self.runtime = RuntimeConfigWatcher(
            self.r,
            self.names,
            "bridge",
            path=config_file,
            base=RuntimeConfig(rate_limits=limits),  # type: ignore[arg-type]
        )
        self.rate_limits = dict(self.config.rate_limits)
        self._next_check = 0.0
        self._recover = True  # read this consumer's unacknowledged commands first

    # -- answers ------------------------------------------------------------------
    def _emit(
        self, channel: str, event: dict[str, Any], counter: str | None = None, **gauges: Any
    ) -> None:
        """Publish ``event`` on ``channel`` and ``botlib:events``, and count it in
        ``botlib:bridge:stats`` — one round trip."""
        payload = dumps({**event, "at": time.time()})
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.names.events, {"data": payload}, maxlen=100_000, approximate=True)
        pipe.publish(channel, payload)
        self._stats(pipe, (counter,) if counter else (), gauges)
        pipe.execute()

    def _stats(self, pipe: Any, fields: tuple[str, ...], gauges: dict[str, Any]) -> None:
        for name in fields:
            pipe.hincrby(self.names.bridge_stats, name, 1)
        if gauges:
            pipe.hset(self.names.bridge_stats, mapping={k: str(v) for k, v in gauges.items()})

    def _count(self, *fields: str, **gauges: Any) -> None:
        pipe = self.r.pipeline(transaction=False)
        self._stats(pipe, fields, gauges)
        pipe.execute()

    def _error(self, cmd: Command | Rejection, reason: str, kind: str = "error") -> None:
        name = cmd.name if isinstance(cmd, Command) else cmd.command
        event = {"event": kind, "command": name, "request_id": cmd.request_id,
                 "user_id": cmd.user_id, "reason": reason}  # fmt: skip
        if kind == "error":
            self._emit(
                self.names.error_channel, event, "failed",
                last_error=f"{name}: {reason}"[:500], last_error_at=time.time(),
            )  # fmt: skip
        else:
            self._emit(self.names.error_channel, event, kind)

    def _result(self, cmd: Command, status: str, result: Any = None) -> None:
        self._emit(
            self.names.result_channel,
            {"event": status, "command": cmd.name, "request_id": cmd.request_id,
             "user_id": cmd.user_id, "result": result},
            status,
        )  # fmt: skip

    def _deadletter(self, raw: str | bytes, source: str, reason: str) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        self.r.xadd(
            self.names.deadletter,
            {
                "data": dumps(
                    {"source": source, "reason": reason, "fields": text[:4000], "at": time.time()}
                )
            },
            maxlen=100_000,
            approximate=True,
        )

    # -- rate limits ----------------------------------------------------------------
    def _allowed(self, cmd: Command) -> bool:
        limit = self.rate_limits.get(cmd.name)
        if limit is None:
            return True
        count, seconds = limit
        window = int(time.time() // seconds)
        key = f"{self.names.rate_limit_prefix}{cmd.user_id or 'anonymous'}:{cmd.name}:{window}"
        pipe = self.r.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, seconds + 1)
        used = int(pipe.execute()[0])
        return used <= count

    # -- commands -------------------------------------------------------------------
    def handle(self, raw: str | bytes, source: str) -> None:
        """Validate and answer (or start) one command. Never raises on bad input."""
        self.handled += 1
        self._count("handled")
        parsed = parse_command(raw)
        if isinstance(parsed, Rejection):
            self._deadletter(raw, source, parsed.reason)
            self._error(parsed, parsed.reason, "invalid")
            return
        if not self._allowed(parsed):
            limit = self.rate_limits[parsed.name]
            self._error(
                parsed,
                f"rate limit: at most {limit[0]} {parsed.name} per {limit[1]} s per user",
                "rate_limited",
            )
            return
        if parsed.name in LONG:
            self._answer(self._start, parsed)
        else:
            future = self._quick_pool.submit(self._answer, self._run_quick, parsed)
            self._quick.add(future)
            future.add_done_callback(self._quick.discard)

    def _answer(self, work: Any, cmd: Command) -> None:
        try:
            work(cmd)
        except Exception as exc:  # a failing command is answered, never fatal
            log.exception("%s failed", cmd.name)
            self._error(cmd, f"{type(exc).__name__}: {exc}")

    def _run_quick(self, cmd: Command) -> None:
        self._result(cmd, "done", self._quick_result(cmd))

    def model(self, uri: str) -> Any:
        """The loaded model of ``uri`` (a version's URI), loaded once and cached."""
        from botlib.models import load_model

        with self._models_lock:
            loading = self._load_locks.setdefault(uri, threading.Lock())
        with loading:  # concurrent requests for one version wait for one load
            with self._models_lock:
                if uri in self._models:
                    self._models.move_to_end(uri)
                    self._count("model_cache_hits")
                    return self._models[uri]
            model = load_model(uri)
            self._count("model_loads")
            with self._models_lock:
                self._models[uri] = model
                while len(self._models) > self.config.model_cache:
                    evicted, _ = self._models.popitem(last=False)
                    self._load_locks.pop(evicted, None)
        return model

    def _quick_result(self, cmd: Command) -> Any:
        p = cmd.payload.model_dump()
        if cmd.name == "get_predictions":
            out = []
            for _, fields in self.r.xrevrange(self.names.predictions, count=5000):
                item = json.loads(fields["data"])
                if p["model"] and not str(item["model_id"]).startswith(p["model"]):
                    continue
                if p["symbol"] and item["symbol"] != p["symbol"]:
                    continue
                out.append(item)
                if len(out) >= p["limit"]:
                    break
            return out
        if cmd.name == "promote":
            from botlib.promotion import promote

            result = promote(p["model"], p["version"], force=p["force"])
            return result.to_dict()
        if cmd.name == "rollback":
            from botlib.promotion import rollback

            old, new = rollback(p["model"])
            return {"model": p["model"], "from_version": old, "to_version": new}
        if cmd.name == "generate_signal":
            return _generate_signal(self.r, self.names, p, self.model)
        raise AssertionError(cmd.name)

    def _start(self, cmd: Command) -> None:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # TF and forks do not mix
            self._pool = ProcessPoolExecutor(self.config.workers, mp_context=context)
        waiting = max(0, len(self._running) - self.config.workers + 1)
        if waiting > self.config.max_queue:
            self._error(
                cmd,
                f"busy: {len(self._running)} long commands running or queued (at most "
                f"{self.config.workers} running + {self.config.max_queue} waiting); retry later",
                "busy",
            )
            return
        future = self._pool.submit(LONG[cmd.name], cmd.payload.model_dump(), self.config.experiment)
        self._running[future] = cmd
        self._result(cmd, "queued" if waiting else "started", {"ahead": waiting})
        self._gauges()

    def _gauges(self) -> None:
        running = min(len(self._running), self.config.workers)
        self._count(
            running=running,
            queue_depth=len(self._running) - running,
            quick_in_flight=len(self._quick),
        )

    def poll_finished(self) -> None:
        finished = [f for f in self._running if f.done()]
        for future in finished:
            # answered first, forgotten after: an answer that Redis refused is retried
            cmd = self._running[future]
            exc = future.exception()
            if exc is not None:
                self._error(cmd, f"{type(exc).__name__}: {exc}")
                del self._running[future]
                continue
            result = future.result()
            base = {"command": cmd.name, "request_id": cmd.request_id, "user_id": cmd.user_id}
            if cmd.name == "train":
                self._emit(self.names.trained_channel, {"event": "model_trained", **base, **result})
            elif cmd.name == "optimize":
                self._emit(
                    self.names.optimized_channel,
                    {"event": "optimization_complete", **base, **result},
                )
            else:
                self._result(cmd, "done", result)
            del self._running[future]
        if finished:
            self._gauges()

    def _housekeeping(self) -> None:
        """Every ``reload_check_s``: heartbeat, gauges and the runtime config."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.config.reload_check_s
        self._count(heartbeat=time.time())
        config = self.runtime.poll()
        if config is not None:
            self.rate_limits = config.limits()

    # -- the loop ---------------------------------------------------------------------
    def _raw_client(self) -> Any:
        """The same server, replies as bytes: commands are decoded by ``parse_command``,
        so bytes that are not UTF-8 are refused with a reason instead of breaking the
        connection's decoder."""
        pool = self.r.connection_pool
        kwargs = {**pool.connection_kwargs, "decode_responses": False}
        return redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )

    def _read_commands(self, raw: Any, pubsub: Any) -> bool:
        """Handle what arrived on the channel and the stream; True if anything did."""
        busy = False
        message = pubsub.get_message(timeout=0.05)
        while message is not None:
            if message.get("type") in ("message", b"message"):
                self.handle(message["data"], self.names.command_channel)
                busy = True
            message = pubsub.get_message(timeout=0)
        # after a start or an outage, first the entries this consumer read but never
        # acknowledged (answered at least once), then new ones
        got = raw.xreadgroup(
            self.names.command_group,
            self.config.consumer,
            {self.names.commands: "0" if self._recover else ">"},
            count=100,
        )
        pending = any(items for _, items in got or [])
        if self._recover and not pending:
            self._recover = False
        for _, items in got or []:
            for entry_id, fields in items:
                fields = fields or {}
                data = fields.get(b"data")
                if data is None:  # flat fields: hand them over as one JSON object
                    data = json.dumps(
                        {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                         for k, v in fields.items()}
                    )  # fmt: skip
                self.handle(data, self.names.commands)
                raw.xack(self.names.commands, self.names.command_group, entry_id)
                busy = True
        return busy

    def run(self, *, idle_exit_s: float | None = None, backoff_max_s: float = 5.0) -> None:
        """Listen until ``stop()`` (or ``idle_exit_s`` with nothing to do). A Redis
        outage is retried with backoff (up to ``backoff_max_s``); on reconnection the
        channel is subscribed again and unacknowledged stream commands are read again.
        Commands published on the channel while Redis was down are lost (pub/sub);
        the ``botlib:commands`` stream keeps them."""
        raw = self._raw_client()
        pubsub = raw.pubsub(ignore_subscribe_messages=True)
        idle_since = time.monotonic()
        connected, backoff = False, 0.1
        try:
            while not self._stop.is_set():
                try:
                    if not connected:
                        pubsub.subscribe(self.names.command_channel)
                        ensure_group(
                            self.r, self.names.commands, self.names.command_group, start="$"
                        )
                        connected, self._recover = True, True
                    busy = self._read_commands(raw, pubsub)
                    self.poll_finished()
                    self._housekeeping()
                    backoff = 0.1
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                    log.warning("redis unavailable (%s); retrying in %.1f s", exc, backoff)
                    connected = False
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, backoff_max_s)
                    continue
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    connected = False  # Redis lost its data: make the group again
                    continue
                if busy or self._running or self._quick:
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
        finally:
            with contextlib.suppress(redis.RedisError):
                pubsub.close()
            raw.close()
            self._quick_pool.shutdown(wait=True)
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=False)
                with contextlib.suppress(redis.RedisError):
                    self.poll_finished()

    def stop(self) -> None:
        self._stop.set()


def _utc(value: int | str) -> Any:
    import pandas as pd

    if isinstance(value, int):
        return pd.Timestamp(value, unit="ms", tz="UTC")
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _recent_candles(
    r: Any, names: RedisNames, entry: dict[str, Any], p: dict[str, Any], need: int
) -> Any:
    """The newest ``need`` valid bars of the market's live bar stream (what the signal
    loop sees), or ``None`` when it holds fewer."""
    import numpy as np

    from botlib.live._market import frame
    from botlib.live.feeds import stream_history
    from botlib.settings import get_settings

    exchange = str(entry.get("exchange") or get_settings().exchange_id)
    stream = names.bar_stream(exchange, p["symbol"], p["timeframe"])
    # read a few more entries than needed: room for records set aside as invalid
    times, values = stream_history(r, stream, need, read=need + 50)
    if len(times) < need:
        return None
    return frame(np.array(times, "int64"), np.array(values, "float64"))


def _generate_signal(r: Any, names: RedisNames, p: dict[str, Any], load: Any) -> dict[str, Any]:
    """A signal now with the named or the active model for the symbol, from the
    caller's candles, else the market's live bar stream, else the data store (the
    signal's metadata says which, and the last candle's time); also published on
    ``python:trading_signal``."""
    from datetime import timedelta

    import pandas as pd

    from botlib.data import load_ohlcv, timeframe_seconds
    from botlib.errors import ConfigError
    from botlib.signals import build_signal_frame, signal_records
    from botlib.transport import active_models

    active = active_models(r, names)
    entry = (
        active.get(p["model"])
        if p["model"]
        else next(
            (
                e
                for e in active.values()
                if e.get("symbol") == p["symbol"] and e.get("timeframe") == p["timeframe"]
            ),
            None,
        )
    )
    if entry is None:
        raise ConfigError(f"no active model for {p['model'] or p['symbol'] + ' ' + p['timeframe']}")
    model = load(str(entry["model_uri"]))
    need = model.meta.required_history
    if p["market_data"]:
        rows = p["market_data"]
        stamps = [_utc(x["timestamp"]) for x in rows]
        candles = pd.DataFrame(
            [[x["open"], x["high"], x["low"], x["close"], x["volume"]] for x in rows],
            index=pd.DatetimeIndex(stamps, name="timestamp"),
            columns=["open", "high", "low", "close", "volume"],
            dtype="float64",
        ).sort_index()
        source = "request"
    else:
        candles, source = _recent_candles(r, names, entry, p, need), "stream"
        if candles is None:  # the live stream does not hold enough yet: the data store
            candles, source = load_ohlcv(p["symbol"], p["timeframe"]).iloc[-need:], "store"
    if len(candles) < need:
        raise ConfigError(
            f"{entry['model_id']} needs {need} candles of history, got {len(candles)}"
        )
    outputs = model.predict_tail(candles, 1)
    frame = build_signal_frame(
        outputs.reindex(candles.index), candles, horizon=model.meta.horizon, start=candles.index[-1]
    )
    bar = timedelta(seconds=timeframe_seconds(p["timeframe"]))
    record = signal_records(
        frame, model_id=entry["model_id"], symbol=p["symbol"], bar=bar, horizon=model.meta.horizon,
        metadata={"on_demand": True, "timeframe": p["timeframe"], "candles_from": source,
                  "last_candle": candles.index[-1].isoformat()},
    )[0]  # fmt: skip
    data = record.model_dump(mode="json")
    r.publish(names.signal_channel, dumps(data))
    return data
