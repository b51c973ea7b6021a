"""Runtime configuration documents and the Prometheus rendering (no services needed)."""

from __future__ import annotations

import pytest

from botlib.errors import ConfigError
from botlib.monitor import prometheus_text
from botlib.runtime import RuntimeConfig, config_digest, merge, parse_assignment
from botlib.signals import SignalConfig


def test_assignments_become_nested_documents() -> None:
    assert parse_assignment("signal.entry_threshold=0.2") == {"signal": {"entry_threshold": 0.2}}
    assert parse_assignment("rate_limits.train=10/3600") == {
        "rate_limits": {"train": {"requests": 10, "per_s": 3600}}
    }
    assert parse_assignment("max_model_age_days=null") == {"max_model_age_days": None}
    assert parse_assignment("signal.allow_short=true") == {"signal": {"allow_short": True}}
    for bad in ("signal.entry_threshold", "=3", "rate_limits.train=ten/60"):
        with pytest.raises(ConfigError, match="expected"):
            parse_assignment(bad)


def test_documents_overlay_the_base_and_bad_values_name_the_field() -> None:
    base = RuntimeConfig.from_parts(SignalConfig(max_position=0.5), None)
    cfg = RuntimeConfig.from_document({"signal": {"entry_threshold": 0.3}}, base)
    assert (cfg.signal.entry_threshold, cfg.signal.max_position) == (0.3, 0.5)
    assert cfg.max_model_age_days is None and cfg.signal_config().max_position == 0.5
    assert config_digest(cfg) != config_digest(base)
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    cases = {
        "signal.max_position": {"signal": {"max_position": 2}},
        "signal.stop_mult": {"signal": {"stop_mult": "wide"}},
        "rate_limits.mine": {"rate_limits": {"mine": {"requests": 1, "per_s": 1}}},
        "rate_limits.train.per_s": {"rate_limits": {"train": {"requests": 1, "per_s": 0}}},
        "colour": {"colour": "blue"},
    }
    for field, document in cases.items():
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            RuntimeConfig.from_document(document)
    with pytest.raises(ConfigError, match="JSON object"):
        RuntimeConfig.from_document([1, 2])  # type: ignore[arg-type]


def test_prometheus_text_escapes_labels_and_skips_unknown_values() -> None:
    status = {
        "loop": {"up": True, "heartbeat_age_s": None, "bars": 3, "predictions": 3,
                 "signals": 3, "validated": 1, "deadletters": 0, "errors": 0},
        "active_models": [{"name": 'we"ird\\name', "version": "1", "symbol": "BTC/USDT",
                           "timeframe": "1h", "model_id": "m:1", "predictions": 3,
                           "signals": 3}],
        "accuracy": {"m:1": {"validated": 1, "accuracy": None}},
        "streams": [], "outputs": {"signals": 3}, "config": {"serve": {"ok": False}},
        "bridge": {k: 0 for k in ("up", "handled", "invalid", "rate_limited", "busy", "started",
                                  "queued", "done", "failed", "running", "queue_depth",
                                  "model_loads")},
    }  # fmt: skip
    text = prometheus_text(status)
    assert 'name="we\\"ird\\\\name"' in text
    assert "\nbotlib_loop_heartbeat_age_seconds " not in text  # unknown: no sample
    assert "\nbotlib_model_accuracy{" not in text
    assert 'botlib_config_ok{component="serve"} 0\n' in text
    for line in text.splitlines():
        assert line.startswith("# ") or line.startswith("botlib_"), line
