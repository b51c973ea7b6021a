"""Operating the lab: runtime configuration, status and metrics, backups — against a
real redis-server, a real MLflow store and a running signal loop."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from botlib.cli import app
from botlib.live import SignalLoop
from botlib.monitor import collect_status, prometheus_text, serve_metrics
from botlib.promotion import promote
from botlib.runtime import RuntimeConfig, config_digest
from botlib.transport import RedisNames, RedisServer
from tests.conftest import Store
from tests.live.helpers import as_role, by_model, feed, loop_config, records, serve, window
from tests.live.test_loop import LENIENT

pytestmark = pytest.mark.slow


def _wait(predicate: Any, timeout: float = 60.0, every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def _status(r: redis.Redis, component: str) -> dict[str, Any] | None:
    raw = r.hget("botlib:config:status", component)
    return json.loads(raw) if raw else None


class Running:
    """A SignalLoop serving in a thread, as ``botlib serve`` would."""

    def __init__(self, r: redis.Redis) -> None:
        self.loop = SignalLoop(as_role(r, "loop"), config=loop_config())
        self.loop.load_active()
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(30)


def test_runtime_config_reaches_the_running_loop_within_a_second(
    store: Store, redis_server: RedisServer, r: redis.Redis
) -> None:
    promote(store.ga, 1, gate=LENIENT)
    candles = window(300)
    running = Running(r)
    try:
        feed(r, candles.iloc[:100])
        _wait(lambda: r.xlen("botlib:signals") >= 100)
        first = records(r, "botlib:signals")
        assert max(s["position_size"] for s in first) > 0.3  # so the cap below can show

        # a valid change: applied by the running loop within a second
        base = running.loop.runtime.base  # what `botlib serve` started with
        wanted = RuntimeConfig.from_document({"signal": {"max_position": 0.3}}, base)
        written = time.monotonic()
        r.set("botlib:config", json.dumps({"signal": {"max_position": 0.3}}))
        _wait(lambda: (_status(r, "serve") or {}).get("digest") == config_digest(wanted))
        assert time.monotonic() - written < 1.0
        assert running.loop.signal_config.max_position == 0.3
        feed(r, candles.iloc[100:200])
        _wait(lambda: r.xlen("botlib:signals") >= 200)
        capped = records(r, "botlib:signals")[100:]
        assert max(s["position_size"] for s in capped) <= 0.3 + 1e-12

        # invalid changes are refused with the reason; the old value stays
        for bad, why in (
            ({"signal": {"max_position": 5}}, "signal.max_position"),
            ({"signal": {"entry_treshold": 0.2}}, "signal.entry_treshold"),
            ({"rate_limits": {"train": {"requests": -1, "per_s": 60}}}, "rate_limits.train"),
        ):
            r.set("botlib:config", json.dumps(bad))
            status = _wait(lambda: (s := _status(r, "serve")) and not s["ok"] and s)
            assert why in status["error"] and status["digest"] == config_digest(wanted)
            r.delete("botlib:config:status")
        r.set("botlib:config", "{not json")
        assert "not JSON" in _wait(lambda: (s := _status(r, "serve")) and s["error"])
        feed(r, candles.iloc[200:])
        _wait(lambda: r.xlen("botlib:signals") >= 300)
        assert running.loop.signal_config.max_position == 0.3
        assert max(s["position_size"] for s in records(r, "botlib:signals")[200:]) <= 0.3 + 1e-12
    finally:
        running.stop()

    # the CLI validates before it writes: a bad value is refused, nothing stored
    runner = CliRunner()
    r.set("botlib:config", json.dumps({"signal": {"max_position": 0.3}}))
    bad = runner.invoke(app, ["config", "set", "signal.max_position=5"])
    assert bad.exit_code != 0 and "max_position" in str(bad.exception or bad.output)
    assert json.loads(r.get("botlib:config")) == {"signal": {"max_position": 0.3}}
    ok = runner.invoke(app, ["config", "set", "signal.entry_threshold=0.2"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(r.get("botlib:config")) == {
        "signal": {"max_position": 0.3, "entry_threshold": 0.2}
    }


def test_status_and_prometheus_metrics_agree_with_the_streams(
    store: Store, redis_server: RedisServer, r: redis.Redis
) -> None:
    promote(store.lstm, 1, gate=LENIENT)
    promote(store.ga, 1, gate=LENIENT)
    running = Running(r)
    try:
        feed(r, window(120))
        _wait(lambda: r.xlen("botlib:signals") >= 240)
        _wait(lambda: collect_status(r, RedisNames())["loop"]["bars"] >= 120)
        status = collect_status(r, RedisNames())
        server = serve_metrics(r, RedisNames(), port=0)
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
                text = resp.read().decode()
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            with urllib.request.urlopen(url + "/status", timeout=10) as resp:
                assert json.loads(resp.read())["loop"]["bars"] == 120
            # a request made for another site's name (DNS rebinding) is not answered
            rebound = urllib.request.Request(url + "/status", headers={"Host": "evil.example"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(rebound, timeout=10)
            assert refused.value.code == 421
        finally:
            server.shutdown()
    finally:
        running.stop()

    loop = status["loop"]
    assert loop["up"] and loop["bars"] == 120 and loop["signals"] == 240
    assert loop["deadletters"] == 0 and loop["errors"] == 0
    # the LSTM continues its streaming state; the rule model recomputes its window
    assert loop["streamed"] > 0 and loop["windowed"] > 0 and loop["stream_seeds"] == 2
    (stream,) = status["streams"]
    assert stream["unread"] == 0 and stream["pending"] == 0
    # replayed history: processed long after the close, and that is what lag says
    assert 0 < stream["lag_at_processing_s"] <= stream["last_bar_age_s"] + 1
    assert stream["last_bar_age_s"] - stream["lag_at_processing_s"] < 60
    assert stream["last_bar"] == window(120).index[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    # accuracy to date per model = the mean over the scored predictions in the stream
    scored = by_model([p for p in records(r, "botlib:predictions") if p["accuracy"] is not None])
    assert scored
    for model in status["active_models"]:
        mine = scored.get(model["model_id"], [])
        assert model["validated"] == len(mine) and model["signals"] == 120
        if mine:
            mean = sum(p["accuracy"] for p in mine) / len(mine)
            assert model["accuracy"] == pytest.approx(mean, abs=1e-3)
    # the same figures in the Prometheus text
    assert "botlib_loop_bars_total 120\n" in text and "botlib_loop_up 1\n" in text
    assert f"botlib_loop_streamed_total {loop['streamed']}\n" in text
    for model in status["active_models"]:
        assert f'botlib_model_signals_total{{model_id="{model["model_id"]}"}} 120\n' in text
    assert prometheus_text(status).count("# TYPE") == text.count("# TYPE")

    runner = CliRunner()
    shown = runner.invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["loop"]["signals"] == 240
    human = runner.invoke(app, ["status"])
    assert human.exit_code == 0 and "120 bars" in human.output
    assert f"{loop['streamed']} streamed" in human.output


def _registry() -> dict[str, Any]:
    """Registered models, their versions and aliases, and every run's metrics."""
    from mlflow import MlflowClient

    client = MlflowClient()
    models = {
        m.name: {
            "aliases": dict(m.aliases or {}),
            "versions": sorted(
                (v.version, v.run_id, v.status, v.source, dict(v.tags))
                for v in client.search_model_versions(f"name='{m.name}'")
            ),
        }
        for m in client.search_registered_models()
    }
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = {
        run.info.run_id: (run.data.metrics, run.data.params, run.info.status)
        for run in client.search_runs(experiments, max_results=10_000)
    }
    return {"models": models, "runs": runs}


