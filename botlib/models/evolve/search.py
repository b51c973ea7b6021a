"""Evolutionary search over bounded, typed parameters: a genetic algorithm and
differential evolution, both built on DEAP (fitness, hall of fame, statistics, logbook,
and DEAP's variation operators run on a private random generator).

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

from botlib.compute import Mapper, SerialMapper

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
    """Decodes genomes, answers repeats from its cache, and evaluates the new ones of a
    generation in one batch through ``mapper`` (serial, processes or Dask)."""

    def __init__(
        self,
        objective: Objective,
        bounds: Sequence[Bound],
        mapper: Mapper,
        ordered: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.objective, self.bounds, self.mapper = objective, list(bounds), mapper
        self.ordered = list(ordered)
        self.cache: dict[tuple[Any, ...], float] = {}
        self.trials: list[Trial] = []

    def decode(self, genes: Sequence[float]) -> dict[str, Any]:
        params = {b.name: b.decode(g) for b, g in zip(self.bounds, genes, strict=True)}
        return repair(params, self.bounds, self.ordered)

    def batch(self, genomes: Sequence[Sequence[float]], generation: int) -> list[float]:
        """Objective values of ``genomes``, in order; each distinct parameter set is
        evaluated once, and the trials are logged as a serial run would log them."""
        params = [self.decode(g) for g in genomes]
        keys = [tuple(p.values()) for p in params]
        todo: dict[tuple[Any, ...], dict[str, Any]] = {}
        for key, p in zip(keys, params, strict=True):
            if key not in self.cache and key not in todo:
                todo[key] = p
        values = self.mapper.map(self.objective, list(todo.values()))
        fresh = set()
        for key, value in zip(todo, values, strict=True):
            value = float(value)
            self.cache[key] = value if math.isfinite(value) else PENALTY
            fresh.add(key)
        out = []
        for key, p in zip(keys, params, strict=True):
            first = key in fresh
            fresh.discard(key)
            self.trials.append(Trial(generation, p, self.cache[key], not first))
            out.append(self.cache[key])
        return out

    def assign(self, individuals: Sequence[_Individual], generation: int) -> None:
        for ind, value in zip(individuals, self.batch(individuals, generation), strict=True):
            ind.fitness.values = (value,)


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


def _gap(bound: Bound) -> float:
    """The smallest step between two values of ``bound`` (1 for whole numbers)."""
    return 1.0 if bound.kind is int else max((bound.high - bound.low) * 1e-6, 1e-9)


def feasible(bounds: Sequence[Bound], ordered: Sequence[tuple[str, str]]) -> list[str]:
    """Why no parameter set within ``bounds`` can satisfy every ``a < b`` of ``ordered``
    (empty when some can)."""
    by = {b.name: b for b in bounds}
    out = []
    for a, b in ordered:
        if a in by and b in by and not by[a].low + _gap(by[b]) <= by[b].high:
            out.append(f"{a} < {b} needs {a} >= {by[a].low:g} below {b} <= {by[b].high:g}")
    return out


def repair(
    params: dict[str, Any], bounds: Sequence[Bound], ordered: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """``params`` with every pair of ``ordered`` put in order, within ``bounds``: swapped
    when both values fit the other's range, else moved apart as little as the ranges
    allow (the bounds must be ``feasible``)."""
    by = {b.name: b for b in bounds}
    for a, b in ordered:
        if a not in by or b not in by or params[a] < params[b]:
            continue
        ba, bb = by[a], by[b]
        x, y = params[a], params[b]
        if x != y and ba.low <= y <= ba.high and bb.low <= x <= bb.high:
            params[a], params[b] = y, x
            continue
        step = _gap(bb)
        new_b = min(bb.high, max(x + step, bb.low))
        new_a = x if x < new_b else max(ba.low, new_b - step)
        params[a], params[b] = (
            (round(new_a), round(new_b)) if ba.kind is int and bb.kind is int else (new_a, new_b)
        )
    return params


def _check(
    bounds: Sequence[Bound],
    population: int,
    generations: int,
    ordered: Sequence[tuple[str, str]] = (),
) -> None:
    impossible = feasible(bounds, ordered)
    if impossible:
        raise ValueError("no valid parameter set within the bounds: " + "; ".join(impossible))
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


def _tournament(
    rng: random.Random, pop: Sequence[_Individual], k: int, size: int
) -> list[_Individual]:
    """DEAP's tournament selection (``tools.selTournament``) on a private generator."""
    return [
        max((rng.choice(pop) for _ in range(size)), key=lambda ind: ind.fitness.values[0])
        for _ in range(k)
    ]


