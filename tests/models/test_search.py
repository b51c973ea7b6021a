from __future__ import annotations

import pandas as pd
import pytest

from botlib.backtest import get_strategy
from botlib.models.evolve.objectives import rule_objective
from botlib.models.evolve.search import Bound, differential_evolution, genetic_algorithm

BOUNDS = [Bound("n", int, 0, 40), Bound("x", float, -2.0, 2.0), Bound("k", int, 1, 9)]


def _synthetic(p: dict[str, float]) -> float:
    """Known optimum n = 17, x = 0.75, k = 4 (value 0)."""
    return -((p["n"] - 17) ** 2) / 40 - (p["x"] - 0.75) ** 2 - abs(p["k"] - 4) / 4


@pytest.mark.parametrize("search", [genetic_algorithm, differential_evolution])
def test_finds_known_optimum_of_mixed_int_float(search) -> None:  # type: ignore[no-untyped-def]
    result = search(_synthetic, BOUNDS, population=30, generations=40, seed=3)
    best = result.best_params
    assert best["n"] == 17 and best["k"] == 4 and isinstance(best["n"], int)
    assert best["x"] == pytest.approx(0.75, abs=0.05)
    assert result.best_objective > -0.01
    assert len(result.logbook) == 41
    assert all(t.generation <= 40 for t in result.trials)
    assert result.evaluations == len({tuple(t.params.values()) for t in result.trials})


@pytest.mark.parametrize("search", [genetic_algorithm, differential_evolution])
def test_same_seed_same_result(search) -> None:  # type: ignore[no-untyped-def]
    a = search(_synthetic, BOUNDS, population=10, generations=5, seed=11)
    b = search(_synthetic, BOUNDS, population=10, generations=5, seed=11)
    c = search(_synthetic, BOUNDS, population=10, generations=5, seed=12)
    assert a.best_params == b.best_params and a.trials == b.trials
    assert a.trials != c.trials


@pytest.mark.parametrize("search", [genetic_algorithm, differential_evolution])
def test_improves_over_initial_population_on_real_data(
    search,
    btc_1h_2y: pd.DataFrame,  # type: ignore[no-untyped-def]
) -> None:
    train = btc_1h_2y.iloc[:6_000]
    strat = get_strategy("sma_cross")
    objective = rule_objective(strat, train, objective="sharpe", timeframe="1h", min_trades=5)
    bounds = [Bound("fast", int, 2, 100), Bound("slow", int, 20, 400)]
    result = search(objective, bounds, population=12, generations=6, seed=0)
    first, last = result.logbook[0], result.logbook[-1]
    assert last["avg"] > first["avg"]  # the population as a whole got better
    assert result.best_objective >= first["max"]
    assert result.best_params["fast"] < result.best_params["slow"]


def test_invalid_setup() -> None:
    with pytest.raises(ValueError, match="population"):
        genetic_algorithm(_synthetic, BOUNDS, population=2)
    with pytest.raises(ValueError, match="kind"):
        Bound("a", str, 0, 1)


@pytest.mark.parametrize("search", [genetic_algorithm, differential_evolution])
def test_only_ordered_sets_are_proposed(search) -> None:  # type: ignore[no-untyped-def]
    """fast < slow for every trial (repaired, not penalised), within the bounds."""
    from botlib.models.evolve.search import repair

    bounds = [Bound("fast", int, 2, 173), Bound("slow", int, 5, 173)]
    result = search(
        lambda p: float(p["slow"] - p["fast"]),
        bounds,
        population=12,
        generations=4,
        seed=3,
        ordered=[("fast", "slow")],
    )
    assert result.trials and all(t.params["fast"] < t.params["slow"] for t in result.trials)
    assert all(2 <= t.params["fast"] <= 173 and 5 <= t.params["slow"] <= 173 for t in result.trials)
    # swapped when both fit the other's range, else moved apart within the bounds
    assert repair({"fast": 136, "slow": 56}, bounds, [("fast", "slow")]) == {
        "fast": 56,
        "slow": 136,
    }
    assert repair({"fast": 173, "slow": 173}, bounds, [("fast", "slow")]) == {
        "fast": 172,
        "slow": 173,
    }
    tight = [Bound("lower", float, 1.0, 50.0), Bound("upper", float, 50.0, 99.0)]
    fixed = repair({"lower": 50.0, "upper": 50.0}, tight, [("lower", "upper")])
    assert 1.0 <= fixed["lower"] < fixed["upper"] <= 99.0
    with pytest.raises(ValueError, match="no valid parameter set"):
        search(lambda p: 0.0, [Bound("fast", int, 50, 50), Bound("slow", int, 40, 50)],
               population=4, generations=1, ordered=[("fast", "slow")])  # fmt: skip


def test_a_short_window_searches_only_valid_rules_or_says_why_not() -> None:
    """issue 16: population 4, one generation, a month of bars: it finishes with a valid
    winner; a space with no valid set on a shorter window is refused before searching."""
    from botlib.data import load_ohlcv
    from botlib.errors import ConfigError
    from botlib.models.evaluate import train_and_backtest

    month = load_ohlcv("BTC/USDT", "1h", start="2025-01-01", end="2025-02-01")
    for seed in range(4):
        fitted, _, result = train_and_backtest(
            "ga_rules", month, params={"population": 4, "generations": 1, "seed": seed}
        )
        best = fitted.params["best_params"]
        assert best["fast"] < best["slow"] and result.metrics
    days = load_ohlcv("BTC/USDT", "1h", start="2025-01-01", end="2025-01-10")
    with pytest.raises(ConfigError, match="no valid sma_cross parameters on this window") as err:
        train_and_backtest(
            "ga_rules",
            days,
            params={"population": 4, "generations": 1,
                    "space": {"fast": [60, 100], "slow": [80, 300]}},
        )  # fmt: skip
    assert "cap every look-back at" in str(err.value)
