"""What a command over Redis may ask of a model: an allow-list of hyperparameters per
algorithm, each with bounds.

The bridge runs what anyone who can publish a command asks for, so a command may only
set the hyperparameters below, within these bounds (applied after the backend's field
names are mapped; a notebook or the CLI is not limited by them). Not accepted over
Redis at all: ``compute`` (a Dask scheduler address — its protocol is pickle; the
bridge's jobs run serially), ``best_params`` / ``fixed`` (internal), and ensemble
``members`` as paths (members are named by registry version, ``models:/NAME/VERSION``,
and loaded like any served model: verified against their promoted digest).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["BOUNDS", "check_hyperparameters"]

Bound = tuple[str, float | None, float | None]  # (kind, low, high)

_NN: dict[str, Bound] = {
    "seq_len": ("int", 2, 512),
    "units": ("int", 1, 512),
    "layers": ("int", 1, 4),
    "dropout": ("float", 0.0, 0.9),
    "learning_rate": ("float", 1e-6, 1.0),
    "epochs": ("int", 1, 500),
    "batch_size": ("int", 1, 4096),
    "patience": ("int", 1, 100),
    "horizon": ("int", 1, 168),
    "feature_set": ("features", None, None),
    "jit_compile": ("bool", None, None),
    "seed": ("int", 0, 2**31 - 1),
}
_RL: dict[str, Bound] = {
    "timesteps": ("int", 1, 2_000_000),
    "window": ("int", 2, 512),
    "learning_rate": ("float", 1e-6, 1.0),
    "hidden": ("int", 1, 1024),
    "fee": ("float", 0.0, 0.05),
    "slippage": ("float", 0.0, 0.05),
    "allow_short": ("bool", None, None),
    "reward": ("name", None, None),
    "episode_length": ("int", 16, 100_000),
    "feature_set": ("features", None, None),
    "seed": ("int", 0, 2**31 - 1),
}
_EVOLVE: dict[str, Bound] = {
    "strategy": ("name", None, None),
    "objective": ("name", None, None),
    "space": ("space", None, None),
    "population": ("int", 4, 500),
    "generations": ("int", 1, 200),
    "min_trades": ("int", 0, 10_000),
    "fee": ("float", 0.0, 0.05),
    "slippage": ("float", 0.0, 0.05),
    "seed": ("int", 0, 2**31 - 1),
    "recheck": ("int", 1, 20),
}
#: algorithm -> hyperparameter -> (kind, low, high)
BOUNDS: dict[str, dict[str, Bound]] = {
    "lstm": _NN,
    "gru": _NN,
    "transformer": {**_NN, "heads": ("int", 1, 16), "threshold": ("float", 0.0, 0.5)},
    "dqn": _RL,
    "ppo": _RL,
    "ga_rules": _EVOLVE,
    "de_rules": _EVOLVE,
    "ensemble": {
        "members": ("members", None, None),
        "weighting": ("name", None, None),
        "weights": ("weights", None, None),
    },
}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MEMBER = re.compile(r"models:/[A-Za-z0-9_.-]{1,200}/[0-9]{1,9}")
_REFUSED = {
    "compute": "compute is not accepted over Redis (a Dask address speaks pickle); "
    "the bridge's jobs run serially",
    "best_params": "best_params is the result of a search, not an input",
    "fixed": "fixed is not accepted over Redis",
}


def _number(name: str, value: Any, kind: str, low: float | None, high: float | None) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name}: expected a number, got {value!r}"
    if not math.isfinite(value):
        return f"{name}: expected a finite number"
    if kind == "int" and value != int(value):
        return f"{name}: expected a whole number, got {value!r}"
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{name}={value} outside [{low:g}, {high:g}]"
    return ""


def _problem(name: str, value: Any, bound: Bound) -> str:
    kind, low, high = bound
    if kind in ("int", "float"):
        return _number(name, value, kind, low, high)
    if kind == "bool":
        return "" if isinstance(value, bool) else f"{name}: expected true or false"
    if kind == "name":
        ok = isinstance(value, str) and _NAME.fullmatch(value) is not None
        return "" if ok else f"{name}: expected a name, got {str(value)[:80]!r}"
    if kind == "features":
        if isinstance(value, str):
            return "" if _NAME.fullmatch(value) else f"{name}: expected a feature set name"
        ok = isinstance(value, list) and 0 < len(value) <= 40
        ok = ok and all(isinstance(v, str) and _NAME.fullmatch(v) is not None for v in value)
        return "" if ok else f"{name}: expected a feature set name or 1-40 feature names"
    if kind == "space":
        if not isinstance(value, dict) or len(value) > 10:
            return f"{name}: expected at most 10 {{parameter: [low, high]}}"
        for key, pair in value.items():
            good = isinstance(pair, list) and len(pair) == 2
            good = good and all(not _number(key, v, "float", None, None) for v in pair)
            if not (good and _NAME.fullmatch(str(key))):
                return f"{name}.{key}: expected [low, high]"
        return ""
    if kind == "members":
        ok = isinstance(value, list) and 1 <= len(value) <= 10
        ok = ok and all(isinstance(v, str) and _MEMBER.fullmatch(v) is not None for v in value)
        return (
            ""
            if ok
            else (
                f"{name}: expected 1-10 registry versions models:/NAME/VERSION (paths are not "
                "accepted over Redis)"
            )
        )
    if kind == "weights":
        ok = isinstance(value, list) and len(value) <= 10
        ok = ok and all(not _number(name, v, "float", 0.0, 1e6) for v in value)
        return "" if ok or value is None else f"{name}: expected up to 10 numbers >= 0"
    raise AssertionError(kind)


def check_hyperparameters(algorithm: str, params: dict[str, Any]) -> list[str]:
    """What is wrong with ``params`` for ``algorithm`` over Redis (empty: nothing)."""
    allowed = BOUNDS.get(algorithm)
    if allowed is None:
        return [f"{algorithm} cannot be trained over Redis"]
    problems = []
    for name, value in params.items():
        if name in _REFUSED:
            problems.append(_REFUSED[name])
        elif name not in allowed:
            problems.append(
                f"{name} is not a hyperparameter {algorithm} accepts over Redis; "
                f"accepted: {', '.join(allowed)}"
            )
        else:
            problem = _problem(name, value, allowed[name])
            if problem:
                problems.append(problem)
    return problems
