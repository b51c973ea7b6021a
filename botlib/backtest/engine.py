"""The backtest engine: backtrader executes a signal frame.

>>> from botlib.backtest import run_backtest, sma_cross
>>> result = run_backtest(candles, sma_cross(candles, fast=20, slow=100), timeframe="1h")
>>> result.metrics["sharpe"], result.baselines["buy_and_hold"]["sharpe"]

Conventions are those of ``botlib.backtest.signals`` (fill at the next bar's open,
orders on target changes, stops live from the bar after entry, stop before take
profit) and ``botlib.backtest.vector`` (sizing, slippage, fees), which is the
independent computation the parity tests compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from botlib.backtest._compat import bt
from botlib.backtest.metrics import compute_metrics, trades_from_fills
from botlib.backtest.signals import normalize_signals
from botlib.backtest.vector import liquidation_value, simulate, target_units
from botlib.data import timeframe_seconds
from botlib.errors import ConfigError
from botlib.settings import get_settings

__all__ = ["BacktestResult", "run_backtest"]

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest produced: per-bar equity and position, fills, round-trip trades,
    the strategy's metrics and the same metrics for buy-and-hold and flat."""

    equity: pd.Series
    units: pd.Series
    fills: pd.DataFrame
    trades: pd.DataFrame
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    signals: pd.DataFrame
    benchmark: pd.Series
    config: dict[str, Any] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Metrics beside the baselines, one column each."""
        return pd.DataFrame({"strategy": self.metrics, **self.baselines})


class _SignalStrategy(bt.Strategy):  # type: ignore[misc]
    """Acts at each bar's open on the previous bar's signal (cheat-on-open mode)."""

    params = (
        ("target", None),
        ("stop_loss", None),
        ("take_profit", None),
        ("fee", 0.0),
        ("slippage", 0.0),
        ("progress", None),
    )

    def __init__(self) -> None:
        n = len(self.p.target)
        self.equity = np.full(n, np.nan)
        self.units = np.zeros(n)
        self.fills: list[tuple[Any, float, float, float, str]] = []
        self._brackets: list[Any] = []
        self._pending_levels: tuple[float, float] | None = None
        self._reasons: dict[int, str] = {}

    def _bar(self) -> int:
        return len(self.data) - 1

    def next_open(self) -> None:
        i = self._bar()
        if i == 0:
            return
        target = self.p.target
        prev = target[i - 2] if i >= 2 else 0.0
        if target[i - 1] == prev:
            return
        for order in self._brackets:
            if order.alive():
                self.cancel(order)
        self._brackets = []
        open_ = float(self.data.open[0])
        units = float(self.position.size)
        cash = float(self.broker.getcash())
        equity_open = liquidation_value(cash, units, open_, self.p.fee, self.p.slippage)
        want = target_units(target[i - 1], cash, units, open_, self.p.fee, self.p.slippage)
        delta = want - units
        if equity_open > 0 and abs(delta) * open_ > 1e-9 * max(equity_open, 1.0):
            order = self.buy(size=delta) if delta > 0 else self.sell(size=-delta)
            self._reasons[order.ref] = "signal"
        sl, tp = float(self.p.stop_loss[i - 1]), float(self.p.take_profit[i - 1])
        self._pending_levels = None if (np.isnan(sl) and np.isnan(tp)) else (sl, tp)

    def _submit_brackets(self, sl: float, tp: float) -> None:
        size = abs(float(self.position.size))
        long = self.position.size > 0
        exit_order = self.sell if long else self.buy
        orders = []
        if not np.isnan(sl):
            orders.append(exit_order(size=size, exectype=bt.Order.Stop, price=sl))
            self._reasons[orders[-1].ref] = "stop_loss"
        if not np.isnan(tp):
            oco = orders[0] if orders else None
            orders.append(exit_order(size=size, exectype=bt.Order.Limit, price=tp, oco=oco))
            self._reasons[orders[-1].ref] = "take_profit"
        self._brackets = orders

    def notify_order(self, order: Any) -> None:
        if order.status == order.Completed:
            size = float(order.executed.size)
            price = float(order.executed.price)
            self.fills.append(
                (
                    bt.num2date(order.executed.dt),
                    size,
                    price,
                    float(order.executed.comm),
                    self._reasons.get(order.ref, "signal"),
                )
            )
        elif order.status in (order.Margin, order.Rejected):
            raise RuntimeError(
                f"backtrader refused an order ({order.getstatusname()}) at bar {self._bar()}: "
                "sizing must keep cash >= 0; this is a botlib bug"
            )

    def next(self) -> None:
        i = self._bar()
        if self._pending_levels is not None:
            if self.position.size != 0:
                self._submit_brackets(*self._pending_levels)
            self._pending_levels = None
        self.equity[i] = self.broker.getvalue()
        self.units[i] = self.position.size
        if self.p.progress is not None and (i % 2048 == 0 or i == len(self.units) - 1):
            self.p.progress(i + 1, len(self.units))


def run_backtest(
    candles: pd.DataFrame,
    signals: pd.DataFrame | pd.Series,
    *,
    timeframe: str | None = None,
    cash: float | None = None,
    fee: float | None = None,
    slippage: float | None = None,
    allow_short: bool = False,
    progress: ProgressFn | None = None,
) -> BacktestResult:
    """Execute ``signals`` over ``candles`` in backtrader and measure the result.

    ``fee`` and ``slippage`` are fractions of traded value (defaults from settings:
    0.1 % and 0.05 %); ``cash`` is in quote currency. ``timeframe`` defaults to the
    candles' ``attrs["timeframe"]`` (set by ``load_ohlcv``) and sets the annualization.
    """
    settings = get_settings()
    cash = settings.initial_cash if cash is None else cash
    fee = settings.fee if fee is None else fee
    slippage = settings.slippage if slippage is None else slippage
    timeframe = timeframe or candles.attrs.get("timeframe")
    if timeframe is None:
        raise ConfigError(
            "timeframe unknown: pass timeframe='1h' (or load candles with load_ohlcv)"
        )
    timeframe_seconds(timeframe)
    if len(candles) < 2:
        raise ConfigError(f"a backtest needs at least 2 bars, got {len(candles)}")
    for name, value in (("fee", fee), ("slippage", slippage)):
        if not 0.0 <= value < 0.1:
            raise ConfigError(f"{name} is a fraction of traded value in [0, 0.1); got {value}")
    if cash <= 0:
        raise ConfigError(f"cash must be positive, got {cash}")
    sig = normalize_signals(signals, pd.DatetimeIndex(candles.index), allow_short=allow_short)

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True, runonce=False, preload=True)
    feed_frame = candles[["open", "high", "low", "close", "volume"]].copy()
    feed_frame.index = pd.DatetimeIndex(candles.index).tz_convert("UTC").tz_localize(None)
    cerebro.adddata(bt.feeds.PandasData(dataname=feed_frame, openinterest=None))
    cerebro.broker.setcash(cash)
    cerebro.broker.setcommission(commission=fee)
    # The submit-time cash check prices market orders at the bar's close, which in
    # cheat-on-open mode is not the fill price; execution still refuses a fill that
    # would take cash below zero.
    cerebro.broker.set_checksubmit(False)
    cerebro.broker.set_slippage_perc(
        slippage, slip_open=True, slip_limit=True, slip_match=True, slip_out=False
    )
    cerebro.addstrategy(
        _SignalStrategy,
        target=sig["target"].to_numpy(),
        stop_loss=sig["stop_loss"].to_numpy(),
        take_profit=sig["take_profit"].to_numpy(),
        fee=fee,
        slippage=slippage,
        progress=progress,
    )
    strategy = cerebro.run()[0]

    index = candles.index
    equity = pd.Series(strategy.equity, index=index, name="equity")
    units = pd.Series(strategy.units, index=index, name="units")
    fills = pd.DataFrame(strategy.fills, columns=["time", "size", "price", "commission", "reason"])
    if len(fills):
        fills["time"] = pd.DatetimeIndex(fills["time"]).tz_localize("UTC")
    trades = trades_from_fills(fills)
    base, hold_equity = baselines(
        candles, timeframe=timeframe, cash=cash, fee=fee, slippage=slippage
    )
    metrics = compute_metrics(
        equity, timeframe=timeframe, initial_cash=cash, units=units, fills=fills, trades=trades
    )
    return BacktestResult(
        equity=equity,
        units=units,
        fills=fills,
        trades=trades,
        metrics=metrics,
        baselines=base,
        signals=sig,
        benchmark=hold_equity,
        config={
            "timeframe": timeframe,
            "cash": cash,
            "fee": fee,
            "slippage": slippage,
            "allow_short": allow_short,
            "fill": "next bar open",
        },
    )


def baselines(
    candles: pd.DataFrame, *, timeframe: str, cash: float, fee: float, slippage: float
) -> tuple[dict[str, dict[str, float]], pd.Series]:
    """Metrics of buy-and-hold (bought at the second bar's open, same costs) and flat
    (cash only), and the buy-and-hold equity curve."""
    hold = pd.DataFrame(
        {"target": 1.0, "stop_loss": np.nan, "take_profit": np.nan}, index=candles.index
    )
    sim = simulate(candles, hold, cash=cash, fee=fee, slippage=slippage)
    flat_equity = pd.Series(cash, index=candles.index, dtype="float64")
    empty = sim.fills.iloc[0:0]
    metrics = {
        "buy_and_hold": compute_metrics(
            sim.equity, timeframe=timeframe, initial_cash=cash, units=sim.units, fills=sim.fills
        ),
        "flat": compute_metrics(
            flat_equity,
            timeframe=timeframe,
            initial_cash=cash,
            units=flat_equity * 0.0,
            fills=empty,
        ),
    }
    return metrics, sim.equity.rename("buy_and_hold")
