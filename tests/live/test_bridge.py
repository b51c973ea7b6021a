"""The command bridge driven as the backend drives it: JSON on elysia:command, answers
on the python:* channels, against a real redis-server and MLflow store."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import pytest
import redis

from botlib.bridge.service import BridgeConfig, CommandService
from botlib.promotion import GateConfig, promote
from botlib.transport import RedisServer
from tests.conftest import Store

pytestmark = pytest.mark.slow

CHANNELS = [
    "python:command_result",
    "python:command_error",
    "python:model_trained",
    "python:optimization_complete",
    "python:trading_signal",
]


class Backend:
    """A plain client, as the TypeScript backend would be, under the backend's Redis
    user (``admin`` is the operator's client, for what the backend may not do)."""

    def __init__(self, server: RedisServer) -> None:
        self.r = redis.Redis.from_url(server.role_url("backend"), decode_responses=True)
        self.admin = redis.Redis.from_url(server.url, decode_responses=True)
        self.sub = self.r.pubsub(ignore_subscribe_messages=True)
        self.sub.subscribe(*CHANNELS)
        self.heard: list[tuple[str, dict[str, Any]]] = []

    def send(self, command: str, data: dict[str, Any], **extra: Any) -> None:
        body = {"command": command, "data": data, "timestamp": int(time.time() * 1000), **extra}
        self.r.publish("elysia:command", json.dumps(body))

    def wait(self, predicate: Any, timeout: float = 120.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.sub.get_message(timeout=0.1)
            if message:
                self.heard.append((message["channel"], json.loads(message["data"])))
            found = [m for m in self.heard if predicate(m)]
            if found:
                return found
        raise AssertionError(f"no answer matched; heard {self.heard[-5:]}")

    def close(self) -> None:
        self.sub.close()
        self.r.close()
        self.admin.close()


def _serve(url: str, **config: Any) -> tuple[CommandService, threading.Thread]:
    service = CommandService(
        redis.Redis.from_url(url, decode_responses=True),
        config=BridgeConfig(experiment="bridge-tests", **config),
    )
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    time.sleep(0.3)  # subscribed
    return service, thread


def _wait_applied(r: redis.Redis, component: str, ok: Any, timeout: float = 5.0) -> Any:
    """The runtime-config status a component reported, once ``ok(status)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = r.hget("botlib:config:status", component)
        if raw and ok(json.loads(raw)):
            return json.loads(raw)
        time.sleep(0.02)
    raise AssertionError(f"{component} reported {r.hget('botlib:config:status', component)}")


def test_every_command_answered_as_the_backend_expects(store: Store, redis_server: Any) -> None:
    backend = Backend(redis_server)
    service, thread = _serve(redis_server.role_url("bridge"), max_queue=1)
    try:
        backend.send("train", {"algorithm": "ga_rules", "start": "2025-01-01", "end": "2025-03-01",
                               "hyperparameters": {"population": 6, "generations": 1}},
                     request_id="t-1", user_id="u")  # fmt: skip
        # one worker, one place in the queue: the next waits, the one after is refused
        short = {"strategy": "sma_cross", "parameters": {"fast": 10, "slow": 50},
                 "start": "2025-02-01", "end": "2025-03-01"}  # fmt: skip
        backend.send("backtest", short, request_id="w-1")
        backend.send("backtest", short, request_id="w-2")
        first = backend.wait(lambda m: m[1].get("request_id") == "t-1")[0][1]
        waits = backend.wait(lambda m: m[1].get("request_id") == "w-1")[0][1]
        refused = backend.wait(lambda m: m[1].get("request_id") == "w-2")[0]
        assert first["event"] == "started" and waits["event"] == "queued"
        assert waits["result"] == {"ahead": 1}
        assert refused[0] == "python:command_error" and refused[1]["event"] == "busy"
        assert "1 waiting" in refused[1]["reason"]
        trained = backend.wait(lambda m: m[0] == "python:model_trained")[0][1]
        assert trained["request_id"] == "t-1" and trained["model_name"] == store.ga
        assert int(trained["model_version"]) >= 2 and "test.sharpe" in trained["metrics"]

        backend.send("optimize", {"strategy": "sma_cross", "algorithm": "de", "population": 6,
                                  "generations": 1, "start": "2025-01-01", "end": "2025-03-01",
                                  "parameters": {"fast": {"min": 5, "max": 30},
                                                 "slow": {"min": 40, "max": 120}}},
                     request_id="o-1")  # fmt: skip
        optimized = backend.wait(lambda m: m[0] == "python:optimization_complete")[0][1]
        assert optimized["request_id"] == "o-1"
        assert 5 <= optimized["best_parameters"]["fast"] <= 30 and optimized["run_id"]

        # a forced promotion is the admin's: refused from the backend, done on the admin path
        backend.send("promote", {"model": store.ga, "force": True}, request_id="p-0")
        refused = backend.wait(lambda m: m[1].get("request_id") == "p-0")[0]
        assert refused[0] == "python:command_error" and "admin path" in refused[1]["reason"]
        admin = {"command": "promote", "data": {"model": store.ga, "force": True},
                 "request_id": "p-1"}  # fmt: skip
        backend.admin.xadd("botlib:admin:commands", {"data": json.dumps(admin)})
        done = backend.wait(lambda m: m[1].get("request_id") == "p-1")[0]
        assert done[0] == "python:command_result" and done[1]["result"]["name"] == store.ga

        backend.send("generate_signal", {"symbol": "BTC/USDT"}, request_id="g-1")
        sig = backend.wait(lambda m: m[0] == "python:trading_signal")[0][1]
        assert sig["model_id"].startswith(store.ga) and sig["signal_type"] in {
            "buy",
            "sell",
            "hold",
            "close",
        }
        answer = backend.wait(lambda m: m[1].get("request_id") == "g-1")[0][1]
        assert answer["result"]["id"] == sig["id"]
        assert answer["result"]["metadata"]["candles_from"] == "store"  # no live bars here

        window = {"start": "2025-02-01", "end": "2025-03-01"}
        params = {"fast": 10, "slow": 50}
        backend.send("backtest", {"strategy": "sma_cross", "parameters": params, **window},
                     request_id="b-1")  # fmt: skip
        bt = backend.wait(lambda m: m[1].get("request_id") == "b-1" and m[1]["event"] == "done")
        assert "sharpe" in bt[0][1]["result"]["metrics"]

        backend.send("get_predictions", {"limit": 3}, request_id="q-1")
        got = backend.wait(lambda m: m[1].get("request_id") == "q-1")[0][1]
        assert got["result"] == []  # nothing served yet in this Redis

        backend.send("rollback", {"model": store.lstm}, request_id="rb-1")
        err = backend.wait(lambda m: m[1].get("request_id") == "rb-1")[0]
        assert err[0] == "python:command_error" and "previous" in err[1]["reason"]

        backend.send("trian", {}, request_id="x-1")
        bad = backend.wait(lambda m: m[1].get("request_id") == "x-1")[0][1]
        assert bad["event"] == "invalid" and "did you mean 'train'" in bad["reason"]
        assert backend.r.xlen("botlib:deadletter") == 2  # and the backend's forced promotion
    finally:
        service.stop()
        thread.join(60)
        backend.close()


def test_fuzz_1000_commands_all_answered_and_valid_ones_succeed(
    store: Store, redis_server: Any
) -> None:
    rng = random.Random(3)
    backend = Backend(redis_server)
    service, thread = _serve(redis_server.role_url("bridge"))
    sent_valid = 0
    try:
        for i in range(1000):
            roll = rng.random()
            if roll < 0.1:
                backend.send("get_predictions", {"limit": 2}, request_id=f"v-{i}")
                sent_valid += 1
            elif roll < 0.2:  # the backend's spelling, request id inside data (seed format)
                seed = {"modelId": "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f", "symbol": "BTCUSDT",
                        "limit": 2, "requestId": f"v-{i}"}  # fmt: skip
                backend.send("get_predictions", seed)
                sent_valid += 1
            elif roll < 0.4:
                backend.r.publish("elysia:command", bytes(rng.getrandbits(8) for _ in range(40)))
            elif roll < 0.6:
                backend.send(
                    rng.choice(["train", "promote", "optimize"]), {"bogus": i}, request_id=f"b-{i}"
                )
            elif roll < 0.8:
                backend.r.publish("elysia:command", json.dumps([i, "x"]))
            else:
                backend.send("promote", {"model": "x" * 500}, request_id=f"l-{i}")
        deadline = time.monotonic() + 120
        while backend.r.xlen("botlib:events") < 1000:  # each handled command's answer
            assert time.monotonic() < deadline, service.handled
            time.sleep(0.05)
        time.sleep(0.3)  # nothing more arrives: no command is answered twice
        assert thread.is_alive()  # still up
        events = [json.loads(f["data"]) for _, f in backend.r.xrange("botlib:events")]
        assert len(events) == 1000  # every command answered, exactly once
        ok = [e for e in events if e["event"] == "done"]
        assert len(ok) == sent_valid and all(e["request_id"].startswith("v-") for e in ok)
        dead = backend.r.xlen("botlib:deadletter")
        assert dead == 1000 - sent_valid
        reasons = [
            json.loads(f["data"])["reason"] for _, f in backend.r.xrange("botlib:deadletter")
        ]
        assert all(reasons)
    finally:
        service.stop()
        thread.join(60)
        backend.close()


def _fresh_window(seconds: int, *, need: float) -> None:
    """The limiter counts in fixed windows (``time // seconds``): when fewer than
    ``need`` seconds of the current one are left, wait for the next, so that a burst
    is not split across two windows (each would allow the whole limit)."""
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.05)


def test_rate_limit_holds_for_one_user_while_another_passes(
    store: Store, redis_server: Any
) -> None:
    promote(store.ga, 1, gate=GateConfig(margin=-10, min_trades=0))
    backend = Backend(redis_server)
    service, thread = _serve(
        redis_server.role_url("bridge"), rate_limits={"generate_signal": (3, 60)}
    )
    before = _wait_applied(backend.admin, "bridge", lambda s: s["ok"])["digest"]
    try:
        _fresh_window(60, need=20)  # alice, bob and bob's late one counted in one window
        for i in range(8):
            backend.send(
                "generate_signal", {"symbol": "BTC/USDT"}, request_id=f"a-{i}", user_id="alice"
            )
        for i in range(2):
            backend.send(
                "generate_signal", {"symbol": "BTC/USDT"}, request_id=f"b-{i}", user_id="bob"
            )
        deadline = time.monotonic() + 60
        while backend.r.xlen("botlib:events") < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        events = [json.loads(f["data"]) for _, f in backend.r.xrange("botlib:events")]
        alice = [e for e in events if e["user_id"] == "alice"]
        bob = [e for e in events if e["user_id"] == "bob"]
        assert sum(e["event"] == "done" for e in alice) == 3
        limited = [e for e in alice if e["event"] == "rate_limited"]
        assert len(limited) == 5 and "at most 3 generate_signal per 60 s" in limited[0]["reason"]
        assert [e["event"] for e in bob] == ["done", "done"]
        # five signals, one model version: loaded once, then served from the cache
        stats = backend.admin.hgetall("botlib:bridge:stats")
        assert (stats["model_loads"], stats["model_cache_hits"]) == ("1", "4")
        assert stats["rate_limited"] == "5" and stats["done"] == "5"

        # the limit changes at runtime: bob (2 used) now gets no third one
        backend.admin.set("botlib:config", json.dumps({"rate_limits": {"generate_signal":
                                                                   {"requests": 2}}}))  # fmt: skip
        mid = _wait_applied(backend.admin, "bridge", lambda s: s["ok"] and s["digest"] != before)
        backend.send("generate_signal", {"symbol": "BTC/USDT"}, request_id="b-2", user_id="bob")
        late = backend.wait(lambda m: m[1].get("request_id") == "b-2")[0][1]
        assert late["event"] == "rate_limited" and "at most 2 generate_signal" in late["reason"]

        # a burst under rotating user_ids is held by the path's ceiling (2 x 2 here)
        backend.admin.set("botlib:config", json.dumps({"path_ceiling": 2, "rate_limits": {
            "generate_signal": {"requests": 2}}}))  # fmt: skip
        _wait_applied(backend.admin, "bridge", lambda s: s["ok"] and s["digest"] != mid["digest"])
        backend.admin.delete(*backend.admin.keys("botlib:ratelimit:*"))
        _fresh_window(60, need=10)
        for i in range(8):
            backend.send("generate_signal", {"symbol": "BTC/USDT"}, request_id=f"m-{i}",
                         user_id=f"mallory-{i}")  # fmt: skip
        answers = [backend.wait(lambda m, i=i: m[1].get("request_id") == f"m-{i}")[0][1]
                   for i in range(8)]  # fmt: skip
        held = [a for a in answers if a["event"] == "rate_limited"]
        assert len(held) == 4 and "on the backend path (all users)" in held[0]["reason"]
    finally:
        service.stop()
        thread.join(60)
        backend.close()


def test_generate_signal_uses_the_live_bar_stream(store: Store, redis_server: Any) -> None:
    """With live bars on the market's stream, an on-demand signal is computed from them
    (not from the possibly stale data store) and says so."""
    from tests.live.helpers import feed, window

    backend = Backend(redis_server)
    promote(store.ga, 1, gate=GateConfig(margin=-10.0, min_trades=0))
    need = int(json.loads(backend.admin.hget("botlib:active_models", store.ga))["required_history"])
    candles = window(need + 20)
    feed(backend.admin, candles)
    service, thread = _serve(redis_server.role_url("bridge"))
    try:
        backend.send("generate_signal", {"symbol": "BTC/USDT"}, request_id="live-1")
        answer = backend.wait(lambda m: m[1].get("request_id") == "live-1")[0][1]
        meta = answer["result"]["metadata"]
        assert answer["event"] == "done" and meta["candles_from"] == "stream"
        assert meta["last_candle"] == candles.index[-1].isoformat()
    finally:
        service.stop()
        thread.join(60)
        backend.close()


def test_bridge_rides_out_a_redis_restart(store: Store, redis_server: Any) -> None:
    """redis-server stops and comes back: the bridge reconnects, subscribes again and
    answers commands on the channel and the stream."""
    service = CommandService(
        redis.Redis.from_url(redis_server.role_url("bridge"), decode_responses=True),
        config=BridgeConfig(experiment="bridge-tests"),
    )
    thread = threading.Thread(target=service.run, kwargs={"backoff_max_s": 0.5}, daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        backend = Backend(redis_server)
        backend.send("get_predictions", {"limit": 1}, request_id="before")
        assert backend.wait(lambda m: m[1].get("request_id") == "before")[0][1]["event"] == "done"
        backend.close()

        redis_server.stop()
        time.sleep(1.0)
        redis_server.start()
        assert thread.is_alive()

        backend = Backend(redis_server)
        body = {"command": "get_predictions", "data": {"limit": 1}, "request_id": "stream"}
        backend.r.xadd("botlib:commands", {"data": json.dumps(body)})
        events = _wait_events(backend.r, lambda e: e.get("request_id") == "stream")
        assert events[0]["event"] == "done"
        # the channel too, once the bridge has subscribed again
        deadline = time.monotonic() + 30
        while backend.admin.pubsub_numsub("elysia:command")[0][1] < 1:
            assert time.monotonic() < deadline, "the bridge never subscribed again"
            time.sleep(0.05)
        backend.send("get_predictions", {"limit": 1}, request_id="after")
        assert backend.wait(lambda m: m[1].get("request_id") == "after")[0][1]["event"] == "done"
        backend.close()
    finally:
        service.stop()
        thread.join(60)
    assert not thread.is_alive()


def _wait_events(r: redis.Redis, match: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [json.loads(f["data"]) for _, f in r.xrange("botlib:events")]
        found = [e for e in found if match(e)]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("no such event on botlib:events")


def _wait_acked(r: redis.Redis, timeout: float = 10.0) -> None:
    """The bridge acknowledges a stream command right after publishing its answer."""
    deadline = time.monotonic() + timeout
    while r.xpending("botlib:commands", "botlib-bridge")["pending"]:
        assert time.monotonic() < deadline, "the answered command was never acknowledged"
        time.sleep(0.02)


def _raw_events(r: redis.Redis, request_id: str) -> list[str]:
    """The answers to ``request_id`` on botlib:events, as published (byte for byte)."""
    return [f["data"] for _, f in r.xrange("botlib:events")
            if json.loads(f["data"]).get("request_id") == request_id]  # fmt: skip


def test_a_request_id_runs_once_and_its_answer_comes_again(store: Store, redis_server: Any) -> None:
    backend = Backend(redis_server)
    service, thread = _serve(redis_server.role_url("bridge"))
    body = {"strategy": "sma_cross", "parameters": {"fast": 10, "slow": 50},
            "start": "2025-02-01", "end": "2025-03-01"}  # fmt: skip
    try:
        # sent twice at once (the second while the first runs), then again on the stream
        backend.send("backtest", body, request_id="dup-1")
        backend.send("backtest", body, request_id="dup-1")
        first = backend.wait(lambda m: m[1].get("request_id") == "dup-1"
                             and m[1]["event"] == "done")[0][1]  # fmt: skip
        envelope = {"command": "backtest", "data": body, "request_id": "dup-1"}
        backend.r.xadd("botlib:commands", {"data": json.dumps(envelope)})
        wait_for_two = time.monotonic() + 30
        while sum('"done"' in e for e in _raw_events(backend.r, "dup-1")) < 2:
            assert time.monotonic() < wait_for_two, _raw_events(backend.r, "dup-1")
            time.sleep(0.05)
        answers = [e for e in _raw_events(backend.r, "dup-1") if '"done"' in e]
        assert answers[0] == answers[1], "the repeated request got a different answer"
        assert json.loads(answers[0])["result"] == first["result"]
        stats = backend.admin.hgetall("botlib:bridge:stats")
        assert stats["started"] == "1", stats  # one run
        assert stats["replayed"] == "1" and stats["duplicates"] == "1"
        # the stream entry is acknowledged once answered
        _wait_acked(backend.admin)
    finally:
        service.stop()
        thread.join(60)
        backend.close()


def test_a_killed_worker_is_answered_and_the_next_train_succeeds(
    store: Store, redis_server: Any
) -> None:
    import os
    import signal

    backend = Backend(redis_server)
    service, thread = _serve(redis_server.role_url("bridge"))
    train = {"algorithm": "ga_rules", "start": "2025-01-01", "end": "2025-03-01",
             "hyperparameters": {"population": 6, "generations": 1}}  # fmt: skip
    try:
        envelope = {"command": "train", "data": train, "request_id": "k-1"}
        backend.r.xadd("botlib:commands", {"data": json.dumps(envelope)})
        backend.wait(lambda m: m[1].get("request_id") == "k-1" and m[1]["event"] == "started")
        deadline = time.monotonic() + 30
        while not service.jobs.running:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # still running, so not acknowledged yet: a restart would run it again
        assert backend.admin.xpending("botlib:commands", "botlib-bridge")["pending"] == 1
        os.kill(service.jobs.running[0].process.pid, signal.SIGKILL)
        dead = backend.wait(lambda m: m[1].get("request_id") == "k-1"
                            and m[1]["event"] == "error")[0]  # fmt: skip
        assert dead[0] == "python:command_error" and "SIGKILL" in dead[1]["reason"]
        _wait_acked(backend.admin)
        backend.send("train", train, request_id="k-2")
        trained = backend.wait(lambda m: m[0] == "python:model_trained")[0][1]
        assert trained["request_id"] == "k-2" and trained["model_name"] == store.ga
    finally:
        service.stop()
        thread.join(60)
        backend.close()


def test_a_long_command_past_its_time_limit_is_answered_timeout(
    store: Store, redis_server: Any
) -> None:
    backend = Backend(redis_server)
    service, thread = _serve(redis_server.role_url("bridge"), time_limit_s=1.0)
    try:
        backend.send("train", {"algorithm": "lstm", "start": "2024-01-01", "end": "2025-06-01",
                               "hyperparameters": {"epochs": 50}}, request_id="slow-1")  # fmt: skip
        late = backend.wait(lambda m: m[1].get("request_id") == "slow-1"
                            and m[1]["event"] == "timeout")[0]  # fmt: skip
        assert late[0] == "python:command_error" and "time limit of 1 s" in late[1]["reason"]
        assert not service.jobs.running
    finally:
        service.stop()
        thread.join(60)
        backend.close()


def test_generate_signal_equals_the_loops_signal_for_the_same_bar(
    store: Store, redis_server: Any
) -> None:
    """Non-default runtime signal settings and a position held by the loop: the
    bridge's on-demand signal for the newest bar is the loop's signal for that bar."""
    from botlib.live import SignalLoop
    from tests.live.helpers import as_role, feed, loop_config, records, window

    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    promote(store.ga, 1, gate=GateConfig(margin=-10.0, min_trades=0))
    settings = {"entry_threshold": 0.0, "max_position": 0.4, "stop_mult": 3.0}
    r.set("botlib:config", json.dumps({"signal": settings}))
    need = int(json.loads(r.hget("botlib:active_models", store.ga) or "{}")["required_history"])
    candles = window(need + 100)
    feed(r, candles.iloc[:-1])
    loop = SignalLoop(as_role(r, "loop"), config=loop_config())
    loop.run(idle_exit_s=1.5)
    held = [float(v) for k, v in r.hgetall("botlib:loop:state").items() if k.startswith("position")]
    assert held and held[0] != 0.0, "the loop should hold a position here"
    feed(r, candles.iloc[-1:])  # the newest bar: on the stream, not yet served
    backend = Backend(redis_server)
    service, thread = _serve(redis_server.role_url("bridge"))
    try:
        _wait_applied(r, "bridge", lambda s: s["ok"])
        backend.send("generate_signal", {"symbol": "BTC/USDT"}, request_id="same-1")
        answer = backend.wait(lambda m: m[1].get("request_id") == "same-1")[0][1]
    finally:
        service.stop()
        thread.join(60)
        backend.close()
    assert answer["event"] == "done", answer
    ours = answer["result"]
    assert ours["metadata"]["candles_from"] == "stream"
    assert ours["metadata"]["position_held"] == held[0]
    SignalLoop(as_role(r, "loop"), config=loop_config()).run(idle_exit_s=1.5)
    theirs = records(r, "botlib:signals")[-1]
    assert theirs["created_at"] == ours["created_at"]
    assert theirs["signal_type"] == ours["signal_type"]
    for key in ("position_size", "stop_loss", "take_profit", "signal_strength"):
        if theirs[key] is None:
            assert ours[key] is None, key
        else:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key
    if theirs["metadata"]["target"] is None:
        assert ours["metadata"]["target"] is None
    else:
        assert ours["metadata"]["target"] == pytest.approx(theirs["metadata"]["target"], rel=1e-6)
    r.close()


def test_the_backends_model_is_created_trained_and_answered_by_its_id(
    store: Store, redis_server: Any
) -> None:
    """createModel (api.md §1, budgets shrunk) -> startTraining (§2's window fields,
    BTCUSDT) -> python:model_trained with modelId and status; the promoted version's
    entry carries the UUID. A training that fails says status error on the same channel."""
    import uuid

    backend = Backend(redis_server)
    service, thread = _serve(redis_server.role_url("bridge"))
    model_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    create = {"modelId": model_id, "userId": user_id, "name": "LSTM Price Predictor",
              "modelType": "neural_network", "algorithm": "lstm",
              "configuration": {"sequenceLength": 8, "features": 10, "hiddenUnits": 8},
              "hyperparameters": {"learningRate": 0.001, "epochs": 1, "batchSize": 32}}  # fmt: skip
    try:
        backend.send("create_model", create, request_id="c-1")
        made = backend.wait(lambda m: m[1].get("request_id") == "c-1")[0][1]
        assert made["event"] == "done", made
        assert made["result"] == {"modelId": model_id, "name": f"lstm-{model_id}",
                                  "status": "created"}  # fmt: skip
        backend.send("start_training", {"modelId": model_id, "startDate": "2025-01-01",
                                        "endDate": "2025-03-01", "symbol": "BTCUSDT",
                                        "timeframe": "1h"}, request_id="t-9")  # fmt: skip
        trained = backend.wait(lambda m: m[0] == "python:model_trained")[0][1]
        assert trained["modelId"] == model_id and trained["status"] == "trained", trained
        assert trained["model_name"] == f"lstm-{model_id}" and trained["model_version"] == "1"
        # the run and the version carry the backend's ids; the session row is the table's
        from botlib.tracking import mlflow_client

        client = mlflow_client()
        version = client.get_model_version(trained["model_name"], "1")
        assert version.tags["botlib.model_id"] == model_id
        assert version.tags["botlib.user_id"] == user_id
        assert client.get_run(trained["run_id"]).data.tags["botlib.model_id"] == model_id
        row = trained["training_session"]
        assert row["model_id"] == model_id and row["user_id"] == user_id
        assert row["symbol"] == "BTCUSDT" and row["status"] == "completed"
        backend.heard.clear()
        promote(trained["model_name"], 1, gate=GateConfig(margin=-10.0, min_trades=0))
        entry = json.loads(
            backend.admin.hget("botlib:active_models", trained["model_name"]) or "{}"
        )
        assert entry["model_id"] == model_id and entry["user_id"] == user_id
        active = backend.wait(lambda m: m[0] == "python:model_trained")[0][1]
        assert active["modelId"] == model_id and active["status"] == "active"
        # what generateTradingSignal reads, in its own names
        ask = {"model": trained["model_name"], "symbol": "BTCUSDT"}
        backend.send("generate_trading_signal", ask, request_id="g-9")
        signal = backend.wait(lambda m: m[1].get("request_id") == "g-9")[0][1]["result"]
        assert signal["model_id"] == model_id and signal["userId"] == user_id
        assert signal["signalType"] == signal["signal_type"]
        for theirs, ours in (("strength", "signal_strength"), ("stopLoss", "stop_loss"),
                             ("takeProfit", "take_profit"), ("positionSize", "position_size"),
                             ("predictedPrice", "predicted_price")):  # fmt: skip
            assert signal[theirs] == signal[ours]

        backend.heard.clear()
        backend.send("start_training", {"modelId": model_id, "startDate": "2031-01-01",
                                        "endDate": "2031-03-01", "symbol": "BTCUSDT"},
                     request_id="t-10")  # fmt: skip
        failed = backend.wait(lambda m: m[0] == "python:model_trained")[0][1]
        assert failed["modelId"] == model_id and failed["status"] == "error"
        assert failed["request_id"] == "t-10" and failed["reason"]
        unbound = str(uuid.uuid4())
        backend.send("start_training", {"modelId": unbound}, request_id="t-11")
        refused = backend.wait(lambda m: m[0] == "python:command_error"
                               and m[1].get("request_id") == "t-11")[0][1]  # fmt: skip
        assert refused["event"] == "error" and "create_model first" in refused["reason"]
        # and the channel the backend listens on says so too, for that model id
        status = backend.wait(lambda m: m[0] == "python:model_trained"
                              and m[1].get("request_id") == "t-11")[0][1]  # fmt: skip
        assert status["modelId"] == unbound and status["status"] == "error"
    finally:
        service.stop()
        thread.join(60)
        backend.close()
