"""Issue 18 §2: paper accounts trade the signals the backend receives, beside the shadow
backtest of each model over the same bars; a lost signal is a parity break at its bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from botlib.backtest import simulate
from botlib.data import load_ohlcv
from botlib.live import SignalLoop
from botlib.live.paper import PaperBook, PaperConfig
from botlib.models import load_model
from botlib.models.evaluate import model_signal_frame
from botlib.promotion import GateConfig, promote
from botlib.settings import get_settings
from tests.conftest import Store
from tests.live.helpers import as_role, feed, loop_config, records, window

LENIENT = GateConfig(margin=-10.0, min_trades=0)
STREAM = "botlib:bars:binance:BTC/USDT:1h"
pytestmark = pytest.mark.slow


def accounts(r: redis.Redis) -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in r.hgetall("botlib:paper").items()}


def backtest_equity(name: str, candles: pd.DataFrame) -> pd.Series:
    """The model's backtest over ``candles`` (what the loop served), computed here on
    its own: the signal frame over the model's history before them, the vectorized
    book with the settings' cash, fee and slippage."""
    model = load_model(f"models:/{name}/1")
    everything = load_ohlcv("BTC/USDT", "1h", end=candles.index[-1] + pd.Timedelta("1h"))
    history = everything.loc[everything.index < candles.index[0]]
    context = pd.concat([history.iloc[-model.meta.required_history :], candles])
    frame = model_signal_frame(model, context, candles.index[0])
    s = get_settings()
    result = simulate(candles, frame[["target", "stop_loss", "take_profit"]].assign(
        target=lambda f: f["target"].ffill().fillna(0.0)),
        cash=s.initial_cash, fee=s.fee, slippage=s.slippage)  # fmt: skip
    return result.equity


def live_run(name: str, acc: dict[str, Any]) -> None:
    """Issue 18 §4: the account's MLflow run ``live``, checked through MLflow's API: a
    child of the version's training run, named by a tag on the version, with the
    version's test metrics beside the live ones and the equity figure."""
    from mlflow import MlflowClient

    from botlib.live.live_runs import live_run_tag

    client = MlflowClient()
    version = client.get_model_version(name, "1")
    run_id = version.tags[live_run_tag("binance", "BTC/USDT", "1h")]
    assert run_id == acc["live_run"]
    run = client.get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == version.run_id
    metrics = run.data.metrics
    assert metrics["live.paper_equity"] == acc["equity"]
    assert metrics["live.shadow_equity"] == acc["parity"]["shadow_equity"]
    assert metrics["live.parity_breaks"] == 0 and metrics["live.missing_signals"] == 0
    assert metrics["live.max_drawdown"] == acc["max_drawdown"]
    assert any(k.startswith("test.") for k in metrics), sorted(metrics)
    history = client.get_metric_history(run_id, "live.paper_equity")
    assert len(history) >= 2 and max(m.step for m in history) == 2_000
    if name.startswith("nn-"):  # scored and watched for drift by the loop
        assert 0 <= metrics["live.hit_rate"] <= 1 and "live.persistence_hit_rate" in metrics
        assert metrics["live.drift.max"] > 0
    figure = client.download_artifacts(run_id, "figures/live_equity.html")
    text = Path(figure).read_text(encoding="utf-8")
    assert "shadow backtest" in text and "paper account" in text


