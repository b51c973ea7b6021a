"""Loading candles: reference datasets, the cache, and a user's own files."""

from __future__ import annotations

import logging
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from botlib.data._store import (
    cache_path,
    check_symbol,
    find_dataset,
    list_datasets,
    read_cache,
    write_cache,
)
from botlib.data._timeframe import timeframe_seconds
from botlib.data._validate import OHLCV_COLUMNS, GapPolicy, ValidationReport, validate_ohlcv
from botlib.errors import DataError
from botlib.settings import Settings, get_settings

log = logging.getLogger(__name__)

_TIME_COLUMNS = ("timestamp", "time", "date", "datetime", "open_time", "opentime", "ts")


def _to_utc_index(values: pd.Series | pd.Index, source: str) -> pd.DatetimeIndex:
    """Epoch seconds or milliseconds, or date strings, to a UTC ``DatetimeIndex``."""
    if isinstance(values, pd.DatetimeIndex):
        index = values
    elif pd.api.types.is_numeric_dtype(values):
        numbers = np.asarray(values, dtype="float64")
        unit: Literal["ms", "s"] = "ms" if np.nanmax(np.abs(numbers)) > 1e11 else "s"
        index = pd.DatetimeIndex(pd.to_datetime(numbers, unit=unit, utc=True))
    else:
        try:
            index = pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601"))
        except (ValueError, TypeError):
            try:
                index = pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="mixed"))
            except (ValueError, TypeError) as exc:
                raise DataError(
                    "bad-timestamp",
                    f"{source}: timestamps could not be parsed ({exc}); expected ISO 8601 "
                    "strings or epoch seconds/milliseconds",
                ) from exc
    if index.tz is None:
        index = index.tz_localize("UTC")
    return pd.DatetimeIndex(index.tz_convert("UTC"), name="timestamp")


def read_candles_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or parquet file of candles into an (unvalidated)
    frame indexed by UTC open time. Column names are matched case-insensitively; the
    time column may be called timestamp/time/date/datetime/open_time."""
    path = Path(path)
    if not path.exists():
        raise DataError("no-such-file", f"{path} does not exist")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        raw = pd.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz", ".txt")):
        raw = pd.read_csv(path)
    else:
        raise DataError("unknown-format", f"{path.name}: expected a .csv, .csv.gz or .parquet file")
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if isinstance(raw.index, pd.DatetimeIndex):
        index = _to_utc_index(raw.index, path.name)
    else:
        time_col = next((c for c in _TIME_COLUMNS if c in raw.columns), None)
        if time_col is None:
            raise DataError(
                "missing-columns",
                f"{path.name}: no time column; expected one of {list(_TIME_COLUMNS)}, "
                f"got {list(raw.columns)}",
            )
        index = _to_utc_index(raw[time_col], path.name)
    missing = [c for c in OHLCV_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(
            "missing-columns",
            f"{path.name}: missing column(s) {missing}; expected {list(OHLCV_COLUMNS)}, "
            f"got {list(raw.columns)}",
        )
    frame = raw[list(OHLCV_COLUMNS)].copy()
    frame.index = index
    return frame


def _slice(frame: pd.DataFrame, start: Any, end: Any) -> pd.DataFrame:
    """Rows with ``start <= timestamp < end`` (either bound optional)."""
    mask = np.ones(len(frame), dtype=bool)
    if start is not None:
        mask &= frame.index >= to_utc(start)
    if end is not None:
        mask &= frame.index < to_utc(end)
    return frame.loc[mask]


def to_utc(value: Any) -> pd.Timestamp:
    """A date/time (string, datetime, epoch ms int) as a UTC ``Timestamp``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return pd.Timestamp(int(value), unit="ms", tz="UTC")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError("bad-date", f"{value!r} is not a date; expected e.g. 2024-01-31") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def candle_sources(
    symbol: str, timeframe: str, settings: Settings | None = None
) -> list[tuple[str, Path]]:
    """Every ``(source, path)`` holding ``symbol`` at ``timeframe``, in lookup order:
    the reference datasets, then the imported store (``local``), then the configured
    exchange's downloads, then every other local store (by name)."""
    settings = settings or get_settings()
    symbol = check_symbol(symbol)
    found: list[tuple[str, Path]] = []
    reference = find_dataset(settings.datasets_dir, symbol, timeframe)
    if reference is not None:
        found.append(("reference", reference))
    stores = sorted(p.name for p in settings.data_dir.glob("*") if p.is_dir())
    order = ["local", settings.exchange_id, *stores]
    for name in dict.fromkeys(order):
        path = cache_path(settings.data_dir, name, symbol, timeframe)
        if path.exists():
            found.append((name, path))
    return found


