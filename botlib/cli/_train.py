"""``botlib train``: one model family, trained, validated and backtested out of sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from botlib.cli._common import Source, console, err_console, print_json, progress_bars
from botlib.cli._tables import metrics_rich_table
from botlib.params import parse_assignments


def train(
    model: Annotated[
        str,
        typer.Argument(
            help="lstm, gru, transformer, dqn, ppo, ga_rules, de_rules, ensemble, or a "
            "plugin's model (BOTLIB_PLUGINS)."
        ),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Hyperparameter NAME=VALUE, repeatable; values typed as YAML: 3, 0.5, "
            "true, [a,b], 2025-01-01.",
        ),
    ] = None,
    symbol: Annotated[str, typer.Option(help="Market.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="Bar length.")] = "1h",
    start: Annotated[str | None, typer.Option(help="First bar (UTC).")] = "2024-01-01",
    end: Annotated[str | None, typer.Option(help="Stop before (UTC).")] = None,
    source: Source = None,
    save: Annotated[
        Path | None, typer.Option(help="Save the trained model to this folder.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a model on the first 70 % of the window, validate on the next 15 %, and
    backtest its signals on the last 15 % (out of sample) beside buy-and-hold.

        botlib train lstm -p epochs=3 -p units=32 --start 2024-01-01
    """
    from botlib.data import describe_source, load_ohlcv
    from botlib.models.evaluate import train_and_backtest

    params = parse_assignments(param or [])
    candles = load_ohlcv(symbol, timeframe, start=start, end=end, source=source)
    if not as_json:
        err_console.print(describe_source(candles), style="dim", highlight=False, soft_wrap=True)
    with progress_bars(enabled=not as_json):
        fitted, report, result = train_and_backtest(model, candles, params=params)
    if save is not None:
        fitted.save(save)
    if as_json:
        print_json(
            {
                "model": model,
                "params": fitted.params,
                "fit": report.metrics,
                "metrics": result.metrics,
                "baselines": result.baselines,
            }
        )
        return
    test = result.equity.index
    console.print("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in report.metrics.items()))
    table = {model: result.metrics, **result.baselines}
    import pandas as pd

    console.print(
        metrics_rich_table(
            pd.DataFrame(table).T,
            f"{model} out of sample: {test[0]:%Y-%m-%d} → {test[-1]:%Y-%m-%d} ({len(test):,} bars)",
        )
    )
    if save is not None:
        console.print(f"saved to {save}")
