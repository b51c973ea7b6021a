from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from botlib.backtest import (
    get_strategy,
    normalize_signals,
    rsi_reversion,
    run_backtest,
    simulate,
    sma_cross,
)
from botlib.errors import ConfigError
from tests.conftest import synthetic_candles

FEE, SLIP, CASH = 0.001, 0.0005, 10_000.0


def _independent_equity(candles: pd.DataFrame, target: pd.Series) -> np.ndarray:
    """Equity from positions, written from the convention alone: a change of target at
    bar t trades at bar t+1's open (slipped, clamped to the bar), fee on every fill."""
    o, h, lo, c = (candles[k].to_numpy() for k in ("open", "high", "low", "close"))
    tgt = target.ffill().fillna(0.0).to_numpy()
    cash, units, out = CASH, 0.0, []
    for t in range(len(c)):
        if t >= 1 and tgt[t - 1] != (tgt[t - 2] if t >= 2 else 0.0):
            exit_px = o[t] * (1 - SLIP) if units > 0 else o[t] * (1 + SLIP)
            liq = cash + units * exit_px - abs(units * exit_px) * FEE
            want = tgt[t - 1] * liq / (o[t] * (1 + SLIP) * (1 + FEE) * (1 + 1e-9))
            delta = want - units
            px = min(o[t] * (1 + SLIP), h[t]) if delta > 0 else max(o[t] * (1 - SLIP), lo[t])
            cash -= delta * px + abs(delta * px) * FEE
            units = want
        out.append(cash + units * c[t])
    return np.array(out)


def test_sma_cross_parity_with_a_second_computation(btc_1h_2y: pd.DataFrame) -> None:
    signals = sma_cross(btc_1h_2y, fast=20, slow=100)
    result = run_backtest(btc_1h_2y, signals, fee=FEE, slippage=SLIP, cash=CASH)
    independent = _independent_equity(btc_1h_2y, signals["target"])
    assert result.metrics["trades"] > 50
    assert abs(result.equity.iloc[-1] / independent[-1] - 1) < 1e-3
    np.testing.assert_allclose(result.equity.to_numpy(), independent, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: sma_cross(c, fast=10, slow=50, allow_short=True),
        lambda c: sma_cross(c, fast=20, slow=100, stop_atr=2.0, take_atr=4.0),
        lambda c: rsi_reversion(c, window=14, lower=30, upper=70, stop_atr=1.5, take_atr=3.0),
        lambda c: sma_cross(c, fast=12, slow=48, allow_short=True, stop_atr=1.0, take_atr=2.0),
    ],
    ids=["short", "long-stops", "rsi-stops", "short-stops"],
)
def test_vector_twin_matches_backtrader(btc_1h_2y: pd.DataFrame, make: object) -> None:
    candles = btc_1h_2y.iloc[-6_000:]
    signals = make(candles)  # type: ignore[operator]
    result = run_backtest(candles, signals, fee=FEE, slippage=SLIP, cash=CASH, allow_short=True)
    twin = simulate(
        candles,
        normalize_signals(signals, candles.index, allow_short=True),
        cash=CASH,
        fee=FEE,
        slippage=SLIP,
    )
    assert len(result.fills) == len(twin.fills) > 10
    np.testing.assert_allclose(result.equity.to_numpy(), twin.equity.to_numpy(), rtol=1e-9)
    assert list(result.fills["reason"]) == list(twin.fills["reason"])


def test_metrics_recomputed_from_the_equity_curve(btc_1h_2y: pd.DataFrame) -> None:
    signals = sma_cross(btc_1h_2y, fast=24, slow=168)
    signals.iloc[-2:, 0] = 0.0  # flat at the end, so every trade is closed
    result = run_backtest(btc_1h_2y, signals)
    eq = result.equity.to_numpy()
    rets = np.diff(np.concatenate([[CASH], eq])) / np.concatenate([[CASH], eq[:-1]])
    sharpe = rets.mean() / rets.std(ddof=1) * math.sqrt(365 * 24)
    peak = np.maximum.accumulate(np.concatenate([[CASH], eq]))[1:]
    assert result.metrics["sharpe"] == pytest.approx(sharpe, rel=1e-9)
    assert result.metrics["max_drawdown"] == pytest.approx((eq / peak - 1).min(), rel=1e-9)
    assert result.metrics["total_return"] == pytest.approx(eq[-1] / CASH - 1, rel=1e-12)
    years = len(eq) / 8760
    assert result.metrics["cagr"] == pytest.approx((eq[-1] / CASH) ** (1 / years) - 1)
    assert result.metrics["trades"] == len(result.trades)
    assert result.units.iloc[-1] == 0
    assert result.trades["pnl"].sum() == pytest.approx(eq[-1] - CASH, abs=1e-6)
    wins = (result.trades["pnl"] > 0).mean()
    assert result.metrics["win_rate"] == pytest.approx(wins)


