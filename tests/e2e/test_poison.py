"""One bad input never stalls a market: each poison kind, then 100 valid bars, through
the loop that ``botlib up`` runs — all served, the bad one set aside with its reason,
no restart."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
import redis

from botlib.data import load_ohlcv
from botlib.live import bars_from_candles, publish_bars
from tests.conftest import REPLAY_START, Store
from tests.e2e.conftest import User, wait_for

pytestmark = pytest.mark.slow

STREAM = "botlib:bars:binance:BTC/USDT:1h"
HOUR = 3_600_000


def _raw(bar: dict[str, Any], **change: Any) -> dict[str, str]:
    return {"data": json.dumps({**bar, **change})}


def test_each_poison_is_set_aside_and_the_next_100_bars_served(
    user: User, r: redis.Redis, live_store: Store
) -> None:
    user.botlib("promote", live_store.ga, "--version", "1", "--force")
    user.botlib("up", "--no-bridge", "--no-registry-watch")
    candles = load_ohlcv("BTC/USDT", "1h", start=REPLAY_START).iloc[:800]
    bars = bars_from_candles(candles, exchange="binance", symbol="BTC/USDT", timeframe="1h")
    nested = '{"signal": ' * 5000 + "1" + "}" * 5000

    def poisons(last: Any) -> list[tuple[str, Any]]:
        base = last.to_dict()
        year_2100 = int(pd.Timestamp("2100-01-01", tz="UTC").value // 1_000_000)
        year_2008 = int(pd.Timestamp("2008-06-01", tz="UTC").value // 1_000_000)
        jump = base["close"] * 100
        return [
            ("cannot have closed yet", _raw(base, ts=year_2100)),
            ("before 2009", _raw(base, ts=year_2008)),
            ("boundary", _raw(base, ts=base["ts"] + HOUR + HOUR // 2)),
            ("close", _raw(base, ts=base["ts"] + HOUR, close=0.0, low=0.0)),
            ("finite", {"data": json.dumps({**base, "ts": base["ts"] + HOUR})
                        .replace(f'"high": {json.dumps(base["high"])}', '"high": NaN')}),
            ("price jump", _raw(base, ts=base["ts"] + HOUR, high=jump, close=jump)),
            ("config", nested),
        ]  # fmt: skip

    served = 100
    publish_bars(r, bars[:served])
    wait_for(lambda: int(r.hget("botlib:loop:stats", "bars") or 0) == served, 120, "first bars")
    serve_pid = user.child_pid("serve")
    kinds = [needle for needle, _ in poisons(bars[0])]
    for i, needle in enumerate(kinds):
        poison = poisons(bars[served - 1])[i][1]  # relative to the newest bar
        if needle == "config":
            r.set("botlib:config", poison)
            wait_for(
                lambda: '"ok": false' in (r.hget("botlib:config:status", "serve") or ""),
                30,
                "the loop to refuse the nested config",
            )
        else:
            r.xadd(STREAM, poison)
        publish_bars(r, bars[served : served + 100])
        served += 100
        wait_for(
            lambda n=served: int(r.hget("botlib:loop:stats", "bars") or 0) == n,
            60,
            f"the 100 bars after the {needle} poison",
        )
    dead = [json.loads(f["data"]) for _, f in r.xrange("botlib:deadletter")]
    reasons = [d["reason"] for d in dead]
    assert len(dead) == 6, reasons
    for needle, why in zip(kinds[:6], reasons, strict=True):
        assert needle in why, (needle, why)
    config = json.loads(r.hget("botlib:config:status", "serve") or "{}")
    assert config["ok"] is False and "nested" in config["error"]
    signals = [json.loads(f["data"]) for _, f in r.xrange("botlib:signals")]
    assert len(signals) == served == 800  # 100 + 100 after each of the 7 poisons
    assert len({s["created_at"] for s in signals}) == 800
    # the same process served it all: nothing restarted
    assert user.child_pid("serve") == serve_pid
    assert next(c for c in user.state()["children"] if c["name"] == "serve")["restarts"] == 0
    user.botlib("down")
