"""The signal loop against a real redis-server and a real MLflow registry."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from botlib.backtest import run_backtest
from botlib.data import load_ohlcv
from botlib.models import load_model
from botlib.models.evaluate import backtest_model
from botlib.promotion import GateConfig, promote
from tests.conftest import Store
from tests.live.helpers import (
    PREDICTION_FIELDS,
    SIGNAL_FIELDS,
    as_role,
    assert_backtest_parity,
    by_model,
    feed,
    records,
    serve,
    window,
)

LENIENT = GateConfig(margin=-10.0, min_trades=0)

pytestmark = pytest.mark.slow


def _listen(url: str, channels: list[str], got: list[tuple[str, Any]], ready: threading.Event,
            stop: threading.Event) -> None:  # fmt: skip
    client = redis.Redis.from_url(url, decode_responses=True)  # a plain client, as the backend
    pubsub = client.pubsub()
    pubsub.subscribe(*channels)
    ready.set()
    while not stop.is_set():
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message:
            got.append((message["channel"], json.loads(message["data"])))
    pubsub.close()
    client.close()


def test_500_bars_one_prediction_and_one_signal_per_bar_per_model(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    promote(store.lstm, 1, gate=LENIENT)
    promote(store.ga, 1, gate=LENIENT)
    got: list[tuple[str, Any]] = []
    ready, stop = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=_listen,
        args=(
            redis_server.url,
            ["python:trading_signal", "python:ai_prediction"],
            got,
            ready,
            stop,
        ),
    )
    listener.start()
    ready.wait(5)
    candles = window(500)
    assert feed(r, candles) == 500
    loop = serve(r)
    time.sleep(0.3)
    stop.set()
    listener.join(5)

    bar_times = {(t + pd.Timedelta("1h")).isoformat().replace("+00:00", "Z") for t in candles.index}
    signals = by_model(records(r, "botlib:signals"))
    preds = by_model([p for p in records(r, "botlib:predictions") if p["validated_at"] is None])
    ids = {f"{store.lstm}:1", f"{store.ga}:1"}
    assert set(signals) == ids and set(preds) == ids
    for model_id in ids:
        assert len(signals[model_id]) == 500 and len(preds[model_id]) == 500
        assert {s["created_at"] for s in signals[model_id]} == bar_times
        assert {p["created_at"] for p in preds[model_id]} == bar_times
        assert len({s["id"] for s in signals[model_id]}) == 500
    assert loop.stats.bars == 500 and loop.stats.deadletters == 0
    assert r.xpending("botlib:bars:binance:BTC/USDT:1h", "botlib-signal-loop")["pending"] == 0

    heard = [m for c, m in got if c == "python:trading_signal"]
    assert len(heard) == 1000
    assert all(set(m) == SIGNAL_FIELDS for m in heard)
    heard_preds = [m for c, m in got if c == "python:ai_prediction"]
    assert all(set(m) == PREDICTION_FIELDS for m in heard_preds)
    assert len([m for m in heard_preds if m["validated_at"] is None]) == 1000
    kinds = {m["signal_type"] for m in heard}
    assert kinds <= {"buy", "sell", "hold", "close"} and "buy" in kinds


def test_scored_predictions_match_what_happened(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """Accuracy recomputed here from the candles, independently of the loop."""
    promote(store.lstm, 1, gate=LENIENT)
    candles = window(300)
    feed(r, candles)
    loop = serve(r, batch=20)  # 15 steps and more: the waiting predictions held between
    scored = [p for p in records(r, "botlib:predictions") if p["validated_at"] is not None]
    assert len(scored) == 299  # the last bar's horizon has not passed yet
    # what the loop holds of the waiting predictions is what Redis holds
    (held,) = loop._pending_held.values()
    (key,) = r.keys("botlib:pending:*")
    assert len(held) == 1 and held == dict(r.zrange(key, 0, -1, withscores=True))
    close = candles["close"]
    for p in scored:
        t = pd.Timestamp(p["input_data"]["bar_time"])
        later = close.iloc[close.index.get_loc(t) + 1]
        assert p["actual_value"] == pytest.approx(later)
        up_predicted = p["prediction_value"] > close[t]
        assert p["accuracy"] == float(up_predicted == (later > close[t]))
        assert pd.Timestamp(p["validated_at"]) == t + pd.Timedelta("2h")
    stats = r.hgetall("botlib:loop:stats")
    hits = sum(p["accuracy"] for p in scored)
    assert int(stats[f"accuracy_milli|{store.lstm}:1"]) == round(hits * 1000)
    # beside it, the persistence baseline (the last bar's move carried on) and the hit
    # rate's 95 % interval, as status shows them
    from botlib.monitor import collect_status
    from botlib.transport import RedisNames

    closes = load_ohlcv("BTC/USDT", "1h", end=candles.index[-1] + pd.Timedelta("1h"))["close"]
    carried = []
    for p in scored:  # the first bar's previous close is the history's last
        t = closes.index.get_loc(pd.Timestamp(p["input_data"]["bar_time"]))
        before, now, later = closes.iloc[t - 1], closes.iloc[t], closes.iloc[t + 1]
        carried.append(float(np.sign(now - before) == np.sign(later - now)))
    (shown,) = collect_status(r, RedisNames())["active_models"]
    assert shown["persistence"] == pytest.approx(sum(carried) / len(carried), abs=1e-3)
    low, high = shown["hit_rate_ci"]
    assert low < shown["accuracy"] < high and high - low < 0.15  # 299 scored: about ±5.6 %


def test_replay_yields_the_backtests_signals(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """Parity: feed -> loop gives the signals (type, size, stop, take) the backtest of
    the same model over the same window trades, and trading them gives the same equity."""
    promote(store.lstm, 1, gate=LENIENT)
    promote(store.ga, 1, gate=LENIENT)
    candles = window(500)
    feed(r, candles)
    serve(r)
    signals = by_model(records(r, "botlib:signals"))
    everything = load_ohlcv("BTC/USDT", "1h", end=candles.index[-1] + pd.Timedelta("1h"))
    history = everything.loc[everything.index < candles.index[0]]
    for name in (store.lstm, store.ga):
        model = load_model(f"models:/{name}/1")
        live = assert_backtest_parity(signals[f"{name}:1"], model, history, candles, name)
        trades = (live["signal_type"] != "hold").sum()
        assert trades > 0, f"{name} never traded in the window: the test would prove little"
        # trading the loop's signals == the model's backtest
        target = live["metadata"].map(lambda m: m["target"]).astype("float64")
        frame = pd.DataFrame(
            {
                "target": target,
                "stop_loss": live["stop_loss"].astype("float64"),
                "take_profit": live["take_profit"].astype("float64"),
            }
        )
        from_loop = run_backtest(candles, frame, timeframe="1h")
        from_model = backtest_model(model, history, candles, timeframe="1h")
        np.testing.assert_allclose(from_loop.equity.to_numpy(), from_model.equity.to_numpy())
        assert len(from_loop.fills) == len(from_model.fills)


def _bad_entries(candles: pd.DataFrame) -> list[tuple[int, dict[str, str]]]:
    """Six malformed bars (1 % of 500 + 1) and where they go in the stream."""
    good = {
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "ts": int(candles.index[100].value // 10**6),
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": 1.5,
        "volume": 1.0,
    }
    missing = {k: v for k, v in good.items() if k != "close"}
    return [
        (50, {"data": json.dumps(missing)}),
        (120, {"data": json.dumps({**good, "open": float("nan")})}),
        (200, {"data": json.dumps({**good, "volume": "lots"})}),
        (250, {"data": json.dumps({**good, "ts": "yesterday"})}),
        (300, {"data": json.dumps(good)}),  # bar 100 again: out of order
        (400, {"data": "{not json"}),
    ]


def test_malformed_bars_are_dead_lettered_and_the_rest_served(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    from botlib.live import bars_from_candles, publish_bars

    promote(store.ga, 1, gate=LENIENT)
    candles = window(500)
    bars = bars_from_candles(candles, exchange="binance", symbol="BTC/USDT", timeframe="1h")
    bad = dict(_bad_entries(candles))
    stream = "botlib:bars:binance:BTC/USDT:1h"
    for i, bar in enumerate(bars):
        if i in bad:
            r.xadd(stream, bad[i])
        publish_bars(r, [bar])
        if i == 450:
            publish_bars(r, [bar])  # a duplicate timestamp
    loop = serve(r)
    dead = records(r, "botlib:deadletter")
    reasons = [d["reason"] for d in dead]
    assert len(dead) == 7, reasons
    for needle in ("close", "finite", "volume", "ts", "out of order", "JSON", "duplicate"):
        assert any(needle in why for why in reasons), (needle, reasons)
    assert all(d["source"] == stream and d["entry_id"] for d in dead)
    signals = records(r, "botlib:signals")
    assert len(signals) == 500 and len({s["created_at"] for s in signals}) == 500
    assert loop.stats.deadletters == 7 and loop.stats.bars == 500


def test_promotion_during_replay_switches_between_two_bars(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    from botlib.live import SignalLoop
    from tests.live.helpers import loop_config

    promote(store.lstm, 1, gate=LENIENT)
    candles = window(400)
    loop = SignalLoop(redis.Redis.from_url(redis_server.role_url("loop"), decode_responses=True),
                      config=loop_config())  # fmt: skip
    runner = threading.Thread(target=loop.run, kwargs={"idle_exit_s": 5.0})
    runner.start()
    first = threading.Thread(
        target=feed, args=(r, candles.iloc[:200]), kwargs={"speed": 3600 * 200}
    )
    first.start()
    deadline = time.monotonic() + 120
    while loop.stats.bars < 150:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    promote(store.lstm, 2, gate=LENIENT)  # v2 loads in the background meanwhile
    first.join()
    while str(loop.served[store.lstm].entry["version"]) != "2":
        assert time.monotonic() < deadline, "v2 never took over"
        time.sleep(0.02)
    feed(r, candles.iloc[200:], speed=3600 * 200)
    runner.join(60)
    signals = records(r, "botlib:signals")
    assert len(signals) == 400
    order = sorted(signals, key=lambda s: s["created_at"])
    versions = [s["model_id"].rsplit(":", 1)[1] for s in order]
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}
    assert 150 <= switch < 400
    assert len({s["created_at"] for s in signals}) == 400


def test_refused_reload_keeps_the_old_model_and_stale_models_stop_signalling(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    from botlib.live import SignalLoop
    from tests.live.helpers import loop_config

    promote(store.ga, 1, gate=LENIENT)
    loop = SignalLoop(as_role(r, "loop"), config=loop_config())
    loop.load_active()
    entry = json.loads(r.hget("botlib:active_models", store.ga) or "{}")
    broken = {**entry, "version": "99", "model_uri": "models:/no-such-model/99"}
    r.hset("botlib:active_models", store.ga, json.dumps(broken))
    r.incr("botlib:active_models:rev")
    feed(r, window(50))
    loop.run(idle_exit_s=1.5)
    assert loop.stats.refused_models == 1 and "no-such-model" in loop.stats.last_error
    signals = records(r, "botlib:signals")
    assert len(signals) == 50 and {s["model_id"] for s in signals} == {f"{store.ga}:1"}

    stale = SignalLoop(
        as_role(r, "loop"), config=loop_config(max_model_age_days=1e-9, consumer="other")
    )
    r.delete("botlib:loop:state")
    r.xgroup_destroy("botlib:bars:binance:BTC/USDT:1h", "botlib-signal-loop")
    r.delete("botlib:signals", "botlib:predictions")
    r.hset("botlib:active_models", store.ga, json.dumps(entry))
    stale.run(idle_exit_s=1.5)
    assert stale.stats.bars == 50 and stale.stats.signals == 0
    assert stale.stats.predictions == 50 and "days old" in stale.stats.last_error


def test_only_registry_versions_with_their_promoted_artifacts_are_served(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """An entry naming a local folder, and a version whose artifact bytes changed after
    promotion, are both refused by the running loop with the reason (``botlib status``
    reads it from the loop's counters); the previous model keeps serving."""
    from mlflow import MlflowClient

    from botlib.errors import ConfigError
    from botlib.live import SignalLoop
    from botlib.tracking.session import train_session
    from botlib.tracking.verify import DIGEST_TAG, verify_member
    from tests.conftest import TINY_GA, TRAIN
    from tests.live.helpers import loop_config

    promote(store.ga, 1, gate=LENIENT)
    entry = json.loads(r.hget("botlib:active_models", store.ga) or "{}")
    assert len(entry["artifact_digest"]) == 64
    loop = SignalLoop(as_role(r, "loop"), config=loop_config())
    loop.load_active()

    # a local folder in the entry: never loaded
    local = {**entry, "version": "1", "model_uri": "/tmp/evil-model"}
    r.hset("botlib:active_models", store.ga, json.dumps(local))
    r.incr("botlib:active_models:rev")
    bars = window(60)
    feed(r, bars.iloc[:30])
    loop.run(idle_exit_s=1.5)
    assert loop.stats.refused_models == 1
    assert "is not a registry version" in loop.stats.last_error
    assert r.hget("botlib:loop:stats", "last_error") == loop.stats.last_error

    # a new version, promoted, then its artifacts changed on disk
    fresh = train_session("ga_rules", start=TRAIN[0], end=TRAIN[1], params={**TINY_GA, "seed": 9})
    client = MlflowClient()
    # the digest is recorded when botlib writes the version (training), not on first use
    trained = client.get_model_version(store.ga, fresh.model_version).tags[DIGEST_TAG]
    assert client.get_run(fresh.run_id).data.tags["artifact_digest"] == trained
    member = f"models:/{store.ga}/{fresh.model_version}"
    verify_member(member)  # an ensemble member over Redis: checked the same way
    promote(store.ga, fresh.model_version, gate=LENIENT, force=True, publish=False)
    version = client.get_model_version(store.ga, fresh.model_version)
    assert version.tags[DIGEST_TAG] == trained
    logged = client.get_logged_model(str(version.source).removeprefix("models:/"))
    folder = Path(str(logged.artifact_location).removeprefix("file://"))
    target = next(p for p in sorted(folder.rglob("*.json")) if p.is_file())
    original = target.read_bytes()
    try:
        target.write_bytes(original + b" ")
        tampered = {**entry, "version": fresh.model_version,
                    "model_uri": f"models:/{store.ga}/{fresh.model_version}"}  # fmt: skip
        tampered.pop("artifact_digest")
        r.hset("botlib:active_models", store.ga, json.dumps(tampered))
        r.incr("botlib:active_models:rev")
        feed(r, bars.iloc[30:])
        loop.run(idle_exit_s=1.5)
        assert loop.stats.refused_models == 2
        assert "artifacts changed after promotion" in loop.stats.last_error
        with pytest.raises(ConfigError, match="artifacts changed"):
            verify_member(member)
    finally:
        target.write_bytes(original)
        client.delete_model_version(store.ga, fresh.model_version)
    signals = records(r, "botlib:signals")
    assert len(signals) == 60 and {s["model_id"] for s in signals} == {f"{store.ga}:1"}


def test_loading_a_version_never_writes_into_the_store(store: Store) -> None:
    """Two versions of one artifact folder (the same run registered twice), loaded
    in turn and from threads at once, as two loop processes do at start: each passes
    its digest check, and the store's folder is left exactly as it was (MLflow writes
    a version file into a local store's folder on every download, so a check reading
    the store's own files would hash another loader's write)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient

    from botlib.tracking.verify import load_verified, record_digest

    client = MlflowClient()
    source = str(client.get_model_version(store.ga, "1").source)
    logged = client.get_logged_model(source.removeprefix("models:/"))
    folder = Path(str(logged.artifact_location).removeprefix("file://"))
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    twins = f"{store.ga}-twins"  # a registered model of its own: the shared one untouched
    client.create_registered_model(twins)
    try:
        entries = []
        for _ in range(2):
            version = str(client.create_model_version(twins, source).version)
            record_digest(twins, version)
            entries.append({"model_uri": f"models:/{twins}/{version}", "version": version})
        for entry in [*entries, entries[0]]:
            assert load_verified(entry).meta is not None
        with ThreadPoolExecutor(4) as pool:
            loaded = list(pool.map(load_verified, entries * 4))
        assert len(loaded) == 8
        assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    finally:
        client.delete_registered_model(twins)
