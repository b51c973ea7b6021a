"""Evolutionary search over bounded, typed parameters: a genetic algorithm and
differential evolution, both built on DEAP's tools.

Genomes live in the unit cube; ``Bound`` maps a gene to an ``int`` or ``float`` value.
Every evaluation is logged as a ``Trial`` (generation, parameters, objective, and
whether it was answered from the cache), so overfitting statistics can later count
the trials actually run. Duplicate individuals are evaluated once. No ``creator.create``
runs at import or call time: the fitness and individual classes are plain subclasses.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from deap import base, tools

__all__ = ["Bound", "SearchResult", "Trial", "differential_evolution", "genetic_algorithm"]

Objective = Callable[[dict[str, Any]], float]
ProgressFn = Callable[[int, int, float], None]  # generation, of, best so far
PENALTY = -1e6


@dataclass(frozen=True)
class Bound:
    """A parameter's type and inclusive range."""

    name: str
    kind: type
    low: float
    high: float

    def __post_init__(self) -> None:
        if self.kind not in (int, float):
            raise ValueError(f"{self.name}: kind must be int or float, got {self.kind}")
        if not self.low <= self.high:
            raise ValueError(f"{self.name}: low {self.low} > high {self.high}")

    def decode(self, gene: float) -> Any:
        value = self.low + min(max(gene, 0.0), 1.0) * (self.high - self.low)
        return round(value) if self.kind is int else float(value)


@dataclass(frozen=True)
class Trial:
    generation: int
    params: dict[str, Any]
    objective: float
    cached: bool


@dataclass
class SearchResult:
    algorithm: str
    best_params: dict[str, Any]
    best_objective: float
    logbook: list[dict[str, float]]
    trials: list[Trial]
    hall_of_fame: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        """Distinct parameter sets actually evaluated."""
        return sum(1 for t in self.trials if not t.cached)

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "best_params": self.best_params,
            "best_objective": self.best_objective,
            "evaluations": self.evaluations,
            "logbook": self.logbook,
            "trials": [asdict(t) for t in self.trials],
            "hall_of_fame": [[p, v] for p, v in self.hall_of_fame],
        }


class _Fitness(base.Fitness):  # type: ignore[misc]
    weights = (1.0,)


class _Individual(list[float]):
    def __init__(self, genes: Sequence[float]) -> None:
        super().__init__(genes)
        self.fitness = _Fitness()


class _Evaluator:
    def __init__(self, objective: Objective, bounds: Sequence[Bound]) -> None:
        self.objective, self.bounds = objective, list(bounds)
        self.cache: dict[tuple[Any, ...], float] = {}
        self.trials: list[Trial] = []

    def decode(self, genes: Sequence[float]) -> dict[str, Any]:
        return {b.name: b.decode(g) for b, g in zip(self.bounds, genes, strict=True)}

    def __call__(self, genes: Sequence[float], generation: int) -> float:
        params = self.decode(genes)
        key = tuple(params.values())
        cached = key in self.cache
        if not cached:
            value = float(self.objective(params))
            self.cache[key] = value if math.isfinite(value) else PENALTY
        self.trials.append(Trial(generation, params, self.cache[key], cached))
        return self.cache[key]


def _stats() -> tools.Statistics:
    stats = tools.Statistics(lambda ind: ind.fitness.values[0])
    stats.register("max", np.max)
    stats.register("avg", np.mean)
    stats.register("min", np.min)
    return stats


def _record(
    logbook: tools.Logbook,
    stats: tools.Statistics,
    pop: list[_Individual],
    gen: int,
    evaluator: _Evaluator,
) -> None:
    logbook.record(gen=gen, evals=len(evaluator.cache), **stats.compile(pop))


def _check(bounds: Sequence[Bound], population: int, generations: int) -> None:
    if not bounds:
        raise ValueError("nothing to search: give at least one Bound")
    if population < 4:
        raise ValueError(f"population must be >= 4, got {population}")
    if generations < 1:
        raise ValueError(f"generations must be >= 1, got {generations}")


def _result(
    name: str, evaluator: _Evaluator, hof: tools.HallOfFame, logbook: tools.Logbook
) -> SearchResult:
    best = hof[0]
    return SearchResult(
        algorithm=name,
        best_params=evaluator.decode(best),
        best_objective=float(best.fitness.values[0]),
        logbook=[{k: float(v) for k, v in row.items()} for row in logbook],
        trials=evaluator.trials,
        hall_of_fame=[(evaluator.decode(i), float(i.fitness.values[0])) for i in hof],
    )


