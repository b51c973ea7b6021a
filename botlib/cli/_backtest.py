"""``botlib backtest`` and ``botlib strategies``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from botlib.cli._common import Source, console, err_console, print_json, progress_bar
from botlib.cli._tables import metrics_rich_table
from botlib.params import parse_assignments


def strategies() -> None:
    """List the rule strategies with their parameters, defaults and bounds."""
    from botlib.backtest import STRATEGIES

    table = Table(title="Rule strategies", title_justify="left")
    for col in ("strategy", "parameter", "type", "default", "bounds"):
        table.add_column(col)
    for name, strat in STRATEGIES.items():
        for i, (pname, param) in enumerate(strat.params.items()):
            table.add_row(
                name if i == 0 else "",
                pname,
                param.kind.__name__,
                str(param.default),
                f"[{param.low}, {param.high}]",
            )
        table.add_row("", f"[dim]{strat.description}[/]", "", "", "")
    console.print(table)


def backtest(
    strategy: Annotated[str, typer.Option(help="Rule strategy (see `botlib strategies`).")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Strategy parameter NAME=VALUE; repeatable."),
    ] = None,
    symbol: Annotated[str, typer.Option(help="Market, e.g. BTC/USDT.")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option(help="Bar length.")] = "1h",
    start: Annotated[str | None, typer.Option(help="First bar (UTC), e.g. 2024-01-01.")] = None,
    end: Annotated[str | None, typer.Option(help="Stop before this time (UTC).")] = None,
    source: Source = None,
    cash: Annotated[float | None, typer.Option(help="Starting cash, quote currency.")] = None,
    fee: Annotated[
        float | None, typer.Option(help="Fee per fill, fraction (0.001 = 0.1%).")
    ] = None,
    slippage: Annotated[float | None, typer.Option(help="Slippage, fraction of price.")] = None,
    allow_short: Annotated[bool, typer.Option(help="Let the strategy go short.")] = False,
    report: Annotated[
        Path | None, typer.Option(help="Also write a plotly HTML report here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Backtest a rule strategy; print its metrics beside buy-and-hold and flat.

    Signals are computed on each bar's close and filled at the next bar's open, with
    the fee and slippage charged on every fill. Example:

        botlib backtest --strategy sma_cross -p fast=20 -p slow=100 --start 2024-01-01
    """
    from botlib.backtest import get_strategy, run_backtest
    from botlib.backtest.report import metrics_table, write_report
    from botlib.data import describe_source, load_ohlcv

    strat = get_strategy(strategy)
    params = strat.resolve(parse_assignments(param or []))
    if strategy == "sma_cross":
        params["allow_short"] = allow_short
    candles = load_ohlcv(symbol, timeframe, start=start, end=end, source=source)
    if not as_json:
        err_console.print(describe_source(candles), style="dim", highlight=False, soft_wrap=True)
    signals = strat.fn(candles, **params)
    with progress_bar(f"backtesting {strategy}", enabled=not as_json) as update:
        result = run_backtest(
            candles,
            signals,
            timeframe=timeframe,
            cash=cash,
            fee=fee,
            slippage=slippage,
            allow_short=allow_short,
            progress=update,
        )
    if report is not None:
        write_report(
            {strategy: result}, candles, report, title=f"{strategy} on {symbol} {timeframe}"
        )
    if as_json:
        print_json(
            {
                "strategy": strategy,
                "params": params,
                "symbol": symbol.upper(),
                "timeframe": timeframe,
                "start": candles.index[0],
                "end": candles.index[-1],
                "bars": len(candles),
                "config": result.config,
                "metrics": result.metrics,
                "baselines": result.baselines,
            }
        )
        return
    title = (
        f"{strategy} {params} on {symbol.upper()} {timeframe}, "
        f"{candles.index[0]:%Y-%m-%d} → {candles.index[-1]:%Y-%m-%d} ({len(candles):,} bars)"
    )
    console.print(metrics_rich_table(metrics_table({strategy: result}), title))
    if report is not None:
        console.print(f"report: {report}")
