"""The optimizers' fast evaluator against backtrader over random parameter sets."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from botlib.backtest import get_strategy, run_backtest
from botlib.features import indicators as ind
from botlib.models.evolve.objectives import rule_objective


def _random_params(rng: random.Random, name: str) -> dict[str, float]:
    stops = {
        "stop_atr": rng.choice([0.0, rng.uniform(1.0, 6.0)]),
        "take_atr": rng.choice([0.0, rng.uniform(2.0, 12.0)]),
        "atr_window": rng.randint(5, 40),
    }
    if name == "sma_cross":
        fast = rng.randint(3, 80)
        return {"fast": fast, "slow": rng.randint(fast + 1, 300), "allow_short": rng.random() < 0.5,
                **stops}  # fmt: skip
    lower = rng.uniform(10, 45)
    return {"window": rng.randint(3, 40), "lower": lower, "upper": rng.uniform(55, 90), **stops}


@pytest.mark.slow
def test_fast_evaluator_agrees_with_backtrader_on_200_random_parameter_sets(
    btc_1h: pd.DataFrame,
) -> None:
    candles = btc_1h.loc["2024-03-01":"2024-05-31"].copy()
    candles.attrs.update(btc_1h.attrs)
    rng = random.Random(2024)
    checked = traded = 0
    for i in range(200):
        name = "sma_cross" if i % 2 == 0 else "rsi_reversion"
        params = _random_params(rng, name)
        strategy = get_strategy(name)
        fast = rule_objective(strategy, candles, timeframe="1h", min_trades=0).metrics(params)
        assert fast is not None
        engine = run_backtest(
            candles, strategy.fn(candles, **params), timeframe="1h", allow_short=True
        )
        assert fast["trades"] == engine.metrics["trades"], (name, params)
        np.testing.assert_allclose(
            fast["final_equity"], engine.metrics["final_equity"], rtol=1e-3, err_msg=str(params)
        )
        checked += 1
        traded += fast["trades"] > 0
    assert checked == 200 and traded > 150  # most sets trade: the comparison is not empty


def test_indicator_cache_computes_once_and_changes_nothing(btc_1h: pd.DataFrame) -> None:
    candles = btc_1h.iloc[-2000:]
    strategy = get_strategy("sma_cross")
    plain = strategy.fn(candles, fast=10, slow=50, stop_atr=2.0)
    with ind.indicator_cache() as store:
        first = strategy.fn(candles, fast=10, slow=50, stop_atr=2.0)
        again = strategy.fn(candles, fast=10, slow=80, stop_atr=2.0)
        assert len(store) == 4  # sma 10, sma 50, atr 14, sma 80: sma 10 and atr reused
    pd.testing.assert_frame_equal(first, plain)
    pd.testing.assert_frame_equal(again, strategy.fn(candles, fast=10, slow=80, stop_atr=2.0))
    other = candles.copy()
    other["close"] *= 2  # same shape, other data: never answered from the cache
    with ind.indicator_cache() as store:
        a = ind.sma(candles["close"], window=5)
        b = ind.sma(other["close"], window=5)
    assert not np.allclose(a.to_numpy()[5:], b.to_numpy()[5:])
