"""Stream, channel and key names of the Redis contract (``../shared/DESIGN.md``).

The defaults are the contract the TypeScript backend speaks; every name can be changed
through ``BOTLIB_REDIS_NAMES`` (JSON, e.g. ``{"signals": "lab:signals"}``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from botlib.errors import ConfigError

__all__ = ["RedisNames", "redis_names"]


@dataclass(frozen=True)
class RedisNames:
    """Where every record goes. Streams are durable (``XADD``, bounded ``MAXLEN ~``);
    channels are the backend's pub/sub channels (lost when nobody listens)."""

    #: closed candles in, one stream per market (read through a consumer group)
    bars: str = "botlib:bars:{exchange}:{symbol}:{timeframe}"
    predictions: str = "botlib:predictions"
    signals: str = "botlib:signals"
    deadletter: str = "botlib:deadletter"
    #: hash: registered model name -> JSON of the version the loop must serve
    active_models: str = "botlib:active_models"
    #: counter bumped on every promotion / rollback (the loop polls it between bars)
    active_revision: str = "botlib:active_models:rev"
    #: durable log of promotions and rollbacks
    model_events: str = "botlib:model_events"
    #: per-market sorted set of predictions waiting for their horizon to pass
    pending_predictions: str = "botlib:pending:{exchange}:{symbol}:{timeframe}"
    #: hash: loop state that must survive a restart (positions, last bar per stream)
    loop_state: str = "botlib:loop:state"
    #: hash: loop counters (bars, predictions, signals, dead letters, lag, errors)
    loop_stats: str = "botlib:loop:stats"
    #: prefix of the keys that make outputs idempotent
    seen_prefix: str = "botlib:seen:"
    consumer_group: str = "botlib-signal-loop"
    market_data_channel: str = "python:market_data"
    prediction_channel: str = "python:ai_prediction"
    signal_channel: str = "python:trading_signal"
    model_channel: str = "botlib:model_events"
    #: the command bridge: commands in, answers out
    command_channel: str = "elysia:command"
    commands: str = "botlib:commands"
    #: admin commands (promote --force, bind, deactivate): only the admin role may write
    admin_commands: str = "botlib:admin:commands"
    command_group: str = "botlib-bridge"
    events: str = "botlib:events"
    trained_channel: str = "python:model_trained"
    optimized_channel: str = "python:optimization_complete"
    result_channel: str = "python:command_result"
    error_channel: str = "python:command_error"
    rate_limit_prefix: str = "botlib:ratelimit:"
    #: hash: the live feeds' counters, fields ``{feed}|bars``, ``{feed}|heartbeat``, …
    feed_stats: str = "botlib:feed:stats"
    #: hash: the bridge's counters (commands handled, refused, running, queued, errors)
    bridge_stats: str = "botlib:bridge:stats"
    #: JSON object: runtime configuration overrides (``botlib config set``)
    runtime_config: str = "botlib:config"
    #: hash: component -> JSON of the runtime config it applied (or why it refused one)
    runtime_config_status: str = "botlib:config:status"
    #: hash: ``botlib up``'s children: ``restarts|{child}``, ``pid|{child}``, ``status|{child}``
    supervisor_stats: str = "botlib:supervisor:stats"
    #: list per model and market, newest first, bounded: what the backend's
    #: ``getPredictions`` reads with LRANGE (a scored prediction replaces its first version)
    prediction_list: str = "predictions:{model_id}:{symbol}"
    #: a request id's claim, then its final answer (the bridge answers each once)
    request_prefix: str = "botlib:request:"
    #: a running bridge process's liveness key (``{prefix}{boot id}``, expires)
    bridge_alive_prefix: str = "botlib:bridge:alive:"
    #: market ownership among several loop processes: ``{lease_prefix}{bar stream}``
    lease_prefix: str = "botlib:lease:"
    #: hash: loop process token -> last beat (ms); the live ones share the markets
    loop_members: str = "botlib:loop:members"
    #: hash: ``{model_id}|{bar stream}`` -> JSON of the latest feature-drift scores
    drift: str = "botlib:drift"
    #: durable log of model alerts (feature drift), also published on the channel
    alerts: str = "botlib:alerts"
    model_alert_channel: str = "python:model_alert"
    #: hash: registered name -> JSON of the registry watcher's view (champion, served)
    registry: str = "botlib:registry"
    #: paper accounts (``botlib paper``): account JSON per ``{model_id}|{stream}``, the
    #: bar curve of each, their fills, counters and the signal stream position read
    paper: str = "botlib:paper"
    paper_curve: str = "botlib:paper:curve:{account}"
    paper_fills: str = "botlib:paper:fills"
    paper_stats: str = "botlib:paper:stats"
    paper_cursor: str = "botlib:paper:cursor"

    def bar_stream(self, exchange: str, symbol: str, timeframe: str) -> str:
        return self.bars.format(exchange=exchange, symbol=symbol, timeframe=timeframe)

    def prediction_list_key(self, model_id: str, symbol: str) -> str:
        return self.prediction_list.format(model_id=model_id, symbol=symbol)

    def last_ts_field(self, stream: str) -> str:
        """The ``loop_state`` field holding the open time of a market's last bar."""
        return f"last_ts|{stream}"

    def window_from_field(self, stream: str) -> str:
        """The ``loop_state`` field holding where a market's first window began."""
        return f"window_from|{stream}"

    def stream_state_field(self, model_id: str, stream: str) -> str:
        """The ``loop_state`` field holding a model version's streaming state on a
        market (its features' recursion, its sequence ring, an agent's own position)."""
        return f"stream|{model_id}|{stream}"

    def atr_state_field(self, stream: str) -> str:
        """The ``loop_state`` field holding the signal builder's streaming ATR."""
        return f"atr|{stream}"

    def origin_field(self, model_id: str, stream: str) -> str:
        """The ``loop_state`` field holding the open time of the first bar a model
        version's state on a market was built from (where its shadow backtest starts)."""
        return f"origin|{model_id}|{stream}"

    def paper_curve_key(self, account: str) -> str:
        return self.paper_curve.format(account=account)

    def position_field(self, model_name: str, stream: str) -> str:
        """The ``loop_state`` field holding a model's position on a market."""
        return f"position|{model_name}|{stream}"

    def pending_key(self, exchange: str, symbol: str, timeframe: str) -> str:
        return self.pending_predictions.format(
            exchange=exchange, symbol=symbol, timeframe=timeframe
        )

    def with_overrides(self, overrides: dict[str, Any]) -> RedisNames:
        known = {f.name for f in fields(self)}
        bad = [k for k in overrides if k not in known]
        if bad:
            from botlib.errors import unknown_name

            raise unknown_name("redis name", bad[0], sorted(known))
        for key, value in overrides.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(f"redis name {key!r} must be a non-empty string, got {value!r}")
        return replace(self, **overrides)


def redis_names() -> RedisNames:
    """The names in force (defaults plus ``BOTLIB_REDIS_NAMES`` overrides)."""
    from botlib.settings import get_settings

    return RedisNames().with_overrides(dict(get_settings().redis_names))
