"""Signal-loop latency (bar in -> signal out) and throughput, with an LSTM champion.

    python bench/signal_loop.py [--bars 300] [--backlog 2000] [--scenarios 1 20x1 20x20 20x20/2]

Set-up: a throw-away MLflow store and redis-server; an LSTM (32 units, 32-bar windows,
one epoch: speed, not skill) trained on reference data, registered and promoted; the
loop runs as `botlib serve` in its own process, as in production. Scenarios:

* ``1``: one market, one model;
* ``20x1``: 20 markets served by one model version (the reference BTC/USDT candles
  replayed under 20 market names; one loaded network);
* ``20x20``: 20 markets, each served by its own model version (the same artifacts
  registered as 20 versions: 20 loaded networks, nothing shared between markets).
* ``20x20/2``: the same 20 markets served by two `botlib serve` processes (as `botlib
  up --loops 2` runs them on a machine with two cores or more): the market leases
  give each process ten markets, and both work on a bar at the same time. Timing
  starts once the leases are shared evenly and every market has been served since.

* latency (after ``--fill`` bars, by default enough to fill the loop's bounded window
  as it is in steady state): one bar per market is published, then we wait for every
  market's signal on `python:trading_signal` (a plain pub/sub client); p50 / p99 over
  ``--bars`` bars.
* throughput: ``--backlog`` bars per market are queued at once; bars/s while the loop
  works through them (it reads them in batches and runs the network once per batch).
* CPU per timed bar: the user + system CPU time (Linux ``/proc``) the `botlib serve`
  processes, redis-server and this process (publisher and subscriber) spent during the
  latency run, divided by its bars. On a machine whose cores they share, a bar's latency
  cannot be much below the serve processes' CPU per bar (the floor a faster loop moves).
* baseline, timed in this process: the naive per-bar path — the MLflow pyfunc model on
  the newest window (`last_only`), the signal builder on the recent bars, one XADD and
  one PUBLISH — for one market.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (Linux
    ``/proc``; NaN where it cannot be read)."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_now(pids: list[int | None]) -> tuple[float, float, float]:
    """(serve processes, redis-server, this process) CPU seconds so far: ``pids`` are
    the serve processes' and, last, the server's."""
    me = os.times()
    return sum(_cpu_s(p) for p in pids[:-1]), _cpu_s(pids[-1]), me.user + me.system


def _wait_stats(r: Any, bars: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while int(r.hget("botlib:loop:stats", "bars") or 0) < bars:
        if time.monotonic() > deadline:
            stats = r.hgetall("botlib:loop:stats")
            last = r.xrevrange("botlib:deadletter", count=1)
            raise TimeoutError(
                f"loop stuck at {stats.get('bars')} of {bars} bars; dead-lettered "
                f"{stats.get('deadletters', 0)}, errors {stats.get('errors', 0)} "
                f"({stats.get('last_error', '')}); last dead letter: {last}"
            )
        time.sleep(0.002)


def _wait_shared(r: Any, markets: list[str], n_loops: int, timeout: float = 120.0) -> None:
    """Until the market leases are held evenly by ``n_loops`` processes."""
    from botlib.transport import RedisNames

    names = RedisNames()
    deadline = time.monotonic() + timeout
    while True:
        owners: dict[str, int] = {}
        for sym in markets:
            stream = names.bar_stream("binance", sym, "1h")
            owner = (r.get(f"{names.lease_prefix}{stream}") or "").split(":")[0]
            owners[owner] = owners.get(owner, 0) + 1
        if len(owners) == n_loops and max(owners.values()) - min(owners.values()) <= 1:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"market leases not shared out: {owners}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=300, help="timed bars per latency run")
    parser.add_argument("--backlog", type=int, default=2000, help="bars per market, throughput")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["1", "20x1", "20x20", "20x20/2"],
        choices=["1", "20x1", "20x20", "20x20/2"],
    )
    parser.add_argument(
        "--fill",
        type=int,
        default=1000,
        help="bars beyond the required history published before timing (1000 = the "
        "loop's default --history: its window is full, the steady state)",
    )
    args = parser.parse_args()
    from _lab import lstm_champion, throwaway_lab

    _, server = throwaway_lab("botlib-bench-loop-")

    import mlflow
    import redis

    from botlib.data import load_ohlcv
    from botlib.live import bars_from_candles, publish_bars
    from botlib.signals import build_signal_frame
    from botlib.tracking import mlflow_client
    from botlib.tracking.verify import record_digest
    from botlib.transport import dumps

    r = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        session = lstm_champion("bench-loop")
        entry = json.loads(r.hget("botlib:active_models", session.model_name) or "{}")
        need = int(entry["required_history"])
        candles = load_ohlcv("BTC/USDT", "1h", start="2025-01-01")
        n_total = need + args.fill + args.bars + args.backlog + 20  # 20: settling, /2
        if len(candles) < n_total:
            raise SystemExit(f"need {n_total} reference bars after 2025-01-01")

        # -- baseline: the naive per-bar path, in this process -------------------
        pyfunc = mlflow.pyfunc.load_model(f"models:/{session.model_name}/1")
        # frozen as issue 17 found it: the network called through TensorFlow, without XLA
        inner = pyfunc.unwrap_python_model().model
        inner.params["jit_compile"] = False
        inner._compile_inference(kernels=False)
        history = load_ohlcv("BTC/USDT", "1h", end="2025-01-01").iloc[-need:]
        series = candles.iloc[: args.bars]
        naive = []
        for i in range(len(series)):
            window = pd.concat([history, series.iloc[: i + 1]]).iloc[-need:]
            t0 = time.perf_counter()
            out = pyfunc.predict(window, params={"last_only": True})
            frame = build_signal_frame(out.reindex(window.index), window, start=window.index[-1])
            payload = dumps(frame.iloc[-1].to_dict())
            r.xadd("bench:naive", {"data": payload})
            r.publish("bench:naive", payload)
            naive.append((time.perf_counter() - t0) * 1000)
        naive_p50 = statistics.median(naive)
        print(f"baseline: p50 {naive_p50:.2f} ms, p99 {_pct(naive, 99):.2f} ms", flush=True)

        rows = []
        client = mlflow_client()
        versions = {"1": str(entry["artifact_digest"])}
        # the same artifacts as 19 more registered versions
        if {"20x20", "20x20/2"} & set(args.scenarios):
            source = client.get_model_version(session.model_name, "1").source
            for _ in range(19):
                mv = client.create_model_version(session.model_name, source)
                versions[str(mv.version)] = record_digest(session.model_name, str(mv.version))
        for scenario in args.scenarios:
            n_sym = 1 if scenario == "1" else 20
            n_loops = 2 if scenario.endswith("/2") else 1
            r.flushall()
            markets = ["BTC/USDT"] + [f"S{k:02d}/USDT" for k in range(1, n_sym)]
            for k, sym in enumerate(markets):
                version = list(versions)[k] if scenario.startswith("20x20") else "1"
                served = {
                    **entry,
                    "name": f"{session.model_name}-{k}",
                    "symbol": sym,
                    "version": version,
                    "model_uri": f"models:/{session.model_name}/{version}",
                    "model_id": f"{session.model_name}:{version}-{k}",
                    "artifact_digest": versions[version],
                }
                r.hset("botlib:active_models", served["name"], json.dumps(served))
            r.incr("botlib:active_models:rev")
            per_market = {
                sym: bars_from_candles(
                    candles.iloc[:n_total], exchange="binance", symbol=sym, timeframe="1h"
                )
                for sym in markets
            }
            loops = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "botlib",
                        "serve",
                        "--consumer",
                        f"bench{j}",
                        "--max-model-age-days",
                        "0",
                    ],
                    env=os.environ.copy(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for j in range(n_loops)
            ]
            try:
                # warm-up: history plus --fill bars (starts TF, fills the loop's window)
                warm = need + max(args.fill, 5)
                for sym in markets:
                    publish_bars(r, per_market[sym][:warm])
                _wait_stats(r, warm * n_sym)
                if n_loops > 1:  # the leases shared out, then every market served since
                    _wait_shared(r, markets, n_loops)
                    settle = warm + 20
                    for i in range(warm, settle):
                        publish_bars(r, [per_market[sym][i] for sym in markets])
                    _wait_stats(r, settle * n_sym)
                    warm = settle
                pubsub = r.pubsub()
                pubsub.subscribe("python:trading_signal")
                pubsub.get_message(timeout=1)
                lat = []
                pids = [loop.pid for loop in loops] + [server.pid()]
                cpu0 = _cpu_now(pids)
                for i in range(warm, warm + args.bars):
                    t0 = time.perf_counter()
                    publish_bars(r, [per_market[sym][i] for sym in markets])
                    got = 0
                    while got < n_sym:
                        if pubsub.get_message(ignore_subscribe_messages=True, timeout=5):
                            got += 1
                    lat.append((time.perf_counter() - t0) * 1000)
                cpu1 = _cpu_now(pids)
                cpu = [(b - a) * 1000 / args.bars for a, b in zip(cpu0, cpu1, strict=True)]
                pubsub.close()
                # throughput: a backlog per market, all at once
                done = warm + args.bars
                start_count = done * n_sym
                t0 = time.perf_counter()
                for sym in markets:
                    publish_bars(r, per_market[sym][done:n_total])
                _wait_stats(r, n_total * n_sym)
                elapsed = time.perf_counter() - t0
                rate = (n_total * n_sym - start_count) / elapsed
                rows.append((scenario, statistics.median(lat), _pct(lat, 99), rate, cpu))
                print(f"{scenario}: p50 {rows[-1][1]:.2f} ms, p99 {rows[-1][2]:.2f} ms, "
                      f"{rate:.0f} bars/s", flush=True)  # fmt: skip
            finally:
                for loop in loops:
                    loop.terminate()
                for loop in loops:
                    loop.wait(30)

        print()
        print(f"baseline (naive per-bar pyfunc + builder + XADD/PUBLISH, 1 market, in-process): "
              f"p50 {naive_p50:.2f} ms, p99 {_pct(naive, 99):.2f} ms")  # fmt: skip
        print(f"{'scenario':>9} {'p50 ms':>8} {'p99 ms':>8} {'bars/s':>9} {'p50 vs baseline':>16}"
              f"   CPU ms per bar: {'serve':>6} {'redis':>6} {'bench':>6}")  # fmt: skip
        for scenario, p50, p99, rate, (serve_ms, redis_ms, bench_ms) in rows:
            print(f"{scenario:>9} {p50:>8.2f} {p99:>8.2f} {rate:>9.0f} {naive_p50 / p50:>15.2f}x"
                  f"   {'':>15}{serve_ms:>6.2f} {redis_ms:>6.2f} {bench_ms:>6.2f}")  # fmt: skip
        print("latency: bar published -> every market's signal received on python:trading_signal")
        print(f"CPU: user + system time during the latency run, per bar ({os.cpu_count()} cores "
              "here)")  # fmt: skip
        print("goals (issue 17): p99 <= 5 ms with 1 market, <= 15 ms with 20 markets of distinct "
              "models; p50 >= 3x faster than the baseline")  # fmt: skip
    finally:
        r.close()
        server.stop()


if __name__ == "__main__":
    main()
