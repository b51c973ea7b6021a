"""Market data: reference datasets, ccxt downloads, user files, and validation.

>>> from botlib.data import load_ohlcv
>>> candles = load_ohlcv("BTC/USDT", "1h", start="2024-01-01", end="2024-02-01")
"""

from botlib.data._fetch import fetch_ohlcv, make_exchange
from botlib.data._load import (
    candle_sources,
    describe_source,
    import_ohlcv,
    load_ohlcv,
    read_candles_file,
    to_utc,
)
from botlib.data._store import list_datasets
from botlib.data._timeframe import bars_per_year, timeframe_delta, timeframe_seconds
from botlib.data._validate import (
    OHLCV_COLUMNS,
    Gap,
    ValidationReport,
    ohlcv_values,
    validate_ohlcv,
)
from botlib.errors import DataError

__all__ = [
    "OHLCV_COLUMNS",
    "DataError",
    "Gap",
    "ValidationReport",
    "bars_per_year",
    "candle_sources",
    "describe_source",
    "fetch_ohlcv",
    "import_ohlcv",
    "list_datasets",
    "load_ohlcv",
    "make_exchange",
    "ohlcv_values",
    "read_candles_file",
    "timeframe_delta",
    "timeframe_seconds",
    "to_utc",
    "validate_ohlcv",
]
