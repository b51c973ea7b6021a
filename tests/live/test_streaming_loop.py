"""Issue 17: the loop continues its models' state bar by bar instead of recomputing a
window, so a replay far longer than the window still gives exactly the backtest's
signals — across a restart, which continues the state kept in Redis."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
import redis

from botlib.data import load_ohlcv
from botlib.live import SignalLoop
from botlib.live.loop import _on_schedule
from botlib.models import load_model
from botlib.promotion import GateConfig, promote
from tests.conftest import Store
from tests.live.helpers import (
    as_role,
    assert_backtest_parity,
    by_model,
    feed,
    loop_config,
    records,
    window,
)

LENIENT = GateConfig(margin=-10.0, min_trades=0)
#: bars kept beyond what the models need: a short window, so that a recomputed one
#: would restart the recursive features with little burn-in and drift visibly
SHORT = 0
pytestmark = pytest.mark.slow


def test_5000_bars_with_a_restart_continue_the_lstms_state(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """The LSTM alone on its market with the shortest window the loop allows: any
    recomputed window would restart its EMA(50) after ~300 bars and drift (measured
    7e-5 relative, enough to change its float32 inputs); the streaming state does not."""
    promote(store.lstm, 1, gate=LENIENT)
    candles = window(5_000)
    assert len(candles) == 5_000
    feed(r, candles)

    # the state goes to Redis every 120 bars (steps of 50), on the model and market's
    # own schedule: the first process stops after a step that wrote none, so the
    # restart finds the state behind the last bar served and must continue it over
    # the window's bars since
    stream = "botlib:bars:binance:BTC/USDT:1h"
    key, ms = (f"{store.lstm}:1", stream), candles.index.as_unit("ns").asi8 // 10**6
    steps = next(m for m in range(50, 100)
                 if not _on_schedule(key, 120, int(ms[50 * m - 1]), 50, 3_600_000))  # fmt: skip
    first = SignalLoop(
        as_role(r, "loop"),
        config=loop_config(consumer="a", history=SHORT, batch=50, state_every=120),
    )
    first.run(max_bars=50 * steps)  # then this process "restarts": a fresh loop object
    assert first.stats.bars == 50 * steps < 5_000
    assert first.stats.stream_seeds == 2  # the LSTM's state and the builder's ATR
    capacity = max(m.capacity for m in first.markets.values())
    assert capacity < 400, "the replay must outrun the loop's window many times"
    field = f"stream|{store.lstm}:1|{stream}"
    behind = json.loads(r.hget("botlib:loop:state", field) or "{}")["ts"]
    served_to = int(candles.index[first.stats.bars - 1].value // 10**6)
    assert behind < served_to, "the saved state must lag the last bar for this test"

    second = SignalLoop(as_role(r, "loop"), config=loop_config(consumer="a", history=SHORT))
    second.run(idle_exit_s=1.5)
    assert first.stats.bars + second.stats.bars == 5_000
    assert second.stats.stream_seeds == 0, "the restart must continue the state in Redis"
    for loop in (first, second):
        assert loop.stats.streamed > 0 and loop.stats.windowed == 0
    stats = r.hgetall("botlib:loop:stats")
    assert int(stats["streamed"]) == first.stats.streamed + second.stats.streamed

    signals = by_model(records(r, "botlib:signals"))
    everything = load_ohlcv("BTC/USDT", "1h", end=candles.index[-1] + pd.Timedelta("1h"))
    history = everything.loc[everything.index < candles.index[0]]
    model = load_model(f"models:/{store.lstm}/1")
    live = assert_backtest_parity(signals[f"{store.lstm}:1"], model, history, candles, "lstm")
    assert len(live) == 5_000
    assert (live["signal_type"] != "hold").sum() > 0, "the LSTM never traded"
    # the outputs themselves are the backtest's, bit for bit, to the last bar
    context = pd.concat([history.iloc[-model.meta.required_history :], candles])
    expected = model.predict(context)["expected_return"].loc[candles.index]
    preds = [p for p in records(r, "botlib:predictions") if p["model_id"] == f"{store.lstm}:1"]
    got = {
        pd.Timestamp(p["input_data"]["bar_time"]): p["input_data"]["outputs"]["expected_return"]
        for p in preds
        if p["validated_at"] is None
    }
    assert len(got) == 5_000
    mismatched = [t for t in candles.index if got[t] != expected[t]]
    assert not mismatched, (len(mismatched), mismatched[:3])
    saved = json.loads(r.hget("botlib:loop:state", field) or "{}")
    assert saved["ts"] > served_to  # the second process wrote its own


def test_5000_bars_of_a_rule_model_give_the_backtests_signals(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """A model without an incremental form keeps the window path, counted as such."""
    promote(store.ga, 1, gate=LENIENT)
    candles = window(5_000)
    feed(r, candles)
    loop = SignalLoop(as_role(r, "loop"), config=loop_config(history=SHORT))
    loop.run(idle_exit_s=1.5)
    assert loop.stats.bars == 5_000
    assert loop.stats.streamed == 0 and loop.stats.windowed > 0
    signals = by_model(records(r, "botlib:signals"))
    everything = load_ohlcv("BTC/USDT", "1h", end=candles.index[-1] + pd.Timedelta("1h"))
    history = everything.loc[everything.index < candles.index[0]]
    model = load_model(f"models:/{store.ga}/1")
    live = assert_backtest_parity(signals[f"{store.ga}:1"], model, history, candles, "ga")
    assert len(live) == 5_000 and (live["signal_type"] != "hold").sum() > 0


def test_markets_served_by_one_model_share_its_network_calls(
    store: Store, redis_server: Any, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One model version on two markets: every step runs its network once for both,
    and each market gets the outputs it would get alone (the same candles here)."""
    from botlib.live import replay
    from botlib.models.nn._common import KerasWindowModel

    promote(store.lstm, 1, gate=LENIENT)
    entry = json.loads(r.hget("botlib:active_models", store.lstm) or "{}")
    # the same market on a second exchange: a second stream, the same local history
    twin = {**entry, "name": f"{store.lstm}-twin", "exchange": "bybit",
            "model_id": f"{entry['model_id']}-bybit"}  # fmt: skip
    r.hset("botlib:active_models", twin["name"], json.dumps(twin))
    r.incr("botlib:active_models:rev")
    candles = window(300)
    feed(r, candles)
    client = as_role(r, "feed")
    replay(client, candles, exchange="bybit", symbol="BTC/USDT", timeframe="1h")
    client.close()

    calls: list[int] = []
    real = KerasWindowModel.infer

    def counted(self: KerasWindowModel, x: Any) -> Any:
        calls.append(len(x))
        return real(self, x)

    monkeypatch.setattr(KerasWindowModel, "infer", counted)
    loop = SignalLoop(as_role(r, "loop"), config=loop_config(batch=100))
    loop.run(idle_exit_s=1.5)
    assert loop.stats.bars == 600 and loop.stats.streamed > 0
    assert calls and all(size % 2 == 0 for size in calls), calls
    assert sum(calls) == 2 * 300  # every bar of both markets, in shared calls
    assert len(calls) == loop.stats.streamed // 2  # one call per step, not one per market
    preds = [p for p in records(r, "botlib:predictions") if p["validated_at"] is None]
    by_market: dict[str, dict[str, float]] = {}
    for p in preds:
        out = p["input_data"]["outputs"]["expected_return"]
        by_market.setdefault(p["input_data"]["exchange"], {})[p["input_data"]["bar_time"]] = out
    assert by_market["binance"] == by_market["bybit"] and len(by_market["binance"]) == 300


def test_an_unusable_saved_state_is_rebuilt_from_the_window(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """A restart that finds its model's state unreadable builds it again from the
    market's window, says so in the counters, and serves every bar."""
    promote(store.lstm, 1, gate=LENIENT)
    candles = window(400)
    feed(r, candles)
    first = SignalLoop(as_role(r, "loop"), config=loop_config(consumer="a", batch=100))
    first.run(max_bars=200)
    field = f"stream|{store.lstm}:1|botlib:bars:binance:BTC/USDT:1h"
    saved = json.loads(r.hget("botlib:loop:state", field) or "{}")
    saved["state"]["rows"]["width"] = 3  # the ring no longer fits its own shape
    r.hset("botlib:loop:state", field, json.dumps(saved))
    second = SignalLoop(as_role(r, "loop"), config=loop_config(consumer="a", batch=100))
    second.run(idle_exit_s=1.5)
    assert first.stats.bars + second.stats.bars == 400
    assert second.stats.stream_seeds == 1  # the model's state; the builder's ATR restored
    assert second.stats.errors == 0 and second.stats.deadletters == 0
    signals = records(r, "botlib:signals")
    assert len(signals) == 400
