"""The bridge's on-demand signals: ``generate_signal`` answered through Redis, with the
model cache (one load per version) against the baseline of a load per request.

    python bench/bridge.py [--requests 30]

Set-up: a throw-away MLflow store and redis-server; an LSTM (32 units, 32-bar windows,
one epoch: speed, not skill) trained on reference data, registered and promoted. A
``CommandService`` runs in a thread of this process; a plain client publishes
``generate_signal`` on ``elysia:command`` one at a time and times the round trip to its
answer on ``python:command_result``.

* cached: ``BridgeConfig(model_cache=8)`` — the default; the first request loads.
* baseline: ``BridgeConfig(model_cache=0)`` — every request loads the model again (what
  the bridge did before the cache).

Prints the median and p90 round trip of each and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

import numpy as np


def _round_trips(url: str, cache: int, requests: int) -> tuple[list[float], dict[str, str]]:
    import redis

    from botlib.bridge.service import BridgeConfig, CommandService

    r = redis.Redis.from_url(url, decode_responses=True)
    r.delete("botlib:bridge:stats")
    service = CommandService(
        redis.Redis.from_url(url, decode_responses=True),
        config=BridgeConfig(model_cache=cache, rate_limits={"generate_signal": (10**6, 60)}),
    )
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe("python:command_result", "python:command_error")
    time.sleep(0.3)
    times = []
    try:
        for i in range(requests + 1):  # the first one (a load either way) is not timed
            body = {"command": "generate_signal", "data": {"symbol": "BTC/USDT"},
                    "timestamp": int(time.time() * 1000), "request_id": f"g-{i}"}  # fmt: skip
            t0 = time.perf_counter()
            r.publish("elysia:command", json.dumps(body))
            deadline = time.monotonic() + 120
            while True:
                message: Any = sub.get_message(timeout=1.0)
                if message is None:  # nothing yet (or a subscription notice)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no answer to g-{i}")
                    continue
                answer = json.loads(message["data"])
                if answer.get("request_id") == f"g-{i}":
                    if answer["event"] != "done":
                        raise RuntimeError(f"g-{i}: {answer}")
                    break
            if i:
                times.append((time.perf_counter() - t0) * 1000)
        return times, r.hgetall("botlib:bridge:stats")
    finally:
        service.stop()
        thread.join(30)
        sub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="timed requests per case")
    args = parser.parse_args()
    from _lab import lstm_champion, throwaway_lab

    _, server = throwaway_lab("botlib-bench-bridge-")
    try:
        lstm_champion("bench-bridge")
        rows = []
        for label, cache in (("baseline: load per request", 0), ("cached by version", 8)):
            times, stats = _round_trips(server.url, cache, args.requests)
            rows.append((label, times, stats))
        base = statistics.median(rows[0][1])
        print(f"\ngenerate_signal round trip, {args.requests} requests each (ms)")
        print(f"{'case':<28} {'p50':>9} {'p90':>9} {'loads':>6} {'hits':>6} {'vs baseline':>12}")
        for label, times, stats in rows:
            p50 = statistics.median(times)
            print(
                f"{label:<28} {p50:>9.2f} {np.percentile(times, 90):>9.2f} "
                f"{stats.get('model_loads', '0'):>6} {stats.get('model_cache_hits', '0'):>6} "
                f"{base / p50:>11.1f}x"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