def _blend(rng: random.Random, a: _Individual, b: _Individual, alpha: float) -> None:
    """DEAP's blend crossover (``tools.cxBlend``), in place."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        gamma = (1.0 + 2.0 * alpha) * rng.random() - alpha
        a[i], b[i] = (1.0 - gamma) * x + gamma * y, gamma * x + (1.0 - gamma) * y


def _gaussian(rng: random.Random, ind: _Individual, sigma: float, indpb: float) -> None:
    """DEAP's gaussian mutation (``tools.mutGaussian``, mean 0), in place."""
    for i in range(len(ind)):
        if rng.random() < indpb:
            ind[i] += rng.gauss(0.0, sigma)


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
    mapper: Mapper | None = None,
    ordered: Sequence[tuple[str, str]] = (),
) -> SearchResult:
    """Maximize ``objective`` with tournament selection, blend crossover, gaussian
    mutation and elitism (the ``elite`` best of the hall of fame survive unchanged).

    The operators are DEAP's (tournament, blend, gaussian), drawing from a private
    generator seeded with ``seed`` — never Python's global one, which other code in the
    process (a Dask scheduler, say) may draw from too. Each generation's new individuals
    are evaluated in one batch through ``mapper``.
    """
    _check(bounds, population, generations, ordered)
    rng = random.Random(seed)
    evaluator = _Evaluator(objective, bounds, mapper or SerialMapper(), ordered)
    hof = tools.HallOfFame(max(elite, 5))
    stats, logbook = _stats(), tools.Logbook()
    pop = [_Individual([rng.random() for _ in bounds]) for _ in range(population)]
    evaluator.assign(pop, 0)
    hof.update(pop)
    _record(logbook, stats, pop, 0, evaluator)
    for gen in range(1, generations + 1):
        chosen = _tournament(rng, pop, population - elite, tournament)
        offspring = [_Individual(list(ind)) for ind in chosen]
        for ind, src in zip(offspring, chosen, strict=True):
            ind.fitness.values = src.fitness.values
        for a, b in zip(offspring[::2], offspring[1::2], strict=False):
            if rng.random() < cx_prob:
                _blend(rng, a, b, alpha=0.5)
                del a.fitness.values, b.fitness.values
        for ind in offspring:
            if rng.random() < mut_prob:
                _gaussian(rng, ind, mut_sigma, 1.0 / len(bounds) + 0.2)
                del ind.fitness.values
        for ind in offspring:
            ind[:] = [min(max(g, 0.0), 1.0) for g in ind]
        evaluator.assign([ind for ind in offspring if not ind.fitness.valid], gen)
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
    mapper: Mapper | None = None,
    ordered: Sequence[tuple[str, str]] = (),
) -> SearchResult:
    """Maximize ``objective`` with DE/rand/1/bin: mutant = a + f (b - c), binomial
    crossover with rate ``cr`` (at least one gene from the mutant), greedy replacement.
    Replacement is deferred to the end of each generation (every trial is built from the
    generation's population), so a generation is one batch for ``mapper``."""
    _check(bounds, population, generations, ordered)
    if not 0 < f <= 2 or not 0 <= cr <= 1:
        raise ValueError(f"need 0 < f <= 2 and 0 <= cr <= 1, got f={f}, cr={cr}")
    rng = random.Random(seed)
    evaluator = _Evaluator(objective, bounds, mapper or SerialMapper(), ordered)
    hof = tools.HallOfFame(5)
    stats, logbook = _stats(), tools.Logbook()
    dim = len(bounds)
    pop = [_Individual([rng.random() for _ in range(dim)]) for _ in range(population)]
    evaluator.assign(pop, 0)
    hof.update(pop)
    _record(logbook, stats, pop, 0, evaluator)
    for gen in range(1, generations + 1):
        trials = []
        for i in range(population):
            a, b, c = rng.sample([j for j in range(population) if j != i], 3)
            forced = rng.randrange(dim)
            trials.append(
                _Individual(
                    [
                        min(max(pop[a][k] + f * (pop[b][k] - pop[c][k]), 0.0), 1.0)
                        if (k == forced or rng.random() < cr)
                        else pop[i][k]
                        for k in range(dim)
                    ]
                )
            )
        evaluator.assign(trials, gen)
        pop = [
            trial if trial.fitness.values[0] >= old.fitness.values[0] else old
            for trial, old in zip(trials, pop, strict=True)
        ]
        hof.update(pop)
        _record(logbook, stats, pop, gen, evaluator)
        if progress is not None:
            progress(gen, generations, float(hof[0].fitness.values[0]))
    return _result("differential_evolution", evaluator, hof, logbook)
