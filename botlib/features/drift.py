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
    """Each profiled feature's PSI over the rows of ``matrix`` (columns ``names``)."""
    known = profile.get("features", {})
    return {
        str(name): psi(known[name], matrix[:, j]) for j, name in enumerate(names) if name in known
    }