def genetic_algorithm(
    objective: Objective,
    bounds: Sequence[Bound],
    *,
    population: int = 30,
    generations: int = 10,
    cx_prob: float = 0.6,
    mut_prob: float = 0.3,
    mut_sigma: float = 0.15,
    tournament: int = 3,
    elite: int = 2,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> SearchResult:
    """Maximize ``objective`` with tournament selection, blend crossover, gaussian
    mutation and elitism (the ``elite`` best of the hall of fame survive unchanged).

    DEAP's operators draw from Python's global ``random``, which is seeded here.
    """
    _check(bounds, population, generations)
    random.seed(seed)
    evaluator = _Evaluator(objective, bounds)
    hof = tools.HallOfFame(max(elite, 5))
    stats, logbook = _stats(), tools.Logbook()
    pop = [_Individual([random.random() for _ in bounds]) for _ in range(population)]
    for ind in pop:
        ind.fitness.values = (evaluator(ind, 0),)
    hof.update(pop)
    _record(logbook, stats, pop, 0, evaluator)
    for gen in range(1, generations + 1):
        chosen = tools.selTournament(pop, population - elite, tournsize=tournament)
        offspring = [_Individual(list(ind)) for ind in chosen]
        for ind, src in zip(offspring, chosen, strict=True):
            ind.fitness.values = src.fitness.values
        for a, b in zip(offspring[::2], offspring[1::2], strict=False):
            if random.random() < cx_prob:
                tools.cxBlend(a, b, alpha=0.5)
                del a.fitness.values, b.fitness.values
        for ind in offspring:
            if random.random() < mut_prob:
                tools.mutGaussian(ind, mu=0.0, sigma=mut_sigma, indpb=1.0 / len(bounds) + 0.2)
                del ind.fitness.values
        for ind in offspring:
            ind[:] = [min(max(g, 0.0), 1.0) for g in ind]
            if not ind.fitness.valid:
                ind.fitness.values = (evaluator(ind, gen),)
        elites = [_Individual(list(ind)) for ind in hof[:elite]]
        for e, src in zip(elites, hof[:elite], strict=True):
            e.fitness.values = src.fitness.values
        pop = offspring + elites
        hof.update(pop)
        _record(logbook, stats, pop, gen, evaluator)
        if progress is not None:
            progress(gen, generations, float(hof[0].fitness.values[0]))
    return _result("genetic_algorithm", evaluator, hof, logbook)


def differential_evolution(
    objective: Objective,
    bounds: Sequence[Bound],
    *,
    population: int = 20,
    generations: int = 10,
    f: float = 0.6,
    cr: float = 0.8,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> SearchResult:
    """Maximize ``objective`` with DE/rand/1/bin: mutant = a + f (b - c), binomial
    crossover with rate ``cr`` (at least one gene from the mutant), greedy replacement."""
    _check(bounds, population, generations)
    if not 0 < f <= 2 or not 0 <= cr <= 1:
        raise ValueError(f"need 0 < f <= 2 and 0 <= cr <= 1, got f={f}, cr={cr}")
    rng = random.Random(seed)
    evaluator = _Evaluator(objective, bounds)
    hof = tools.HallOfFame(5)
    stats, logbook = _stats(), tools.Logbook()
    dim = len(bounds)
    pop = [_Individual([rng.random() for _ in range(dim)]) for _ in range(population)]
    for ind in pop:
        ind.fitness.values = (evaluator(ind, 0),)
    hof.update(pop)
    _record(logbook, stats, pop, 0, evaluator)
    for gen in range(1, generations + 1):
        for i in range(population):
            a, b, c = rng.sample([j for j in range(population) if j != i], 3)
            forced = rng.randrange(dim)
            trial = _Individual(
                [
                    min(max(pop[a][k] + f * (pop[b][k] - pop[c][k]), 0.0), 1.0)
                    if (k == forced or rng.random() < cr)
                    else pop[i][k]
                    for k in range(dim)
                ]
            )
            trial.fitness.values = (evaluator(trial, gen),)
            if trial.fitness.values[0] >= pop[i].fitness.values[0]:
                pop[i] = trial
        hof.update(pop)
        _record(logbook, stats, pop, gen, evaluator)
        if progress is not None:
            progress(gen, generations, float(hof[0].fitness.values[0]))
    return _result("differential_evolution", evaluator, hof, logbook)
