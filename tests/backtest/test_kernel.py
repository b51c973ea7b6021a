"""The compiled backtest kernel (issue 17 §3): the optimizers' fast path gives the very
figures of the pandas path it replaces, and the kernel's metrics are compute_metrics'."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from botlib.backtest import compute_metrics, get_strategy
from botlib.backtest.kernel import metrics_from_arrays, simulate_arrays
from botlib.models.evolve.objectives import RuleObjective


@pytest.fixture(scope="module")
def two_years(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return btc_1h.loc["2023-01-01":"2024-12-31"]


def _same(a: dict[str, float] | None, b: dict[str, float] | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert a.keys() == b.keys()
    for key, value in b.items():
        if math.isnan(value):
            assert math.isnan(a[key]), key
        else:
            assert a[key] == value, (key, a[key], value)  # bit for bit


@pytest.mark.parametrize("name", ["sma_cross", "rsi_reversion"])
def test_compiled_objective_equals_the_pandas_path(two_years: pd.DataFrame, name: str) -> None:
    strategy, rng = get_strategy(name), random.Random(7)
    fast = RuleObjective(strategy, two_years, timeframe="1h")
    slow = RuleObjective(strategy, two_years, timeframe="1h")
    slow._compiled = lambda params: None  # type: ignore[method-assign]
    compared = 0
    for _ in range(25):
        if name == "sma_cross":
            params = {"fast": rng.randint(2, 150), "slow": rng.randint(5, 400),
                      "allow_short": rng.random() < 0.4}  # fmt: skip
        else:
            params = {"window": rng.randint(2, 60), "lower": rng.uniform(5, 49),
                      "upper": rng.uniform(51, 95)}  # fmt: skip
        _same(fast.metrics(params), slow.metrics(params))
        compared += fast.metrics(params) is not None
        returns_fast, returns_slow = fast.returns(params), slow.returns(params)
        if returns_slow is not None:
            assert np.array_equal(returns_fast, returns_slow)
    assert compared >= 15
    # stops are asked for: the pandas path (ATR levels) is taken, and agrees with itself
    with_stops = {"stop_atr": 2.0} if name == "rsi_reversion" else {"fast": 10, "stop_atr": 2.0}
    assert fast._compiled(with_stops) is None


def test_kernel_metrics_are_compute_metrics(two_years: pd.DataFrame) -> None:
    c = two_years
    rng = np.random.default_rng(3)
    target = np.repeat(rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=len(c) // 24 + 1), 24)[: len(c)]
    close = c["close"].to_numpy()
    stops = np.where(target > 0, close * 0.97, np.where(target < 0, close * 1.03, np.nan))
    takes = np.where(target > 0, close * 1.05, np.where(target < 0, close * 0.95, np.nan))
    arrays = [np.ascontiguousarray(c[k].to_numpy(dtype="float64"))
              for k in ("open", "high", "low", "close")]  # fmt: skip
    equity, units, bar, size, price, comm, reason = simulate_arrays(
        *arrays, target, stops, takes, 10_000.0, 0.001, 0.0005
    )
    assert {0, 1, 2} <= set(reason.tolist())  # signals, stops and take profits all fired
    fills = pd.DataFrame({"time": c.index[bar], "size": size, "price": price,
                          "commission": comm})  # fmt: skip
    expected = compute_metrics(
        pd.Series(equity, index=c.index), timeframe="1h", initial_cash=10_000.0,
        units=pd.Series(units), fills=fills,
    )  # fmt: skip
    got = metrics_from_arrays(equity, per_year=365 * 24, initial_cash=10_000.0, units=units,
                              size=size, price=price, comm=comm)  # fmt: skip
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key


def test_the_book_continued_in_chunks_is_the_book_in_one_pass(two_years: pd.DataFrame) -> None:
    """``simulate_from`` (the paper accounts' book) over bars split into random chunks
    gives the bits of one pass over all of them: equity, units and every fill."""
    from botlib.backtest.kernel import fresh_state, simulate_from

    bars = two_years.iloc[:3_000]
    o, h, lo, c = (np.ascontiguousarray(bars[k].to_numpy("float64"))
                   for k in ("open", "high", "low", "close"))  # fmt: skip
    rng = np.random.default_rng(3)
    # targets that change often, shorts included, stops and takes on most entries
    target = np.repeat(rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=300), 10)
    sl = np.where(target > 0, c * 0.98, np.where(target < 0, c * 1.02, np.nan))
    tp = np.where(target > 0, c * 1.03, np.where(target < 0, c * 0.97, np.nan))
    sl[rng.random(len(sl)) < 0.2] = np.nan
    whole = simulate_arrays(o, h, lo, c, target, sl, tp, 10_000.0, 0.001, 0.0005)
    assert len(whole[2]) > 100 and {1, 2} <= set(whole[6].tolist())  # stops and takes hit
    cuts = np.sort(rng.choice(np.arange(1, len(c)), size=60, replace=False))
    state = fresh_state(10_000.0)
    parts: list[tuple[np.ndarray, ...]] = []
    for a, b in zip([0, *cuts.tolist(), len(c) - 1], [*cuts.tolist(), len(c) - 1, len(c)],
                    strict=True):  # fmt: skip
        *out, state = simulate_from(o[a:b], h[a:b], lo[a:b], c[a:b], target[a:b], sl[a:b],
                                    tp[a:b], state, 0.001, 0.0005)  # fmt: skip
        out[2] = out[2] + a  # fill bars, relative to the chunk
        parts.append(tuple(out))
    for i in range(7):
        assert np.array_equal(np.concatenate([p[i] for p in parts]), whole[i]), i
