"""``CommandService``: answers every request the backend makes over Redis.

Commands arrive on ``elysia:command`` (pub/sub: lost while the bridge is down) and on
the durable ``botlib:commands`` stream (consumer group ``botlib-bridge``: kept until
answered). Each is validated (``parse_command``); a refused one is dead-lettered with
its reason and answered on ``python:command_error`` with its request id. A command
with a ``request_id`` runs once (``_answers``): sent again, or redelivered, it gets
the first answer again. Per-user limits on ``train``, ``optimize`` and
``generate_signal`` answer an excess request ``rate_limited``; the limits follow the
runtime configuration without a restart. Quick commands (``get_predictions``,
``promote``, ``rollback``, ``generate_signal``) run on a few threads and are answered
on ``python:command_result``; models are loaded once per version and cached. Long
ones (``train``, ``optimize``, ``backtest``) each run in a process of their own
(``_jobs``): at most ``workers`` at once, then ``queued``, beyond ``max_queue``
``busy``; past their time limit ``timeout``; a killed process is an ``error``. They
end with ``python:model_trained`` / ``python:optimization_complete`` / a result.
A stream entry is acknowledged only once its command is answered, so a bridge that
dies mid-command runs it again after a restart. Counters are kept in
``botlib:bridge:stats`` for ``botlib status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from botlib.bridge._answers import Answers
from botlib.bridge._jobs import Finished, Job, Jobs
from botlib.bridge._work import LONG
from botlib.bridge.commands import Command, Rejection, parse_command
from botlib.runtime import RateLimit, RuntimeConfig, RuntimeConfigWatcher
from botlib.transport import RedisNames, connect, dumps, ensure_group, redis_names, trim_read
from botlib.transport.stats import BridgeCounter

__all__ = ["BridgeConfig", "CommandService"]

log = logging.getLogger("botlib.bridge")

_RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


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
    #: a long command running longer is stopped and answered ``timeout`` (seconds)
    time_limit_s: float = 6 * 3600.0
    #: how long a request id's answer is kept for a repeated request (seconds)
    answer_ttl_s: int = 7 * 86_400
    #: default: the runtime configuration's defaults
    rate_limits: dict[str, tuple[int, int]] = field(
        default_factory=lambda: RuntimeConfig().limits()
    )


Ack = Callable[[], None]


def _no_ack() -> None:
    return None


def _bound_training(payload: dict[str, Any]) -> dict[str, Any]:
    """A training of the backend's model: its bound registered name, and the
    algorithm and hyperparameters given at ``create_model`` under the command's own."""
    from botlib.errors import ConfigError
    from botlib.tracking.identity import find_bound

    ident = find_bound(payload["model_id"])
    if ident is None:
        raise ConfigError(
            f"model_id {payload['model_id']} is not bound to a registered model: send "
            "create_model first (or bind one with `botlib bind NAME MODEL_ID`)"
        )
    spec = ident.spec or {}
    algorithm = payload.get("algorithm") or spec.get("algorithm")
    if not algorithm:
        raise ConfigError(f"model {ident.name}: no algorithm given or recorded")
    hyper = {**dict(spec.get("params") or {}), **dict(payload.get("hyperparameters") or {})}
    from botlib.bridge._bounds import check_hyperparameters

    problems = check_hyperparameters(str(algorithm), hyper)
    if problems:
        raise ConfigError("; ".join(problems[:5]))
    if payload.get("symbol_as"):
        from botlib.tracking.identity import set_symbol_as

        set_symbol_as(ident.name, payload["symbol_as"])
    return {**payload, "algorithm": algorithm, "hyperparameters": hyper,
            "model_name": ident.name, "user_id": ident.user_id,
            "features_asked": spec.get("features")}  # fmt: skip


#: what each network predicts, and the names the backend may give that target
_TARGETS = {
    "lstm": ("price", {"close", "price", "return", "returns"}),
    "gru": ("volatility", {"volatility"}),
    "transformer": ("trend", {"trend", "direction"}),
}