def test_backup_then_restore_into_a_fresh_project(
    store: Store,
    redis_server: RedisServer,
    r: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    from botlib.models import load_model
    from botlib.settings import get_settings
    from botlib.tracking import tracking_uri
    from botlib.transport import free_port

    promote(store.lstm, 1, gate=LENIENT)
    promote(store.lstm, 2, gate=LENIENT)  # v2 @champion, v1 @previous
    promote(store.ga, 1, gate=LENIENT)
    feed(r, window(80))
    serve(r)
    assert r.xlen("botlib:signals") == 160
    before = _registry()
    history = {s: r.xrange(s) for s in ("botlib:signals", "botlib:predictions")}
    active = r.hgetall("botlib:active_models")
    candles = window(300)
    expected = load_model(f"models:/{store.lstm}@champion").predict_tail(candles, 5)

    runner = CliRunner()
    made = runner.invoke(app, ["backup", "create", str(tmp_path / "backups")])
    assert made.exit_code == 0, made.output
    (archive,) = (tmp_path / "backups").glob("botlib-backup-*.tar.gz")

    # a fresh project: its own MLflow store and its own redis-server
    fresh = tmp_path / "fresh"
    other = RedisServer(port=free_port(), data_dir=tmp_path / "redis-fresh").start()
    try:
        monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", f"sqlite:///{fresh}/mlflow.db")
        monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(fresh / "artifacts"))
        monkeypatch.setenv("BOTLIB_REDIS_URL", other.url)
        get_settings.cache_clear()
        restored = runner.invoke(app, ["backup", "restore", str(archive)])
        assert restored.exit_code == 0, restored.output
        mlflow.set_tracking_uri(tracking_uri())
        assert _registry() == before
        r2 = redis.Redis.from_url(other.url, decode_responses=True)
        assert {s: r2.xrange(s) for s in history} == history
        assert r2.hgetall("botlib:active_models") == active
        # nothing in the restored database points at the old store
        import sqlite3

        dump = "\n".join(sqlite3.connect(fresh / "mlflow.db").iterdump())
        assert str(store.artifacts) not in dump and str(fresh / "artifacts") in dump
        # the champion loads from the restored artifacts and predicts the same
        again = load_model(f"models:/{store.lstm}@champion").predict_tail(candles, 5)
        assert again.equals(expected)
        # a restore never overwrites
        twice = runner.invoke(app, ["backup", "restore", str(archive)])
        assert twice.exit_code != 0 and "already exists" in str(twice.exception)
        r2.close()
    finally:
        other.stop()
        mlflow.set_tracking_uri(store.uri)


