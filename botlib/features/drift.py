"""Feature drift (issue 18 §3): how far live inputs have moved from the training ones.

At training, ``profile_features`` records each input feature's distribution on the
training window: decile edges and the share of training rows in each bin. Live, the same
bins over a rolling window of feature rows give each feature's **population stability
index** (PSI, ``sum((live - train) * ln(live / train))`` over the bins, shares floored at
``1e-4`` so an empty bin is finite). A PSI under 0.1 is usually read as no shift, 0.1 to
0.25 as a moderate one and above 0.25 (``DRIFT_THRESHOLD``) as a distribution that moved.

Profiles are plain JSON, saved with the model (``botlib_model.json``); a model trained
before profiles were recorded has none, and drift is then "unknown", never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DRIFT_THRESHOLD", "drift_scores", "profile_features", "psi"]

#: PSI above which a feature's live distribution is said to have moved
DRIFT_THRESHOLD = 0.25
_FLOOR = 1e-4


def profile_features(matrix: np.ndarray, names: Sequence[str], *, bins: int = 10) -> dict[str, Any]:
    """The per-feature distribution of ``matrix`` (rows = training bars; rows holding
    NaN, the warm-up, are left out): ``bins`` equal-count bins per feature."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    rows = matrix[np.isfinite(matrix).all(axis=1)]
    features: dict[str, Any] = {}
    for j, name in enumerate(names):
        values = rows[:, j]
        if len(values) == 0:
            continue
        inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        shares = _shares(values, inner)
        features[str(name)] = {"edges": inner.tolist(), "shares": shares.tolist()}
    return {"rows": len(rows), "bins": bins, "features": features}


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of ``values`` in each bin cut at ``edges`` (len(edges) + 1 bins)."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.asarray(counts / max(len(values), 1), dtype="float64")


def psi(feature: Mapping[str, Any], values: np.ndarray) -> float:
    """The population stability index of ``values`` against a feature's profile."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan
    edges = np.asarray(feature["edges"], dtype="float64")
    train = np.maximum(np.asarray(feature["shares"], dtype="float64"), _FLOOR)
    live = np.maximum(_shares(values, edges), _FLOOR)
    return float(np.sum((live - train) * np.log(live / train)))


def drift_scores(
    profile: Mapping[str, Any], matrix: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """Each profiled feature's PSI over the rows of ``matrix`` (columns ``names``): the
    same values as ``psi`` per column, the columns with as many bins and no missing
    value scored together."""
    known = profile.get("features", {})
    matrix = np.asarray(matrix, dtype="float64")
    n = len(matrix)
    columns = np.ascontiguousarray(matrix.T)  # one feature's rows side by side
    whole = np.isfinite(columns).all(axis=1) if n else np.zeros(len(columns), dtype=bool)
    plan = _plan(profile, names)
    out: dict[str, float] = {}
    for name, j in plan.order:
        # rows to leave out (or none at all): that column on its own
        out[name] = math.nan if whole[j] else psi(known[name], columns[j])
    for group in plan.groups:
        if not whole[group.columns].all():
            for name, j in zip(group.names, group.columns, strict=True):
                if whole[j]:
                    out[name] = psi(known[name], columns[j])
            continue
        at = np.empty((len(group.names), n), dtype="int64")
        for g, (j, edges) in enumerate(zip(group.columns, group.edges, strict=True)):
            at[g] = edges.searchsorted(columns[j], side="right")
        at += group.offsets
        counts = np.bincount(at.ravel(), minlength=group.train.size).reshape(group.train.shape)
        live = np.maximum(np.asarray(counts / n, dtype="float64"), _FLOOR)
        # a row's sum over its bins is NumPy's sum of that row alone (the same bits)
        values = np.sum((live - group.train) * np.log(live / group.train), axis=1)
        for name, value in zip(group.names, values.tolist(), strict=True):
            out[name] = value
    return out


@dataclass(frozen=True)
class _Group:
    """Profiled columns with as many bins: their positions, names, edges, floored
    training shares (one row each) and each row's offset into a joint ``bincount``."""

    columns: np.ndarray
    names: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    train: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class _Plan:
    order: tuple[tuple[str, int], ...]  # the profiled columns, in ``names``' order
    groups: tuple[_Group, ...]


def _plan(profile: Mapping[str, Any], names: Sequence[str]) -> _Plan:
    """How ``drift_scores`` scores ``names`` against ``profile``: made once per profile
    and column list (the live loop scores the same ones every few bars)."""
    key = (id(profile), tuple(names))
    held = _PLANS.get(key)
    if held is not None and held[0] is profile:
        return held[1]
    known = profile.get("features", {})
    order = tuple((str(n), j) for j, n in enumerate(names) if n in known)
    by_size: dict[int, list[tuple[str, int, np.ndarray, np.ndarray]]] = {}
    for name, j in order:
        edges = np.asarray(known[name]["edges"], dtype="float64")
        train = np.maximum(np.asarray(known[name]["shares"], dtype="float64"), _FLOOR)
        by_size.setdefault(len(edges), []).append((name, j, edges, train))
    groups = tuple(
        _Group(
            columns=np.array([j for _, j, _, _ in group], dtype="intp"),
            names=tuple(name for name, *_ in group),
            edges=tuple(edges for _, _, edges, _ in group),
            train=np.vstack([train for *_, train in group]),
            offsets=(np.arange(len(group)) * (size + 1))[:, None],
        )
        for size, group in by_size.items()
    )
    plan = _Plan(order, groups)
    if len(_PLANS) >= 1024:
        _PLANS.clear()
    _PLANS[key] = (profile, plan)  # holds the profile: its id is not reused meanwhile
    return plan


_PLANS: dict[tuple[int, tuple[str, ...]], tuple[Mapping[str, Any], _Plan]] = {}
