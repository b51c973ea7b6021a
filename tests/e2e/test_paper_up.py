"""Issue 18 §2 as deployed: ``botlib up`` runs ``botlib paper`` beside the loop; the
paper process is killed (SIGKILL) mid-replay and restarted by the supervisor; after
2,000 bars each served model's paper account equals its shadow backtest and a backtest
computed here, to 1e-9."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from mlflow import MlflowClient

from botlib.backtest import simulate
from botlib.data import load_ohlcv
from botlib.live.live_runs import live_run_tag
from botlib.models import load_model
from botlib.models.evaluate import model_signal_frame
from botlib.settings import get_settings
from tests.conftest import Store, _use
from tests.e2e.conftest import User, wait_for

pytestmark = pytest.mark.slow

BARS = 2_000
STREAM = "botlib:bars:binance:BTC/USDT:1h"


def _stat(r: redis.Redis, key: str, name: str) -> int:
    return int(r.hget(key, name) or 0)


def test_paper_accounts_survive_a_sigkill_and_equal_their_backtests(
    user: User, r: redis.Redis, live_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (live_store.lstm, live_store.ga):
        user.botlib("promote", name, "--version", "1", "--force")
    user.botlib(
        "up", "--no-bridge", "--no-registry-watch", "--feed", "replay", "--replay-last", str(BARS),
        "--replay-speed", str(3600 * 100),
    )  # fmt: skip
    first = user.child_pid("paper")
    wait_for(lambda: _stat(r, "botlib:paper:stats", "signals") >= 600, 180, "600 signals on paper")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: user.child_pid("paper") != first, 30, "the supervisor to restart paper")
    wait_for(lambda: _stat(r, "botlib:loop:stats", "bars") >= BARS, 300, "every bar served")
    keys = [f"{live_store.lstm}:1|{STREAM}", f"{live_store.ga}:1|{STREAM}"]

    def checked() -> bool:
        raw = r.hmget("botlib:paper", keys)
        if not all(raw):
            return False
        accounts = [json.loads(x) for x in raw if x]
        return all(a["bars"] == BARS and (a.get("parity") or {}).get("bars") == BARS
                   for a in accounts)  # fmt: skip

    wait_for(checked, 300, "both paper accounts at the last bar, their shadows checked")
    assert _stat(r, "botlib:paper:stats", "signals") == 2 * BARS  # each signal once
    paper = next(c for c in user.state()["children"] if c["name"] == "paper")
    assert paper["restarts"] == 1

    _use(live_store, monkeypatch)
    s = get_settings()
    client = MlflowClient(tracking_uri=live_store.uri, registry_uri=live_store.uri)
    for key, name in zip(keys, (live_store.lstm, live_store.ga), strict=True):
        acc = json.loads(r.hget("botlib:paper", key) or "{}")
        assert acc["missing"] == 0 and acc["fills"] > 0, (name, acc["missing"], acc["fills"])
        assert acc["parity"]["ok"], (name, acc["parity"])
        # the backtest over the same bars, from where the loop started the model
        origin = int(r.hget("botlib:loop:state", f"origin|{name}:1|{STREAM}") or 0)
        first = pd.Timestamp(acc["first_ts"], unit="ms", tz="UTC")
        last = pd.Timestamp(acc["last_ts"], unit="ms", tz="UTC")
        stored = load_ohlcv("BTC/USDT", "1h")
        context = stored.loc[pd.Timestamp(origin, unit="ms", tz="UTC") : last]
        candles = context.loc[first:]
        assert len(candles) == BARS
        model = load_model(f"models:/{name}/1")
        frame = model_signal_frame(model, context, first)
        signals = frame[["target", "stop_loss", "take_profit"]].assign(
            target=lambda f: f["target"].ffill().fillna(0.0)
        )
        equity = simulate(candles, signals, cash=s.initial_cash, fee=s.fee, slippage=s.slippage)
        np.testing.assert_allclose(acc["equity"], equity.equity.iloc[-1], rtol=1e-9, err_msg=name)

        # its MLflow run ``live``, updated by the deployed process once the stream idles
        def live_equity(name: str = name, acc: dict[str, Any] = acc) -> bool:
            tags = client.get_model_version(name, "1").tags
            run_id = tags.get(live_run_tag("binance", "BTC/USDT", "1h"))
            if run_id is None:
                return False
            metrics = client.get_run(run_id).data.metrics
            return metrics.get("live.paper_equity") == acc["equity"]

        wait_for(live_equity, 60, f"{name}'s live run at the account's equity")
    status = user.botlib("status").stdout
    assert status.count("= shadow backtest") == 2, status
    user.botlib("down")
