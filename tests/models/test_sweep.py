"""Sweeps run through the same map as the optimizers and give the same table."""

from __future__ import annotations

import pandas as pd
import pytest

from botlib.errors import ConfigError
from botlib.models.sweep import grid_points, sweep


def test_grid_points_and_bad_grids() -> None:
    assert grid_points({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    with pytest.raises(ConfigError, match="non-empty list"):
        grid_points({"a": []})
    with pytest.raises(ConfigError, match="non-empty list"):
        grid_points({"a": "16"})


@pytest.mark.slow
def test_sweep_in_processes_equals_serial(btc_1h: pd.DataFrame) -> None:
    candles = btc_1h.iloc[-2500:].copy()
    candles.attrs.update(btc_1h.attrs)
    grid = {"population": [4, 6], "generations": [1, 2]}
    serial = sweep("ga_rules", candles, grid, fixed={"seed": 1})
    pooled = sweep("ga_rules", candles, grid, fixed={"seed": 1}, compute="processes:2")
    assert list(serial[["population", "generations"]].itertuples(index=False, name=None)) == [
        (4, 1), (4, 2), (6, 1), (6, 2)
    ]  # fmt: skip
    pd.testing.assert_frame_equal(serial, pooled)
    assert {"fit.train_objective", "test.sharpe", "test.total_return"} <= set(serial.columns)
    with pytest.raises(ConfigError, match="unknown parameter"):
        sweep("ga_rules", candles, {"populaton": [4]})
