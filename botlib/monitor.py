"""What is running and how it is doing, read from Redis alone.

The signal loop keeps its counters in ``botlib:loop:stats`` (bars, predictions and
signals in total and per model, predictions scored and their summed accuracy per
model, dead letters, errors, the last error, its lag, a heartbeat), its per-market
state in ``botlib:loop:state``; the bridge keeps ``botlib:bridge:stats``; the live
feeds (``botlib feed ccxt`` / ``watch``) keep ``botlib:feed:stats``; every service reports
its runtime configuration in ``botlib:config:status``. ``collect_status`` turns them
(plus the consumer groups' lag and the output streams' lengths) into one dict:
``botlib status`` prints it, ``prometheus_text`` renders it in the Prometheus text
format and ``serve_metrics`` exposes that on a loopback port.
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from botlib.transport import RedisNames, active_models
from botlib.transport.stats import (
    BridgeCounter,
    FeedCounter,
    LoopCounter,
    SupervisorCounter,
    per_stream,
)

__all__ = ["collect_status", "prometheus_text", "serve_metrics"]

#: a heartbeat older than this means the service is not running
STALE_S = 5.0


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _iso(ms: Any) -> str | None:
    """An epoch-ms value (as Redis returns it) as ISO UTC, or None."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ms) / 1000)) if ms else None


