"""Hyperparameter sweeps (e.g. network sizes) through the pluggable map.

>>> table = sweep("lstm", candles, {"units": [16, 32, 64]}, fixed={"epochs": 3},
...               compute="processes:2")

Each point trains on the first 70 % of ``candles``, validates on the next 15 % and is
backtested out of sample on the rest (``train_and_backtest``); the table holds the
parameters, the validation figures (``fit.*``) and the out-of-sample metrics
(``test.*``), in grid order.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from botlib.compute import open_mapper
from botlib.errors import ConfigError

__all__ = ["grid_points", "sweep"]


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, first key slowest."""
    for key, values in grid.items():
        if isinstance(values, str) or not len(values):
            raise ConfigError(f"grid[{key!r}] must be a non-empty list, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


class _Point:
    """One training run (picklable: shipped to a worker once)."""

    def __init__(self, name: str, candles: pd.DataFrame, fixed: Mapping[str, Any]) -> None:
        self.name, self.candles, self.fixed = name, candles, dict(fixed)

    def __call__(self, params: dict[str, Any]) -> dict[str, float]:
        from botlib.models.evaluate import train_and_backtest

        _, report, result = train_and_backtest(
            self.name, self.candles, params={**self.fixed, **params}
        )
        out = {f"fit.{k}": float(v) for k, v in report.metrics.items()}
        out.update({f"test.{k}": float(v) for k, v in result.metrics.items()})
        return out


def sweep(
    name: str,
    candles: pd.DataFrame,
    grid: Mapping[str, Sequence[Any]],
    *,
    fixed: Mapping[str, Any] | None = None,
    compute: str = "serial",
) -> pd.DataFrame:
    """Train model ``name`` at every point of ``grid`` (see the module doc)."""
    from botlib.models import create_model

    points = grid_points(grid)
    for point in points:  # bad names or values fail here, before any training
        create_model(name, **{**dict(fixed or {}), **point})
    with open_mapper(compute) as pmap:
        results = pmap.map(_Point(name, candles, fixed or {}), points)
    return pd.DataFrame([{**p, **r} for p, r in zip(points, results, strict=True)])
