"""Faults, with nothing lost and nothing doubled: a killed loop, a crashed consumer,
a Redis restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis

from botlib.live import SignalLoop
from botlib.promotion import GateConfig, promote
from tests.conftest import Store
from tests.live.helpers import as_role, by_model, feed, loop_config, records, window

LENIENT = GateConfig(margin=-10.0, min_trades=0)
STREAM = "botlib:bars:binance:BTC/USDT:1h"

pytestmark = pytest.mark.slow


def _assert_exactly_once(r: redis.Redis, n: int, model_ids: set[str]) -> None:
    signals = by_model(records(r, "botlib:signals"))
    preds = by_model([p for p in records(r, "botlib:predictions") if p["validated_at"] is None])
    assert set(signals) == model_ids
    for model_id in model_ids:
        assert len(signals[model_id]) == n, len(signals[model_id])
        assert len({s["created_at"] for s in signals[model_id]}) == n
        assert len(preds[model_id]) == n
        assert len({p["id"] for p in preds[model_id]}) == n
    assert r.xpending(STREAM, "botlib-signal-loop")["pending"] == 0


def _serve_process(extra: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "botlib", "serve", "--consumer", "proc", *extra],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_loop_killed_mid_stream_and_restarted(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    promote(store.lstm, 1, gate=LENIENT)
    promote(store.ga, 1, gate=LENIENT)
    feed(r, window(500))
    first = _serve_process(["--batch", "5", "--max-model-age-days", "0"])
    deadline = time.monotonic() + 180
    while int(r.hget("botlib:loop:stats", "bars") or 0) < 100:
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the loop never got going"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    done = int(r.hget("botlib:loop:stats", "bars") or 0)
    assert 100 <= done < 500, done  # killed mid-stream
    second = _serve_process(["--idle-exit", "2", "--max-model-age-days", "0"])
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out[-3000:]
    _assert_exactly_once(r, 500, {f"{store.lstm}:1", f"{store.ga}:1"})


def test_bars_read_by_a_crashed_consumer_are_reclaimed(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    promote(store.ga, 1, gate=LENIENT)
    feed(r, window(120))
    from botlib.transport import ensure_group

    ensure_group(r, STREAM, "botlib-signal-loop")
    taken = r.xreadgroup("botlib-signal-loop", "crashed", {STREAM: ">"}, count=40)
    assert len(taken[0][1]) == 40  # read, never acknowledged: that consumer died
    time.sleep(0.3)
    survivor = SignalLoop(as_role(r, "loop"), config=loop_config(consumer="b", claim_idle_ms=200))
    survivor.run(idle_exit_s=1.5)
    _assert_exactly_once(r, 120, {f"{store.ga}:1"})


def test_redis_restarted_mid_stream(store: Store, redis_server: Any, r: redis.Redis) -> None:
    promote(store.ga, 1, gate=LENIENT)
    candles = window(400)
    loop = SignalLoop(
        redis.Redis.from_url(redis_server.role_url("loop"), decode_responses=True),
        config=loop_config(backoff_max_s=0.5),
    )
    runner = threading.Thread(target=loop.run, kwargs={"idle_exit_s": 4.0})
    runner.start()
    feed_client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    feeder = threading.Thread(
        target=feed, args=(feed_client, candles), kwargs={"speed": 3600 * 150}
    )
    feeder.start()
    while loop.stats.bars < 100:
        time.sleep(0.01)
    redis_server.stop()
    time.sleep(1.0)
    redis_server.start()
    feeder.join(120)
    runner.join(120)
    assert not runner.is_alive()
    assert loop.stats.errors >= 1 and "redis" in loop.stats.last_error
    _assert_exactly_once(r, 400, {f"{store.ga}:1"})


def test_a_bar_that_makes_a_model_raise_is_set_aside_alone(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """The poison bar arrives in the same read as valid ones: only it is dead-lettered
    (for the model that failed), the others of its batch and the 100 after it served."""
    promote(store.ga, 1, gate=LENIENT)
    candles = window(201).copy()
    magic = 4242.4242
    candles.iloc[100, candles.columns.get_loc("volume")] = magic
    feed(r, candles)
    loop = SignalLoop(as_role(r, "loop"), config=loop_config())
    loop.load_active()
    served = next(iter(loop.served.values()))
    real = served.model.predict_tail

    def fragile(frame: Any, k: int, **kw: Any) -> Any:
        if (frame["volume"].iloc[-k:] == magic).any():
            raise ValueError("this model cannot handle that bar")
        return real(frame, k, **kw)

    served.model.predict_tail = fragile  # type: ignore[method-assign]
    loop.run(idle_exit_s=1.5)
    dead = records(r, "botlib:deadletter")
    assert len(dead) == 1, [d["reason"] for d in dead]
    assert "cannot handle that bar" in dead[0]["reason"]
    assert dead[0]["fields"]["volume"] == magic
    signals = records(r, "botlib:signals")
    assert len(signals) == 200 and loop.stats.bars == 201
    assert loop.stats.errors >= 1


def test_a_dead_loops_market_is_taken_over_with_its_window_and_position(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """Loop ``a`` serves 150 bars, reads 20 more and dies holding its lease. Loop ``b``
    waits for the lease to expire, claims the 20, rebuilds the window and position from
    Redis, and serves the rest: every bar once, the same signals as one loop alone."""
    import json

    promote(store.ga, 1, gate=LENIENT)
    candles = window(300)
    feed(r, candles.iloc[:150])
    a = SignalLoop(as_role(r, "loop"), config=loop_config(consumer="a", lease_ttl_s=1.0, batch=50))
    a.load_active()
    while a.stats.bars < 150:
        a.step()
    feed(r, candles.iloc[150:])
    taken = r.xreadgroup("botlib-signal-loop", "a", {STREAM: ">"}, count=20)
    assert len(taken[0][1]) == 20  # read by a, never committed: a dies now
    assert r.get(
        f"botlib:lease:{STREAM}",
    ).startswith("a:")
    b = SignalLoop(as_role(r, "loop"), config=loop_config(consumer="b", lease_ttl_s=1.0))
    b.run(idle_exit_s=3.0)
    assert b.stats.takeovers == 1 and b.stats.bars == 150
    _assert_exactly_once(r, 300, {f"{store.ga}:1"})
    # one loop alone over the same bars, in a fresh database: the same signals
    together = [json.loads(f["data"]) for _, f in r.xrange("botlib:signals")]
    r.flushdb()
    promote(store.ga, 1, gate=LENIENT)
    feed(r, candles)
    SignalLoop(as_role(r, "loop"), config=loop_config(consumer="solo")).run(idle_exit_s=1.5)
    alone = [json.loads(f["data"]) for _, f in r.xrange("botlib:signals")]
    keys = ("created_at", "signal_type", "position_size", "stop_loss", "take_profit")
    assert [[s[k] for k in keys] for s in together] == [[s[k] for k in keys] for s in alone]