def _training_inputs(payload: dict[str, Any]) -> dict[str, Any]:
    """The backend's ``trainingData``: ``features`` become the network's feature list
    (``feature_set``), ``target`` must name what the network predicts. Notes on what
    was asked and what is used go into the answer."""
    from botlib.errors import ConfigError
    from botlib.features import get_feature_spec

    algorithm = str(payload["algorithm"])
    features, target = payload.get("features"), payload.get("target")
    notes: list[str] = []
    hyper = dict(payload.get("hyperparameters") or {})
    if features:
        if algorithm not in _TARGETS:
            raise ConfigError(
                f"trainingData.features applies to the networks (lstm, gru, transformer); "
                f"{algorithm} computes its own inputs"
            )
        spec = get_feature_spec(list(features))  # an unknown name is refused by name
        hyper["feature_set"] = list(features)
        asked = payload.get("features_asked")
        if isinstance(asked, int) and asked != len(spec.features):
            notes.append(
                f"configuration.features is {asked}; trainingData.features names "
                f"{len(spec.features)}: {', '.join(features)}"
            )
    if target is not None:
        kind, names = _TARGETS.get(algorithm, (None, set()))
        if target not in names:
            raise ConfigError(
                f"trainingData.target {target!r}: {algorithm} predicts "
                + (f"{kind} (target: {', '.join(sorted(names))})" if kind else "no target")
            )
    return {**payload, "hyperparameters": hyper, "notes": notes}


