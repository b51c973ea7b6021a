"""``botlib data``: inspect, download and import candles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from botlib.cli._common import Source, console, print_json, progress_bar
from botlib.settings import get_settings

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Inspect, download and import market data.",
    no_args_is_help=True,
)

Symbol = Annotated[str, typer.Argument(help="Market in BASE/QUOTE form, e.g. BTC/USDT.")]
Timeframe = Annotated[str, typer.Argument(help="Bar length: 1m, 5m, 15m, 1h, 4h, 1d, ...")]


@app.command("info")
def info(
    symbol: Annotated[str | None, typer.Argument(help="Show one series in detail.")] = None,
    timeframe: Annotated[str | None, typer.Argument(help="Timeframe of that series.")] = None,
    source: Source = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List available datasets, or describe one series (span, rows, gaps)."""
    from botlib.data import list_datasets, load_ohlcv

    settings = get_settings()
    if symbol is None:
        found = list_datasets(settings.datasets_dir, settings.data_dir)
        if as_json:
            print_json(
                [{"source": s, "symbol": y, "timeframe": t, "path": str(p)} for s, y, t, p in found]
            )
            return
        table = Table(title="Available candles", title_justify="left")
        for col in ("source", "symbol", "timeframe", "path"):
            table.add_column(col)
        for src, sym, tf, path in found:
            table.add_row(src, sym, tf, str(path))
        console.print(table)
        console.print(f"reference datasets: {settings.datasets_dir or 'none found'}")
        console.print(f"cache: {settings.data_dir}")
        if settings.datasets_dir is not None:
            console.print("Reference candles: Binance spot market data (see the datasets README).")
        return
    if timeframe is None:
        raise typer.BadParameter("give the timeframe too, e.g. `botlib data info BTC/USDT 1h`")
    frame, report = load_ohlcv(symbol, timeframe, source=source, with_report=True)
    summary = {
        "symbol": symbol.upper(),
        "timeframe": timeframe,
        "source": frame.attrs["source_name"],
        "path": frame.attrs["source"],
        "also_in": frame.attrs["also_in"],
        "rows": report.rows,
        "start": report.start,
        "end": report.end,
        "gaps": len(report.gaps),
        "missing_bars": report.missing_bars,
        "gap_list": [
            {"after": g.after, "before": g.before, "missing": g.missing} for g in report.gaps
        ],
        "zero_volume_bars": report.zero_volume,
        "close_min": float(frame["close"].min()),
        "close_max": float(frame["close"].max()),
    }
    if as_json:
        print_json(summary)
        return
    for key in (
        "symbol",
        "timeframe",
        "source",
        "rows",
        "start",
        "end",
        "zero_volume_bars",
        "close_min",
        "close_max",
    ):
        console.print(f"[bold]{key:>16}[/]  {summary[key]}")
    console.print(f"[bold]{'gaps':>16}[/]  {len(report.gaps)} ({report.missing_bars} missing bars)")
    for gap in report.gaps:
        console.print(f"{'':>18}{gap}")


@app.command("fetch")
def fetch(
    symbol: Symbol,
    timeframe: Timeframe,
    start: Annotated[str, typer.Option(help="First bar (UTC), e.g. 2024-01-01.")],
    end: Annotated[str | None, typer.Option(help="Stop before this time (default: now).")] = None,
    exchange: Annotated[
        str | None, typer.Option(help="ccxt exchange id (default: settings).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Download candles through ccxt into the cache; only missing bars are requested."""
    from botlib.data import fetch_ohlcv

    settings = get_settings()
    ex = exchange or settings.exchange_id
    with progress_bar(f"fetching {symbol} {timeframe} from {ex}", enabled=not quiet) as update:
        frame = fetch_ohlcv(ex, symbol, timeframe, start, end, progress=update)
    console.print(
        f"{len(frame):,} candles {frame.index[0]} → {frame.index[-1]} cached under "
        f"{settings.data_dir / ex}"
    )


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="CSV (optionally .gz) or parquet file.")],
    symbol: Annotated[str, typer.Option(help="Market in BASE/QUOTE form.")],
    timeframe: Annotated[str, typer.Option(help="Bar length of the file.")],
    exchange: Annotated[str, typer.Option(help="Cache namespace to store it under.")] = "local",
    gaps: Annotated[str, typer.Option(help="Gap policy: keep or ffill.")] = "keep",
) -> None:
    """Validate your own candle file and add it to the cache (nothing is written if
    any row breaks a rule). Columns: a time column, open, high, low, close, volume."""
    from botlib.data import import_ohlcv

    if gaps not in ("keep", "ffill"):
        raise typer.BadParameter(f"--gaps must be keep or ffill, got {gaps!r}")
    target, report = import_ohlcv(
        path, symbol, timeframe, exchange=exchange, gaps="ffill" if gaps == "ffill" else "keep"
    )
    console.print(
        f"imported {report.rows:,} candles ({report.start} → {report.end}, "
        f"{len(report.gaps)} gaps, {report.filled} filled) into {target}"
    )
    console.print(
        f"every command now finds it (source {exchange!r}), e.g. `botlib backtest --symbol "
        f"{symbol.upper()} --timeframe {timeframe} --strategy sma_cross`; in Python: "
        f"load_ohlcv({symbol.upper()!r}, {timeframe!r})"
    )
