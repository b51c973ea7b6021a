"""The promotion gate, @champion / @previous, and botlib:active_models in a real Redis."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import redis
from mlflow import MlflowClient
from typer.testing import CliRunner

from botlib.cli import app
from botlib.promotion import (
    GateConfig,
    PromotionRefusedError,
    active_models,
    evaluate_gate,
    list_models,
    promote,
    rollback,
)
from botlib.transport import RedisServer
from tests.conftest import Store

LENIENT = GateConfig(margin=-10.0, min_trades=0)

pytestmark = pytest.mark.slow


def test_gate_reports_every_check_with_numbers(store: Store) -> None:
    strict = GateConfig(margin=5.0, min_trades=10_000)  # +500 % over buy-and-hold
    result = evaluate_gate(store.lstm, 1, gate=strict)
    by_name = {c.name: c for c in result.checks}
    # a version promoted before (by an earlier test) also has its artifacts compared
    assert by_name.pop("artifacts unchanged").passed if "artifacts unchanged" in by_name else True
    assert set(by_name) == {
        "out-of-sample",
        "beats buy-and-hold",
        "beats flat",
        "min trades",
        "features computable",
    }
    assert by_name["out-of-sample"].passed and by_name["features computable"].passed
    assert not by_name["beats buy-and-hold"].passed and not by_name["min trades"].passed
    assert "margin 5.0" in by_name["beats buy-and-hold"].detail
    assert "need >= 10000" in by_name["min trades"].detail
    with pytest.raises(PromotionRefusedError) as info:
        promote(store.lstm, 1, gate=strict, publish=False)
    assert "beats buy-and-hold" in str(info.value) and "min trades" in str(info.value)


def test_promote_then_promote_then_rollback(store: Store, redis_server: RedisServer) -> None:
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    events = r.pubsub()
    events.subscribe("botlib:model_events")
    events.get_message(timeout=1)

    promote(store.lstm, 1, gate=LENIENT)
    entry = active_models(r)[store.lstm]
    assert entry["version"] == "1" and entry["model_uri"] == f"models:/{store.lstm}/1"
    assert entry["symbol"] == "BTC/USDT" and entry["timeframe"] == "1h"
    assert entry["gate"] == "passed" and entry["required_history"] > 0
    assert math.isfinite(entry["metrics"]["test.total_return"])
    assert r.get("botlib:active_models:rev") == "1"
    message = events.get_message(timeout=2)
    assert message and json.loads(message["data"])["event"] == "promoted"

    promote(store.lstm, 2, gate=LENIENT)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(store.lstm, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(store.lstm, "previous").version) == "1"
    assert active_models(r)[store.lstm]["version"] == "2"

    assert rollback(store.lstm) == ("2", "1")
    assert str(client.get_model_version_by_alias(store.lstm, "champion").version) == "1"
    assert active_models(r)[store.lstm]["version"] == "1"
    assert r.get("botlib:active_models:rev") == "3"
    assert r.xlen("botlib:model_events") == 3
    with pytest.raises(Exception, match="no @previous"):
        rollback(store.lstm)

    rows = {row["name"]: row for row in list_models()}
    assert rows[store.lstm]["status"] == "active" and rows[store.lstm]["version"] == "1"
    assert rows[store.ga]["status"] == "trained"
    assert {"name", "model_type", "algorithm", "status", "version", "configuration"} <= set(
        rows[store.lstm]
    )
    assert rows[store.lstm]["algorithm"] == "lstm"
    assert "test.sharpe" in rows[store.lstm]["performance_metrics"]
    run = MlflowClient().get_run(rows[store.lstm]["run_id"])
    assert 0 <= run.data.metrics["test.forecast.directional_accuracy"] <= 1
    assert run.data.metrics["test.forecast.random_walk_rmse"] > 0
    events.close()
    r.close()


def test_cli_promote_refusal_and_models_json(store: Store, redis_server: RedisServer) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["promote", store.ga, "--margin", "5", "--json"])
    assert out.exit_code == 1
    checks = json.loads(out.stdout)
    assert checks["passed"] is False
    assert any(c["name"] == "beats buy-and-hold" and not c["passed"] for c in checks["checks"])
    args = ["promote", store.ga, "--version", "1", "--margin", "-10", "--min-trades", "0"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "@champion" in out.stdout
    out = runner.invoke(app, ["models", "--json"])
    assert out.exit_code == 0
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows[store.ga]["aliases"] == {"champion": "1"}
    out = runner.invoke(app, ["promote", "nn-lstn-btc_usdt-1h"])
    assert out.exit_code != 0
    assert "did you mean" in str(out.exception) or "did you mean" in out.output


def test_demo_ending_promotes_serves_and_prints_signals(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: Any
) -> None:
    """`make demo`'s last part: its own redis-server, promotion, loop, replay, signals."""
    from botlib.cli._live_demo import REPLAY_BARS, live_demo
    from botlib.data import load_ohlcv
    from botlib.settings import get_settings
    from botlib.transport import free_port

    port = free_port()
    monkeypatch.setenv("BOTLIB_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("BOTLIB_REDIS_DATA_DIR", str(tmp_path / "redis"))
    get_settings.cache_clear()
    candles = load_ohlcv("BTC/USDT", "1h", start="2025-06-01")
    for _ in range(2):  # a second run starts the market afresh and prints the same
        live_demo([f"models:/{store.ga}/1", f"models:/{store.lstm}/2"], candles)
        out = capsys.readouterr().out
        assert f"{REPLAY_BARS} bars → {REPLAY_BARS} predictions" in out
        assert f"{REPLAY_BARS} signals" in out and "That redis-server is gone" in out
        assert "promotion gate" in out and "botlib status" in out and "active models" in out
    # the demo ran on a throwaway server: the project's Redis was never started
    assert not RedisServer(port=port, data_dir=tmp_path / "redis").ping()
    assert not (tmp_path / "redis").exists()


def test_gate_refuses_on_deflated_sharpe_and_pbo(store: Store) -> None:
    """The optimization run logged fit.deflated_sharpe and fit.pbo; the gate names them."""
    result = evaluate_gate(
        store.ga, 1, gate=GateConfig(margin=-10, min_trades=0, min_deflated_sharpe=1.0, max_pbo=0.0)
    )
    by_name = {c.name: c for c in result.checks}
    dsr, pbo = by_name["deflated Sharpe"], by_name["PBO"]
    assert not dsr.passed and "need >= 1.0" in dsr.detail
    assert not pbo.passed and "need <= 0.0" in pbo.detail
    lenient = evaluate_gate(
        store.ga, 1, gate=GateConfig(margin=-10, min_trades=0, min_deflated_sharpe=0.0, max_pbo=1.0)
    )
    assert lenient.passed
    nn = evaluate_gate(store.lstm, 1, gate=GateConfig(margin=-10, min_trades=0, max_pbo=0.5))
    assert "only optimization runs" in {c.name: c for c in nn.checks}["PBO"].detail


def test_a_bound_model_speaks_in_the_backends_id(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    """`botlib bind NAME MODEL_ID`: after promotion, every prediction, signal and the
    backend's prediction list carry the UUID; name and version stay in the metadata."""
    import uuid

    from tests.live.helpers import feed, records, serve, window

    client = MlflowClient()
    source = client.get_model_version(store.ga, "1")
    name = f"bound-{uuid.uuid4().hex[:6]}"  # a copy: the shared models stay unbound
    client.create_registered_model(name)
    client.create_model_version(name, source.source, run_id=source.run_id)
    model_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    runner = CliRunner()
    out = runner.invoke(app, ["bind", name, model_id, "--user-id", user_id])
    assert out.exit_code == 0, out.output
    assert model_id in out.stdout
    # one id, one model; ids are UUIDs
    again = runner.invoke(app, ["bind", store.ga, model_id])
    assert again.exit_code != 0 and "already bound" in str(again.exception)
    bad = runner.invoke(app, ["bind", name, "not-a-uuid"])
    assert bad.exit_code != 0 and "UUID" in str(bad.exception)

    promote(name, 1, gate=LENIENT)
    entry = json.loads(r.hget("botlib:active_models", name) or "{}")
    assert entry["model_id"] == model_id and entry["user_id"] == user_id
    feed(r, window(40))
    serve(r)
    signals, predictions = records(r, "botlib:signals"), records(r, "botlib:predictions")
    assert len(signals) == 40 and {s["model_id"] for s in signals} == {model_id}
    assert {s["metadata"]["model_name"] for s in signals} == {name}
    assert {s["metadata"]["model_version"] for s in signals} == {"1"}
    assert {p["model_id"] for p in predictions} == {model_id}
    assert {p["input_data"]["model_name"] for p in predictions} == {name}
    assert r.llen(f"predictions:{model_id}:BTC/USDT") == 40
