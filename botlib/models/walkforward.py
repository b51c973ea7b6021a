"""Walk-forward evaluation: retrain on each fold, backtest on the window that follows,
stitch the out-of-sample equity curves.

Each fold's training window is split chronologically into fit (the first
``1 - valid_share``) and validation (the rest, for early stopping / selection); the
test window is traded by the model with the bars before it as feature history, the book
flat at its start. The stitched curve chains the folds' returns, so overall metrics are
those of one account traded only out of sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from botlib.backtest import BacktestResult, compute_metrics
from botlib.errors import ConfigError
from botlib.research.splits import Fold, walk_forward_splits

__all__ = ["WalkForwardResult", "walk_forward"]


@dataclass
class WalkForwardResult:
    folds: list[Fold]
    results: list[BacktestResult]
    fold_metrics: list[dict[str, float]]
    equity: pd.Series  # stitched, starting at the initial cash
    hold_equity: pd.Series  # buy-and-hold over the same bars, chained the same way
    metrics: dict[str, float] = field(default_factory=dict)
    hold_metrics: dict[str, float] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        rows = []
        for fold, m in zip(self.folds, self.fold_metrics, strict=True):
            rows.append({"fold": fold.number, **m})
        return pd.DataFrame(rows).set_index("fold")


def _chain(curves: list[pd.Series], cash: float) -> pd.Series:
    """Each fold's curve (which starts from ``cash``) rescaled to start from where the
    previous fold ended."""
    parts, level = [], cash
    for curve in curves:
        scaled = curve * (level / cash)
        parts.append(scaled)
        if len(scaled):
            level = float(scaled.iloc[-1])
    return pd.concat(parts) if parts else pd.Series(dtype="float64")


def walk_forward(
    name: str,
    candles: pd.DataFrame,
    *,
    train: int,
    test: int,
    step: int | None = None,
    expanding: bool = False,
    params: dict[str, Any] | None = None,
    valid_share: float = 0.15,
    progress: Callable[[int, int], None] | None = None,
) -> WalkForwardResult:
    """Walk-forward evaluation of model ``name`` over ``candles`` (see the module doc)."""
    from botlib.models import create_model
    from botlib.models.evaluate import backtest_model

    if not 0 <= valid_share < 0.5:
        raise ConfigError(f"valid_share must be in [0, 0.5), got {valid_share}")
    timeframe = candles.attrs.get("timeframe", "1h")
    folds = walk_forward_splits(
        len(candles), train=train, test=test, step=step, expanding=expanding
    )
    create_model(name, **(params or {}))  # bad names / parameters fail before any training
    results, rows = [], []
    for i, fold in enumerate(folds):
        window = candles.iloc[fold.train]
        cut = int(len(window) * (1 - valid_share))
        fit_part, valid_part = window.iloc[:cut], window.iloc[cut:]
        for part in (fit_part, valid_part):
            part.attrs.update(candles.attrs)
        model = create_model(name, **(params or {}))
        model.fit(fit_part, valid_part if len(valid_part) else None)
        history = candles.iloc[: fold.test[0]]
        test_part = candles.iloc[fold.test]
        test_part.attrs.update(candles.attrs)
        result = backtest_model(model, history, test_part, timeframe=timeframe)
        results.append(result)
        rows.append(
            {
                **{k: float(v) for k, v in result.metrics.items()},
                **{f"hold_{k}": float(v) for k, v in result.baselines["buy_and_hold"].items()},
                "test_start": float(test_part.index[0].value // 10**9),
            }
        )
        if progress is not None:
            progress(i + 1, len(folds))
    cash = float(results[0].config.get("cash", 10_000.0))
    equity = _chain([r.equity for r in results], cash)
    hold = _chain([r.benchmark for r in results], cash)
    metrics = compute_metrics(equity, timeframe=timeframe, initial_cash=cash)
    metrics["trades"] = float(sum(r.metrics.get("trades", 0.0) for r in results))
    return WalkForwardResult(
        folds,
        results,
        rows,
        equity,
        hold,
        metrics,
        compute_metrics(hold, timeframe=timeframe, initial_cash=cash),
    )
