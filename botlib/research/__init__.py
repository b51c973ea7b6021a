"""Research integrity: overfitting statistics (and, as they land, splits, leakage
checks and reproducible reruns)."""

from botlib.research.leakage import Finding, LeakageReport, check_leakage, load_function
from botlib.research.overfitting import (
    PBOResult,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    search_statistics,
    sharpe_ratio,
)

__all__ = [
    "Finding",
    "LeakageReport",
    "PBOResult",
    "check_leakage",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "load_function",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "search_statistics",
    "sharpe_ratio",
]
