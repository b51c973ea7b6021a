"""Reading runs back: the out-of-sample leaderboard of an experiment or a pipeline run."""

from __future__ import annotations

import mlflow
import pandas as pd
import plotly.graph_objects as go

__all__ = ["LEADERBOARD_METRICS", "leaderboard", "leaderboard_figure", "training_session_row"]

LEADERBOARD_METRICS = ("sharpe", "total_return", "max_drawdown", "trades")


def leaderboard(
    experiment: str, *, metric: str = "test.sharpe", parent_run_id: str | None = None
) -> pd.DataFrame:
    """Finished runs with out-of-sample metrics, best ``metric`` first, with buy-and-hold's
    figures over the same window beside them."""
    from botlib.tracking import use_store

    use_store()
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment named {experiment!r}")
    query = "attributes.status = 'FINISHED'"
    if parent_run_id:
        query += f" and tags.mlflow.parentRunId = '{parent_run_id}'"
    runs = mlflow.search_runs([exp.experiment_id], filter_string=query, output_format="pandas")
    if not isinstance(runs, pd.DataFrame) or runs.empty or f"metrics.{metric}" not in runs:
        return pd.DataFrame()
    # every backtested run; an undefined metric (no trades: NaN Sharpe) sorts last
    runs = runs[runs["metrics.test.total_return"].notna()]
    columns = {
        "tags.mlflow.runName": "run",
        "tags.algorithm": "algorithm",
        "tags.model_uri": "model_uri",
        "run_id": "run_id",
    }
    for name in LEADERBOARD_METRICS:
        columns[f"metrics.test.{name}"] = name
        columns[f"metrics.test.buy_and_hold.{name}"] = f"hold_{name}"
    # forecasting models: direction hit rate beside persistence (a coin is 0.5)
    columns["metrics.test.forecast.directional_accuracy"] = "directional_accuracy"
    columns["metrics.test.forecast.persistence_accuracy"] = "persistence_accuracy"
    present = {k: v for k, v in columns.items() if k in runs}
    board = runs[list(present)].rename(columns=present)
    return board.sort_values(
        metric.split(".")[-1], ascending=False, na_position="last"
    ).reset_index(drop=True)


def leaderboard_figure(board: pd.DataFrame, metric: str = "test.sharpe") -> go.Figure:
    key = metric.split(".")[-1]
    fig = go.Figure()
    if not board.empty:
        fig.add_bar(x=board["run"], y=board[key], name="model")
        if f"hold_{key}" in board:
            fig.add_scatter(
                x=board["run"],
                y=board[f"hold_{key}"],
                name="buy and hold",
                mode="markers",
                marker={"symbol": "line-ew-open", "size": 24},
            )
    fig.update_layout(title=f"Out-of-sample {key}", template="plotly_white")
    return fig


def training_session_row(
    run_id: str,
    *,
    model_id: str | None = None,
    user_id: str | None = None,
    symbol: str | None = None,
) -> dict[str, object]:
    """A training run as a row of the backend's ``ai_training_sessions`` table: its
    columns and nothing else, enumerations from the schema's comments, integers where
    the column is INTEGER, numbers fitted to their DECIMALs (``botlib.signals._columns``).
    ``id`` is the run id as a UUID; ``model_id`` / ``user_id`` are the backend's ids
    (None when the model is not bound — the backend fills ``user_id`` from its model);
    ``symbol`` as the backend spells it (default: the run's market). The MLflow run,
    the registered version and the out-of-sample metrics are in ``results``."""
    import uuid

    from botlib.signals._columns import fit_decimals
    from botlib.tracking import use_store

    use_store()
    run = mlflow.get_run(run_id)
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params

    def metric(*keys: str) -> float | None:
        return next((float(metrics[k]) for k in keys if k in metrics), None)

    def whole(*keys: str) -> int | None:
        value = metric(*keys)
        return None if value is None else int(value)

    def stamp(ms: int | None) -> str | None:
        return None if not ms else pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()

    status = {
        "FINISHED": "completed",
        "FAILED": "failed",
        "RUNNING": "running",
        "KILLED": "cancelled",
    }.get(run.info.status, "running")
    results: dict[str, object] = {k: v for k, v in metrics.items() if k.startswith("test.")}
    results.update(mlflow_run_id=run.info.run_id, model_uri=tags.get("model_uri"),
                   model_name=tags.get("model_name"), model_version=tags.get("model_version"),
                   algorithm=tags.get("algorithm"), market=params.get("symbol"))  # fmt: skip
    row: dict[str, object] = {
        "id": str(uuid.UUID(run.info.run_id)),
        "model_id": model_id,
        "user_id": user_id,
        # the table's enumeration: training, validation, testing, reinforcement
        "session_type": "reinforcement"
        if tags.get("model_type") == "reinforcement_learning"
        else "training",
        "start_date": tags.get("data_start") or params.get("start"),
        "end_date": tags.get("data_end") or params.get("end"),
        "symbol": symbol or params.get("symbol"),
        "timeframe": params.get("timeframe"),
        "data_points": int(tags["data_points"]) if "data_points" in tags else None,
        "training_epochs": whole("fit.epochs"),
        "validation_accuracy": metric("fit.val_accuracy", "fit.val_directional_accuracy"),
        "test_accuracy": metric("test.forecast.directional_accuracy"),
        "loss_value": metric("fit.val_loss", "fit.loss"),
        "convergence_epoch": whole("fit.best_epoch"),
        "status": status,
        "results": results,
        "created_at": stamp(run.info.start_time),
        "completed_at": stamp(run.info.end_time),
    }
    clipped = fit_decimals(row, "ai_training_sessions")
    if clipped:
        results["clipped"] = clipped
    return row