def _group_info(r: Any, stream: str, group: str) -> tuple[int | None, int | None]:
    """(unread entries, pending entries) of ``group`` on ``stream``."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return None, None
    for info in groups:
        if info.get("name") != group:
            continue
        pending = int(info.get("pending") or 0)
        lag = info.get("lag")
        if lag is None:  # Redis < 7 (or lag unknown): count what is after last delivered
            last = info.get("last-delivered-id", "0-0")
            lag = len(r.xrange(stream, min=f"({last}", count=100_000))
        return int(lag), pending
    return None, None


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a hit rate ``rate`` over ``n`` trials (95 %)."""
    if n <= 0:
        return None
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def collect_status(r: Any, names: RedisNames, *, exchange: str | None = None) -> dict[str, Any]:
    """Every figure ``botlib status`` shows, as plain data (see the module doc)."""
    from botlib.data import timeframe_seconds

    now = time.time()
    if exchange is None:
        from botlib.settings import get_settings

        exchange = get_settings().exchange_id
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(names.loop_stats)
    pipe.hgetall(names.loop_state)
    pipe.hgetall(names.bridge_stats)
    pipe.hgetall(names.runtime_config_status)
    pipe.hgetall(names.feed_stats)
    pipe.hgetall(names.supervisor_stats)
    pipe.hgetall(names.drift)
    pipe.hgetall(names.registry)
    pipe.hgetall(names.paper)
    pipe.hgetall(names.paper_stats)
    for stream in (names.signals, names.predictions, names.deadletter, names.events):
        pipe.xlen(stream)
    (loop_raw, state, bridge_raw, config_raw, feed_raw, sup_raw, drift_raw, registry_raw,
     paper_raw, paper_stats, *lengths) = pipe.execute()  # fmt: skip
    active = active_models(r, names)

    per_model: dict[str, dict[str, float]] = {}
    for key, value in loop_raw.items():
        kind, sep, model_id = key.partition("|")
        if sep and kind != LoopCounter.lag_ms:
            per_model.setdefault(model_id, {})[kind] = _num(value)
    accuracy = {
        model_id: {
            "validated": int(f[LoopCounter.validated]),
            "accuracy": f.get(LoopCounter.accuracy_milli, 0) / 1000 / f[LoopCounter.validated]
            if f[LoopCounter.validated]
            else None,
            "persistence": f.get(LoopCounter.persistence_milli, 0)
            / 1000
            / f[LoopCounter.persistence_n]
            if f.get(LoopCounter.persistence_n)
            else None,
        }
        for model_id, f in sorted(per_model.items())
        if LoopCounter.validated in f
    }
    models = []
    for name, entry in sorted(active.items()):
        model_id = str(entry.get("model_id") or f"{name}:{entry.get('version')}")
        figures = per_model.get(model_id, {})
        scored = accuracy.get(model_id, {"validated": 0, "accuracy": None, "persistence": None})
        hits = None
        if entry.get("prediction_type") != "volatility" and scored["accuracy"] is not None:
            hits = wilson(float(scored["accuracy"]), int(scored["validated"] or 0))
        tested = entry.get("metrics") or {}
        models.append(
            {
                "name": name,
                "version": str(entry.get("version")),
                "model_id": model_id,
                "symbol": entry.get("symbol"),
                "timeframe": entry.get("timeframe"),
                "algorithm": entry.get("algorithm"),
                "predictions": int(figures.get(LoopCounter.predictions, 0)),
                "signals": int(figures.get(LoopCounter.signals, 0)),
                **scored,
                #: the live hit rate's 95 % interval (Wilson), for direction-scored models
                "hit_rate_ci": hits,
                #: the same figures on the model's test window, as promoted
                "test_hit_rate": tested.get("test.forecast.directional_accuracy"),
                "test_persistence": tested.get("test.forecast.persistence_accuracy"),
            }
        )

    streams = []
    seen: set[str] = set()
    for entry in active.values():
        ex = str(entry.get("exchange") or exchange)
        symbol, timeframe = str(entry["symbol"]), str(entry["timeframe"])
        stream = names.bar_stream(ex, symbol, timeframe)
        if stream in seen:
            continue
        seen.add(stream)
        unread, pending = _group_info(r, stream, names.consumer_group)
        last = state.get(names.last_ts_field(stream))
        bar_s = timeframe_seconds(timeframe)
        # the last bar processed closed at its open time + one bar
        age = now - (int(last) / 1000 + bar_s) if last else None
        streams.append(
            {
                "stream": stream,
                "last_bar": _iso(last),
                "last_bar_age_s": age,
                "lag_at_processing_s": (
                    _num(loop_raw[lag]) / 1000
                    if (lag := per_stream(LoopCounter.lag_ms, stream)) in loop_raw
                    else None
                ),
                "unread": unread,
                "pending": pending,
            }
        )

    def heartbeat(raw: dict[str, str], stale_s: float = STALE_S) -> tuple[bool, float | None]:
        beat = raw.get(LoopCounter.heartbeat)
        age = now - _num(beat) if beat else None
        return (age is not None and age < stale_s), age

    loop_up, loop_age = heartbeat(loop_raw)
    loop: dict[str, int] = {
        str(k): int(_num(loop_raw.get(k)))
        for k in (
            LoopCounter.bars,
            LoopCounter.predictions,
            LoopCounter.signals,
            LoopCounter.deadletters,
            LoopCounter.errors,
            LoopCounter.takeovers,
            LoopCounter.streamed,
            LoopCounter.windowed,
            LoopCounter.stream_seeds,
        )
    }
    loop["validated"] = sum(int(_num(v["validated"])) for v in accuracy.values())
    bridge_up, bridge_age = heartbeat(bridge_raw)
    B = BridgeCounter
    bridge_counts = {
        str(k): int(_num(bridge_raw.get(k)))
        for k in (
            B.handled, B.invalid, B.rate_limited, B.busy, B.started, B.queued, B.done, B.failed,
            B.timeout, B.replayed, B.duplicates, B.running, B.queue_depth, B.quick_in_flight,
            B.model_loads, B.model_cache_hits, B.demoted,
        )
    }  # fmt: skip
    feeds: dict[str, dict[str, Any]] = {}
    for key, value in feed_raw.items():
        feed, _, name = key.rpartition("|")
        feeds.setdefault(feed, {})[name] = value
    feed_rows = []
    for feed, raw in sorted(feeds.items()):
        # a polling feed beats once per poll: allow three missed polls
        up, age = heartbeat(raw, 3 * _num(raw.get(FeedCounter.interval_s)) + STALE_S)
        feed_rows.append(
            {
                "feed": feed,
                "up": up,
                "heartbeat_age_s": age,
                "bars": int(_num(raw.get(FeedCounter.bars))),
                "last_bar": _iso(raw.get(FeedCounter.last_bar)),
                "errors": int(_num(raw.get(FeedCounter.errors))),
                "last_error": raw.get(FeedCounter.last_error, ""),
            }
        )
    supervisor: dict[str, Any] = {"restarts": {}, "pids": {}, "status": {}}
    for key, value in sup_raw.items():
        kind, sep, child = key.partition("|")
        if sep and kind == SupervisorCounter.restarts:
            supervisor["restarts"][child] = int(_num(value))
        elif sep and kind == SupervisorCounter.pid:
            supervisor["pids"][child] = value
        elif sep and kind == SupervisorCounter.status:
            supervisor["status"][child] = value
    beat = sup_raw.get(SupervisorCounter.heartbeat)
    supervisor["heartbeat_age_s"] = now - _num(beat) if beat else None
    config = {}
    for component, text in config_raw.items():
        try:
            config[component] = json.loads(text)
        except json.JSONDecodeError:
            config[component] = {"ok": False, "error": f"unreadable status {text[:80]!r}"}
    drift = []
    for _, text in sorted(drift_raw.items()):
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        scores = {k: v for k, v in (record.get("scores") or {}).items() if v is not None}
        record["worst"] = sorted(scores.items(), key=lambda kv: -kv[1])[:3]
        drift.append(record)
    registry = {}
    for name, text in sorted(registry_raw.items()):
        try:
            view = json.loads(text)
        except json.JSONDecodeError:
            continue
        served = active.get(name)
        view["served"] = str(served["version"]) if served else None  # as of now
        view["in_sync"] = view.get("champion") == view["served"]
        view["age_s"] = now - _num(view.get("at"))
        registry[name] = view
    accounts = []
    for _, text in sorted(paper_raw.items()):
        try:
            acc = json.loads(text)
        except json.JSONDecodeError:
            continue
        parity = acc.get("parity") or {}
        accounts.append(
            {
                **{
                    k: acc.get(k)
                    for k in (
                        "model_id",
                        "market",
                        "exchange",
                        "timeframe",
                        "equity",
                        "cash0",
                        "max_drawdown",
                        "fills",
                        "bars",
                        "missing",
                    )
                },
                "return": (acc["equity"] / acc["cash0"] - 1.0) if acc.get("cash0") else None,
                "last_bar": _iso(acc.get("last_ts")),
                "parity_ok": parity.get("ok"),
                "parity_breaks": parity.get("breaks"),
                "first_break": parity.get("first_break"),
                "parity_checked_to": parity.get("checked_to"),
                "shadow_equity": parity.get("shadow_equity"),
                "parity_error": parity.get("error"),
                "parity_skipped": parity.get("skipped"),
            }
        )
    paper_up, paper_age = heartbeat(paper_stats)
    paper = {
        "up": paper_up,
        "heartbeat_age_s": paper_age,
        **{
            k: int(_num(paper_stats.get(k)))
            for k in ("signals", "bars", "fills", "missing", "parity_breaks", "errors")
        },
        "last_error": paper_stats.get("last_error", ""),
        "accounts": accounts,
    }
    return {
        "at": now,
        "active_models": models,
        "drift": drift,
        "paper": paper,
        "registry": registry,
        "loop": {
            "up": loop_up,
            "heartbeat_age_s": loop_age,
            **loop,
            "last_error": loop_raw.get(LoopCounter.last_error, ""),
        },
        "streams": streams,
        "accuracy": accuracy,
        "bridge": {
            "up": bridge_up,
            "heartbeat_age_s": bridge_age,
            **bridge_counts,
            "last_error": bridge_raw.get(BridgeCounter.last_error, ""),
        },
        "feeds": feed_rows,
        "supervisor": supervisor,
        "config": config,
        "outputs": dict(
            zip(("signals", "predictions", "deadletter", "events"), map(int, lengths), strict=True)
        ),
    }


