"""``SignalLoop``: closed candles from Redis in, predictions and signals out.

Every active model (the ``botlib:active_models`` hash written by promotion) is served
on its market's bar stream ``botlib:bars:{exchange}:{symbol}:{timeframe}``, read
through one consumer group. One step of the loop:

1. reads up to ``batch`` bars per stream (its own pending entries first after a
   restart or an error, then entries idle too long at crashed consumers, then new ones);
2. checks each bar (``decode_bar``; strictly increasing open time per stream) — a bad
   one goes to ``botlib:deadletter`` with its reason and the rest go on;
3. per market, appends the bars to a bounded window of history (seeded at the first
   bar from the stream itself, else from the local data store), runs every model on it
   (``predict_tail``: the network runs only on the new bars), and makes the records with
   THE signal builder, carrying each model's position from bar to bar;
4. scores earlier predictions whose horizon has passed (``actual_value``, ``accuracy``,
   ``validated_at``);
5. writes everything — outputs (each once, keyed by model version, symbol and bar),
   dead letters, positions, acknowledgements — in ONE atomic script.

So a crash or a Redis restart loses nothing and doubles nothing: unacknowledged bars are
read again and their outputs, if already written, are not written twice. Promotions
are picked up between two steps: the new version loads in a background thread and takes
over at the next step; if it fails to load or its features cannot be computed the old
one keeps serving. A model older than ``max_model_age_days`` stops signalling.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

from botlib.data import timeframe_seconds
from botlib.live._market import Market, frame
from botlib.live.feeds import stream_history
from botlib.live.step import model_step, signal_payloads
from botlib.models import BaseModel, load_model
from botlib.signals import Prediction, SignalConfig, record_id
from botlib.transport import (
    Bar,
    BarError,
    Batch,
    Output,
    RedisNames,
    commit,
    connect,
    decode_bar,
    dumps,
    ensure_group,
    redis_names,
)

__all__ = ["LoopConfig", "LoopStats", "SignalLoop"]

log = logging.getLogger("botlib.serve")

#: 2009-01-01 UTC in epoch ms: no crypto market has a candle before it
EARLIEST_MS = 1_230_768_000_000

_RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def _default_consumer() -> str:
    return f"{socket.gethostname()}-serve"


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the signal loop. Times in seconds unless named ``_ms``."""

    exchange: str = "binance"
    consumer: str = field(default_factory=_default_consumer)
    batch: int = 256
    block_ms: int = 100
    history: int = 1000
    claim_idle_ms: int = 60_000
    max_model_age_days: float | None = 30.0
    reload_check_s: float = 0.2
    backoff_start_s: float = 0.1
    backoff_max_s: float = 5.0
    bot_id: str | None = None
    signal: SignalConfig = field(default_factory=SignalConfig)
    #: a bar whose any price is more than this factor away from the previous close is
    #: set aside (a decimal slip or a bad print), not served
    max_price_jump: float = 10.0
    #: a bar must have closed (open time + one bar) by now + this allowance
    clock_skew_s: float = 60.0

    def __post_init__(self) -> None:
        from botlib.errors import ConfigError

        if self.batch < 1 or self.history < 0:
            raise ConfigError("batch must be >= 1 and history >= 0")
        if not self.max_price_jump > 1:
            raise ConfigError(f"max_price_jump must be > 1, got {self.max_price_jump}")
        if not self.clock_skew_s >= 0:
            raise ConfigError(f"clock_skew_s must be >= 0, got {self.clock_skew_s}")
        if not 0 <= self.block_ms <= 2000:
            # a blocking read must return well inside the client's 5 s socket timeout
            raise ConfigError(f"block_ms must be in [0, 2000], got {self.block_ms}")


@dataclass
class LoopStats:
    bars: int = 0
    predictions: int = 0
    signals: int = 0
    validated: int = 0
    deadletters: int = 0
    reloads: int = 0
    refused_models: int = 0
    errors: int = 0
    last_error: str = ""


@dataclass
class _Served:
    entry: dict[str, Any]
    model: BaseModel

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def model_id(self) -> str:
        return str(self.entry.get("model_id") or f"{self.name}:{self.entry['version']}")


