"""``botlib up`` as a user runs it: promote, start the trading server, read the records
as the backend does, stop it; and the supervisor's restart of a killed loop."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
import redis

from botlib.supervisor import alive
from tests.conftest import Store
from tests.e2e.conftest import User, wait_for

pytestmark = pytest.mark.slow

BARS = 500


def _promote(user: User, *names: str) -> None:
    for name in names:
        user.botlib("promote", name, "--version", "1", "--force")


def _check_backend(summary: dict[str, Any], models: list[str]) -> None:
    assert summary["problems"] == [], summary["problems"][:5]
    assert sorted(summary["signals"]) == sorted(models)
    for model_id in models:
        assert summary["signals"][model_id] == BARS, summary["signals"]
        preds = summary["predictions"][model_id]
        assert len(preds["unscored"]) == BARS
        assert len(set(preds["unscored"])) == BARS, "a prediction was published twice"
        # a scored prediction comes again with the id it was first published under
        assert preds["scored"], "no prediction was scored"
        assert set(preds["scored"]) <= set(preds["unscored"])
        assert len(set(preds["scored"])) == len(preds["scored"])
    assert len(set(summary["signal_ids"])) == len(summary["signal_ids"])


def _model_ids(r: redis.Redis) -> list[str]:
    return sorted(json.loads(v)["model_id"] for v in r.hgetall("botlib:active_models").values())


def test_up_serves_every_bar_to_the_backend_and_down_leaves_nothing(
    user: User, r: redis.Redis, live_store: Store, backend: Any
) -> None:
    _promote(user, live_store.lstm, live_store.ga)
    models = _model_ids(r)
    assert len(models) == 2
    node = backend(until_signals=2 * BARS)
    up = user.botlib("up", "--no-registry-watch", "--feed", "replay", "--replay-last", str(BARS))
    assert "serve" in up.stdout and "bridge" in up.stdout
    summary = node.wait(timeout=240)
    _check_backend(summary, models)

    # the durable streams agree with what the backend received
    assert r.xlen("botlib:signals") == 2 * BARS
    # what the backend's getPredictions reads: LRANGE predictions:{modelId}:{symbol},
    # newest first, each prediction once, scored ones replaced in place
    for model_id in models:
        listed = [json.loads(x) for x in r.lrange(f"predictions:{model_id}:BTC/USDT", 0, -1)]
        assert len(listed) == BARS and len({x["id"] for x in listed}) == BARS
        created = [x["created_at"] for x in listed]
        assert created == sorted(created, reverse=True)
        scored = {x["id"] for x in listed if x["validated_at"] is not None}
        in_stream = {p["id"] for p in (json.loads(f["data"]) for _, f in
                                       r.xrange("botlib:predictions"))
                     if p["model_id"] == model_id and p["validated_at"] is not None}  # fmt: skip
        assert scored and scored == in_stream
    assert r.xlen("botlib:deadletter") == 0
    ps = user.botlib("ps")
    assert "running" in ps.stdout
    state = user.state()
    pids = [c["pid"] for c in state["children"] if c["pid"]]
    assert len(state["children"]) == 4  # serve, bridge, paper, one replay feed
    status = user.botlib("status", "--json")
    loop = json.loads(status.stdout)["loop"]
    assert loop["bars"] == BARS and loop["deadletters"] == 0

    # the bridge, started the same way, loads a promoted model by name on its own
    listener = r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe("python:command_result", "python:command_error")
    command = {"command": "generate_signal", "request_id": "e2e-1",
               "data": {"symbol": "BTC/USDT", "model": live_store.lstm}}  # fmt: skip
    r.publish("elysia:command", json.dumps(command))
    answer = None
    deadline = time.monotonic() + 120
    while answer is None and time.monotonic() < deadline:
        message = listener.get_message(timeout=0.5)
        if message and json.loads(message["data"]).get("request_id") == "e2e-1":
            answer = json.loads(message["data"])
    listener.close()
    assert answer is not None and answer["event"] == "done", answer
    assert answer["result"]["model_id"] in models
    assert answer["result"]["metadata"]["candles_from"] == "stream"

    down = user.botlib("down")
    assert "stopped 4 services" in down.stdout
    assert not alive(state["pid"])
    assert not any(alive(pid) for pid in pids), "a service outlived `botlib down`"
    # up found Redis running (`botlib redis start`): down leaves it alone
    assert r.ping()
    assert user.botlib("ps", check=False).returncode == 1


def test_a_killed_loop_is_restarted_and_every_bar_is_signalled_once(
    user: User, r: redis.Redis, live_store: Store, backend: Any
) -> None:
    _promote(user, live_store.lstm, live_store.ga)
    models = _model_ids(r)
    node = backend(until_signals=2 * BARS)
    # bars arrive over ~10 s, so the loop is killed with most of them still to come
    user.botlib(
        "up", "--no-bridge", "--no-registry-watch", "--feed", "replay", "--replay-last", str(BARS),
        "--replay-speed", str(3600 * 50),
    )  # fmt: skip
    first = user.child_pid("serve")
    wait_for(lambda: int(r.hget("botlib:loop:stats", "bars") or 0) >= 50, 120, "50 bars served")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: user.child_pid("serve") != first, 30, "the supervisor to restart serve")
    summary = node.wait(timeout=240)
    _check_backend(summary, models)
    serve = next(c for c in user.state()["children"] if c["name"] == "serve")
    assert serve["restarts"] == 1
    assert r.hget("botlib:supervisor:stats", "restarts|serve") == "1"
    status = json.loads(user.botlib("status", "--json").stdout)
    assert status["supervisor"]["restarts"]["serve"] == 1
    user.botlib("down")
    assert not alive(serve["pid"])


def test_the_demos_hint_on_a_fresh_redis_serves_the_champion(user: User, live_store: Store) -> None:
    """What `make demo` tells a user to run next: no Redis running, nothing active in
    it — `botlib up` starts Redis, activates the registry's @champion and replays."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=live_store.uri, registry_uri=live_store.uri)
    client.set_registered_model_alias(live_store.ga, "champion", "1")
    up = user.botlib(
        "up", "--no-bridge", "--no-registry-watch", "--feed", "replay", "--replay-last", "50"
    )
    assert f"activated {live_store.ga} v1" in up.stdout
    assert "redis-server started" in up.stdout
    r = redis.Redis.from_url(user.redis_url(), decode_responses=True)
    wait_for(lambda: r.xlen("botlib:signals") == 50, 120, "50 signals")
    feed = next(c for c in user.state()["children"] if c["name"].startswith("feed-"))
    # again: the replay finds its bars already on the stream and skips them
    user.botlib("down")  # stops the redis-server it started (its data stays)
    user.botlib(
        "up", "--no-bridge", "--no-registry-watch", "--feed", "replay", "--replay-last", "50"
    )
    wait_for(
        lambda: (
            next(c for c in user.state()["children"] if c["name"] == feed["name"])["status"]
            == "exited"
        ),
        120,
        "the second replay to finish",
    )
    log = (user.run_dir.parent / "logs" / f"{feed['name']}.log").read_text()
    assert "50 bars skipped: the stream already holds bars up to" in log
    r = redis.Redis.from_url(user.redis_url(), decode_responses=True)
    time.sleep(1.0)
    assert r.xlen("botlib:signals") == 50 and r.xlen("botlib:deadletter") == 0
    r.close()
    user.botlib("down")
