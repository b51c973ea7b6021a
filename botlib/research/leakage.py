"""Look-ahead leak detection: recompute on truncated history and compare.

A feature (or a model's prediction) at bar ``t`` may depend only on bars up to ``t``.
``check_leakage`` recomputes the function on history cut at several points and compares
every value it can see with the full-history value at the same timestamp: any
difference is a leak (the full-history value knew something from after the cut),
reported with the column, the first timestamp and the size. It catches ``shift(-1)``,
centred windows, scalers fitted on the whole data set and models that read the next
bar.

A second check trims history from the *start* and compares values well after the
warm-up: values that still differ depend on how much warm-up history was given
(recursive indicators such as EMA, RSI and ATR do, slightly). That is reported, with
its size, but is not a leak.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from botlib.errors import ConfigError

__all__ = ["Finding", "LeakageReport", "check_leakage", "load_function"]

Computation = Callable[[pd.DataFrame], pd.DataFrame | pd.Series | np.ndarray]


@dataclass(frozen=True)
class Finding:
    kind: str  # "look-ahead" | "warm-up"
    column: str
    timestamp: pd.Timestamp  # the first timestamp that differs
    difference: float  # the largest absolute difference (inf: NaN on one side only)
    cut: str  # where history was cut (or trimmed)


@dataclass
class LeakageReport:
    name: str
    columns: list[str]
    cuts: int
    leaks: list[Finding] = field(default_factory=list)
    warmup: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.leaks

    def lines(self) -> list[str]:
        head = f"{self.name}: {len(self.columns)} column(s), {self.cuts} cut points: " + (
            "no look-ahead" if self.ok else f"{len(self.leaks)} LEAK(S)"
        )
        out = [head]
        for f in self.leaks:
            out.append(f"  LEAK {f.column} at {f.timestamp} (history cut {f.cut}): {_size(f)}")
        for f in self.warmup:
            out.append(
                f"  warm-up dependent: {f.column} from {f.timestamp} (history trimmed "
                f"{f.cut}): {_size(f)}"
            )
        return out


def _size(f: Finding) -> str:
    if np.isinf(f.difference):
        return "a value on one side, NaN on the other"
    return f"differs by up to {f.difference:.3g}"


def _as_frame(values: object, index: pd.Index, name: str) -> pd.DataFrame:
    if isinstance(values, pd.Series):
        return values.to_frame(name=str(values.name or name))
    if isinstance(values, pd.DataFrame):
        return values
    array = np.asarray(values, dtype="float64")
    if array.ndim == 1:
        array = array[:, None]
    if len(array) != len(index):
        raise ConfigError(f"{name}: returned {len(array)} rows for {len(index)} candles")
    return pd.DataFrame(array, index=index, columns=[f"{name}[{i}]" for i in range(array.shape[1])])


def _compare(
    full: pd.DataFrame, part: pd.DataFrame, since: pd.Timestamp, tol: float, kind: str, cut: str
) -> list[Finding]:
    common = part.index[part.index >= since].intersection(full.index)
    out = []
    for col in full.columns:
        if col not in part.columns:
            continue
        a = full.loc[common, col].to_numpy(dtype="float64")
        b = part.loc[common, col].to_numpy(dtype="float64")
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        with np.errstate(invalid="ignore"):
            diff = np.where(nan_a | nan_b, np.where(nan_a == nan_b, 0.0, np.inf), np.abs(a - b))
            bad = diff > tol * (1.0 + np.abs(np.nan_to_num(a)))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            out.append(Finding(kind, str(col), common[first], float(diff[bad].max()), cut))
    return out


def check_leakage(
    fn: Computation,
    candles: pd.DataFrame,
    *,
    name: str = "features",
    cuts: int = 5,
    min_history: int = 50,
    warmup: int | None = None,
    tol: float = 1e-6,
) -> LeakageReport:
    """Compare ``fn(candles)`` with ``fn`` on history cut at ``cuts`` points (between
    ``min_history`` bars and the end), and on history trimmed at the start (values
    compared after ``warmup`` bars, default a third of the data). ``tol`` is relative
    (plus the same absolute), above float noise (float32 networks included)."""
    if len(candles) < 2 * min_history:
        raise ConfigError(f"need at least {2 * min_history} candles, got {len(candles)}")
    full = _as_frame(fn(candles), candles.index, name)
    report = LeakageReport(name, [str(c) for c in full.columns], cuts)
    positions = np.unique(np.linspace(min_history, len(candles) - 1, cuts).astype(int))
    for pos in positions:
        part = _as_frame(fn(candles.iloc[:pos]), candles.index[:pos], name)
        cut = f"after {candles.index[pos - 1]}"
        for finding in _compare(full, part, candles.index[0], tol, "look-ahead", cut):
            if finding.column not in {f.column for f in report.leaks}:
                report.leaks.append(finding)
    # warm-up dependence: start later, compare after a generous warm-up
    allowance = warmup if warmup is not None else len(candles) // 3
    trim = max(1, min(allowance // 2, len(candles) // 4))
    if len(candles) - trim > allowance + 10:
        later = _as_frame(fn(candles.iloc[trim:]), candles.index[trim:], name)
        since = candles.index[min(trim + allowance, len(candles) - 1)]
        report.warmup = _compare(
            full, later, since, tol, "warm-up", f"by {trim} bars, compared after {allowance}"
        )
    return report


def load_function(ref: str) -> Computation:
    """``module:function`` importable from the current directory or the user's path."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"--features {ref!r}: expected module:function, e.g. myfeatures:build")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--features {ref!r}: {exc}") from None
    if not callable(found):
        raise ConfigError(f"--features {ref!r} is not a function")
    return found  # type: ignore[no-any-return]