def test_buy_and_hold_baseline_by_hand(btc_1h_2y: pd.DataFrame) -> None:
    result = run_backtest(btc_1h_2y, sma_cross(btc_1h_2y), fee=FEE, slippage=SLIP, cash=CASH)
    o1 = btc_1h_2y["open"].iloc[1]
    units = CASH / (o1 * (1 + SLIP) * (1 + FEE) * (1 + 1e-9))
    px = min(o1 * (1 + SLIP), btc_1h_2y["high"].iloc[1])
    final = CASH - units * px * (1 + FEE) + units * btc_1h_2y["close"].iloc[-1]
    assert result.baselines["buy_and_hold"]["final_equity"] == pytest.approx(final, rel=1e-12)
    assert result.baselines["flat"]["total_return"] == 0.0
    assert result.benchmark.iloc[-1] == pytest.approx(final, rel=1e-12)


def test_fill_at_next_open_with_fee_and_slippage() -> None:
    c = synthetic_candles(20)
    target = pd.Series(np.nan, index=c.index)
    target.iloc[5], target.iloc[12] = 1.0, 0.0
    r = run_backtest(c, target, fee=FEE, slippage=SLIP, cash=CASH)
    buy, sell = r.fills.iloc[0], r.fills.iloc[1]
    assert buy["time"] == c.index[6] and sell["time"] == c.index[13]
    assert buy["price"] == pytest.approx(min(c["open"].iloc[6] * (1 + SLIP), c["high"].iloc[6]))
    assert sell["price"] == pytest.approx(max(c["open"].iloc[13] * (1 - SLIP), c["low"].iloc[13]))
    assert buy["commission"] == pytest.approx(buy["size"] * buy["price"] * FEE)
    assert (r.units.iloc[:6] == 0).all() and (r.units.iloc[6:13] > 0).all()
    assert r.metrics["exposure"] == pytest.approx(7 / 20)
    assert r.metrics["fees_paid"] == pytest.approx(buy["commission"] + sell["commission"])


def _bar(c: pd.DataFrame, i: int, **values: float) -> None:
    for k, v in values.items():
        c.iloc[i, c.columns.get_loc(k)] = v


def test_stop_is_live_from_the_bar_after_entry_and_beats_take_profit() -> None:
    c = synthetic_candles(30, seed=1)
    c[["open", "high", "low", "close"]] = 100.0
    _bar(c, 6, low=80.0)  # entry bar dips below the stop: not yet live
    _bar(c, 9, low=89.0, high=112.0)  # both stop (90) and take profit (110) touched
    signals = pd.DataFrame(
        {"target": np.nan, "stop_loss": np.nan, "take_profit": np.nan}, index=c.index
    )
    signals.iloc[5] = [1.0, 90.0, 110.0]
    r = run_backtest(c, signals, fee=0.0, slippage=0.0, cash=CASH)
    assert list(r.fills["reason"]) == ["signal", "stop_loss"]
    assert r.fills["time"].iloc[1] == c.index[9]
    assert r.fills["price"].iloc[1] == pytest.approx(90.0)
    assert (r.units.iloc[9:] == 0).all()  # stays flat after the stop (target unchanged)


def test_gap_through_stop_fills_at_open_and_take_profit_at_level() -> None:
    c = synthetic_candles(30, seed=2)
    c[["open", "high", "low", "close"]] = 100.0
    _bar(c, 8, open=85.0, high=86.0, low=84.0, close=85.0)
    _bar(c, 20, high=111.0)
    signals = pd.DataFrame(
        {"target": np.nan, "stop_loss": np.nan, "take_profit": np.nan}, index=c.index
    )
    signals.iloc[3] = [1.0, 90.0, np.nan]
    signals.iloc[12] = [0.0, np.nan, np.nan]
    signals.iloc[15] = [1.0, np.nan, 110.0]
    r = run_backtest(c, signals, fee=0.0, slippage=0.0, cash=CASH)
    assert list(r.fills["reason"]) == ["signal", "stop_loss", "signal", "take_profit"]
    assert r.fills["price"].iloc[1] == pytest.approx(85.0)  # gap: the open, not the stop
    assert r.fills["price"].iloc[3] == pytest.approx(110.0)
    assert r.trades["exit_reason"].tolist() == ["stop_loss", "take_profit"]


def test_bad_signals_are_refused(candles: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="shorts are disabled"):
        run_backtest(candles, pd.Series(-1.0, index=candles.index))
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        run_backtest(candles, pd.Series(2.0, index=candles.index))
    with pytest.raises(ConfigError, match="does not match the candles"):
        run_backtest(candles, pd.Series(1.0, index=candles.index[:-3]))
    with pytest.raises(ConfigError, match="unknown signal column"):
        run_backtest(candles, pd.DataFrame({"target": 1.0, "stoploss": 1.0}, index=candles.index))
    with pytest.raises(ConfigError, match="fee"):
        run_backtest(candles, pd.Series(1.0, index=candles.index), fee=0.5)


def test_strategy_registry_validates_parameters() -> None:
    with pytest.raises(ConfigError, match="did you mean 'sma_cross'"):
        get_strategy("sma_crosss")
    strat = get_strategy("sma_cross")
    with pytest.raises(ConfigError, match="did you mean 'fast'"):
        strat.resolve({"fats": "3"})
    with pytest.raises(ConfigError, match="outside"):
        strat.resolve({"fast": "1"})
    with pytest.raises(ConfigError, match="whole number"):
        strat.resolve({"fast": "2.5"})
    assert strat.resolve({"fast": "10"})["fast"] == 10
