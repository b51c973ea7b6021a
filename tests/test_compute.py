"""The pluggable map: every backend gives the serial answer, in order."""

from __future__ import annotations

import pandas as pd
import pytest

from botlib.backtest import get_strategy
from botlib.compute import open_mapper, parse_backend
from botlib.errors import ConfigError
from botlib.models.evolve.objectives import rule_objective
from botlib.models.evolve.search import Bound, differential_evolution, genetic_algorithm


def _square(x: int) -> int:
    return x * x


def test_backends_parse_and_refuse_unknown_names() -> None:
    assert parse_backend("serial")[0] == "serial"
    assert parse_backend("processes:3") == ("processes", 3)
    assert parse_backend("dask:2") == ("dask", 2)
    assert parse_backend("tcp://10.0.0.5:8786")[0] == "address"
    with pytest.raises(ConfigError, match="did you mean 'dask'"):
        parse_backend("dusk")
    with pytest.raises(ConfigError, match="at least one worker"):
        parse_backend("processes:0")


def test_process_pool_keeps_order() -> None:
    with open_mapper("processes:2") as pmap:
        assert pmap.map(_square, list(range(50))) == [i * i for i in range(50)]
        assert pmap.map(_square, []) == []


@pytest.fixture(scope="module")
def objective(btc_1h: pd.DataFrame) -> object:
    candles = btc_1h.iloc[-3000:].copy()
    candles.attrs.update(btc_1h.attrs)
    return rule_objective(get_strategy("sma_cross"), candles, timeframe="1h", min_trades=3)


BOUNDS = [Bound("fast", int, 5, 60), Bound("slow", int, 30, 300)]


@pytest.mark.slow
def test_ga_on_a_local_dask_cluster_matches_the_serial_run(objective: object) -> None:
    serial = genetic_algorithm(objective, BOUNDS, population=10, generations=3, seed=7)  # type: ignore[arg-type]
    with open_mapper("dask:2") as pmap:
        assert pmap.name == "dask:2"
        remote = genetic_algorithm(  # type: ignore[arg-type]
            objective, BOUNDS, population=10, generations=3, seed=7, mapper=pmap
        )
        de_remote = differential_evolution(  # type: ignore[arg-type]
            objective, BOUNDS, population=8, generations=2, seed=3, mapper=pmap
        )
    assert remote.best_params == serial.best_params
    assert remote.best_objective == serial.best_objective
    assert [t.params for t in remote.trials] == [t.params for t in serial.trials]
    assert [t.cached for t in remote.trials] == [t.cached for t in serial.trials]
    de_serial = differential_evolution(objective, BOUNDS, population=8, generations=2, seed=3)  # type: ignore[arg-type]
    assert de_remote.best_params == de_serial.best_params
    with open_mapper("processes:2") as pmap:
        pooled = genetic_algorithm(  # type: ignore[arg-type]
            objective, BOUNDS, population=10, generations=3, seed=7, mapper=pmap
        )
    assert pooled.best_params == serial.best_params
    assert pooled.evaluations == serial.evaluations < len(serial.trials)
