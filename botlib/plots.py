"""Plotly figures the notebooks show and the runs log (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from botlib.backtest import BacktestResult

__all__ = ["candles_with_fills", "drawdown", "equity_vs_hold", "training_curves"]


def equity_vs_hold(result: BacktestResult, title: str = "Equity vs buy and hold") -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=result.equity.index, y=result.equity, name="strategy")
    fig.add_scatter(
        x=result.benchmark.index, y=result.benchmark, name="buy and hold", line={"dash": "dot"}
    )
    fig.update_layout(title=title, yaxis_title="equity (quote currency)", template="plotly_white")
    return fig


def drawdown(result: BacktestResult) -> go.Figure:
    dd = result.equity / result.equity.cummax() - 1.0
    hold = result.benchmark / result.benchmark.cummax() - 1.0
    fig = go.Figure()
    fig.add_scatter(x=dd.index, y=dd, name="strategy", fill="tozeroy")
    fig.add_scatter(x=hold.index, y=hold, name="buy and hold", line={"dash": "dot"})
    fig.update_layout(title="Drawdown", yaxis_tickformat=".0%", template="plotly_white")
    return fig


def candles_with_fills(candles: pd.DataFrame, result: BacktestResult) -> go.Figure:
    fig = go.Figure(
        go.Candlestick(
            x=candles.index,
            open=candles["open"],
            high=candles["high"],
            low=candles["low"],
            close=candles["close"],
            name="candles",
        )
    )
    fills = result.fills
    for side, mask, symbol in (
        ("buy", fills["size"] > 0, "triangle-up"),
        ("sell", fills["size"] < 0, "triangle-down"),
    ):
        part = fills[mask]
        fig.add_scatter(
            x=part["time"],
            y=part["price"],
            mode="markers",
            name=side,
            marker={"symbol": symbol, "size": 9},
        )
    fig.update_layout(
        title="Candles with fills", xaxis_rangeslider_visible=False, template="plotly_white"
    )
    return fig


def training_curves(history: Mapping[str, list[float]], title: str = "Training") -> go.Figure:
    """Loss per epoch, reward per episode or fitness per generation."""
    fig = go.Figure()
    xs = history.get("timestep")
    for key, values in history.items():
        if key == "timestep" or not values:
            continue
        fig.add_scatter(
            x=xs if xs and len(xs) == len(values) else list(range(len(values))),
            y=list(values),
            name=key,
            mode="lines+markers",
        )
    fig.update_layout(title=title, template="plotly_white")
    return fig


def walk_forward_equity(
    equity: pd.Series, hold: pd.Series, fold_starts: list[pd.Timestamp], title: str
) -> go.Figure:
    """The stitched out-of-sample equity beside buy-and-hold, folds marked."""
    fig = go.Figure()
    fig.add_scatter(x=equity.index, y=equity.to_numpy(), name="walk-forward (out of sample)")
    fig.add_scatter(x=hold.index, y=hold.to_numpy(), name="buy and hold", line={"dash": "dot"})
    for start in fold_starts:
        fig.add_vline(x=start, line={"width": 1, "color": "#bbb"})
    fig.update_layout(title=title, template="plotly_white", yaxis_title="equity (quote)")
    return fig
