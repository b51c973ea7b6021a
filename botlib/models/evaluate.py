"""Backtest any model on a window through the foundation's engine, trading exactly the
signals of the one signal builder."""

from __future__ import annotations

from typing import Any

import pandas as pd

from botlib.backtest import BacktestResult, run_backtest
from botlib.models.base import BaseModel, FitReport
from botlib.signals import SignalConfig, build_signal_frame

__all__ = ["backtest_model", "model_signal_frame", "train_and_backtest"]


def model_signal_frame(
    model: BaseModel,
    candles: pd.DataFrame,
    start: Any = None,
    *,
    config: SignalConfig | None = None,
    previous_target: float = 0.0,
) -> pd.DataFrame:
    """Signals from bar ``start`` on. Rows before ``start`` are history only (feature,
    ATR and volatility warm-up): the builder starts at ``start`` from
    ``previous_target`` (flat by default)."""
    outputs = model.predict(candles)
    frame = build_signal_frame(
        outputs, candles, horizon=model.meta.horizon, config=config, start=start,
        previous_target=previous_target,
    )  # fmt: skip
    return frame


def backtest_model(
    model: BaseModel,
    history: pd.DataFrame,
    test: pd.DataFrame,
    *,
    config: SignalConfig | None = None,
    **engine: Any,
) -> BacktestResult:
    """Backtest ``model`` on ``test``; ``history`` (bars before it) warms the features.

    Only the tail of ``history`` the model needs is used.
    """
    need = model.meta.required_history
    context = pd.concat([history.iloc[-need:], test]) if len(history) else test
    context.attrs.update(test.attrs)
    frame = model_signal_frame(model, context, test.index[0], config=config)
    signals = frame[["target", "stop_loss", "take_profit"]]
    cfg = config or SignalConfig()
    timeframe = engine.pop("timeframe", test.attrs.get("timeframe"))
    return run_backtest(test, signals, timeframe=timeframe, allow_short=cfg.allow_short, **engine)


def train_and_backtest(
    name: str,
    candles: pd.DataFrame,
    *,
    params: dict[str, Any] | None = None,
    train: float = 0.7,
    valid: float = 0.15,
    config: SignalConfig | None = None,
) -> tuple[BaseModel, FitReport, BacktestResult]:
    """Train model ``name`` on the first ``train`` share of ``candles``, validate on the
    next ``valid`` share, and backtest on the rest (out of sample)."""
    from botlib.models import create_model, split_by_time

    model = create_model(name, **(params or {}))
    train_part, valid_part, test_part = split_by_time(candles, train=train, valid=valid)
    report = model.fit(train_part, valid_part)
    history = pd.concat([train_part, valid_part])
    result = backtest_model(model, history, test_part, config=config)
    return model, report, result
