"""A new user's own candles, end to end through the CLI (issue 16): a CSV of ETH/USDT
hourly candles imported once is found by every command without naming its source —
data info, backtest, a whole pipeline of notebooks — in a scrubbed environment, a
working directory outside the checkout and a project of its own. (A pipeline on such
data runs in ``test_readme.py``, the README's first guide.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from botlib.data import load_ohlcv
from tests.e2e.conftest import BIN, user_env

pytestmark = pytest.mark.slow

#: what the frameworks print on their own (TensorFlow/absl, Jupyter kernels, MLflow)
FRAMEWORK_NOISE = re.compile(
    r"absl|oneDNN|cpu_feature_guard|tensorflow|^[IWEF]\d{4} |IPKernelApp|UserWarning"
    r"|Kernel is running over TCP|KeyboardInterrupt caught|\x1b\[9\dm"
)


def _noise(*outputs: str) -> list[str]:
    return [line for out in outputs for line in out.splitlines() if FRAMEWORK_NOISE.search(line)]


def _eth_like_csv(path: Path) -> int:
    """Hourly candles in the shape a user exports them (ISO time column, lower-case
    OHLCV), made from the reference BTC/USDT prices scaled to ETH's range: real market
    structure, another market's name."""
    btc = load_ohlcv("BTC/USDT", "1h", start="2024-10-01", end="2025-07-01")
    eth = btc.copy()
    for column in ("open", "high", "low", "close"):
        eth[column] = (btc[column] / 27.0).round(2)
    eth["volume"] = (btc["volume"] * 30.0).round(4)
    eth.index = eth.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    eth.index.name = "timestamp"
    eth.to_csv(path)
    return len(eth)


def test_imported_candles_reach_every_command(tmp_path: Path) -> None:
    home, cwd, user_home = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "user"
    for folder in (home, cwd, user_home):
        folder.mkdir()
    env = user_env(home, user_home, "redis://127.0.0.1:9/0")

    def botlib(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / "botlib"), *args]
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    rows = _eth_like_csv(cwd / "eth.csv")
    done = botlib("data", "import", "eth.csv", "--symbol", "ETH/USDT", "--timeframe", "1h")
    assert done.returncode == 0, done.stderr
    assert f"imported {rows:,} candles" in done.stdout

    listing = json.loads(botlib("data", "info", "--json").stdout)
    assert {"source": "local", "symbol": "ETH/USDT", "timeframe": "1h"}.items() <= next(
        row for row in listing if row["symbol"] == "ETH/USDT"
    ).items()
    info = json.loads(botlib("data", "info", "ETH/USDT", "1h", "--json").stdout)
    assert info["source"] == "local" and info["rows"] == rows and info["also_in"] == []

    # a backtest without --exchange/--source finds it, and says where it came from
    done = botlib("backtest", "--symbol", "ETH/USDT", "--strategy", "sma_cross",
                  "-p", "fast=12", "-p", "slow=48", "--start", "2025-01-01")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "data: ETH/USDT 1h" in done.stderr and "source 'local'" in done.stderr
    # what is not there: the error lists what is, never repeats what was typed
    missing = botlib("backtest", "--symbol", "ETH/USDT", "--timeframe", "4h",
                     "--strategy", "sma_cross")  # fmt: skip
    assert missing.returncode == 2
    message = " ".join(missing.stderr.split())
    assert "no candles for ETH/USDT 4h" in message and "ETH/USDT 1h (local)" in message
    assert "did you mean 'ETH/USDT 4h'" not in message
    # a source that does not hold it names the one that does
    wrong = botlib("backtest", "--symbol", "ETH/USDT", "--source", "binance",
                   "--strategy", "sma_cross")  # fmt: skip
    assert wrong.returncode == 2 and "it is in 'local'" in " ".join(wrong.stderr.split())
    # a -p no step takes is an error, not silently dropped
    typo = botlib("pipeline", "run", "quick", "-p", "symbl=ETH/USDT")
    assert typo.returncode == 2 and "-p symbl: no step of pipeline 'quick' takes it" in " ".join(
        typo.stderr.split()
    )

    # (the pipeline on this data runs in test_readme.py, guide 1, checked there)
    # a quiet console: a Keras network trained, the frameworks said nothing
    trained = botlib("train", "lstm", "--symbol", "ETH/USDT", "-p", "epochs=1", "-p", "units=8",
                     "-p", "seq_len=8", "--start", "2025-03-01")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert not _noise(trained.stdout, trained.stderr), _noise(trained.stdout, trained.stderr)
    # where they went instead
    assert "oneDNN" in (home / "logs" / "frameworks.log").read_text()
