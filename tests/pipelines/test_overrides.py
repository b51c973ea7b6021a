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
