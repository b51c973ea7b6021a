"""``-p NAME=VALUE`` overrides: YAML-typed, but dates stay the ISO strings a notebook
parameter (and JSON) expects — ``-p start=2025-01-01`` works as typed."""

from __future__ import annotations

import json

import pytest

from botlib.errors import ConfigError
from botlib.pipeline import parse_overrides


def test_dates_stay_iso_strings_and_numbers_stay_numbers() -> None:
    got = parse_overrides(["start=2025-01-01", "epochs=3", "lr=1e-3", "at=2025-01-01T12:00:00",
                           "window=[2025-01-01, 2025-02-01]", "quoted='2025-01-01'"])  # fmt: skip
    assert got == {"start": "2025-01-01", "epochs": 3, "lr": 0.001,
                   "at": "2025-01-01T12:00:00", "window": ["2025-01-01", "2025-02-01"],
                   "quoted": "2025-01-01"}  # fmt: skip
    json.dumps(got)  # what the pipeline records: no "date is not JSON serializable"
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_overrides(["start"])


def test_one_parser_for_every_command() -> None:
    """issue 16: the same typing and the same error for train, backtest and pipelines."""
    import subprocess
    import sys

    from botlib.params import parse_assignments

    got = parse_assignments(["members=[a,b]", "epochs=3", "allow_short=true", "fee=0.002",
                             "name=lstm", "none=null", "space={fast: [5, 50]}"])  # fmt: skip
    assert got == {"members": ["a", "b"], "epochs": 3, "allow_short": True, "fee": 0.002,
                   "name": "lstm", "none": None, "space": {"fast": [5, 50]}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"-p members='\[a,': cannot read the value"):
        parse_assignments(["members=[a,"])
    for command in (["train", "lstm"], ["backtest", "--strategy", "sma_cross"],
                    ["pipeline", "run", "quick"]):  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "botlib", *command, "-p", "epochs=[3,"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, (command, done.stderr)
        assert "-p epochs='[3,': cannot read the value" in lines[0], (command, lines)