def test_config_file_and_redis_key_layer_and_bad_files_are_refused(
    r: redis.Redis, tmp_path: Path
) -> None:
    from botlib.runtime import RuntimeConfigWatcher

    path = tmp_path / "runtime.yaml"
    path.write_text("signal:\n  entry_threshold: 0.25\nrate_limits:\n  train: {requests: 2}\n")
    watcher = RuntimeConfigWatcher(r, RedisNames(), "test", path=path)
    config = watcher.poll()
    assert config is not None and config.signal.entry_threshold == 0.25
    assert config.limits()["train"] == (2, 3600)  # per_s kept from the default
    assert watcher.poll() is None  # nothing changed
    r.set("botlib:config", json.dumps({"signal": {"max_position": 0.5}}))
    config = watcher.poll()  # the Redis key goes on top of the file
    assert config is not None and (config.signal.entry_threshold, config.signal.max_position) == (
        0.25,
        0.5,
    )
    time.sleep(0.01)
    path.write_text("signal:\n  entry_threshold: 1.5\n")
    assert watcher.poll() is None and "signal.entry_threshold" in watcher.error
    assert watcher.current.signal.entry_threshold == 0.25
    assert not json.loads(r.hget("botlib:config:status", "test"))["ok"]
    path.write_text("signal: [unclosed\n")
    assert watcher.poll() is None and "not valid YAML" in watcher.error

    runner = CliRunner()
    bad = runner.invoke(app, ["config", "validate", str(path)])
    assert bad.exit_code != 0 and "not valid YAML" in str(bad.exception)
    path.write_text('{"max_model_age_days": 7}')
    good = runner.invoke(app, ["config", "validate", str(path)])
    assert good.exit_code == 0 and "valid" in good.output
