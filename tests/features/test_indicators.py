"""Indicator values against an independent implementation (the ``ta`` package, used
only here) and against hand computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta

from botlib.features import indicators as ind

WARMUP = 500  # recursive indicators differ in their seeding; compare after it


@pytest.fixture(scope="module")
def c(btc_1h: pd.DataFrame) -> pd.DataFrame:
    return btc_1h.iloc[-5_000:]


def _close(a: pd.Series, b: pd.Series, start: int = 0, rtol: float = 1e-9) -> None:
    np.testing.assert_allclose(
        a.iloc[start:].to_numpy(), b.iloc[start:].to_numpy(), rtol=rtol, atol=1e-9
    )


def test_sma_ema(c: pd.DataFrame) -> None:
    _close(ind.sma(c["close"], window=20), ta.trend.sma_indicator(c["close"], window=20))
    _close(ind.ema(c["close"], window=50), ta.trend.ema_indicator(c["close"], window=50))
    assert ind.sma(c["close"], window=20).iloc[:19].isna().all()


def test_rsi(c: pd.DataFrame) -> None:
    ours = ind.rsi(c["close"], window=14)
    _close(ours, ta.momentum.rsi(c["close"], window=14), WARMUP, rtol=1e-7)
    assert ours.dropna().between(0, 100).all()


def test_macd(c: pd.DataFrame) -> None:
    ours = ind.macd(c["close"], fast=12, slow=26, signal=9)
    ref = ta.trend.MACD(c["close"], window_slow=26, window_fast=12, window_sign=9)
    _close(ours["macd"], ref.macd(), 40)
    _close(ours["macd_signal"], ref.macd_signal(), 40)
    _close(ours["macd_hist"], ref.macd_diff(), 40)


def test_bollinger(c: pd.DataFrame) -> None:
    ours = ind.bollinger(c["close"], window=20, k=2.0)
    ref = ta.volatility.BollingerBands(c["close"], window=20, window_dev=2)
    _close(ours["bb_upper"], ref.bollinger_hband(), 19)
    _close(ours["bb_lower"], ref.bollinger_lband(), 19)
    # pandas' online rolling std rounds differently from an exact window: 1e-7
    _close(ours["bb_width"] * 100, ref.bollinger_wband(), 19, rtol=1e-7)


def test_atr(c: pd.DataFrame) -> None:
    ours = ind.atr(c, window=14)
    ref = ta.volatility.AverageTrueRange(c["high"], c["low"], c["close"], window=14)
    _close(ours, ref.average_true_range(), 13)
    assert ours.iloc[:13].isna().all()


def test_obv_moves_by_volume_when_the_close_moves(c: pd.DataFrame) -> None:
    ours = ind.obv(c).diff()
    ref = ta.volume.on_balance_volume(c["close"], c["volume"]).diff()
    moved = c["close"].diff().fillna(0) != 0
    _close(ours[moved], ref[moved])
    assert (ours[~moved].iloc[1:] == 0).all()  # unchanged close: OBV unchanged


def test_returns_and_volatility_by_hand(c: pd.DataFrame) -> None:
    close = c["close"].to_numpy()
    np.testing.assert_allclose(ind.returns(c["close"]).to_numpy()[1:], close[1:] / close[:-1] - 1)
    logret = np.log(close[1:] / close[:-1])
    vol = ind.realized_volatility(c["close"], window=24)
    np.testing.assert_allclose(vol.iloc[100], np.std(logret[100 - 24 : 100], ddof=1))
    annual = ind.realized_volatility(c["close"], window=24, periods_per_year=8760)
    np.testing.assert_allclose(annual.iloc[100], vol.iloc[100] * np.sqrt(8760))


def test_volume_zscore_by_hand(c: pd.DataFrame) -> None:
    z = ind.volume_zscore(c["volume"], window=24)
    window = c["volume"].to_numpy()[77 - 23 : 78]
    np.testing.assert_allclose(z.iloc[77], (window[-1] - window.mean()) / window.std())


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_window(c: pd.DataFrame, bad: float) -> None:
    with pytest.raises(ValueError, match="positive whole number"):
        ind.sma(c["close"], window=bad)  # type: ignore[arg-type]
