"""Deflated Sharpe ratio and the probability of backtest overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from botlib.errors import ConfigError
from botlib.research import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
    search_statistics,
)


def test_deflated_sharpe_matches_the_papers_worked_example() -> None:
    """Bailey & López de Prado (2014), numerical example: 100 trials, annualized SR
    2.5 with variance 0.5 across trials, 1,250 daily returns (250 a year), skewness
    -3, kurtosis 10 -> DSR 0.9004."""
    per_year = 250
    dsr = deflated_sharpe_ratio(
        2.5 / math.sqrt(per_year),
        n_obs=1250,
        n_trials=100,
        sharpe_variance=0.5 / per_year,
        skew=-3.0,
        kurtosis=10.0,
    )
    assert dsr == pytest.approx(0.9004, abs=1e-3)
    # more trials raise the bar: the same record is worth less
    assert expected_max_sharpe(1000, 1.0) > expected_max_sharpe(100, 1.0) > 0
    assert expected_max_sharpe(1, 1.0) == 0.0


def test_pbo_of_pure_noise_is_near_one_half() -> None:
    """One noise matrix gives a noisy PBO (the splits share data); over 20 matrices of
    skill-less trials it centres on 0.5."""
    values = []
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0.0, 0.01, size=(1000, 30))
        result = probability_of_backtest_overfitting(noise, blocks=16)
        values.append(result.pbo)
    assert result.splits == 12870
    assert abs(float(np.mean(values)) - 0.5) < 0.08


def test_pbo_with_one_strategy_of_real_edge_is_small() -> None:
    rng = np.random.default_rng(1)
    trials = rng.normal(0.0, 0.01, size=(2000, 40))
    trials[:, 7] += 0.002  # Sharpe 0.2 per period: a real edge
    result = probability_of_backtest_overfitting(trials, blocks=16)
    assert result.pbo < 0.1
    stats = search_statistics(trials, best=7)
    assert stats["deflated_sharpe"] > 0.95 and stats["pbo"] < 0.1
    weak = search_statistics(rng.normal(0.0, 0.01, size=(2000, 40)), best=3)
    assert weak["deflated_sharpe"] < 0.5


def test_pbo_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="even"):
        probability_of_backtest_overfitting(np.zeros((100, 3)), blocks=5)
    with pytest.raises(ConfigError, match="one column per trial"):
        probability_of_backtest_overfitting(np.zeros(100))
    with pytest.raises(ConfigError, match="too few"):
        probability_of_backtest_overfitting(np.zeros((10, 3)), blocks=16)
