"""Several loop processes under ``botlib up --loops 3`` share six markets; one is
killed mid-stream. Every bar of every market is signalled exactly once, and each
market's signals equal its model's backtest over the same bars."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pandas as pd
import pytest
import redis

from botlib.data import load_ohlcv
from botlib.live import bars_from_candles, publish_bars
from botlib.models import load_model
from tests.conftest import REPLAY_START, TINY_GA, TRAIN, Store, _use
from tests.e2e.conftest import User, wait_for
from tests.live.helpers import assert_backtest_parity

pytestmark = pytest.mark.slow

MARKETS = 6
BARS = 300


@pytest.fixture(scope="module")
def ga_versions(live_store: Store) -> list[str]:
    """Six versions of the GA rule model (v1 from the shared store, five more)."""
    from mlflow import MlflowClient

    from botlib.tracking import configure
    from botlib.tracking.session import train_session

    client = MlflowClient(tracking_uri=live_store.uri, registry_uri=live_store.uri)
    have = [v.version for v in client.search_model_versions(f"name='{live_store.ga}'")]
    with pytest.MonkeyPatch.context() as mp:
        _use(live_store, mp)
        configure("live-tests")
        for seed in range(1, 1 + max(0, MARKETS - len(have))):
            params = {**TINY_GA, "seed": seed}
            train_session("ga_rules", start=TRAIN[0], end=TRAIN[1], params=params)
    versions = sorted(
        (v.version for v in client.search_model_versions(f"name='{live_store.ga}'")), key=int
    )
    return versions[:MARKETS]


def _activate(
    r: redis.Redis, url: str, live_store: Store, versions: list[str], monkeypatch: Any
) -> dict[str, dict[str, Any]]:
    """Promote each version for real, then serve version i on market ``ex{i}``."""
    from botlib.promotion import GateConfig, promote

    _use(live_store, monkeypatch)
    entries = {}
    lenient = GateConfig(margin=-10, min_trades=0)
    for i, version in enumerate(versions, 1):
        promote(live_store.ga, version, gate=lenient, force=True, redis_url=url)
        entry = json.loads(r.hget("botlib:active_models", live_store.ga) or "{}")
        name = f"{live_store.ga}@ex{i}"
        entries[name] = {**entry, "name": name, "exchange": f"ex{i}"}
    pipe = r.pipeline()
    pipe.delete("botlib:active_models")
    pipe.hset("botlib:active_models", mapping={k: json.dumps(v) for k, v in entries.items()})
    pipe.incr("botlib:active_models:rev")
    pipe.execute()
    return entries


def test_three_loops_six_markets_one_killed(
    user: User,
    r: redis.Redis,
    live_store: Store,
    ga_versions: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert len(ga_versions) == MARKETS
    entries = _activate(r, user.redis_url(), live_store, ga_versions, monkeypatch)
    user.botlib("up", "--loops", "3", "--no-bridge", "--no-registry-watch", "--lease-ttl", "3")
    # every market is owned by one loop, and each loop holds its share (two)
    wait_for(
        lambda: (
            len(r.keys("botlib:lease:*")) == MARKETS
            and len(set(r.mget(r.keys("botlib:lease:*")))) == 3
        ),
        120,
        "the three loops to share the six markets",
    )
    candles = load_ohlcv("BTC/USDT", "1h", start=REPLAY_START).iloc[:BARS]
    per_market = [
        bars_from_candles(candles, exchange=f"ex{i}", symbol="BTC/USDT", timeframe="1h")
        for i in range(1, MARKETS + 1)
    ]

    def publish() -> None:
        feeder = redis.Redis.from_url(user.redis_url("feed"), decode_responses=True)
        for t in range(BARS):
            publish_bars(feeder, [bars[t] for bars in per_market])
            time.sleep(0.03)
        feeder.close()

    feeding = threading.Thread(target=publish)
    feeding.start()
    wait_for(lambda: int(r.hget("botlib:loop:stats", "bars") or 0) >= 300, 120, "300 bars")
    victim = user.child_pid("serve-2")
    os.kill(victim, signal.SIGKILL)
    feeding.join(120)
    wait_for(lambda: r.xlen("botlib:signals") >= MARKETS * BARS, 180, "every bar signalled")
    time.sleep(2)  # anything doubled would show now
    assert r.xlen("botlib:signals") == MARKETS * BARS
    assert r.xlen("botlib:deadletter") == 0, r.xrange("botlib:deadletter", count=3)
    serve2 = next(c for c in user.state()["children"] if c["name"] == "serve-2")
    assert serve2["restarts"] == 1 and serve2["pid"] != victim

    signals: dict[str, list[dict[str, Any]]] = {}
    for _, f in r.xrange("botlib:signals"):
        item = json.loads(f["data"])
        signals.setdefault(item["model_id"], []).append(item)
    unscored: dict[str, set[str]] = {}
    for _, f in r.xrange("botlib:predictions"):
        item = json.loads(f["data"])
        if item["validated_at"] is None:
            unscored.setdefault(item["model_id"], set()).add(item["id"])

    history = load_ohlcv("BTC/USDT", "1h", end=candles.index[0])
    history = history.loc[history.index < candles.index[0]]
    traded = 0
    for name, entry in entries.items():
        model_id = entry["model_id"]
        live = pd.DataFrame(signals[model_id])
        assert len(live) == BARS and live["created_at"].is_unique, name
        assert len(unscored[model_id]) == BARS, name
        assert {m["exchange"] for m in live["metadata"]} == {entry["exchange"]}
        model = load_model(entry["model_uri"])
        assert_backtest_parity(signals[model_id], model, history, candles, name)
        traded += int((live["signal_type"] != "hold").sum())
    assert traded > 0, "no market traded: the parity check would prove little"
    user.botlib("down")
