"""A self-contained plotly HTML report of one or more backtests on the same candles:
the metrics beside the baselines, candles with entries and exits, equity against
buy-and-hold, and drawdown."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from botlib.backtest.engine import BacktestResult

__all__ = ["metrics_table", "write_report"]

_MAX_CANDLES = 3000
_PERCENT = {"total_return", "cagr", "max_drawdown", "win_rate", "exposure"}


def metrics_table(results: Mapping[str, BacktestResult]) -> pd.DataFrame:
    """One row per strategy plus buy-and-hold and flat; columns are metric names."""
    rows = {name: r.metrics for name, r in results.items()}
    first = next(iter(results.values()))
    rows.update(first.baselines)
    return pd.DataFrame(rows).T


def _fmt(name: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if name in _PERCENT:
        return f"{value:.1%}"
    if name in ("trades",):
        return f"{value:.0f}"
    return f"{value:,.2f}"


def _display_rule(index: pd.Index) -> pd.Timedelta | None:
    """A resampling step that keeps charts light (at most ~3,000 points), or None."""
    if len(index) <= _MAX_CANDLES:
        return None
    return pd.Timedelta((index[-1] - index[0]) / _MAX_CANDLES).ceil("1h")


def _display_candles(candles: pd.DataFrame) -> pd.DataFrame:
    rule = _display_rule(candles.index)
    if rule is None:
        return candles
    return (
        candles.resample(rule)
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna()
    )


def _display_line(series: pd.Series, how: str = "last") -> pd.Series:
    rule = _display_rule(series.index)
    return series if rule is None else series.resample(rule).agg(how).dropna()


def write_report(
    results: Mapping[str, BacktestResult],
    candles: pd.DataFrame,
    path: str | Path,
    *,
    title: str = "botlib backtest",
) -> Path:
    """Write the report to ``path`` (plotly.js embedded: it opens offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = _display_candles(candles)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.5, 0.3, 0.2],
        subplot_titles=("Price, entries and exits", "Equity (quote currency)", "Drawdown"),
    )
    fig.add_trace(
        go.Candlestick(
            x=shown.index,
            open=shown["open"],
            high=shown["high"],
            low=shown["low"],
            close=shown["close"],
            name="BTC candles",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    first = next(iter(results.values()))
    for name, res in results.items():
        fills = res.fills
        for side, mask, symbol, color in (
            ("buy", fills["size"] > 0, "triangle-up", "#2ca02c"),
            ("sell", fills["size"] < 0, "triangle-down", "#d62728"),
        ):
            part = fills[mask]
            fig.add_trace(
                go.Scatter(
                    x=part["time"],
                    y=part["price"],
                    mode="markers",
                    name=f"{name} {side}",
                    marker_symbol=symbol,
                    marker={"size": 8, "color": color},
                ),
                row=1,
                col=1,
            )
        equity = _display_line(res.equity)
        fig.add_trace(go.Scatter(x=equity.index, y=equity, name=f"{name} equity"), row=2, col=1)
        drawdown = _display_line(res.equity / res.equity.cummax() - 1.0, "min")
        fig.add_trace(
            go.Scatter(x=drawdown.index, y=drawdown, name=f"{name} drawdown", fill="tozeroy"),
            row=3,
            col=1,
        )
    hold = _display_line(first.benchmark)
    fig.add_trace(
        go.Scatter(
            x=hold.index, y=hold, name="buy and hold", line={"dash": "dot", "color": "grey"}
        ),
        row=2,
        col=1,
    )
    fig.update_layout(
        height=950,
        title=title,
        xaxis_rangeslider_visible=False,
        hovermode="x unified",
        template="plotly_white",
    )
    fig.update_yaxes(tickformat=".0%", row=3, col=1)

    table = metrics_table(results)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *table.columns])
    body = "".join(
        "<tr><th>"
        + html.escape(str(idx))
        + "</th>"
        + "".join(f"<td>{_fmt(col, row[col])}</td>" for col in table.columns)
        + "</tr>"
        for idx, row in table.iterrows()
    )
    cfg = first.config
    note = (
        f"{len(candles):,} bars of {html.escape(str(cfg.get('timeframe')))}, "
        f"{candles.index[0]:%Y-%m-%d} → {candles.index[-1]:%Y-%m-%d}; fee {cfg['fee']:.3%}, "
        f"slippage {cfg['slippage']:.3%}, fills at the next bar's open. "
        f"Source: {html.escape(str(candles.attrs.get('source', 'user data')))} "
        "(market data: Binance)."
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem}}table{{border-collapse:collapse}}
td,th{{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{note}</p><table><tr>{head}</tr>{body}</table>
{fig.to_html(full_html=False, include_plotlyjs=True)}</body></html>"""
    path.write_text(page, encoding="utf-8")
    return path
