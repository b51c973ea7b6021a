"""Shared steps of the live tests: replay, serve, read back."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import redis

from botlib.data import load_ohlcv
from botlib.live import LoopConfig, SignalLoop, replay
from tests.conftest import REPLAY_START

SIGNAL_FIELDS = {
    "id", "model_id", "bot_id", "symbol", "signal_type", "signal_strength", "confidence",
    "predicted_price", "predicted_direction", "predicted_volatility", "risk_score",
    "expected_return", "stop_loss", "take_profit", "position_size", "reasoning", "metadata",
    "created_at", "expires_at", "executed_at", "status",
}  # fmt: skip
PREDICTION_FIELDS = {
    "id", "model_id", "symbol", "prediction_type", "input_data", "prediction_value",
    "confidence", "prediction_horizon", "actual_value", "accuracy", "created_at",
    "validated_at",
}  # fmt: skip


def window(n: int, start: str = REPLAY_START) -> pd.DataFrame:
    return load_ohlcv("BTC/USDT", "1h", start=start).iloc[:n]


def as_role(r: redis.Redis, role: str) -> redis.Redis:
    """A client of ``r``'s server as ``role``'s Redis user (``r`` connects as admin, the
    test's own rights): what ``botlib serve`` or a feed would hold, as deployed."""
    from botlib.transport.acl import role_password, username

    kw = r.connection_pool.connection_kwargs
    assert not kw.get("username"), f"as_role needs the admin client, got {kw['username']}'s"
    return redis.Redis(
        host=kw["host"],
        port=kw["port"],
        username=username(role),
        password=role_password(kw["password"], role),
        decode_responses=True,
    )


def feed(r: redis.Redis, candles: pd.DataFrame, **kw: Any) -> int:
    """Replay ``candles`` as a feed (the feed's Redis user) would."""
    client = as_role(r, "feed")
    try:
        return replay(client, candles, exchange="binance", symbol="BTC/USDT", timeframe="1h", **kw)
    finally:
        client.close()


def loop_config(**kw: Any) -> LoopConfig:
    base: dict[str, Any] = {
        "exchange": "binance",
        "consumer": "test",
        "block_ms": 50,
        "max_model_age_days": None,
    }
    return LoopConfig(**{**base, **kw})


def serve(r: redis.Redis, *, idle_exit_s: float = 1.5, **kw: Any) -> SignalLoop:
    loop = SignalLoop(as_role(r, "loop"), config=loop_config(**kw))
    loop.run(idle_exit_s=idle_exit_s)
    return loop


def records(r: redis.Redis, stream: str) -> list[dict[str, Any]]:
    return [json.loads(f["data"]) for _, f in r.xrange(stream)]


def by_model(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(item["model_id"], []).append(item)
    return out


def assert_backtest_parity(
    signals: list[dict[str, Any]],
    model: Any,
    history: pd.DataFrame,
    candles: pd.DataFrame,
    name: str,
) -> pd.DataFrame:
    """The loop's ``signals`` over ``candles`` are the model's backtest signal frame
    over them (``history`` before them): same bars, type exact, size / stop / take to
    rtol 1e-9. Returns the live signals indexed by bar open time."""
    from botlib.models.evaluate import model_signal_frame

    context = pd.concat([history.iloc[-model.meta.required_history :], candles])
    expected = model_signal_frame(model, context, candles.index[0])
    live = pd.DataFrame(signals)
    live.index = pd.to_datetime(live["created_at"]) - pd.Timedelta("1h")
    live = live.sort_index()
    assert live.index.equals(expected.index), name
    assert (live["signal_type"].to_numpy() == expected["signal_type"].to_numpy()).all(), name
    for col in ("position_size", "stop_loss", "take_profit"):
        np.testing.assert_allclose(
            live[col].astype("float64").to_numpy(),
            expected[col].to_numpy(),
            rtol=1e-9,
            equal_nan=True,
            err_msg=f"{name}: {col}",
        )
    return live
