"""Backtests: backtrader executes signal frames; metrics beside buy-and-hold and flat."""

from botlib.backtest.engine import BacktestResult, baselines, run_backtest
from botlib.backtest.metrics import compute_metrics, trades_from_fills
from botlib.backtest.signals import from_actions, normalize_signals
from botlib.backtest.strategies import STRATEGIES, get_strategy, rsi_reversion, sma_cross
from botlib.backtest.vector import simulate

__all__ = [
    "STRATEGIES",
    "BacktestResult",
    "baselines",
    "compute_metrics",
    "from_actions",
    "get_strategy",
    "normalize_signals",
    "rsi_reversion",
    "run_backtest",
    "simulate",
    "sma_cross",
    "trades_from_fills",
]
