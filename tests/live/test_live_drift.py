"""Issue 18 §3, live: the loop scores its models' recent inputs against their training
distribution, and bars from a regime the model never saw raise one alert naming the
features that moved — on the durable stream and on ``python:model_alert``."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis

from botlib.live import SignalLoop
from botlib.monitor import collect_status, prometheus_text
from botlib.promotion import GateConfig, promote
from botlib.transport import RedisNames
from tests.conftest import Store
from tests.features.test_drift import STAY, returns_scaled
from tests.live.helpers import as_role, feed, loop_config, records, window

LENIENT = GateConfig(margin=-10.0, min_trades=0)
pytestmark = pytest.mark.slow


def test_returns_scaled_x3_raise_one_alert_on_the_features_that_moved(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    promote(store.lstm, 1, gate=LENIENT)
    heard: list[dict[str, Any]] = []
    ready = threading.Event()

    def listen() -> None:  # the backend's user, as the backend would
        client = as_role(r, "backend")
        pubsub = client.pubsub()
        pubsub.subscribe("python:model_alert")
        ready.set()
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=60)
        while message is None and not done.is_set():
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message:
            heard.append(json.loads(message["data"]))
        pubsub.close()
        client.close()

    done = threading.Event()
    listener = threading.Thread(target=listen)
    listener.start()
    ready.wait(5)
    feed(r, returns_scaled(window(600), 3.0))
    config = loop_config(drift_every=50, drift_window=300, drift_min_rows=200)
    loop = SignalLoop(as_role(r, "loop"), config=config)
    loop.run(idle_exit_s=1.5)
    done.set()
    listener.join(10)

    assert loop.stats.bars == 600
    alerts = records(r, "botlib:alerts")
    assert len(alerts) == 1, alerts  # once, while the drift lasts
    alert = alerts[0]
    assert alert["type"] == "feature_drift" and alert["model_id"] == f"{store.lstm}:1"
    moved = set(alert["moved"])
    assert {"logret_1", "rvol_24", "atr_pct_14", "bb_width"} <= moved, alert["scores"]
    assert not moved & set(STAY), alert["scores"]
    assert all(alert["scores"][n] > alert["threshold"] for n in moved)
    assert heard and heard[0]["moved"] == alert["moved"]

    status = collect_status(r, RedisNames())
    (drift,) = status["drift"]
    assert drift["moved"] and drift["worst"][0][1] > 0.25
    text = prometheus_text(status)
    assert f'botlib_model_feature_drift{{model_id="{store.lstm}:1"' in text
    stats = r.hgetall("botlib:loop:stats")
    assert int(stats[f"drift_alerts|{store.lstm}:1"]) == 1


def _drift_beside_a_bridge(r: redis.Redis, until: Any, what: str) -> None:
    """Serve the LSTM over returns scaled x3 (one drift alert) while a bridge runs
    under its own Redis user, until ``until()`` holds (within 30 s)."""
    from botlib.bridge.service import BridgeConfig, CommandService

    bridge = CommandService(as_role(r, "bridge"), config=BridgeConfig(experiment="drift"))
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        feed(r, returns_scaled(window(600), 3.0))
        config = loop_config(drift_every=50, drift_window=300, drift_min_rows=200)
        SignalLoop(as_role(r, "loop"), config=config).run(idle_exit_s=1.5)
        assert len(records(r, "botlib:alerts")) == 1
        deadline = time.monotonic() + 30
        while not until():
            assert time.monotonic() < deadline, what
            time.sleep(0.1)
    finally:
        bridge.stop()
        thread.join(30)


def test_with_drift_demote_on_an_alert_stops_the_model(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """The runtime setting ``drift_demote`` (off by default): the bridge, reading the
    alerts under its own Redis user, deactivates the version an alert names, with the
    reason on the model event; the registry's @champion goes too."""
    from mlflow import MlflowClient

    promote(store.lstm, 1, gate=LENIENT)
    r.set("botlib:config", json.dumps({"drift_demote": True}))
    _drift_beside_a_bridge(
        r, lambda: not r.hexists("botlib:active_models", store.lstm),
        "still served after drift",
    )  # fmt: skip
    (event,) = [e for e in records(r, "botlib:model_events") if e["event"] == "deactivated"]
    assert event["name"] == store.lstm and "feature drift" in event["reason"]
    assert "logret_1" in event["reason"]
    assert "champion" not in (MlflowClient().get_registered_model(store.lstm).aliases or {})
    assert r.hget("botlib:bridge:stats", "demoted") == "1"


def test_drift_demote_is_off_by_default(store: Store, redis_server: Any, r: redis.Redis) -> None:
    promote(store.lstm, 1, gate=LENIENT)
    _drift_beside_a_bridge(  # the bridge has read past the alert
        r,
        lambda: r.hget("botlib:bridge:stats", "alerts_read") == r.xrange("botlib:alerts")[-1][0],
        "the bridge never read the alert",
    )  # fmt: skip
    assert r.hexists("botlib:active_models", store.lstm)
