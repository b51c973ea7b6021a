"""A walk-forward run: every fold retrained and backtested, logged to one MLflow run."""

from __future__ import annotations

from typing import Any

import mlflow

from botlib.data import load_ohlcv
from botlib.models import takes_seed
from botlib.models.walkforward import WalkForwardResult, walk_forward
from botlib.plots import walk_forward_equity
from botlib.tracking.runs import log_figure, log_manifest, reproducibility_tags, run

__all__ = ["walkforward_session"]


def walkforward_session(
    algorithm: str,
    *,
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    start: Any = None,
    end: Any = None,
    train_bars: int = 2000,
    test_bars: int = 500,
    step: int | None = None,
    expanding: bool = False,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    run_id: str | None = None,
    source: str | None = None,
) -> tuple[str, WalkForwardResult]:
    """Walk-forward ``algorithm`` over the window; logs ``fold.*`` (step = fold),
    ``wf.*`` (the stitched out-of-sample account) and ``wf.buy_and_hold.*``."""
    params = dict(params or {})
    if takes_seed(algorithm):
        params.setdefault("seed", seed)
    arguments = {
        "algorithm": algorithm,
        "symbol": symbol,
        "timeframe": timeframe,
        "start": start,
        "end": end,
        "train_bars": train_bars,
        "test_bars": test_bars,
        "step": step,
        "expanding": expanding,
        **({"source": source} if source is not None else {}),
    }
    logged = {**arguments, "step": step or test_bars, **params}
    with run(f"walkforward-{algorithm}", run_id=run_id, params=logged) as active:
        log_manifest("walkforward_session", {**arguments, "params": params, "seed": seed})
        candles = load_ohlcv(symbol, timeframe, start=start, end=end, source=source)
        mlflow.set_tags(
            {**reproducibility_tags(candles, seed=seed), "session_type": "walk_forward"}
        )
        result = walk_forward(
            algorithm,
            candles,
            train=train_bars,
            test=test_bars,
            step=step,
            expanding=expanding,
            params=params,
        )
        for i, row in enumerate(result.fold_metrics):
            for key, value in row.items():
                if value == value and abs(value) != float("inf"):
                    mlflow.log_metric(f"fold.{key}", value, step=i)
        mlflow.log_metric("wf.folds", len(result.folds))
        mlflow.log_metrics({f"wf.{k}": v for k, v in result.metrics.items() if v == v})
        mlflow.log_metrics(
            {f"wf.buy_and_hold.{k}": v for k, v in result.hold_metrics.items() if v == v}
        )
        starts = [candles.index[f.test[0]] for f in result.folds]
        log_figure(
            walk_forward_equity(
                result.equity, result.hold_equity, starts, f"{algorithm}: walk-forward"
            ),
            "walk_forward",
        )
        mlflow.log_text(result.table().to_csv(), "folds.csv")
        return active.info.run_id, result