def test_2000_bars_paper_equity_is_the_shadow_backtests(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """Two served models (a network with its streaming state, a rule strategy on the
    window path) over 2,000 bars, far more than the loop's window: each paper account
    equals its shadow backtest and a backtest computed here, to 1e-9; the paper process
    stopped halfway continues where it stood; each account's MLflow run ``live`` holds
    its figures."""
    promote(store.lstm, 1, gate=LENIENT)
    promote(store.ga, 1, gate=LENIENT)
    candles = window(2_000)
    feed(r, candles)
    loop = SignalLoop(as_role(r, "loop"), config=loop_config(history=0))
    loop.run(idle_exit_s=1.5)
    assert loop.stats.bars == 2_000
    assert max(m.capacity for m in loop.markets.values()) < 2_000  # longer than the window

    config = PaperConfig(batch=300, block_ms=50)
    first = PaperBook(as_role(r, "paper"), config=config)
    first.run(max_signals=1_500)  # then a fresh process continues from Redis
    assert 1_500 <= first.applied < 4_000
    second = PaperBook(as_role(r, "paper"), config=config)
    second.run(idle_exit_s=1.0)
    assert first.applied + second.applied == 4_000  # every signal once

    got = accounts(r)
    assert set(got) == {f"{store.lstm}:1|{STREAM}", f"{store.ga}:1|{STREAM}"}
    for name in (store.lstm, store.ga):
        acc = got[f"{name}:1|{STREAM}"]
        assert acc["bars"] == 2_000 and acc["missing"] == 0, name
        parity = acc["parity"]
        assert parity["ok"] and parity["breaks"] == 0, (name, parity)
        assert parity["checked_to"] == candles.index[-1].isoformat()
        assert acc["fills"] > 0, f"{name} never traded"
        expected = backtest_equity(name, candles)
        np.testing.assert_allclose(acc["equity"], expected.iloc[-1], rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(parity["shadow_equity"], expected.iloc[-1], rtol=1e-9)
        curve = [json.loads(x) for x in r.lrange(f"botlib:paper:curve:{name}:1|{STREAM}", 0, -1)]
        assert len(curve) == 2_000
        np.testing.assert_allclose([row[9] for row in curve], expected.to_numpy(), rtol=1e-9)
        live_run(name, acc)
    fills = r.xrange("botlib:paper:fills")
    assert len(fills) == sum(a["fills"] for a in got.values())
    stats = r.hgetall("botlib:paper:stats")
    assert int(stats["signals"]) == 4_000 and int(stats.get("parity_breaks", 0)) == 0
    assert int(stats["bars"]) == 4_000 and "errors" not in stats


def test_a_signal_lost_before_the_backend_is_a_parity_break_at_its_bar(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    promote(store.lstm, 1, gate=LENIENT)
    candles = window(400)
    feed(r, candles)
    loop = SignalLoop(as_role(r, "loop"), config=loop_config(history=0))
    loop.run(idle_exit_s=1.5)
    signals = r.xrange("botlib:signals")
    assert len(signals) == 400
    lost_id, lost = signals[250]
    lost_bar = pd.Timestamp(json.loads(lost["data"])["created_at"]) - pd.Timedelta("1h")
    r.xdel("botlib:signals", lost_id)
    # records no loop writes: each set aside with its reason, none stops the book
    for fields in ({"data": "not json"}, {"data": "[1, 2]"}, {"data": '{"metadata": null}'},
                   {"nodata": "x"}, {"data": json.dumps({"metadata": {"timeframe": "1h"},
                                                         "created_at": "yesterday"})}):  # fmt: skip
        r.xadd("botlib:signals", fields)

    PaperBook(as_role(r, "paper"), config=PaperConfig(block_ms=50)).run(idle_exit_s=1.0)
    stats = r.hgetall("botlib:paper:stats")
    assert int(stats["errors"]) == 5 and "set aside" in stats["last_error"]
    assert int(stats["signals"]) == 399 + 5
    acc = accounts(r)[f"{store.lstm}:1|{STREAM}"]
    assert acc["bars"] == 400 and acc["missing"] == 1
    assert acc["first_missing"] == int(lost_bar.value // 10**6)
    assert acc["parity"]["first_break"]["bar_time"] == lost_bar.isoformat()
    assert acc["parity"]["first_break"]["why"] == "signal missing"
    assert acc["parity"]["breaks"] >= 1 and not acc["parity"]["ok"]
    alerts = [a for a in records(r, "botlib:alerts") if a["type"] == "parity_break"]
    assert len(alerts) == 1 and alerts[0]["bar_time"] == lost_bar.isoformat()
    assert int(r.hget("botlib:paper:stats", "parity_breaks") or 0) == 1


def test_a_curve_trimmed_to_its_newest_bars_is_said_not_a_parity_break(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """The shadow backtest starts from the account's first bar: once the curve keeps
    only its newest ``max_curve`` bars it cannot run, and says so; the book goes on.
    (Run anyway, from the trimmed curve's first bar, it reported 97 false breaks.)"""
    from botlib.monitor import collect_status
    from botlib.transport import redis_names

    promote(store.lstm, 1, gate=LENIENT)
    feed(r, window(160))
    SignalLoop(as_role(r, "loop"), config=loop_config(history=0)).run(idle_exit_s=1.5)
    config = PaperConfig(block_ms=50, max_curve=100)
    PaperBook(as_role(r, "paper"), config=config).run(idle_exit_s=1.0)
    key = f"{store.lstm}:1|{STREAM}"
    acc = accounts(r)[key]
    assert acc["bars"] == 160 and r.llen(redis_names().paper_curve_key(key)) == 100
    assert acc["parity"]["skipped"].startswith("the curve keeps only its newest bars")
    assert "breaks" not in acc["parity"] and "first_break" not in acc["parity"]
    assert not [a for a in records(r, "botlib:alerts") if a["type"] == "parity_break"]
    (shown,) = collect_status(r, redis_names())["paper"]["accounts"]
    assert shown["parity_skipped"] and shown["parity_ok"] is None


def test_a_new_version_that_inherits_a_position_still_equals_its_backtest(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """v2 promoted while v1 holds a position: the loop's builder carries that position
    over; each version gets its own account (reset on promotion), and v2's shadow
    backtest starts its builder from the position the signals say it inherited."""
    promote(store.lstm, 1, gate=LENIENT, force=True)
    candles = window(760)
    served = 300
    feed(r, candles.iloc[:served])
    loop = SignalLoop(as_role(r, "loop"), config=loop_config(history=0))
    loop.run(idle_exit_s=1.0)
    field = f"position|{store.lstm}|{STREAM}"
    while float(r.hget("botlib:loop:state", field) or 0) == 0:  # until v1 holds one
        assert served < 500, "v1 never took a position"
        feed(r, candles.iloc[served : served + 20])
        served += 20
        SignalLoop(as_role(r, "loop"), config=loop_config(history=0)).run(idle_exit_s=1.0)
    held = float(r.hget("botlib:loop:state", field) or 0)
    promote(store.lstm, 2, gate=LENIENT, force=True)
    feed(r, candles.iloc[served:700])
    SignalLoop(as_role(r, "loop"), config=loop_config(history=0)).run(idle_exit_s=1.0)

    PaperBook(as_role(r, "paper"), config=PaperConfig(block_ms=50)).run(idle_exit_s=1.0)
    got = accounts(r)
    v1, v2 = got[f"{store.lstm}:1|{STREAM}"], got[f"{store.lstm}:2|{STREAM}"]
    assert v1["bars"] == served and v2["bars"] == 700 - served
    assert v2["start_position"] == held != 0
    for acc in (v1, v2):
        assert acc["parity"]["ok"], acc["parity"]

    # v2 promoted again: its account starts afresh at the next bar, and agrees again
    promote(store.lstm, 2, gate=LENIENT, force=True)
    feed(r, candles.iloc[700:])
    SignalLoop(as_role(r, "loop"), config=loop_config(history=0)).run(idle_exit_s=1.0)
    PaperBook(as_role(r, "paper"), config=PaperConfig(block_ms=50)).run(idle_exit_s=1.0)
    again = accounts(r)[f"{store.lstm}:2|{STREAM}"]
    assert again["bars"] == 60 and again["first_ts"] == int(candles.index[700].value // 10**6)
    assert again["parity"]["ok"], again["parity"]