def _locate(
    symbol: str, timeframe: str, source: str | None, settings: Settings
) -> tuple[str, Path, list[str]]:
    """The source to read (``source`` if given, else the first in lookup order), its
    path and the other sources that hold the same market."""
    holding = candle_sources(symbol, timeframe, settings)
    names = [name for name, _ in holding]
    if source is not None:
        for name, path in holding:
            if name == source:
                return name, path, [n for n in names if n != name]
    elif holding:
        return holding[0][0], holding[0][1], names[1:]
    available = list_datasets(settings.datasets_dir, settings.data_dir)
    listing = [f"{s} {tf} ({src})" for src, s, tf, _ in available]
    if source is not None and holding:
        where = f"; it is in {', '.join(repr(n) for n in names)}: choose source {names[0]!r}"
    else:
        where = ""
    typed = f"{symbol} {timeframe}"
    others = sorted({f"{s} {tf}" for _, s, tf, _ in available} - {typed})
    hint = get_close_matches(typed, others, 1)
    raise DataError(
        "no-data",
        f"no candles for {typed}"
        + (f" in source {source!r}" if source is not None else "")
        + where
        + f"; available: {', '.join(listing) or 'none'}"
        + (f"; did you mean {hint[0]!r}?" if hint and not where else "")
        + (
            ""
            if where
            else f". Import a file with: botlib data import FILE --symbol {symbol} "
            f"--timeframe {timeframe}, or download with: botlib data fetch {symbol} "
            f"{timeframe} --start YYYY-MM-DD"
        ),
    )


def load_ohlcv(
    symbol: str,
    timeframe: str,
    *,
    start: Any = None,
    end: Any = None,
    source: str | None = None,
    exchange: str | None = None,
    gaps: GapPolicy | None = None,
    settings: Settings | None = None,
    with_report: bool = False,
) -> Any:
    """Load validated candles for ``symbol`` at ``timeframe`` without touching the network.

    Where from: ``source`` (``"reference"``, ``"local"`` for imported files, or an
    exchange id for its downloads; ``exchange=`` is the same option under its old
    name), else ``BOTLIB_DATA_SOURCE``, else the first source holding the market in
    the lookup order of ``candle_sources`` (reference datasets, imported, fetched).
    The frame's ``attrs`` say which was used (``source_name``, ``source``) and which
    others hold it (``also_in``). ``start``/``end`` select ``start <= t < end``.
    Returns the frame, or ``(frame, ValidationReport)`` when ``with_report`` is true.
    When nothing matches, ``DataError`` lists what exists.
    """
    settings = settings or get_settings()
    symbol = check_symbol(symbol)
    timeframe_seconds(timeframe)
    policy: GapPolicy = gaps or settings.gap_policy
    if source is not None and exchange is not None and source != exchange:
        raise DataError("bad-source", f"source={source!r} and exchange={exchange!r} disagree")
    chosen = source or exchange or settings.data_source
    name, path, also_in = _locate(symbol, timeframe, chosen, settings)
    raw = (
        read_cache(path)
        if path.suffix == ".parquet" and path.is_relative_to(settings.data_dir)
        else read_candles_file(path)
    )
    assert raw is not None
    raw = _slice(raw, start, end)
    if raw.empty:
        raise DataError(
            "empty-window", f"no {symbol} {timeframe} candles in [{start}, {end}) in {path}"
        )
    frame, report = validate_ohlcv(raw, timeframe, gaps=policy)
    frame.attrs.update(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "source": str(path),
            "source_name": name,
            "also_in": also_in,
        }
    )
    if report.gaps:
        log.info(
            "%s %s: %d gap(s), %d missing bar(s)",
            symbol,
            timeframe,
            len(report.gaps),
            report.missing_bars,
        )
    return (frame, report) if with_report else frame


def describe_source(frame: pd.DataFrame) -> str:
    """One line saying where ``frame``'s candles came from (and where else they are)."""
    attrs = frame.attrs
    line = (
        f"data: {attrs.get('symbol')} {attrs.get('timeframe')}, {len(frame):,} bars "
        f"{frame.index[0]:%Y-%m-%d %H:%M} → {frame.index[-1]:%Y-%m-%d %H:%M} UTC, "
        f"source {attrs.get('source_name')!r}"
    )
    if attrs.get("also_in"):
        line += f" (also in {', '.join(map(repr, attrs['also_in']))}: choose with --source)"
    return line


def import_ohlcv(
    path: str | Path,
    symbol: str,
    timeframe: str,
    *,
    exchange: str = "local",
    gaps: GapPolicy = "keep",
    settings: Settings | None = None,
) -> tuple[Path, ValidationReport]:
    """Validate a user's CSV or parquet file and store it in the cache.

    Nothing is written unless the whole file passes validation. Afterwards
    ``load_ohlcv(symbol, timeframe)`` finds it (or ``source=exchange`` to insist).
    """
    settings = settings or get_settings()
    symbol = check_symbol(symbol)
    frame, report = validate_ohlcv(read_candles_file(path), timeframe, gaps=gaps)
    target = cache_path(settings.data_dir, exchange, symbol, timeframe)
    write_cache(target, frame)
    return target, report
