"""Rich tables for metrics."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table

_COLUMNS = [
    ("total_return", "return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("max_drawdown", "max DD", "pct"),
    ("calmar", "Calmar", "num"),
    ("trades", "trades", "int"),
    ("win_rate", "win rate", "pct"),
    ("profit_factor", "PF", "num"),
    ("exposure", "exposure", "pct"),
    ("turnover", "turnover/y", "num"),
    ("fees_paid", "fees", "num"),
    ("final_equity", "final equity", "num"),
]


def _cell(value: object, kind: str) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return "–"
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "int":
        return f"{value:.0f}"
    return f"{value:,.2f}"


def metrics_rich_table(table: pd.DataFrame, title: str) -> Table:
    """``table``: one row per strategy/baseline, metric names as columns. Printed
    transposed (a column per strategy) so it fits a terminal."""
    out = Table(title=title, title_justify="left")
    out.add_column("metric")
    for name in table.index:
        style = "dim" if name in ("buy_and_hold", "flat") else "bold"
        out.add_column(str(name), justify="right", header_style=style)
    for key, label, kind in _COLUMNS:
        if key in table.columns:
            out.add_row(label, *(_cell(table.at[name, key], kind) for name in table.index))
    return out


_LEADERBOARD = [
    ("sharpe", "Sharpe", "num"),
    ("total_return", "return", "pct"),
    ("max_drawdown", "max DD", "pct"),
    ("trades", "trades", "int"),
    ("exposure", "exposure", "pct"),
    ("final_equity", "final equity", "num"),
    ("directional_accuracy", "dir. hit", "pct"),
    ("persistence_accuracy", "persistence hit", "pct"),
]


def leaderboard_table(table: pd.DataFrame, title: str) -> Table:
    """One row per model, best out-of-sample Sharpe first; baselines last, dimmed."""
    base = [n for n in ("buy_and_hold", "flat") if n in table.index]
    models = table.drop(index=base)
    models = models.sort_values("sharpe", ascending=False, na_position="last")
    shown = [c for c in _LEADERBOARD if c[0] in table.columns]
    out = Table(title=title, title_justify="left")
    out.add_column("model")
    for _, label, _ in shown:
        out.add_column(label, justify="right")
    for name, row in pd.concat([models, table.loc[base]]).iterrows():
        out.add_row(
            str(name),
            *(_cell(row.get(key), kind) for key, _, kind in shown),
            style="dim" if name in base else None,
        )
    return out
