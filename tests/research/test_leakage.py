"""The look-ahead detector flags each classic leak and passes honest features/models."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from botlib.cli import app
from botlib.features import DEFAULT_SPEC, build_features
from botlib.models.base import BaseModel, FitReport, ModelMeta
from botlib.research import check_leakage


@pytest.fixture(scope="module")
def candles(btc_1h: pd.DataFrame) -> pd.DataFrame:
    frame = btc_1h.loc["2025-01-01":"2025-03-31"].copy()
    frame.attrs.update(btc_1h.attrs)
    return frame


def test_default_features_have_no_leak_and_settle_within_their_warmup(
    candles: pd.DataFrame,
) -> None:
    report = check_leakage(
        lambda c: build_features(c, DEFAULT_SPEC), candles, warmup=DEFAULT_SPEC.warmup
    )
    assert report.ok and not report.warmup, report.lines()
    assert len(report.columns) == 16
    # too short a warm-up is caught: recursive indicators still depend on the start
    short = check_leakage(lambda c: build_features(c, DEFAULT_SPEC), candles, warmup=20)
    assert short.ok
    assert {"rsi_14", "atr_pct_14"} <= {f.column for f in short.warmup}


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("next bar", lambda c: (c["close"].shift(-1) / c["close"]).rename("next_ret")),
        (
            "whole-data scaler",
            lambda c: ((c["close"] - c["close"].mean()) / c["close"].std()).rename("z"),
        ),
        ("centred window", lambda c: c["close"].rolling(5, center=True).mean().rename("c5")),
    ],
)
def test_each_classic_leak_is_flagged(candles: pd.DataFrame, name: str, fn: object) -> None:
    report = check_leakage(fn, candles, name=name)  # type: ignore[arg-type]
    assert not report.ok
    leak = report.leaks[0]
    assert leak.column in {"next_ret", "z", "c5"} and leak.difference > 0
    assert leak.timestamp in candles.index
    assert "LEAK" in "\n".join(report.lines())


class _PeekingModel(BaseModel):
    """Wants to be long when the NEXT bar closes higher: a leak."""

    name = "peeking"
    model_type = "evolutionary"
    algorithm = "cheat"
    prediction_type = "direction"
    outputs = ("target",)

    @property
    def meta(self) -> ModelMeta:
        return self._meta(window=1, horizon=1, spec=None)

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> FitReport:
        return FitReport()

    def _predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        up = (candles["close"].shift(-1) > candles["close"]).astype("float64")
        return pd.DataFrame({"target": up}, index=candles.index)

    def _save(self, path: Path) -> None: ...

    def _load(self, path: Path) -> None: ...


def test_a_model_reading_the_next_bar_is_flagged(candles: pd.DataFrame) -> None:
    model = _PeekingModel()
    model.fit(candles.iloc[:500])
    report = check_leakage(model.predict, candles, name="peeking")
    assert not report.ok and report.leaks[0].column == "target"


def test_cli_checks_a_users_feature_function(
    candles: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "myfeatures.py").write_text(
        "def honest(c):\n    return c['close'].pct_change().rename('ret')\n\n"
        "def cheat(c):\n    return c['close'].pct_change().shift(-1).rename('fwd')\n"
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["check", "leakage", "--start", "2025-01-01", "--end", "2025-03-01"]
    good = runner.invoke(app, [*args, "--features", "myfeatures:honest"])
    assert good.exit_code == 0, good.output
    assert "no look-ahead" in good.output
    bad = runner.invoke(app, [*args, "--features", "myfeatures:cheat"])
    assert bad.exit_code == 1 and "LEAK fwd" in bad.output
    missing = runner.invoke(app, [*args, "--features", "myfeatures:nothing"])
    assert missing.exit_code != 0


@pytest.mark.slow
def test_every_builtin_model_passes(candles: pd.DataFrame) -> None:
    result = CliRunner().invoke(
        app,
        ["check", "leakage", "--builtin-models", "--start", "2024-10-01", "--end", "2025-04-01"],
    )
    assert result.exit_code == 0, result.output
    for name in ("lstm", "gru", "transformer", "dqn", "ppo", "ga_rules", "de_rules", "ensemble"):
        assert f"model {name}:" in result.output
    assert result.output.count("no look-ahead") == 9
