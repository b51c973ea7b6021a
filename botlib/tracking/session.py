"""A training session: data -> model -> out-of-sample backtest -> MLflow run -> registry.

``train_session`` is what the ``train_*`` notebooks call. Every parameter is checked
before any work starts; a failure marks the run FAILED and registers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlflow
import pandas as pd

from botlib.backtest import BacktestResult
from botlib.data import load_ohlcv, to_utc
from botlib.errors import ConfigError
from botlib.models import BaseModel, FitReport, create_model, split_by_time, takes_seed
from botlib.models.evaluate import backtest_model
from botlib.plots import candles_with_fills, drawdown, equity_vs_hold, training_curves
from botlib.tracking import pyfunc
from botlib.tracking.runs import (
    log_backtest,
    log_figure,
    log_fit_report,
    log_manifest,
    registry_name,
    reproducibility_tags,
    run,
)

__all__ = ["SessionResult", "backtest_session", "train_session", "validate_session"]

_SESSION_TYPE = {
    "neural_network": "training",
    "reinforcement_learning": "training",
    "evolutionary": "optimization",
    "ensemble": "training",
}


@dataclass
class SessionResult:
    run_id: str
    model_name: str
    model_version: str
    model_uri: str
    report: FitReport
    result: BacktestResult
    test_candles: pd.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)


def validate_session(algorithm: str, start: Any, end: Any, params: dict[str, Any]) -> None:
    """Fail fast, naming the parameter."""
    from botlib.models import get_model_class

    get_model_class(algorithm)  # built in or a plugin's; unknown names get a hint
    if start is not None and end is not None and to_utc(end) <= to_utc(start):
        raise ConfigError(f"end ({end}) must be after start ({start})")
    for key in ("epochs", "timesteps", "generations", "population"):
        if key in params and (not isinstance(params[key], int) or params[key] < 1):
            raise ConfigError(f"{key} must be a positive integer, got {params[key]!r}")
    create_model(algorithm, **params)  # unknown or invalid hyperparameters raise here


def train_session(
    algorithm: str,
    *,
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    start: Any = None,
    end: Any = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    run_id: str | None = None,
    register: bool = True,
    model_name: str | None = None,
    source: str | None = None,
) -> SessionResult:
    """Train ``algorithm`` on 70 % of the window, validate on 15 %, backtest on the last
    15 %, and log it all to the MLflow run ``run_id`` (or a new one). The version is
    registered under ``model_name`` (default: family-model-market-timeframe). Candles
    come from ``source`` (see ``load_ohlcv``; default: the lookup order)."""
    params = dict(params or {})
    if takes_seed(algorithm):
        params.setdefault("seed", seed)
    market = {"symbol": symbol, "timeframe": timeframe, "start": start, "end": end}
    if source is not None:
        market["source"] = source
    with run(
        f"train-{algorithm}", run_id=run_id, params={"algorithm": algorithm, **market, **params}
    ) as active:
        log_manifest(
            "train_session",
            {"algorithm": algorithm, **market, "params": params, "seed": seed},
        )
        validate_session(algorithm, start, end, params)
        candles = load_ohlcv(symbol, timeframe, start=start, end=end, source=source)
        model: BaseModel = create_model(algorithm, **params)
        train, valid, test = split_by_time(candles)
        mlflow.set_tags(
            {
                **reproducibility_tags(
                    candles, seed=seed, schema_hash=model.meta.feature_schema_hash
                ),
                "session_type": _SESSION_TYPE.get(model.model_type, "training"),
                "model_type": model.model_type,
                "algorithm": model.algorithm,
                "train_end": str(train.index[-1]),
                "test_start": str(test.index[0]),
            }
        )
        report = model.fit(train, valid)
        log_fit_report(report)
        history = pd.concat([train, valid])
        result = backtest_model(model, history, test)
        log_backtest(result, "test")
        log_forecast_quality(model, history, test)
        figures = {
            "training": training_curves(report.history, f"{algorithm} training"),
            "equity": equity_vs_hold(result, f"{algorithm} out of sample"),
            "drawdown": drawdown(result),
            "candles": candles_with_fills(test, result),
        }
        for name, fig in figures.items():
            log_figure(fig, name)
        name = model_name or registry_name(model, symbol, timeframe)
        info = pyfunc.log_model(model, registered_model_name=name if register else None)
        version = str(info.registered_model_version or "")
        uri = f"models:/{name}/{version}" if version else info.model_uri
        mlflow.set_tags({"model_name": name, "model_version": version, "model_uri": uri})
        if version:  # the bytes botlib wrote: what serving will verify against
            from botlib.tracking.verify import record_digest

            mlflow.set_tag("artifact_digest", record_digest(name, version))
        return SessionResult(active.info.run_id, name, version, uri, report, result, test, figures)


def log_forecast_quality(model: BaseModel, history: pd.DataFrame, test: pd.DataFrame) -> None:
    """``test.forecast.*``: the model's forecasts on the held-out window beside a coin,
    persistence and a random walk (``botlib.research.baselines``)."""
    from botlib.research.baselines import forecast_metrics

    context = pd.concat([history.iloc[-model.meta.required_history :], test])
    outputs = model.predict(context).loc[test.index]
    figures = forecast_metrics(outputs, test, horizon=model.meta.horizon)
    mlflow.log_metrics({f"test.forecast.{k}": v for k, v in figures.items() if v == v})


def backtest_session(
    *,
    model_uri: str | None = None,
    strategy: str | None = None,
    strategy_params: dict[str, Any] | None = None,
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    start: Any = None,
    end: Any = None,
    run_id: str | None = None,
    source: str | None = None,
) -> tuple[str, BacktestResult, dict[str, Any]]:
    """Backtest a logged model (``model_uri``) or a rule strategy over a window and log
    the metrics and figures. Returns the run id, the result and the figures."""
    from botlib.backtest import get_strategy, run_backtest
    from botlib.models import load_model

    if (model_uri is None) == (strategy is None):
        raise ConfigError("give exactly one of model_uri or strategy")
    with run(
        "backtest",
        run_id=run_id,
        params={
            "model_uri": model_uri,
            "strategy": strategy,
            "symbol": symbol,
            "timeframe": timeframe,
            "start": start,
            "end": end,
            **({"source": source} if source is not None else {}),
            **(strategy_params or {}),
        },
    ) as active:
        if start is not None and end is not None and to_utc(end) <= to_utc(start):
            raise ConfigError(f"end ({end}) must be after start ({start})")
        if model_uri is not None:
            model = load_model(model_uri)
            need = model.meta.required_history
            everything = load_ohlcv(symbol, timeframe, end=end, source=source)
            window = everything.loc[everything.index >= to_utc(start)] if start else everything
            history = everything.loc[everything.index < window.index[0]]
            if len(history) < need:
                window, history = window.iloc[need:], window.iloc[:need]
            result = backtest_model(model, history, window)
        else:
            strat = get_strategy(str(strategy))
            window = load_ohlcv(symbol, timeframe, start=start, end=end, source=source)
            result = run_backtest(
                window, strat.signals(window, **(strategy_params or {})), timeframe=timeframe
            )
        mlflow.set_tags({**reproducibility_tags(window), "session_type": "backtest"})
        log_backtest(result, "test")
        figures = {
            "equity": equity_vs_hold(result),
            "drawdown": drawdown(result),
            "candles": candles_with_fills(window, result),
        }
        for name, fig in figures.items():
            log_figure(fig, name)
        return active.info.run_id, result, figures
