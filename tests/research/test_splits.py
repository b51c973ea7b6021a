"""Walk-forward and purged K-fold splits never let training see what is tested."""

from __future__ import annotations

import numpy as np
import pytest

from botlib.errors import ConfigError
from botlib.research.splits import purged_kfold, walk_forward_splits


def test_walk_forward_rolling_and_expanding() -> None:
    folds = walk_forward_splits(1000, train=300, test=100, gap=5)
    assert len(folds) == 6
    for f in folds:
        assert len(f.train) == 300 and len(f.test) == 100
        assert f.train[-1] + 5 < f.test[0]  # the gap is left out
    tests = np.concatenate([f.test for f in folds])
    assert len(np.unique(tests)) == len(tests)  # test windows never overlap
    grown = walk_forward_splits(1000, train=300, test=100, expanding=True)
    assert all(f.train[0] == 0 for f in grown)
    assert [len(f.train) for f in grown] == [300 + 100 * i for i in range(len(grown))]
    with pytest.raises(ConfigError, match="cannot hold one fold"):
        walk_forward_splits(100, train=90, test=20)
    with pytest.raises(ConfigError):
        walk_forward_splits(100, train=0, test=20)


def test_purged_kfold_purges_and_embargoes() -> None:
    n, horizon, embargo = 1000, 10, 20
    folds = purged_kfold(n, k=5, horizon=horizon, embargo=embargo)
    covered = np.concatenate([f.test for f in folds])
    assert sorted(covered.tolist()) == list(range(n))  # each bar tested exactly once
    for f in folds:
        a, b = f.test[0], f.test[-1] + 1
        train = f.train
        # no label (i, i + horizon] reaches into the test fold; nothing just after it
        assert not ((train + horizon >= a) & (train < b + embargo)).any()
        assert len(train) > 0
    middle = folds[2]
    assert middle.train.max() > middle.test.max() and middle.train.min() < middle.test.min()
    with pytest.raises(ConfigError):
        purged_kfold(10, k=1)