def _prediction_value(ptype: str, out: dict[str, float], close: float) -> float:
    if ptype == "price":
        return close * math.exp(out.get("expected_return", float("nan")))
    if ptype == "volatility":
        return out.get("volatility", float("nan"))
    if ptype == "trend":
        return out.get("p_up", float("nan")) - out.get("p_down", float("nan"))
    for key in ("target", "score"):
        if key in out:
            return out[key]
    return float("nan")


class SignalLoop:
    """The live loop. ``run()`` until ``stop()``; ``step()`` does one read-process-write."""

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        config: LoopConfig | None = None,
        names: RedisNames | None = None,
        maxlen: int | None = None,
        config_file: Path | None = None,
    ) -> None:
        from botlib.runtime import RuntimeConfig, RuntimeConfigWatcher
        from botlib.settings import get_settings

        settings = get_settings()
        self.config = config or LoopConfig(exchange=settings.exchange_id)
        # typed as Any: with decode_responses every reply is str, which the stubs ignore
        self.r: Any = client if client is not None else connect()
        self.names = names or redis_names()
        self.maxlen = maxlen or settings.redis_stream_maxlen
        self.stats = LoopStats()
        #: thresholds, risk and model age: may change at runtime (``botlib config set``)
        self.runtime = RuntimeConfigWatcher(
            self.r,
            self.names,
            "serve",
            path=config_file,
            base=RuntimeConfig.from_parts(self.config.signal, self.config.max_model_age_days),
        )
        self.signal_config = self.config.signal
        self.max_model_age_days = self.config.max_model_age_days
        self.served: dict[str, _Served] = {}
        self.markets: dict[str, Market] = {}
        self._stop = threading.Event()
        self._revision: str | None = None
        self._loading: dict[str, str] = {}  # name -> version being loaded
        self._loaded: queue.Queue[tuple[str, dict[str, Any], BaseModel | None, str]] = queue.Queue()
        self._next_reload_check = 0.0
        self._next_claim = 0.0
        self._recover = True  # read own pending entries first
        self._groups: set[str] = set()
        self._stale_warned: set[str] = set()
        self._positions: dict[str, float] = {}
        self._cache: dict[str, BaseModel] = {}
        self.on_step: Callable[[int], None] | None = None

    # -- models -----------------------------------------------------------------
    def _check(self, entry: dict[str, Any], model: BaseModel) -> str:
        from botlib.promotion import _feature_checks

        problems = _feature_checks(model)
        want = entry.get("feature_schema_hash")
        if want and want != model.meta.feature_schema_hash:
            problems.append(f"schema hash {model.meta.feature_schema_hash} != promoted {want}")
        return "; ".join(problems)

    def _load(self, name: str, entry: dict[str, Any]) -> None:
        try:
            uri = str(entry["model_uri"])
            # one loaded copy per version, shared by every market it serves
            model = self._cache.get(uri) or load_model(uri)
            self._cache[uri] = model
            problem = self._check(entry, model)
            self._loaded.put((name, entry, None if problem else model, problem))
        except Exception as exc:  # a model that cannot load is refused, never fatal
            self._loaded.put((name, entry, None, f"{type(exc).__name__}: {exc}"))

    def _wanted(self) -> dict[str, dict[str, Any]]:
        from botlib.transport import active_models

        return active_models(self.r, self.names)

    def load_active(self, *, wait: bool = True) -> None:
        """Read the active models and load any that changed (in the background unless
        ``wait``); models no longer active stop being served at once."""
        self._revision = self.r.get(self.names.active_revision)
        wanted = self._wanted()
        for name in list(self.served):
            if name not in wanted:
                log.info("%s is no longer active", name)
                del self.served[name]
        for name, entry in wanted.items():
            current = self.served.get(name)
            version = str(entry.get("version"))
            if current is not None and str(current.entry.get("version")) == version:
                continue
            if self._loading.get(name) == version:
                continue
            self._loading[name] = version
            if wait:
                self._load(name, entry)
            else:
                threading.Thread(target=self._load, args=(name, entry), daemon=True).start()
        if wait:
            self._swap_loaded()

    def _swap_loaded(self) -> None:
        swapped = False
        while True:
            try:
                name, entry, model, problem = self._loaded.get_nowait()
            except queue.Empty:
                break
            self._loading.pop(name, None)
            if model is None:
                self.stats.refused_models += 1
                self._error(f"refused {name} v{entry.get('version')}: {problem}")
                continue
            old = self.served.get(name)
            self.served[name] = _Served(entry, model)
            self.stats.reloads += 1
            swapped = True
            log.info(
                "%s v%s serving%s",
                name,
                entry.get("version"),
                f" (was v{old.entry.get('version')})" if old else "",
            )
        if swapped:
            # the models' objects are long-lived: keep the garbage collector from walking
            # them on every collection (that is what shows in the latency's tail)
            gc.collect()
            gc.freeze()
        # keep only the versions still served (or about to be)
        wanted = {str(s.entry["model_uri"]) for s in self.served.values()}
        for uri in list(self._cache):
            if uri not in wanted and not self._loading:
                del self._cache[uri]

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now >= self._next_reload_check:
            self._next_reload_check = now + self.config.reload_check_s
            pipe = self.r.pipeline(transaction=False)
            pipe.get(self.names.active_revision)
            pipe.get(self.names.runtime_config)
            pipe.hset(self.names.loop_stats, "heartbeat", repr(time.time()))
            revision, config_text, _ = pipe.execute()
            self._apply_runtime(self.runtime.poll(config_text))
            if revision != self._revision:
                self.load_active(wait=not self.served)
        self._swap_loaded()

    def _apply_runtime(self, config: Any) -> None:
        if config is None:
            return
        self.signal_config = config.signal_config()
        self.max_model_age_days = config.max_model_age_days
        self._stale_warned.clear()

    # -- markets ----------------------------------------------------------------
    def _market(self, served: _Served) -> Market:
        entry = served.entry
        exchange = str(entry.get("exchange") or self.config.exchange)
        symbol, timeframe = str(entry["symbol"]), str(entry["timeframe"])
        stream = self.names.bar_stream(exchange, symbol, timeframe)
        market = self.markets.get(stream)
        need = max(int(s.model.meta.required_history) for s in self._serving(stream, exchange))
        capacity = need + self.config.history
        if market is None:
            market = Market(
                stream,
                exchange,
                symbol,
                timeframe,
                timeframe_seconds(timeframe) * 1000,
                capacity,
            )
            last = self.r.hget(self.names.loop_state, f"last_ts|{stream}")
            market.last_ts = int(last) if last else None
            self.markets[stream] = market
        market.capacity = max(market.capacity, capacity)
        return market

    def _serving(self, stream: str, exchange: str | None = None) -> list[_Served]:
        out = []
        for s in self.served.values():
            ex = str(s.entry.get("exchange") or self.config.exchange)
            key = self.names.bar_stream(ex, str(s.entry["symbol"]), str(s.entry["timeframe"]))
            if key == stream:
                out.append(s)
        return out

    def _streams(self) -> dict[str, Market]:
        streams = {}
        for served in self.served.values():
            market = self._market(served)
            streams[market.stream] = market
            if market.stream not in self._groups:
                ensure_group(self.r, market.stream, self.names.consumer_group)
                self._groups.add(market.stream)
        return streams

    def _bootstrap(self, market: Market, first_id: str, first_ts: int) -> None:
        """History before the first bar — exactly what the models need, as a backtest
        of the same window gets — from the stream, then from the data store."""
        need = max(int(s.model.meta.required_history) for s in self._serving(market.stream))
        times, values = stream_history(
            self.r, market.stream, need, before_id=f"({first_id}", before_ts=first_ts
        )
        missing = need - len(times)
        if missing > 0:
            from botlib.data import load_ohlcv
            from botlib.errors import BotlibError

            end = pd.Timestamp(times[0] if times else first_ts, unit="ms", tz="UTC")
            try:
                stored = load_ohlcv(market.symbol, market.timeframe, end=end)
                stored = stored.loc[stored.index < end].iloc[-missing:]
                t = pd.DatetimeIndex(stored.index).as_unit("ms").asi8.astype("int64")
                times = [*t.tolist(), *times]
                values = [*stored.to_numpy("float64").tolist(), *values]
            except BotlibError as exc:
                log.warning("%s: no stored history before %s (%s)", market.stream, end, exc)
        market.seed(np.array(times, dtype="int64"), np.array(values, "float64").reshape(-1, 5))
        log.info("%s: %d bars of history", market.stream, len(times))

    # -- reading ----------------------------------------------------------------
    def _read(self, streams: dict[str, Market]) -> list[tuple[str, list[Any]]]:
        group, me, count = self.names.consumer_group, self.config.consumer, self.config.batch
        if self._recover:
            got = self.r.xreadgroup(group, me, {s: "0" for s in streams}, count=count)
            pending = [(s, items) for s, items in (got or []) if items]
            if pending:
                return pending
            self._recover = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.config.claim_idle_ms / 2000
            claimed = []
            for s in streams:
                result = self.r.xautoclaim(
                    s, group, me, min_idle_time=self.config.claim_idle_ms, count=count
                )
                items = [it for it in result[1] if it and it[1] is not None]
                if items:
                    log.warning("%s: reclaimed %d bars from a stopped consumer", s, len(items))
                    claimed.append((s, items))
            if claimed:
                return claimed
        got = self.r.xreadgroup(
            group,
            me,
            {s: ">" for s in streams},
            count=count,
            block=self.config.block_ms or None,  # BLOCK 0 would wait forever
        )
        return [(s, items) for s, items in (got or []) if items]

    # -- processing -------------------------------------------------------------
    def _deadletter(self, batch: Batch, stream: str, entry_id: str, fields: Any, why: str) -> None:
        payload = dumps(
            {
                "source": stream,
                "entry_id": entry_id,
                "reason": why,
                "fields": fields if isinstance(fields, dict) else str(fields),
                "at": time.time(),
            }
        )
        batch.outputs.append(
            Output(
                self.names.deadletter,
                payload,
                dedupe=f"{self.names.seen_prefix}dl|{stream}|{entry_id}",
            )
        )
        batch.hincr.append((self.names.loop_stats, "deadletters", 1))

    def _check_bars(self, market: Market, items: list[Any], batch: Batch) -> list[tuple[str, Bar]]:
        good: list[tuple[str, Bar]] = []
        last = market.last_ts
        closed_by = int((time.time() + self.config.clock_skew_s) * 1000)
        for entry_id, fields in items:
            batch.ack(market.stream, entry_id)
            try:
                bar = decode_bar(fields or {})
            except BarError as exc:
                self._deadletter(batch, market.stream, entry_id, fields, exc.reason)
                continue
            where = (bar.exchange, bar.symbol, bar.timeframe)
            if where != (market.exchange, market.symbol, market.timeframe):
                why = f"bar for {'/'.join(where)} on stream {market.stream}"
            elif bar.ts < EARLIEST_MS:
                why = f"ts {bar.ts} ({bar.time.isoformat()}) is before 2009: not a real candle"
            elif bar.ts + market.bar_ms > closed_by:
                why = (
                    f"ts {bar.ts} ({bar.time.isoformat()}): this {market.timeframe} bar cannot "
                    f"have closed yet (clock skew allowed: {self.config.clock_skew_s:g} s)"
                )
            elif bar.ts % market.bar_ms and market.bar_ms <= 86_400_000:
                why = f"ts {bar.ts} is not on a {market.timeframe} boundary"
            elif last is not None and bar.ts == last:
                why = f"duplicate bar: ts {bar.ts} was already processed"
            elif last is not None and bar.ts < last:
                why = f"out of order: ts {bar.ts} is before the last bar {last}"
            else:
                good.append((entry_id, bar))
                last = bar.ts
                continue
            self._deadletter(batch, market.stream, entry_id, fields, why)
        return good

    def _plausible(
        self, market: Market, good: list[tuple[str, Bar]], batch: Batch
    ) -> list[tuple[str, Bar]]:
        """Bars whose prices are within ``max_price_jump`` of the previous close."""
        factor = self.config.max_price_jump
        previous = float(market.values[-1, 3]) if len(market.values) else None
        kept: list[tuple[str, Bar]] = []
        for entry_id, bar in good:
            if previous is not None:
                prices = (bar.open, bar.high, bar.low, bar.close)
                worst = max(max(p / previous, previous / p) for p in prices)
                if worst > factor:
                    why = (
                        f"price jump: o={bar.open} h={bar.high} l={bar.low} c={bar.close} is "
                        f"{worst:.1f}x the previous close {previous} (at most {factor:g}x)"
                    )
                    self._deadletter(batch, market.stream, entry_id, bar.to_dict(), why)
                    continue
            kept.append((entry_id, bar))
            previous = bar.close
        return kept

    def _process(
        self, market: Market, items: list[Any], batch: Batch, after: list[Callable[[], None]]
    ) -> int:
        good = self._check_bars(market, items, batch)
        if not good:
            return 0
        if not market.bootstrapped:
            self._bootstrap(market, good[0][0], good[0][1].ts)
        good = self._plausible(market, good, batch)
        if not good:
            return 0
        bars = [b for _, b in good]
        times, values = market.extended(bars)
        candles = frame(times, values)
        k = len(bars)
        first = candles.index[-k]
        bar_delta = timedelta(milliseconds=market.bar_ms)
        state_updates: list[tuple[str, str, str]] = []
        positions: dict[str, float] = {}
        for served in self._serving(market.stream):
            part = Batch()
            try:
                pos = self._model_outputs(served, market, candles, k, first, bar_delta, part)
                batch.extend(part)
            except _RETRYABLE:
                raise
            except Exception:  # one model failing never stops the others, nor other bars
                pos = self._bar_by_bar(served, market, candles, good, bar_delta, batch)
            key = self.names.position_field(served.name, market.stream)
            positions[key] = pos
            state_updates.append((self.names.loop_state, key, repr(pos)))
        self._score(market, times, values, batch)
        state_updates.append((self.names.loop_state, f"last_ts|{market.stream}", str(bars[-1].ts)))
        # how late the newest bar was processed after it closed (the loop's lag)
        lag_ms = int(time.time() * 1000) - (bars[-1].ts + market.bar_ms)
        state_updates.append((self.names.loop_stats, f"lag_ms|{market.stream}", str(lag_ms)))
        batch.hset.extend(state_updates)
        batch.hincr.append((self.names.loop_stats, "bars", k))

        def apply() -> None:
            market.commit(times, values)
            self._positions.update(positions)

        after.append(apply)
        return k

    def _bar_by_bar(
        self,
        served: _Served,
        market: Market,
        candles: pd.DataFrame,
        good: list[tuple[str, Bar]],
        bar_delta: timedelta,
        batch: Batch,
    ) -> float:
        """After a model failed on several new bars at once: each bar on its own, so
        only the bars it fails on are set aside (with the reason); the position is
        carried over the ones it served."""
        position = self._position(served, market)
        k = len(good)
        for j, (entry_id, bar) in enumerate(good):
            upto = candles.iloc[: len(candles) - k + j + 1]
            part = Batch()
            try:
                position = self._model_outputs(
                    served, market, upto, 1, upto.index[-1], bar_delta, part, position=position
                )
                batch.extend(part)
            except _RETRYABLE:
                raise
            except Exception as exc:
                why = f"model {served.model_id} failed: {type(exc).__name__}: {exc}"
                self._error(why)
                self._deadletter(batch, market.stream, entry_id, bar.to_dict(), why)
        return position

    def _position(self, served: _Served, market: Market) -> float:
        key = self.names.position_field(served.name, market.stream)
        if key not in self._positions:
            stored = self.r.hget(self.names.loop_state, key)
            self._positions[key] = float(stored) if stored else 0.0
        return self._positions[key]

    def _model_outputs(
        self,
        served: _Served,
        market: Market,
        candles: pd.DataFrame,
        k: int,
        first: pd.Timestamp,
        bar_delta: timedelta,
        batch: Batch,
        *,
        position: float | None = None,
    ) -> float:
        model, meta = served.model, served.model.meta
        if position is None:
            position = self._position(served, market)
        step = model_step(model, candles, k, config=self.signal_config, position=position)
        tail, signals, ready, position = step.tail, step.signals, step.ready, step.position
        if not ready.any():
            return position
        age_days = (time.time() * 1000 - float(served.entry.get("registered_at") or 0)) / 86.4e6
        max_age = self.max_model_age_days
        stale = max_age is not None and age_days > max_age
        if stale and served.model_id not in self._stale_warned:
            self._stale_warned.add(served.model_id)
            self._error(
                f"{served.model_id} is {age_days:.1f} days old (> {max_age}): it no longer "
                "signals; retrain and promote a newer version"
            )
        horizon_min = int(meta.horizon * bar_delta.total_seconds() // 60)
        pending_key = self.names.pending_key(market.exchange, market.symbol, market.timeframe)
        closes = candles["close"].to_numpy()[-k:]
        for i, ts in enumerate(tail.index):
            if not ready[i]:
                continue
            out = {str(c): float(v) for c, v in tail.iloc[i].items() if np.isfinite(v)}
            created = pd.Timestamp(ts).to_pydatetime() + bar_delta
            pred = Prediction(
                id=record_id("prediction", served.model_id, market.symbol, created),
                model_id=served.model_id,
                symbol=market.symbol,
                prediction_type=meta.prediction_type,  # type: ignore[arg-type]
                input_data={
                    "bar_time": pd.Timestamp(ts).isoformat(),
                    "close": float(closes[i]),
                    "outputs": out,
                    "exchange": market.exchange,
                    "timeframe": market.timeframe,
                },
                prediction_value=_prediction_value(meta.prediction_type, out, float(closes[i])),
                confidence=float(signals["confidence"].iloc[i]),
                prediction_horizon=horizon_min,
                created_at=created,
            )
            payload = dumps(pred.model_dump(mode="json"))
            batch.outputs.append(
                Output(
                    self.names.predictions,
                    payload,
                    self.names.prediction_channel,
                    f"{self.names.seen_prefix}{pred.id}",
                )
            )
            due = int(pd.Timestamp(ts).value // 1_000_000) + meta.horizon * int(
                bar_delta.total_seconds() * 1000
            )
            batch.zadd.append((pending_key, float(due), payload))
        batch.hincr.append((self.names.loop_stats, "predictions", int(ready.sum())))
        batch.hincr.append(
            (self.names.loop_stats, f"predictions|{served.model_id}", int(ready.sum()))
        )
        if stale:
            return position
        records = signal_payloads(
            step,
            model_id=served.model_id,
            symbol=market.symbol,
            bar=bar_delta,
            horizon=meta.horizon,
            metadata={
                "exchange": market.exchange,
                "timeframe": market.timeframe,
                "model_name": served.name,
                "model_version": str(served.entry.get("version")),
            },
            bot_id=self.config.bot_id,
        )
        for data in records:
            batch.outputs.append(
                Output(
                    self.names.signals,
                    dumps(data),
                    self.names.signal_channel,
                    f"{self.names.seen_prefix}{data['id']}",
                )
            )
        batch.hincr.append((self.names.loop_stats, "signals", len(records)))
        batch.hincr.append((self.names.loop_stats, f"signals|{served.model_id}", len(records)))
        return position

    def _score(self, market: Market, times: np.ndarray, values: np.ndarray, batch: Batch) -> None:
        """Predictions whose horizon has passed get their actual value and accuracy."""
        import json

        key = self.names.pending_key(market.exchange, market.symbol, market.timeframe)
        due = list(self.r.zrangebyscore(key, "-inf", int(times[-1]), withscores=True))
        # predictions made in this very step (a backlog read at once) are due too
        fresh = [(p, w) for k, w, p in batch.zadd if k == key and w <= times[-1]]
        batch.zadd = [z for z in batch.zadd if not (z[0] == key and z[1] <= times[-1])]
        closes = values[:, 3]
        for payload, when in due + fresh:
            data = json.loads(payload)
            j = int(np.searchsorted(times, int(when)))
            start_ts = pd.Timestamp(data["input_data"]["bar_time"]).value // 1_000_000
            i = int(np.searchsorted(times, start_ts))
            if j >= len(times) or i >= len(times) or times[i] != start_ts:
                batch.zrem.append((key, payload))  # history no longer held: drop, counted
                batch.hincr.append((self.names.loop_stats, "unscored", 1))
                continue
            base, actual_close = float(data["input_data"]["close"]), float(closes[j])
            value = data.get("prediction_value")
            ptype = data["prediction_type"]
            move = math.log(actual_close / base)
            if ptype == "price":
                actual = actual_close
                hit = value is not None and np.sign(value - base) == np.sign(actual - base)
                accuracy = float(hit)
            elif ptype == "volatility":
                rets = np.diff(np.log(closes[i : j + 1]))
                actual = float(np.sqrt(np.mean(rets**2))) if len(rets) else 0.0
                accuracy = (
                    max(0.0, 1.0 - abs(float(value) - actual) / actual)
                    if value is not None and actual > 0
                    else 0.0
                )
            else:
                actual = move
                accuracy = float(value is not None and np.sign(value) == np.sign(move))
            data.update(
                actual_value=actual,
                accuracy=accuracy,
                validated_at=(
                    pd.Timestamp(int(times[j]) + market.bar_ms, unit="ms", tz="UTC").isoformat()
                ),
            )
            out = dumps(data)
            batch.outputs.append(
                Output(
                    self.names.predictions,
                    out,
                    self.names.prediction_channel,
                    f"{self.names.seen_prefix}validated|{data['id']}",
                )
            )
            batch.zrem.append((key, payload))
            batch.hincr.append((self.names.loop_stats, f"validated|{data['model_id']}", 1))
            milli = round(accuracy * 1000)
            batch.hincr.append((self.names.loop_stats, f"accuracy_milli|{data['model_id']}", milli))

    # -- the loop ---------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = message
        log.error(message)
        with contextlib.suppress(redis.RedisError):
            pipe = self.r.pipeline(transaction=False)
            pipe.hincrby(self.names.loop_stats, "errors", 1)
            pipe.hset(
                self.names.loop_stats,
                mapping={"last_error": message[:500], "last_error_at": repr(time.time())},
            )
            pipe.execute()

    def _set_aside(self, stream: str, items: list[Any], exc: Exception) -> Batch:
        """A stream's bars that could not be processed: dead-lettered with the reason
        and acknowledged, so the next step goes on with the next bars."""
        why = f"processing {stream} failed: {type(exc).__name__}: {exc}"
        log.exception(why)
        self._error(why)
        batch = Batch()
        for entry_id, fields in items:
            batch.ack(stream, entry_id)
            self._deadletter(batch, stream, entry_id, fields, why)
        return batch

    def step(self) -> int:
        """Read, process and write one batch; returns the number of valid bars."""
        self._maybe_reload()
        if not self.served:
            time.sleep(self.config.block_ms / 1000)
            return 0
        streams = self._streams()
        got = self._read(streams)
        if not got:
            return 0
        batch = Batch()
        after: list[Callable[[], None]] = []
        n = 0
        for stream, items in got:
            part, later = Batch(), list[Callable[[], None]]()
            try:
                n += self._process(streams[stream], items, part, later)
            except _RETRYABLE:
                raise
            except Exception as exc:  # never crash-loop on the same pending entries
                part, later = self._set_aside(stream, items, exc), list[Callable[[], None]]()
            batch.extend(part)
            after.extend(later)
        written = commit(self.r, batch, group=self.names.consumer_group, maxlen=self.maxlen)
        for apply in after:
            apply()
        for key, field_name, value in batch.hincr:
            if key == self.names.loop_stats and hasattr(self.stats, field_name):
                setattr(self.stats, field_name, getattr(self.stats, field_name) + value)
            elif field_name.startswith("validated|"):
                self.stats.validated += value
        log.debug("step: %d bars, %d outputs written", n, written)
        if self.on_step is not None:
            self.on_step(n)
        return n

    def run(self, *, idle_exit_s: float | None = None, max_bars: int | None = None) -> LoopStats:
        """Serve until ``stop()`` (or SIGTERM in the CLI), ``max_bars`` bars, or
        ``idle_exit_s`` seconds without a bar. Redis outages are retried with backoff."""
        backoff = self.config.backoff_start_s
        idle_since = time.monotonic()
        while not self._stop.is_set():
            try:
                n = self.step()
                backoff = self.config.backoff_start_s
            except _RETRYABLE as exc:
                log.warning("redis unavailable (%s); retrying in %.1f s", exc, backoff)
                self.stats.errors += 1
                self.stats.last_error = f"redis: {exc}"
                self._recover = True
                self._groups.clear()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            if n:
                idle_since = time.monotonic()
            if max_bars is not None and self.stats.bars >= max_bars:
                break
            if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
        return self.stats

    def stop(self) -> None:
        self._stop.set()
