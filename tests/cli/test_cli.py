from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from botlib.cli import app
from botlib.settings import get_settings
from tests.conftest import synthetic_candles
from tests.fake_binance import HOUR_MS, FakeBinance, make_candles

runner = CliRunner()


def _botlib(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botlib", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backtest_json_has_metrics_and_baselines() -> None:
    out = runner.invoke(
        app,
        [
            "backtest",
            "--strategy",
            "sma_cross",
            "--param",
            "fast=20",
            "-p",
            "slow=100",
            "--start",
            "2025-01-01",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["params"]["fast"] == 20 and data["params"]["slow"] == 100
    assert data["bars"] == 8_760
    for block in (data["metrics"], data["baselines"]["buy_and_hold"], data["baselines"]["flat"]):
        assert {"sharpe", "max_drawdown", "total_return", "trades"} <= set(block)
    assert data["metrics"]["trades"] > 0


def test_backtest_table_and_report(tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    out = runner.invoke(
        app,
        [
            "backtest",
            "--strategy",
            "rsi_reversion",
            "--start",
            "2025-06-01",
            "--report",
            str(report),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "Sharpe" in out.stdout and "buy_and_hold" in out.stdout
    html = report.read_text()
    assert "Equity" in html and "Drawdown" in html and "plotly" in html


def test_bad_parameter_is_one_clear_line() -> None:
    proc = _botlib("backtest", "--strategy", "sma_cross", "--param", "fats=3")
    assert proc.returncode == 2
    assert "did you mean 'fast'" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_symbol_is_one_clear_line() -> None:
    proc = _botlib("backtest", "--strategy", "sma_cross", "--symbol", "DOGE/USDT")
    assert proc.returncode == 2
    assert "no candles for DOGE/USDT 1h" in proc.stderr and "Traceback" not in proc.stderr


def test_data_info_lists_and_describes() -> None:
    out = runner.invoke(app, ["data", "info", "--json"])
    assert out.exit_code == 0
    assert {"BTC/USDT"} == {row["symbol"] for row in json.loads(out.stdout)}
    out = runner.invoke(app, ["data", "info", "BTC/USDT", "1h", "--json"])
    data = json.loads(out.stdout)
    assert data["rows"] == 40_193 and data["gaps"] == 3 and data["missing_bars"] == 7


def test_data_import_good_and_bad(tmp_path: Path) -> None:
    frame = synthetic_candles(48).reset_index()
    frame.to_csv(tmp_path / "ok.csv", index=False)
    out = runner.invoke(
        app,
        ["data", "import", str(tmp_path / "ok.csv"), "--symbol", "XYZ/USDT", "--timeframe", "1h"],
    )
    assert out.exit_code == 0, out.output
    assert "imported 48 candles" in out.stdout
    bad = frame.copy()
    bad.loc[3, "timestamp"] = bad.loc[2, "timestamp"]
    bad.to_csv(tmp_path / "bad.csv", index=False)
    proc = _botlib(
        "data", "import", str(tmp_path / "bad.csv"), "--symbol", "XYZ/USDT", "--timeframe", "1h"
    )
    assert proc.returncode == 2 and "duplicate-timestamps" in proc.stderr
    assert str(pd.Timestamp(bad.loc[2, "timestamp"])) in proc.stderr


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["train", "--help"],
        ["data", "--help"],
        ["data", "info", "--help"],
        ["data", "fetch", "--help"],
        ["data", "import", "--help"],
        ["backtest", "--help"],
        ["strategies", "--help"],
        ["demo", "--help"],
        ["promote", "--help"],
        ["rollback", "--help"],
        ["models", "--help"],
        ["serve", "--help"],
        ["bridge", "--help"],
        ["rerun", "--help"],
        ["feed", "replay", "--help"],
        ["feed", "ccxt", "--help"],
        ["feed", "watch", "--help"],
        ["redis", "start", "--help"],
        ["check", "leakage", "--help"],
        ["pipeline", "run", "--help"],
    ):
        out = runner.invoke(app, args)
        assert out.exit_code == 0 and "Usage" in out.stdout, args


def test_strategies_lists_parameters() -> None:
    out = runner.invoke(app, ["strategies"])
    assert out.exit_code == 0 and "sma_cross" in out.stdout and "rsi_reversion" in out.stdout


def test_demo_downloads_when_no_dataset_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No reference data: the demo fetches the series through ccxt (here from a local
    Binance-like server) into the cache, says so, and reports."""
    start = pd.Timestamp("2025-01-01T00:00Z")
    server = FakeBinance(
        make_candles(int(start.value // 10**6), int(start.value // 10**6) + 3_000 * HOUR_MS)
    )
    try:
        monkeypatch.setenv("BOTLIB_DATASETS_DIR", str(tmp_path / "no-datasets"))
        monkeypatch.setenv("BOTLIB_EXCHANGE_URLS", json.dumps({"public": server.url}))
        monkeypatch.setenv(
            "BOTLIB_EXCHANGE_OPTIONS", json.dumps({"fetchMarkets": {"types": ["spot"]}})
        )
        get_settings.cache_clear()
        report = tmp_path / "demo.html"
        out = runner.invoke(
            app,
            [
                "demo",
                "--start",
                "2025-01-01",
                "--end",
                "2025-04-01",
                "--report",
                str(report),
                "--no-models",
            ],
        )
        assert out.exit_code == 0, out.output
        assert "No reference dataset" in out.stdout and "downloading" in out.stdout
        assert "Loaded 2,160 BTC/USDT 1h candles" in out.stdout
        assert "sma_cross" in out.stdout and report.exists()
        assert server.kline_starts, "nothing was fetched from the exchange"
    finally:
        server.stop()


def test_train_prints_out_of_sample_metrics(tmp_path: Path) -> None:
    out = runner.invoke(
        app,
        [
            "train",
            "de_rules",
            "-p",
            "population=6",
            "-p",
            "generations=2",
            "--start",
            "2025-06-01",
            "--save",
            str(tmp_path / "m"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["params"]["best_params"]["fast"] < data["params"]["best_params"]["slow"]
    assert {"sharpe", "trades"} <= set(data["metrics"])
    assert "buy_and_hold" in data["baselines"]
    assert (tmp_path / "m" / "botlib_model.json").exists()


def test_train_unknown_model_is_one_clear_line() -> None:
    proc = _botlib("train", "lstn")
    assert proc.returncode == 2 and "did you mean 'lstm'" in proc.stderr


def test_pipeline_list_and_show() -> None:
    out = runner.invoke(app, ["pipeline", "list"])
    assert out.exit_code == 0 and "quick" in out.stdout and "train_all" in out.stdout
    out = runner.invoke(app, ["pipeline", "show", "quick"])
    assert out.exit_code == 0 and "train_nn" in out.stdout and "ensemble" in out.stdout
    proc = _botlib("pipeline", "show", "quik")
    assert proc.returncode == 2 and "did you mean 'quick'" in proc.stderr
    for args in (["pipeline", "--help"], ["pipeline", "run", "--help"]):
        assert runner.invoke(app, args).exit_code == 0
