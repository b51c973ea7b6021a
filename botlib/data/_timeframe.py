"""Timeframe strings (ccxt style: ``5m``, ``1h``, ``1d``) and their arithmetic."""

from __future__ import annotations

import re

import pandas as pd

from botlib.errors import DataError

_UNIT_SECONDS = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_PATTERN = re.compile(r"^([1-9][0-9]*)([mhdw])$")
#: Timeframes that exchanges commonly serve; any ``N<unit>`` is accepted.
COMMON_TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "1w")
_SECONDS_PER_YEAR = 365 * 86_400  # crypto trades every day of the year


def timeframe_seconds(timeframe: str) -> int:
    """Length of one bar in seconds; raises ``DataError`` for an unknown timeframe."""
    match = _PATTERN.match(str(timeframe))
    if match is None:
        raise DataError(
            "unknown-timeframe",
            f"timeframe {timeframe!r} is not understood; expected a number and a unit "
            f"m/h/d/w, e.g. one of {', '.join(COMMON_TIMEFRAMES)}",
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def timeframe_delta(timeframe: str) -> pd.Timedelta:
    """One bar as a ``Timedelta``."""
    return pd.Timedelta(seconds=timeframe_seconds(timeframe))


def bars_per_year(timeframe: str) -> float:
    """Bars in a 365-day year: 8,760 for ``1h`` (crypto does not close; not 252 days)."""
    return _SECONDS_PER_YEAR / timeframe_seconds(timeframe)