def _label(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def prometheus_text(status: dict[str, Any]) -> str:
    """``status`` (from ``collect_status``) in the Prometheus text exposition format."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, Any], Any]]) -> None:
        lines.append(f"# HELP botlib_{name} {help_}")
        lines.append(f"# TYPE botlib_{name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            tag = ",".join(f"{k}={_label(v)}" for k, v in labels.items())
            lines.append(f"botlib_{name}{{{tag}}} {float(value):.17g}" if tag else
                         f"botlib_{name} {float(value):.17g}")  # fmt: skip

    loop, bridge = status["loop"], status["bridge"]
    metric("loop_up", "gauge", "1 if the signal loop's heartbeat is fresh.", [({}, loop["up"])])
    metric(
        "loop_heartbeat_age_seconds", "gauge", "Seconds since the loop's last heartbeat.",
        [({}, loop["heartbeat_age_s"])],
    )  # fmt: skip
    for key, help_ in (
        ("bars", "Bars processed."),
        ("predictions", "Predictions published."),
        ("signals", "Signals published."),
        ("validated", "Predictions scored against what happened."),
        ("deadletters", "Records set aside with a reason."),
        ("errors", "Errors (refused models, failing models, stale models)."),
        ("streamed", "Model steps served from the streaming state (no window recomputed)."),
        ("windowed", "Model steps that recomputed the window (no incremental form)."),
        ("stream_seeds", "Streaming states built from the window (new model or market)."),
    ):
        metric(f"loop_{key}_total", "counter", help_, [({}, loop.get(key))])
    models = status["active_models"]
    metric(
        "model_active", "gauge", "Active model versions served by the loop.",
        [({"name": m["name"], "version": m["version"], "symbol": m["symbol"],
           "timeframe": m["timeframe"]}, 1) for m in models],
    )  # fmt: skip
    for key, help_ in (
        ("predictions", "Predictions published per model version."),
        ("signals", "Signals published per model version."),
    ):
        metric(
            f"model_{key}_total", "counter", help_,
            [({"model_id": m["model_id"]}, m[key]) for m in models],
        )  # fmt: skip
    metric(
        "model_feature_drift", "gauge",
        "Population stability index of a model's input feature, live against training.",
        [({"model_id": d["model_id"], "market": d.get("market", ""), "feature": f}, v)
         for d in status.get("drift", []) for f, v in (d.get("scores") or {}).items()],
    )  # fmt: skip
    paper = status.get("paper") or {"accounts": []}

    def acc_labels(a: dict[str, Any]) -> dict[str, Any]:
        return {"model_id": a["model_id"], "market": a["market"], "exchange": a["exchange"],
                "timeframe": a["timeframe"]}  # fmt: skip

    metric(
        "paper_equity", "gauge", "A served model's paper account equity (quote currency).",
        [(acc_labels(a), a["equity"]) for a in paper["accounts"]],
    )  # fmt: skip
    metric(
        "paper_parity_breaks", "gauge",
        "Bars where a paper account differs from its shadow backtest (last check).",
        [(acc_labels(a), a["parity_breaks"]) for a in paper["accounts"]
         if a.get("parity_breaks") is not None],
    )  # fmt: skip
    accuracy = status["accuracy"]
    metric(
        "model_validated_total", "counter", "Predictions scored per model version.",
        [({"model_id": k}, v["validated"]) for k, v in accuracy.items()],
    )  # fmt: skip
    metric(
        "model_accuracy", "gauge", "Mean accuracy of the scored predictions (0..1).",
        [({"model_id": k}, v["accuracy"]) for k, v in accuracy.items()],
    )  # fmt: skip
    streams = status["streams"]
    metric(
        "stream_unread_bars", "gauge", "Bars on a market's stream not yet read by the loop.",
        [({"stream": s["stream"]}, s["unread"]) for s in streams],
    )  # fmt: skip
    metric(
        "stream_pending_bars", "gauge", "Bars read but not yet acknowledged.",
        [({"stream": s["stream"]}, s["pending"]) for s in streams],
    )  # fmt: skip
    metric(
        "stream_last_bar_age_seconds", "gauge",
        "Seconds since the last processed bar closed (the loop's lag behind the market).",
        [({"stream": s["stream"]}, s["last_bar_age_s"]) for s in streams],
    )  # fmt: skip
    metric(
        "stream_processing_lag_seconds", "gauge",
        "How long after its close the newest bar was processed.",
        [({"stream": s["stream"]}, s["lag_at_processing_s"]) for s in streams],
    )  # fmt: skip
    feeds = status.get("feeds", [])
    metric(
        "feed_up", "gauge", "1 if a live feed's heartbeat is fresh.",
        [({"feed": f["feed"]}, f["up"]) for f in feeds],
    )  # fmt: skip
    metric(
        "feed_bars_total", "counter", "Closed candles a live feed published.",
        [({"feed": f["feed"]}, f["bars"]) for f in feeds],
    )  # fmt: skip
    metric(
        "feed_errors_total", "counter", "Failed fetches / dropped connections of a live feed.",
        [({"feed": f["feed"]}, f["errors"]) for f in feeds],
    )  # fmt: skip
    restarts = status.get("supervisor", {}).get("restarts", {})
    metric(
        "service_restarts_total", "counter", "Restarts of a `botlib up` service after it died.",
        [({"service": k}, v) for k, v in sorted(restarts.items())],
    )  # fmt: skip
    metric("bridge_up", "gauge", "1 if the bridge's heartbeat is fresh.", [({}, bridge["up"])])
    metric(
        "bridge_commands_total", "counter", "Commands by outcome.",
        [({"outcome": k}, bridge[k]) for k in
         ("handled", "invalid", "rate_limited", "busy", "started", "queued", "done", "failed")],
    )  # fmt: skip
    metric("bridge_running", "gauge", "Long commands running.", [({}, bridge["running"])])
    metric(
        "bridge_queue_depth", "gauge", "Long commands waiting for a worker.",
        [({}, bridge["queue_depth"])],
    )  # fmt: skip
    metric(
        "bridge_model_loads_total", "counter", "Models loaded (cache misses).",
        [({}, bridge["model_loads"])],
    )  # fmt: skip
    metric(
        "bridge_demoted_total", "counter",
        "Models stopped by a feature-drift alert (runtime drift_demote).",
        [({}, bridge.get("demoted", 0))],
    )  # fmt: skip
    metric(
        "output_stream_length", "gauge", "Entries held by the durable output streams.",
        [({"stream": k}, v) for k, v in status["outputs"].items()],
    )  # fmt: skip
    metric(
        "config_ok", "gauge", "1 if the component runs on the latest runtime config.",
        [({"component": k}, v.get("ok")) for k, v in status["config"].items()],
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def serve_metrics(
    r: Any, names: RedisNames, *, host: str = "127.0.0.1", port: int = 9464
) -> ThreadingHTTPServer:
    """Serve ``/metrics`` (Prometheus text) and ``/status`` (JSON) in a background
    thread; ``server.shutdown()`` stops it. Figures are read from Redis per request."""

    allowed_hosts = {host, "127.0.0.1", "localhost", "[::1]"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # a page on another site can make a browser ask this loopback port (DNS
            # rebinding); only requests naming this host are answered
            given = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
            if given not in allowed_hosts:
                self._send(421, "text/plain", f"unexpected Host header {given[:80]!r}\n")
                return
            path = self.path.split("?", 1)[0]
            if path not in ("/metrics", "/status"):
                self._send(404, "text/plain", "not found: try /metrics or /status\n")
                return
            try:
                status = collect_status(r, names)
            except redis.RedisError as exc:
                self._send(503, "text/plain", f"redis unavailable: {exc}\n")
                return
            if path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", prometheus_text(status))
            else:
                self._send(200, "application/json", json.dumps(status, default=str))

        def _send(self, code: int, kind: str, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes every few seconds would flood the console

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="botlib-metrics").start()
    return server
