"""``ga_rules`` and ``de_rules``: a rule strategy whose parameters an evolutionary search
chose on the training window. The model's output is the strategy's ``target``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from botlib.backtest import get_strategy, run_backtest
from botlib.errors import ConfigError
from botlib.models.base import BaseModel, FitReport, ModelMeta
from botlib.models.evolve.objectives import get_objective, rule_objective
from botlib.models.evolve.search import (
    PENALTY,
    Bound,
    SearchResult,
    differential_evolution,
    genetic_algorithm,
)
from botlib.progress import advance
from botlib.seed import seed_everything

log = logging.getLogger(__name__)
_STOP_PARAMS = ("stop_atr", "take_atr", "atr_window")


class EvolvedRulesModel(BaseModel):
    model_type = "evolutionary"
    prediction_type = "direction"
    outputs = ("target",)
    _search: ClassVar[str]

    def __init__(
        self,
        *,
        strategy: str = "sma_cross",
        objective: str = "sharpe",
        space: dict[str, list[float]] | None = None,
        fixed: dict[str, Any] | None = None,
        population: int = 20,
        generations: int = 8,
        min_trades: int = 5,
        fee: float = 0.001,
        slippage: float = 0.0005,
        seed: int = 0,
        best_params: dict[str, Any] | None = None,
        compute: str = "serial",
        recheck: int = 3,
    ) -> None:
        from botlib.compute import parse_backend

        parse_backend(compute)  # an unknown backend fails here, before any work
        strat = get_strategy(strategy)
        get_objective(objective)
        space = space or {
            k: [p.low, p.high] for k, p in strat.params.items() if k not in _STOP_PARAMS
        }
        for name, rng in space.items():
            if name not in strat.params:
                strat.resolve({name: rng[0]})  # raises with a did-you-mean hint
            if len(rng) != 2 or rng[0] > rng[1]:
                raise ConfigError(f"space[{name!r}] must be [low, high], got {rng}")
        super().__init__(
            strategy=strategy,
            objective=objective,
            space=space,
            fixed=dict(fixed or {}),
            population=population,
            generations=generations,
            min_trades=min_trades,
            fee=fee,
            slippage=slippage,
            seed=seed,
            best_params=best_params,
            compute=compute,
            recheck=recheck,
        )
        self.strategy = strat
        self.search: SearchResult | None = None

    @property
    def bounds(self) -> list[Bound]:
        return [
            Bound(name, self.strategy.params[name].kind, float(lo), float(hi))
            for name, (lo, hi) in self.params["space"].items()
        ]

    @property
    def meta(self) -> ModelMeta:
        values = self.params["best_params"] or {
            k: hi for k, (_, hi) in self.params["space"].items()
        }
        lookback = max([int(v) for v in values.values() if isinstance(v, int | float)] + [14])
        return self._meta(window=3 * lookback + 1, horizon=1, spec=None)

    def _bounds_for(self, bars: int) -> list[Bound]:
        """The search space, with look-backs (int parameters) capped so the winner's
        history need (3 x look-back + 1) fits in ``bars``: a model that could never be
        fed on this window is not worth evaluating."""
        cap = max(2, (bars - 1) // 3)
        out = []
        for b in self.bounds:
            if b.kind is int and b.high > cap:
                log.info(
                    "%s: %s capped at %d (was %g) for %d bars", self.name, b.name, cap, b.high, bars
                )
                b = Bound(b.name, int, min(b.low, cap), cap)
            out.append(b)
        return out

    def _search_space(self, bars: int) -> tuple[list[Bound], list[tuple[str, str]]]:
        """The bounds searched on ``bars`` training bars and the order constraints among
        them; a pair with one side fixed narrows the other's bound instead. Raises
        ``ConfigError``, before any search, when no valid set exists."""
        from botlib.models.evolve.search import feasible

        fixed = self.params["fixed"]
        bounds = {b.name: b for b in self._bounds_for(bars)}
        ordered = []
        for a, b in self.strategy.ordered:
            if a in bounds and b in bounds:
                ordered.append((a, b))
            elif a in fixed and b in bounds:
                old = bounds[b]
                low = max(old.low, float(fixed[a]) + (1 if old.kind is int else 1e-9))
                bounds[b] = Bound(b, old.kind, low, max(low, old.high))
                if float(fixed[a]) >= old.high:
                    ordered.append((a, b))  # reported as infeasible below
            elif b in fixed and a in bounds:
                old = bounds[a]
                high = min(old.high, float(fixed[b]) - (1 if old.kind is int else 1e-9))
                bounds[a] = Bound(a, old.kind, min(old.low, high), high)
        problems = feasible(list(bounds.values()), ordered)
        problems += [
            f"{a} = {fixed[a]} is fixed but {b} <= {bounds[b].high:g}"
            for a, b in ordered
            if a in fixed and b in bounds and float(fixed[a]) >= bounds[b].high
        ]
        if problems:
            cap = max(2, (bars - 1) // 3)
            raise ConfigError(
                f"{self.name}: no valid {self.strategy.name} parameters on this window: "
                f"{bars} training bars cap every look-back at {cap} (3 x look-back + 1 "
                f"must fit), and {'; '.join(problems)}. Use a longer window or another "
                "search space"
            )
        return list(bounds.values()), ordered

    def _min_train_bars(self) -> int:
        return 100  # a search simply scores long look-backs badly on short windows

    def _fit(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> FitReport:
        p = self.params
        bounds, ordered = self._search_space(len(train))  # refuses an impossible search
        seed_everything(p["seed"])
        timeframe = train.attrs.get("timeframe", "1h")
        objective = rule_objective(
            self.strategy,
            train,
            objective=p["objective"],
            fixed=p["fixed"],
            timeframe=timeframe,
            fee=p["fee"],
            slippage=p["slippage"],
            min_trades=p["min_trades"],
        )

        def progress(gen: int, of: int, best: float) -> None:
            log.info("%s generation %d/%d: best %s %.4f", self.name, gen, of, p["objective"], best)
            advance(f"{self.name} generations", gen, of)

        from botlib.compute import open_mapper

        run = genetic_algorithm if self._search == "ga" else differential_evolution
        with open_mapper(p["compute"]) as pmap:
            self.search = run(
                objective,
                bounds,
                population=p["population"],
                generations=p["generations"],
                seed=p["seed"],
                progress=progress,
                mapper=pmap,
                ordered=ordered,
            )
        self.params["best_params"] = {**p["fixed"], **self.search.best_params}
        book = self.search.logbook
        report = FitReport(
            history={key: [row[key] for row in book] for key in ("max", "avg", "min")},
            epochs=len(book) - 1,
            best_epoch=int(np.argmax([row["max"] for row in book])),
        )
        report.metrics["train_objective"] = self.search.best_objective
        report.metrics["initial_best_objective"] = book[0]["max"]
        report.metrics["evaluations"] = float(self.search.evaluations)
        report.metrics.update(self._search_statistics(objective))
        # re-check the hall of fame in backtrader, the engine of record: both figures
        # are reported, so a gap between the fast evaluator and the engine shows
        scorer = get_objective(p["objective"])
        valid_hof = [(q, v) for q, v in self.search.hall_of_fame if v > PENALTY / 10]
        for rank, (params, fast) in enumerate(valid_hof[: p["recheck"]]):
            signals = self.strategy.fn(train, **{**p["fixed"], **params})
            check = run_backtest(
                train,
                signals,
                timeframe=timeframe,
                fee=p["fee"],
                slippage=p["slippage"],
                allow_short=True,
            )
            report.metrics[f"hof{rank}_objective_fast"] = fast
            report.metrics[f"hof{rank}_objective_backtrader"] = scorer(check.metrics)
            if rank == 0:
                report.metrics["train_objective_backtrader"] = scorer(check.metrics)
        if valid is not None:
            context = pd.concat([train.iloc[-self.meta.required_history :], valid])
            context.attrs.update(train.attrs)
            score = rule_objective(
                self.strategy,
                context,
                objective=p["objective"],
                timeframe=timeframe,
                fee=p["fee"],
                slippage=p["slippage"],
                min_trades=0,
            )
            report.metrics["val_objective"] = score(self.params["best_params"])
        return report

    def _search_statistics(self, objective: Any) -> dict[str, float]:
        """Deflated Sharpe of the winner and PBO over every distinct trial the search
        actually evaluated (their per-bar returns on the training window)."""
        from botlib.research import search_statistics

        assert self.search is not None
        columns: list[Any] = []
        best: int | None = None
        for trial in self.search.trials:
            if trial.cached or trial.objective <= -1e5:
                continue
            r = objective.returns(trial.params)
            if r is None:
                continue
            if trial.params == self.search.best_params:
                best = len(columns)
            columns.append(r)
        if best is None or len(columns) < 2:
            return {"n_trials": float(len(columns))}
        stats = search_statistics(np.column_stack(columns), best)
        log.info(
            "%s: %d trials, deflated Sharpe %.3f, PBO %s",
            self.name,
            len(columns),
            stats["deflated_sharpe"],
            f"{stats['pbo']:.3f}" if "pbo" in stats else "n/a",
        )
        return stats

    def _predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        frame = self.strategy.fn(candles, **self.params["best_params"])
        target = frame["target"].ffill()
        return pd.DataFrame({"target": target.astype("float64")}, index=candles.index)

    def _save(self, path: Path) -> None:
        if self.search is not None:
            (path / "search.json").write_text(json.dumps(self.search.to_dict(), default=str))

    def _load(self, path: Path) -> None:
        if not self.params.get("best_params"):
            raise ConfigError(f"{path}: saved {self.name} model has no best parameters")


class GARulesModel(EvolvedRulesModel):
    name = "ga_rules"
    algorithm = "genetic_algorithm"
    _search = "ga"


class DERulesModel(EvolvedRulesModel):
    name = "de_rules"
    algorithm = "differential_evolution"
    _search = "de"
