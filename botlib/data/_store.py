"""Where candles live on disk: the read-only reference datasets and the parquet cache.

Cache layout: ``{data_dir}/{exchange}/{BASE}_{QUOTE}-{timeframe}.parquet``. Every write
goes to a temporary file in the same folder and is renamed into place, so a crash
never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from botlib.data._validate import OHLCV_COLUMNS
from botlib.errors import DataError

_SYMBOL = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+(:[A-Za-z0-9]+)?$")


def check_symbol(symbol: str) -> str:
    """``BTC/USDT`` style (ccxt unified); raises ``DataError`` otherwise."""
    if not _SYMBOL.match(symbol):
        raise DataError(
            "bad-symbol", f"symbol {symbol!r} is not in BASE/QUOTE form, e.g. 'BTC/USDT'"
        )
    return symbol.upper()


def symbol_slug(symbol: str) -> str:
    """``BTC/USDT`` -> ``BTC_USDT`` (file-name safe)."""
    return check_symbol(symbol).replace("/", "_").replace(":", "_")


def cache_path(data_dir: Path, exchange: str, symbol: str, timeframe: str) -> Path:
    return data_dir / exchange / f"{symbol_slug(symbol)}-{timeframe}.parquet"


def read_cache(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    frame.index = pd.DatetimeIndex(frame.index, name="timestamp").tz_convert("UTC")
    return frame[list(OHLCV_COLUMNS)]


def write_cache(path: Path, frame: pd.DataFrame) -> None:
    """Atomically replace ``path`` with ``frame``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_dataset(datasets_dir: Path | None, symbol: str, timeframe: str) -> Path | None:
    """A reference file for ``symbol``/``timeframe``: ``btc_usdt_1h.csv.gz`` or a dated slice
    ``btc_usdt_5m_<from>_<to>.csv.gz`` (the un-dated full file wins)."""
    if datasets_dir is None or not datasets_dir.is_dir():
        return None
    stem = f"{symbol_slug(symbol).lower()}_{timeframe}"
    for suffix in (".csv.gz", ".csv", ".parquet"):
        exact = datasets_dir / f"{stem}{suffix}"
        if exact.exists():
            return exact
    sliced = sorted(datasets_dir.glob(f"{stem}_*.csv*")) + sorted(
        datasets_dir.glob(f"{stem}_*.parquet")
    )
    return sliced[0] if sliced else None


def list_datasets(datasets_dir: Path | None, data_dir: Path) -> list[tuple[str, str, str, Path]]:
    """(source, symbol, timeframe, path) for every reference file and cached series."""
    found: list[tuple[str, str, str, Path]] = []
    pattern = re.compile(r"^([a-z0-9]+)_([a-z0-9]+)_([0-9]+[mhdw])(_.*)?\.(csv\.gz|csv|parquet)$")
    if datasets_dir is not None and datasets_dir.is_dir():
        for path in sorted(datasets_dir.iterdir()):
            m = pattern.match(path.name)
            if m:
                found.append(("reference", f"{m[1]}/{m[2]}".upper(), m[3], path))
    if data_dir.is_dir():
        for path in sorted(data_dir.glob("*/*.parquet")):
            name, _, timeframe = path.stem.rpartition("-")
            found.append((path.parent.name, name.replace("_", "/", 1), timeframe, path))
    return found
