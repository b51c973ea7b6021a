"""Time-series splits that never train on the future of what they test.

* ``walk_forward_splits`` — train on a window, test on the bars that follow, move on by
  ``step``; the training window slides (``expanding=False``) or grows from the first bar.
* ``purged_kfold`` — K contiguous test folds; training samples whose label (``horizon``
  bars ahead) reaches into the test fold are purged, and the ``embargo`` bars after the
  test fold are left out, so serial correlation cannot leak the test into training
  (López de Prado, *Advances in Financial Machine Learning*, ch. 7).

Folds hold integer positions (``candles.iloc[fold.train]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from botlib.errors import ConfigError

__all__ = ["Fold", "purged_kfold", "walk_forward_splits"]


@dataclass(frozen=True)
class Fold:
    number: int
    train: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        def span(a: np.ndarray) -> str:
            return f"[{a[0]}..{a[-1]}] ({len(a)})" if len(a) else "[]"

        return f"Fold({self.number}: train {span(self.train)}, test {span(self.test)})"


def walk_forward_splits(
    n: int,
    *,
    train: int,
    test: int,
    step: int | None = None,
    expanding: bool = False,
    gap: int = 0,
) -> list[Fold]:
    """Folds over ``n`` bars: ``train`` bars, then ``gap`` unused bars (e.g. the label
    horizon), then ``test`` bars; the next fold starts ``step`` (default ``test``) bars
    later, so test windows tile the data without overlapping."""
    step = test if step is None else step
    if min(train, test, step) < 1 or gap < 0:
        raise ConfigError(
            f"need train, test, step >= 1 and gap >= 0; got {train}, {test}, {step}, {gap}"
        )
    if train + gap + test > n:
        raise ConfigError(f"{n} bars cannot hold one fold of {train} + {gap} + {test} bars")
    folds: list[Fold] = []
    start = 0
    while True:
        test_start = start + train + gap
        if test_start + test > n:
            break
        first = 0 if expanding else start
        folds.append(
            Fold(
                len(folds),
                np.arange(first, start + train),
                np.arange(test_start, test_start + test),
            )
        )
        start += step
    return folds


def purged_kfold(n: int, *, k: int = 5, horizon: int = 1, embargo: int = 0) -> list[Fold]:
    """K contiguous test folds over ``n`` bars; each training set is every other bar
    minus the purge (labels ``horizon`` bars long reaching into the test fold) and the
    ``embargo`` bars after it."""
    if k < 2 or k > n:
        raise ConfigError(f"k must be in [2, {n}], got {k}")
    if horizon < 0 or embargo < 0:
        raise ConfigError("horizon and embargo must be >= 0")
    bounds = np.linspace(0, n, k + 1).astype(int)
    folds: list[Fold] = []
    positions = np.arange(n)
    for i in range(k):
        a, b = int(bounds[i]), int(bounds[i + 1])
        keep = (positions < a - horizon) | (positions >= b + embargo)
        folds.append(Fold(i, positions[keep], positions[a:b]))
    return folds
