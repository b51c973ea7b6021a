"""What the bridge's worker processes run (module-level functions: picklable)."""

from __future__ import annotations

import os
from typing import Any


def _quiet() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def train(payload: dict[str, Any], experiment: str) -> dict[str, Any]:
    """A training session; returns what ``python:model_trained`` carries."""
    _quiet()
    from botlib.tracking import configure
    from botlib.tracking.session import train_session

    configure(experiment)
    result = train_session(
        payload["algorithm"],
        symbol=payload["symbol"],
        timeframe=payload["timeframe"],
        start=payload.get("start"),
        end=payload.get("end"),
        params=dict(payload.get("hyperparameters") or {}),
        model_name=payload.get("model_name"),
    )
    from botlib.tracking.compare import training_session_row

    if payload.get("model_id"):  # the backend's model: its run and version carry its ids
        from botlib.tracking import mlflow_client

        client = mlflow_client()
        ids = {"botlib.model_id": payload["model_id"], "botlib.user_id": payload.get("user_id")}
        for key, value in ids.items():
            if value:
                client.set_tag(result.run_id, key, value)
                client.set_model_version_tag(result.model_name, result.model_version, key, value)
    return {
        "run_id": result.run_id,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "model_uri": result.model_uri,
        "metrics": {f"test.{k}": v for k, v in result.result.metrics.items()},
        # the backend's ai_training_sessions row of this training
        "training_session": training_session_row(
            result.run_id,
            model_id=payload.get("model_id"),
            user_id=payload.get("user_id"),
            symbol=payload.get("symbol_as") or payload["symbol"],
        ),
    }


def optimize(payload: dict[str, Any], experiment: str) -> dict[str, Any]:
    """An evolutionary search of a rule strategy; returns what
    ``python:optimization_complete`` carries (best parameters, objective value)."""
    _quiet()
    from botlib.models import load_model
    from botlib.tracking import configure
    from botlib.tracking.session import train_session

    configure(experiment)
    space = {k: [v["min"], v["max"]] for k, v in (payload.get("parameters") or {}).items()}
    result = train_session(
        "ga_rules" if payload["algorithm"] == "ga" else "de_rules",
        symbol=payload["symbol"],
        timeframe=payload["timeframe"],
        start=payload.get("start"),
        end=payload.get("end"),
        params={
            "strategy": payload["strategy"],
            "objective": payload["objective"],
            "population": payload["population"],
            "generations": payload["generations"],
            **({"space": space} if space else {}),
        },
        model_name=payload.get("model_name"),
    )
    best = load_model(result.model_uri).params.get("best_params", {})
    return {
        "run_id": result.run_id,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "best_parameters": best,
        "objective": payload["objective"],
        "objective_value": result.report.metrics.get("train_objective"),
        "metrics": {f"test.{k}": v for k, v in result.result.metrics.items()},
    }


def backtest(payload: dict[str, Any], experiment: str) -> dict[str, Any]:
    _quiet()
    from botlib.tracking import configure
    from botlib.tracking.session import backtest_session

    configure(experiment)
    run_id, result, _ = backtest_session(
        model_uri=payload.get("model_uri"),
        strategy=payload.get("strategy"),
        strategy_params=dict(payload.get("parameters") or {}),
        symbol=payload["symbol"],
        timeframe=payload["timeframe"],
        start=payload.get("start"),
        end=payload.get("end"),
    )
    return {"run_id": run_id, "metrics": result.metrics, "baselines": result.baselines}


#: the long commands, by name (what a job process runs)
LONG = {"train": train, "optimize": optimize, "backtest": backtest}


def run_job(name: str, payload: dict[str, Any], experiment: str, conn: Any) -> None:
    """Body of one job process: run the command, send ``("ok", result)`` or
    ``("error", reason)`` back through ``conn``."""
    try:
        result = LONG[name](payload, experiment)
    except BaseException as exc:  # reported to the bridge, which answers the backend
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()
