"""The backend, run for real, against ``botlib up`` in a user's environment.

``tests/backend/backend.mts`` runs the TypeScript services of the design
(``vendor/backend-services.ts``, verbatim) on Node with ioredis over the tables of
``vendor/schema.sql`` in a real PostgreSQL (PGlite). Every ``python:*`` message goes
into its table as the backend stores it, and every failed insert is counted: the
lab's records are valid rows, or this test says which and why.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import User, wait_for

pytestmark = pytest.mark.slow

BARS = 500
#: shared/backend/api.md §1, with the training budget shrunk for a test
CREATE = {
    "name": "LSTM Price Predictor",
    "modelType": "neural_network",
    "algorithm": "lstm",
    "configuration": {"sequenceLength": 8, "features": 10, "hiddenUnits": 8},
    "hyperparameters": {"learningRate": 0.001, "epochs": 1, "batchSize": 32},
}
#: api.md §2, on a short window
TRAIN = {
    "startDate": "2025-01-01",
    "endDate": "2025-03-01",
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "trainingData": {"features": ["close", "volume", "rsi", "macd"], "target": "close"},
}
#: api.md §4 and §5, verbatim
CURRENT = {"close": 50000, "volume": 1000, "rsi": 45, "macd": 0.5}
OPTIMIZE = {
    "parameters": [{"name": "rsi_period", "min": 10, "max": 30}],
    "objective": "sharpe_ratio",
    "algorithm": "genetic_algorithm",
}


class RealBackend:
    """The running backend: ``call(op, *args)`` (see backend.mts)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.n = 0
        self.sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        self.sel.register(proc.stdout, selectors.EVENT_READ)

    def call(self, op: str, *args: Any, timeout: float = 240) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.n += 1
        self.proc.stdin.write(json.dumps({"id": self.n, "op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        if not self.sel.select(timeout):
            raise AssertionError(f"backend: no answer to {op} in {timeout} s")
        answer = json.loads(self.proc.stdout.readline())
        assert answer["id"] == self.n, answer
        if not answer["ok"]:
            raise BackendError(answer["error"])
        return answer.get("result")


class BackendError(Exception):
    pass


@pytest.fixture
def real_backend(node_backend: Path, user: User) -> Iterator[RealBackend]:
    proc = subprocess.Popen(
        [str(node_backend / "node_modules" / ".bin" / "tsx"), str(node_backend / "backend.mts")],
        env={**user.env, "REDIS_URL": user.redis_url("backend"), "ANSWER_MS": "180000"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=user.cwd,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "ready", f"the backend did not start: {line!r}"
    try:
        yield RealBackend(proc)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _count(backend: RealBackend, table: str, model_id: str, where: str = "true") -> int:
    sql = f"SELECT count(*)::int AS n FROM {table} WHERE model_id = $1 AND {where}"
    return int(backend.call("rows", sql, [model_id])[0]["n"])


def _status(backend: RealBackend, model_id: str, status: str, timeout_ms: int) -> None:
    sql = "SELECT status FROM ai_models WHERE id = $1 AND status = $2"
    got = backend.call("waitRows", sql, [model_id, status], 1, timeout_ms,
                       timeout=timeout_ms / 1000 + 30)  # fmt: skip
    if not got:
        now = backend.call("rows", "SELECT status FROM ai_models WHERE id = $1", [model_id])
        raise AssertionError(f"ai_models.status of {model_id} is {now}, expected {status}")


def test_the_backend_creates_trains_serves_and_stores_every_record(
    user: User, r: redis.Redis, real_backend: RealBackend
) -> None:
    backend = real_backend
    user.botlib("up", "--feed", "none", "--no-registry-watch")
    wait_for(lambda: r.hget("botlib:bridge:stats", "heartbeat") is not None, 120, "the bridge")
    owner = backend.call("seedUser")

    # createAIModel (api.md §1): the backend's row, then createModel over Redis
    model = backend.call("createAIModel", {**CREATE, "userId": owner})
    model_id = model["id"]
    name = f"lstm-{model_id}"
    # trainModel (api.md §2, BTCUSDT): status training, then python:model_trained
    backend.call("trainModel", model_id, TRAIN)
    _status(backend, model_id, "trained", 240_000)
    sessions = backend.call("rows", "SELECT * FROM ai_training_sessions WHERE model_id = $1",
                            [model_id])  # fmt: skip
    assert len(sessions) == 1, sessions
    session = sessions[0]
    assert session["symbol"] == "BTCUSDT" and session["status"] == "completed"
    assert session["user_id"] == owner and session["session_type"] == "training"
    assert session["data_points"] > 1000 and session["training_epochs"] == 1
    assert session["results"]["model_name"] == name

    # promoted (forced: a one-epoch network need not pass the gate) -> active
    user.botlib("promote", name, "--version", "1", "--force")
    _status(backend, model_id, "active", 60_000)
    user.botlib("feed", "replay", "--last", str(BARS), timeout=300)
    for table in ("ai_predictions", "ai_signals"):
        backend.call("waitRows", f"SELECT id FROM {table} WHERE model_id = $1", [model_id],
                     BARS, 240_000, timeout=300)  # fmt: skip
    wait_for(lambda: r.hget("botlib:loop:stats", "bars") == str(BARS), 120, "the loop's last bar")
    report = backend.call("report")
    assert report["failures"] == [], report["failures"][:3]
    assert _count(backend, "ai_predictions", model_id) == BARS
    assert _count(backend, "ai_signals", model_id) == BARS
    assert _count(backend, "ai_signals", model_id, "symbol = 'BTCUSDT'") == BARS
    # scored predictions were updated in place: the same rows, now validated
    scored_in_stream = {
        p["id"]
        for p in (json.loads(f["data"]) for _, f in r.xrange("botlib:predictions"))
        if p["model_id"] == model_id and p["validated_at"] is not None
    }
    sql = ("SELECT id::text FROM ai_predictions WHERE model_id = $1 AND "
           "validated_at IS NOT NULL AND actual_value IS NOT NULL")  # fmt: skip
    scored = backend.call("rows", sql, [model_id])
    assert scored_in_stream and {x["id"] for x in scored} == scored_in_stream
    reasoning = backend.call("rows", "SELECT reasoning->>'summary' AS s FROM ai_signals "
                             "WHERE model_id = $1 LIMIT 1", [model_id])  # fmt: skip
    assert reasoning[0]["s"], "reasoning is a JSON object with a summary"

    # getPredictions: LRANGE predictions:{modelId}:BTCUSDT, newest first
    listed = backend.call("getPredictions", model_id, "BTCUSDT")
    assert len(listed) == BARS and listed[0]["created_at"] > listed[-1]["created_at"]

    # generateTradingSignal (api.md §4): the verbatim 50000 is checked against the market
    from botlib.live.feeds import stream_history

    _, values = stream_history(r, _bar_stream(r), 1)
    close = float(values[-1][3])
    if abs(50000 / close - 1) > 0.10:
        with pytest.raises(BackendError, match=r"currentData\.close 50000 is"):
            backend.call("generateTradingSignal", model_id, "BTCUSDT", CURRENT)
    near = {**CURRENT, "close": round(close * 1.002, 2)}
    saved = backend.call("generateTradingSignal", model_id, "BTCUSDT", near)
    assert saved["model_id"] == model_id and saved["user_id"] == owner
    assert saved["symbol"] == "BTCUSDT" and saved["signal_type"] in ("buy", "sell", "hold", "close")
    assert isinstance(saved["reasoning"], dict)

    # optimizeStrategy (api.md §5) for a strategy id bound first -> optimization_complete
    strategy_id = str(uuid.uuid4())
    user.botlib("bind-strategy", "rsi_reversion", strategy_id)
    started = backend.call("optimizeStrategy", strategy_id, OPTIMIZE)
    assert started["defaults"]["symbol"] == "BTC/USDT", started
    done = backend.call("waitOptimization", 300_000, timeout=330)
    assert done and done[0]["strategyId"] == strategy_id, done
    assert "window" in done[0]["best_parameters"], done[0]

    # a training that fails: python:model_trained with status error
    backend.call("trainModel", model_id, {**TRAIN, "startDate": "2031-01-01",
                                          "endDate": "2031-03-01"})  # fmt: skip
    _status(backend, model_id, "error", 120_000)
    report = backend.call("report")
    assert report["failures"] == [], report["failures"][:3]
    assert report["handled"]["python:model_trained"] >= 3, report["handled"]
    # deactivated: it stops serving, and the backend's row says inactive
    user.botlib("deactivate", name)
    _status(backend, model_id, "inactive", 60_000)
    assert r.hget("botlib:active_models", name) is None
    report = backend.call("report")
    assert report["failures"] == [], report["failures"][:3]
    user.botlib("down")


def _bar_stream(r: redis.Redis) -> str:
    keys = [k for k in r.scan_iter("botlib:bars:*") if ":" in k]
    assert len(keys) == 1, keys
    return str(keys[0])
