"""The counters every service keeps in Redis, defined once for writers and readers.

Each service has one hash (``RedisNames.loop_stats``, ``bridge_stats``, ``feed_stats``,
``supervisor_stats``). A field is either a plain counter or gauge (``bars``,
``heartbeat``) or a *keyed* one: ``{counter}|{key}`` — per model (``signals|{model_id}``),
per stream (``lag_ms|{stream}``), per feed (``{feed}|bars``: the feed name first, so
that one feed's fields sort together) or per child of ``botlib up``
(``restarts|{child}``). The loop, the bridge, the feeds and the supervisor write
through these names; ``botlib status`` and ``/metrics`` read through them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BridgeCounter",
    "FeedCounter",
    "LoopCounter",
    "PaperCounter",
    "SupervisorCounter",
    "feed_field",
    "keyed",
    "per_model",
    "per_stream",
]


class LoopCounter(StrEnum):
    """``botlib:loop:stats``."""

    bars = "bars"
    predictions = "predictions"  # also per model
    signals = "signals"  # also per model
    deadletters = "deadletters"
    errors = "errors"
    last_error = "last_error"
    last_error_at = "last_error_at"
    heartbeat = "heartbeat"
    #: predictions dropped unscored: their bars left the window
    unscored = "unscored"
    #: per model: predictions scored, and the sum of their accuracies in thousandths
    validated = "validated"
    accuracy_milli = "accuracy_milli"
    #: per stream: ms between the newest bar's close and its processing
    lag_ms = "lag_ms"
    #: markets taken over from another loop process (lease expired or released)
    takeovers = "takeovers"
    #: model steps served from the streaming state (one bar, no window recomputed)
    streamed = "streamed"
    #: model steps that recomputed the window (no incremental form, or after a failure)
    windowed = "windowed"
    #: streaming states rebuilt from the window (a new model or market, a lost state)
    stream_seeds = "stream_seeds"
    #: per model: feature-drift alerts raised
    drift_alerts = "drift_alerts"
    #: per model: scored predictions with a persistence forecast beside them (the last
    #: bar's move, carried on), and that baseline's hits in thousandths
    persistence_n = "persistence_n"
    persistence_milli = "persistence_milli"


class BridgeCounter(StrEnum):
    """``botlib:bridge:stats``: commands by outcome, gauges, model cache."""

    handled = "handled"
    invalid = "invalid"
    rate_limited = "rate_limited"
    busy = "busy"
    started = "started"
    queued = "queued"
    done = "done"
    failed = "failed"
    timeout = "timeout"
    #: a request id answered again from its stored answer
    replayed = "replayed"
    #: a request id that came again while it was still running
    duplicates = "duplicates"
    #: a request id whose bridge died while running it, run again
    taken_over = "taken_over"
    running = "running"
    queue_depth = "queue_depth"
    quick_in_flight = "quick_in_flight"
    model_loads = "model_loads"
    model_cache_hits = "model_cache_hits"
    #: models stopped by a feature-drift alert (runtime ``drift_demote``), and the last
    #: alert read (``botlib:alerts`` entry id)
    demoted = "demoted"
    alerts_read = "alerts_read"
    last_error = "last_error"
    last_error_at = "last_error_at"
    heartbeat = "heartbeat"


class FeedCounter(StrEnum):
    """``botlib:feed:stats``, keyed by feed (``feed_field``)."""

    bars = "bars"
    last_bar = "last_bar"
    heartbeat = "heartbeat"
    interval_s = "interval_s"
    errors = "errors"
    last_error = "last_error"
    last_error_at = "last_error_at"


class PaperCounter(StrEnum):
    """``botlib:paper:stats`` (``botlib paper``)."""

    signals = "signals"
    bars = "bars"
    fills = "fills"
    #: bars on a market's stream that had no signal in ``botlib:signals``
    missing = "missing"
    #: parity breaks found (a missing signal, or the shadow backtest disagreeing)
    parity_breaks = "parity_breaks"
    shadow_checks = "shadow_checks"
    errors = "errors"
    last_error = "last_error"
    last_error_at = "last_error_at"
    heartbeat = "heartbeat"


class SupervisorCounter(StrEnum):
    """``botlib:supervisor:stats``, keyed by child (``restarts|serve``)."""

    restarts = "restarts"
    pid = "pid"
    status = "status"
    heartbeat = "heartbeat"


def keyed(counter: str, key: str) -> str:
    """``{counter}|{key}``."""
    return f"{counter}|{key}"


def per_model(counter: LoopCounter, model_id: str) -> str:
    return keyed(counter, model_id)


def per_stream(counter: LoopCounter, stream: str) -> str:
    return keyed(counter, stream)


def feed_field(feed: str, counter: FeedCounter) -> str:
    """``{feed}|{counter}``."""
    return f"{feed}|{counter}"