def _bound_optimize(payload: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """An optimization of the strategy bound to the backend's ``strategy_id``: its rule
    strategy, its parameters in the strategy's own names, and the registered model
    the result is a version of."""
    from pydantic import ValidationError

    from botlib.bridge.commands import OptimizeCommand, _errors
    from botlib.errors import ConfigError
    from botlib.tracking.identity import find_strategy

    bound = find_strategy(payload["strategy_id"])
    if bound is None:
        raise ConfigError(
            f"strategy_id {payload['strategy_id']} is not bound to a rule strategy: bind it "
            "with `botlib bind-strategy RULE STRATEGY_ID` (or the bind command)"
        )
    if "strategy" in explicit and payload["strategy"] != bound.strategy:
        raise ConfigError(
            f"strategy {payload['strategy']!r} differs from {bound.strategy!r}, "
            f"bound to strategy_id {bound.strategy_id}"
        )
    fields = {k: v for k, v in payload.items() if k in OptimizeCommand.model_fields}
    try:
        checked = OptimizeCommand.model_validate({**fields, "strategy": bound.strategy})
    except ValidationError as exc:
        raise ConfigError(_errors(exc)) from None
    return {**payload, **checked.model_dump(), "model_name": bound.name,
            "user_id": bound.user_id}  # fmt: skip


#: optimize settings a backend may leave out, and how the answer states the default
_OPTIMIZE_DEFAULTS = ("symbol", "timeframe", "start", "end", "algorithm", "objective",
                      "population", "generations")  # fmt: skip


class CommandService:
    def __init__(
        self,
        client: Any | None = None,
        *,
        config: BridgeConfig | None = None,
        names: RedisNames | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.r: Any = client if client is not None else connect(role="bridge")
        self.config = config or BridgeConfig()
        self.names = names or redis_names()
        self.answers = Answers(self.r, self.names, ttl_s=self.config.answer_ttl_s)
        self.jobs = Jobs(self.config.workers, self.config.experiment)
        self._quick_pool = ThreadPoolExecutor(
            self.config.quick_workers, thread_name_prefix="bridge-quick"
        )
        self._quick: set[Future[Any]] = set()
        self._stop = threading.Event()
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._models_lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        #: stream entries read and not yet answered (never read twice meanwhile)
        self._in_hand: set[str] = set()
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
        self.path_ceiling = RuntimeConfig().path_ceiling
        self._next_check = 0.0
        self._next_trim = 0.0
        self._recover = True  # read this consumer's unacknowledged commands first
        self._alerts_cursor: str | None = None

    # -- answers ------------------------------------------------------------------
    def _count(self, *fields: str, **gauges: Any) -> None:
        pipe = self.r.pipeline(transaction=False)
        self.answers.count(pipe, fields, gauges)
        pipe.execute()

    def _error(self, cmd: Command | Rejection, reason: str, kind: str = "error") -> None:
        name = cmd.name if isinstance(cmd, Command) else cmd.command
        event = {"event": kind, "command": name, "request_id": cmd.request_id,
                 "user_id": cmd.user_id, "reason": reason}  # fmt: skip
        if kind in ("error", "timeout"):
            self.answers.emit(
                self.names.error_channel, event,
                BridgeCounter.failed if kind == "error" else BridgeCounter(kind),
                **{BridgeCounter.last_error: f"{name}: {reason}"[:500],
                   BridgeCounter.last_error_at: time.time()},
            )  # fmt: skip
        else:
            self.answers.emit(self.names.error_channel, event, BridgeCounter(kind))

    def _result(self, cmd: Command, status: str, result: Any = None) -> None:
        self.answers.emit(
            self.names.result_channel,
            {"event": status, "command": cmd.name, "request_id": cmd.request_id,
             "user_id": cmd.user_id, "result": result},
            BridgeCounter(status),
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
    def _allowed(self, cmd: Command) -> str | None:
        """None when ``cmd`` is within its limits, else why not: per ``user_id`` (the
        backend vouches for its users), and per path (all its users together: a ceiling
        no payload can dodge by changing its user_id)."""
        limit = self.rate_limits.get(cmd.name)
        if limit is None:
            return None
        count, seconds = limit
        ceiling = count * self.path_ceiling
        window = int(time.time() // seconds)
        prefix = self.names.rate_limit_prefix
        user_key = f"{prefix}{cmd.user_id or 'anonymous'}:{cmd.name}:{window}"
        path_key = f"{prefix}path:{cmd.path}:{cmd.name}:{window}"
        pipe = self.r.pipeline(transaction=True)
        pipe.incr(user_key)
        pipe.expire(user_key, seconds + 1)
        pipe.incr(path_key)
        pipe.expire(path_key, seconds + 1)
        used = pipe.execute()
        if int(used[2]) > ceiling:
            return (f"rate limit: at most {ceiling} {cmd.name} per {seconds} s on the "
                    f"{cmd.path} path (all users)")  # fmt: skip
        if int(used[0]) > count:
            return f"rate limit: at most {count} {cmd.name} per {seconds} s per user"
        return None

    # -- commands -------------------------------------------------------------------
    def handle(self, raw: str | bytes, source: str, ack: Ack = _no_ack) -> None:
        """Validate and answer (or start) one command; ``ack`` is called once it is
        answered. Never raises on bad input."""
        self.handled += 1
        self._count(BridgeCounter.handled)
        parsed = parse_command(raw, "admin" if source == self.names.admin_commands else "backend")
        if isinstance(parsed, Rejection):
            self._deadletter(raw, source, parsed.reason)
            self._error(parsed, parsed.reason, "invalid")
            ack()
            return
        if self.answers.claim(parsed.request_id).state != "run":
            ack()  # answered again, or still running under its first delivery
            return
        refused = self._allowed(parsed)
        if refused:
            self._error(parsed, refused, "rate_limited")
            ack()
            return
        if parsed.name in LONG:
            self._answer(self._start, parsed, ack)
        else:
            future = self._quick_pool.submit(self._answer, self._run_quick, parsed, ack)
            self._quick.add(future)
            future.add_done_callback(self._quick.discard)

    def _answer(self, work: Any, cmd: Command, ack: Ack) -> None:
        try:
            work(cmd, ack)
        except Exception as exc:  # a failing command is answered, never fatal
            log.exception("%s failed", cmd.name)
            self._error(cmd, f"{type(exc).__name__}: {exc}")
            ack()

    def _run_quick(self, cmd: Command, ack: Ack) -> None:
        self._result(cmd, "done", self._quick_result(cmd))
        ack()

    def model(self, entry: dict[str, Any]) -> Any:
        """The model of an active-model entry: its registry version, loaded once (after
        its artifacts' digest matched the promoted one: ``tracking.verify``) and cached."""
        from botlib.tracking.verify import load_verified, registry_version

        name, version = registry_version(entry)
        uri = f"models:/{name}/{version}"

        with self._models_lock:
            loading = self._load_locks.setdefault(uri, threading.Lock())
        with loading:  # concurrent requests for one version wait for one load
            with self._models_lock:
                if uri in self._models:
                    self._models.move_to_end(uri)
                    self._count(BridgeCounter.model_cache_hits)
                    return self._models[uri]
            model = load_verified(entry)
            self._count(BridgeCounter.model_loads)
            with self._models_lock:
                self._models[uri] = model
                while len(self._models) > self.config.model_cache:
                    evicted, _ = self._models.popitem(last=False)
                    self._load_locks.pop(evicted, None)
        return model

    def _quick_result(self, cmd: Command) -> Any:
        from botlib.errors import ConfigError

        p = cmd.payload.model_dump()
        if cmd.name == "get_predictions":
            from botlib.bridge._dialect import canonical_symbol

            out = []
            for _, fields in self.r.xrevrange(self.names.predictions, count=5000):
                item = json.loads(fields["data"])
                if p["model"] and not str(item["model_id"]).startswith(p["model"]):
                    continue
                if p["model_id"] and item["model_id"] != p["model_id"]:
                    continue
                if p["symbol"] and canonical_symbol(str(item["symbol"])) != p["symbol"]:
                    continue
                out.append(item)
                if len(out) >= p["limit"]:
                    break
            return out
        if cmd.name == "promote":
            from botlib.promotion import promote

            result = promote(p["model"], p["version"], force=p["force"], role="bridge")
            return result.to_dict()
        if cmd.name == "rollback":
            from botlib.promotion import rollback

            old, new = rollback(p["model"], role="bridge")
            return {"model": p["model"], "from_version": old, "to_version": new}
        if cmd.name == "generate_signal":
            from botlib.bridge._signal import generate_signal

            return generate_signal(self.r, self.names, p, self.model, self.runtime.current)
        if cmd.name == "deactivate":
            from botlib.promotion import deactivate
            from botlib.tracking.identity import find_bound

            name = p["model"]
            if name is None:
                ident = find_bound(p["model_id"])
                if ident is None:
                    raise ConfigError(f"model_id {p['model_id']} is not bound to a model")
                name = ident.name
            was = deactivate(name, role="bridge")
            return {"model": name, "modelId": (was or {}).get("model_id"), "status": "inactive"}
        if cmd.name == "bind":
            from botlib.tracking.identity import bind_model, bind_strategy, set_symbol_as

            if p["strategy_id"]:
                bound = bind_strategy(p["strategy"], p["strategy_id"], user_id=p["user_id"])
                return {"strategyId": bound.strategy_id, "strategy": bound.strategy,
                        "name": bound.name, "status": "bound"}  # fmt: skip
            ident = bind_model(p["name"], p["model_id"], user_id=p["user_id"])
            set_symbol_as(p["name"], p["symbol_as"])
            return {"modelId": ident.model_id, "name": ident.name, "status": "bound"}
        if cmd.name == "create_model":
            from botlib.tracking.identity import bind_model

            payload = cmd.payload
            spec = {"model_type": p["model_type"], "algorithm": p["algorithm"],
                    "name": p["name"], "params": payload.params(),  # type: ignore[attr-defined]
                    "features": p["configuration"].get("features")}  # fmt: skip
            ident = bind_model(f"{p['algorithm']}-{p['model_id']}", p["model_id"],
                               user_id=p["user_id"], spec=spec, create=True)  # fmt: skip
            return {"modelId": ident.model_id, "name": ident.name, "status": "created"}
        raise AssertionError(cmd.name)

    def _start(self, cmd: Command, ack: Ack) -> None:
        waiting = max(0, len(self.jobs) - self.config.workers + 1)
        if waiting > self.config.max_queue:
            self._error(
                cmd,
                f"busy: {len(self.jobs)} long commands running or queued (at most "
                f"{self.config.workers} running + {self.config.max_queue} waiting); retry later",
                "busy",
            )
            ack()
            return
        payload = cmd.payload.model_dump()
        extra: dict[str, Any] = {}
        try:
            if cmd.name == "train":
                if payload.get("model_id"):
                    payload = _bound_training(payload)
                if payload.get("features") or payload.get("target") is not None:
                    payload = _training_inputs(payload)
                if payload.get("notes"):
                    extra["notes"] = payload["notes"]
                members = (payload.get("hyperparameters") or {}).get("members") or []
                if members:  # registry versions, their artifacts as recorded
                    from botlib.tracking.verify import verify_member

                    for member in members:
                        verify_member(str(member))
            if cmd.name == "optimize":
                explicit = set(cmd.payload.model_fields_set)
                if payload.get("strategy_id"):
                    payload = _bound_optimize(payload, explicit)
                # what the backend left out takes a documented default, stated here
                payload["defaults"] = extra["defaults"] = {
                    k: payload.get(k) if payload.get(k) is not None else "all stored data"
                    for k in _OPTIMIZE_DEFAULTS if k not in explicit
                }  # fmt: skip
        except Exception as exc:
            if cmd.name == "train" and payload.get("model_id"):
                self._train_failed(cmd, str(payload["model_id"]), f"{type(exc).__name__}: {exc}")
            raise
        job = Job(cmd.name, payload, (cmd, ack), self.config.time_limit_s)
        ahead = self.jobs.submit(job)
        self._result(cmd, "queued" if ahead else "started", {"ahead": ahead, **extra})
        self._gauges()

    def _train_failed(self, cmd: Command, model_id: str, reason: str) -> None:
        """The backend listens on python:model_trained only: it writes status error."""
        failed = {"event": "model_trained", "command": cmd.name, "request_id": cmd.request_id,
                  "user_id": cmd.user_id, "modelId": model_id, "status": "error",
                  "reason": reason}  # fmt: skip
        self.answers.emit(self.names.trained_channel, failed)

    def _gauges(self) -> None:
        self._count(
            **{
                BridgeCounter.running: len(self.jobs.running),
                BridgeCounter.queue_depth: len(self.jobs.waiting),
                BridgeCounter.quick_in_flight: len(self._quick),
            }
        )

    def _finished(self, done: Finished) -> None:
        cmd, ack = done.job.token
        base = {"command": cmd.name, "request_id": cmd.request_id, "user_id": cmd.user_id}
        model_id = done.job.payload.get("model_id")
        if model_id:  # the backend's model: it reads data.modelId and the status
            base["modelId"] = model_id
        if done.outcome == "ok":
            if cmd.name == "train":
                self.answers.emit(
                    self.names.trained_channel,
                    {"event": "model_trained", **base, "status": "trained", **done.value},
                )
            elif cmd.name == "optimize":
                strategy_id = done.job.payload.get("strategy_id")
                if strategy_id:
                    base["strategyId"] = strategy_id
                self.answers.emit(
                    self.names.optimized_channel,
                    {"event": "optimization_complete", **base, **done.value,
                     "defaults": done.job.payload.get("defaults", {})},
                )  # fmt: skip
            else:
                self._result(cmd, "done", done.value)
        else:
            log.error("%s %s: %s", cmd.name, done.outcome, done.value)
            if cmd.name == "train" and model_id:
                self._train_failed(cmd, str(model_id), str(done.value))
            self._error(cmd, str(done.value), "timeout" if done.outcome == "timeout" else "error")
        ack()

    def poll_finished(self) -> None:
        finished = self.jobs.poll()
        for done in finished:
            self._finished(done)
        if finished:
            self._gauges()

    def _housekeeping(self) -> None:
        """Every ``reload_check_s``: heartbeat, liveness, gauges and the runtime config."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.config.reload_check_s
        pipe = self.r.pipeline(transaction=False)
        self.answers.count(pipe, (), {BridgeCounter.heartbeat: time.time()})
        self.answers.beat(pipe, self.config.reload_check_s)
        pipe.execute()
        if now >= self._next_trim:  # the command streams: bounded, never past the unread
            self._next_trim = now + 5.0
            for stream in (self.names.commands, self.names.admin_commands):
                trim_read(self.r, stream, 10_000)
        config = self.runtime.poll()
        if config is not None:
            self.rate_limits = config.limits()
            self.path_ceiling = config.path_ceiling
        self._read_alerts(demote=self.runtime.current.drift_demote)

    def _read_alerts(self, *, demote: bool) -> None:
        """The model alerts raised since the last look (``botlib:alerts``, position kept
        in the bridge's stats). With the runtime ``drift_demote`` on, a feature-drift
        alert stops serving the version it names, if that version still serves; off,
        they are read past, so switching it on acts on alerts from then on only."""
        from botlib.transport import active_models

        if self._alerts_cursor is None:
            saved = self.r.hget(self.names.bridge_stats, BridgeCounter.alerts_read)
            last = self.r.xrevrange(self.names.alerts, count=1)
            self._alerts_cursor = saved or (last[0][0] if last else "0-0")
        got = self.r.xread({self.names.alerts: self._alerts_cursor}, count=100)
        entries = got[0][1] if got else []
        if not entries:
            return
        for _, fields in entries:
            try:
                alert = json.loads(fields.get("data") or "{}")
            except ValueError:
                continue
            if not demote or alert.get("type") != "feature_drift":
                continue
            served = {
                str(e.get("model_id") or f"{n}:{e.get('version')}"): n
                for n, e in active_models(self.r, self.names).items()
            }
            name = served.get(str(alert.get("model_id")))
            if name is None:
                continue  # that version no longer serves
            moved = ", ".join(map(str, alert.get("moved") or []))
            reason = (f"feature drift on {alert.get('exchange')} {alert.get('market')} "
                      f"{alert.get('timeframe')} at {alert.get('bar_time')}: {moved} "
                      "(runtime drift_demote)")  # fmt: skip
            try:
                from botlib.promotion import deactivate

                deactivate(name, role="bridge", reason=reason)
                log.warning("%s deactivated: %s", name, reason)
                self._count(BridgeCounter.demoted)
            except Exception as exc:  # the alert stays read; the error is reported
                log.error("%s could not be deactivated after drift: %s", name, exc)
                self._count(BridgeCounter.failed)
        self._alerts_cursor = entries[-1][0]
        self.r.hset(self.names.bridge_stats, BridgeCounter.alerts_read, self._alerts_cursor)

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

    def _acker(self, stream: str, entry_id: str) -> Ack:
        def ack() -> None:
            self._in_hand.discard(f"{stream}|{entry_id}")
            with contextlib.suppress(redis.RedisError):  # unacked: read again, answered again
                self.r.xack(stream, self.names.command_group, entry_id)

        return ack

    def _read_commands(self, raw: Any, pubsub: Any) -> bool:
        """Handle what arrived on the channel and the two streams (the backend's and the
        admin one); True if anything did."""
        busy = False
        message = pubsub.get_message(timeout=0.05)
        while message is not None:
            if message.get("type") in ("message", b"message"):
                self.handle(message["data"], self.names.command_channel)
                busy = True
            message = pubsub.get_message(timeout=0)
        # after a start or an outage, first the entries this consumer read but never
        # acknowledged (answered at least once), then new ones
        start = "0" if self._recover else ">"
        got = raw.xreadgroup(
            self.names.command_group,
            self.config.consumer,
            {self.names.commands: start, self.names.admin_commands: start},
            count=100,
        )
        fresh = [
            (
                stream.decode() if isinstance(stream, bytes) else stream,
                entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
                fields,
            )
            for stream, items in got or []
            for entry_id, fields in items
        ]
        if self._recover and not any(f"{s}|{e}" not in self._in_hand for s, e, _ in fresh):
            self._recover = False
        for stream, entry_id, fields in fresh:
            if f"{stream}|{entry_id}" in self._in_hand:
                continue  # still being answered by this process
            fields = fields or {}
            data = fields.get(b"data")
            if data is None:  # flat fields: hand them over as one JSON object
                data = json.dumps(
                    {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                     for k, v in fields.items()}
                )  # fmt: skip
            self._in_hand.add(f"{stream}|{entry_id}")
            self.handle(data, stream, self._acker(stream, entry_id))
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
                        for stream in (self.names.commands, self.names.admin_commands):
                            ensure_group(self.r, stream, self.names.command_group, start="$")
                        connected, self._recover = True, True
                    busy = self._read_commands(raw, pubsub)
                    self.poll_finished()
                    self._housekeeping()
                    backoff = 0.1
                except _RETRYABLE as exc:
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
                if busy or len(self.jobs) or self._quick:
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
        finally:
            with contextlib.suppress(redis.RedisError):
                pubsub.close()
            raw.close()
            self._quick_pool.shutdown(wait=True)
            for done in self.jobs.shutdown(wait=True):
                with contextlib.suppress(redis.RedisError):
                    self._finished(done)

    def stop(self) -> None:
        self._stop.set()
