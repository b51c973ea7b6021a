"""The live loop's drift check: one (model, market) pair's recent feature rows scored
against the training distribution, as the loop does every ``drift_every`` bars.

    python bench/drift.py [--rows 500] [--checks 400]

Baseline, frozen as the loop did it before: the rows kept in a bounded deque, stacked
with ``np.vstack`` at each check, and ``psi`` column by column. Now: the rows kept in
one array (``RecentRows``: a check reads them as they lie) and ``drift_scores``, which
scores the columns with as many bins together. Same rows, same process (reference
BTC/USDT hourly candles, the default feature set, the profile from the first two
years); per-check medians and p99 in microseconds, the ratio of the medians, and
whether every score had the same bits.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque

import numpy as np

from botlib.data import load_ohlcv
from botlib.features import DEFAULT_SPEC, feature_matrix
from botlib.features.drift import drift_scores, profile_features, psi
from botlib.models.base import RecentRows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500, help="rows scored (drift_window)")
    parser.add_argument("--checks", type=int, default=400)
    args = parser.parse_args()
    matrix, names = feature_matrix(load_ohlcv("BTC/USDT", "1h"), DEFAULT_SPEC)
    matrix = matrix[np.isfinite(matrix).all(axis=1)]
    train = 2 * 365 * 24
    profile = profile_features(matrix[:train], names)
    live = matrix[train:]
    known = profile["features"]
    kept: deque[np.ndarray] = deque(maxlen=args.rows)
    recent = RecentRows(args.rows)
    base_us, new_us, same = [], [], 0
    for i, row in enumerate(live[: args.rows + args.checks]):
        kept.append(row)
        recent.append(row)
        if i < args.rows:
            continue
        t0 = time.perf_counter()
        stacked = np.vstack(kept)
        old = {n: psi(known[n], stacked[:, j]) for j, n in enumerate(names) if n in known}
        t1 = time.perf_counter()
        new = drift_scores(profile, recent.matrix(), names)
        t2 = time.perf_counter()
        base_us.append((t1 - t0) * 1e6)
        new_us.append((t2 - t1) * 1e6)
        same += list(old) == list(new) and all(
            np.array_equal(old[n], new[n], equal_nan=True) for n in old
        )
    print(f"{len(new_us)} checks of {args.rows} rows x {len(names)} features "
          f"({len(live)} unseen hourly bars)")  # fmt: skip
    for name, xs in (("deque + vstack + psi per column (baseline)", base_us),
                     ("RecentRows + drift_scores", new_us)):  # fmt: skip
        ratio = statistics.median(base_us) / statistics.median(xs)
        print(f"  {name:44s} p50 {statistics.median(xs):8.1f} us  "
              f"p99 {float(np.percentile(xs, 99)):8.1f} us  {ratio:5.2f}x")  # fmt: skip
    print(f"  scores with the same bits: {same} of {len(new_us)} checks")


if __name__ == "__main__":
    main()
