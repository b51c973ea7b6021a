"""Signal frames: what a strategy or model wants to hold, bar by bar.

A signal frame shares the candle index and has:

* ``target`` — the wanted position as a fraction of equity: ``1`` fully long, ``0``
  flat, ``-1`` fully short (shorts only when the backtest allows them). NaN means
  "no opinion, keep what you have".
* ``stop_loss`` / ``take_profit`` (optional) — absolute price levels (quote currency)
  attached to the position opened by that bar's signal.

**Fill convention.** The signal of bar ``t`` is computed from data up to ``t``'s close
and acted upon at the *open of bar t+1*. Orders are sent only when the target
*changes*; after a stop loss or take profit closes a position the book stays flat
until the next change of target. Stop-loss and take-profit orders are live from the
bar after the entry fill; when both could trigger in one bar the stop is assumed
to fill first (the pessimistic choice).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from botlib.errors import ConfigError

__all__ = ["SIGNAL_COLUMNS", "from_actions", "normalize_signals"]

SIGNAL_COLUMNS = ("target", "stop_loss", "take_profit")
_ACTIONS = {"buy": 1.0, "sell": -1.0, "close": 0.0}


def from_actions(actions: pd.Series, *, size: float = 1.0, long_only: bool = True) -> pd.DataFrame:
    """Turn ``buy`` / ``sell`` / ``close`` / ``hold`` labels into a signal frame.

    ``buy`` targets ``+size``; ``sell`` targets ``-size`` (or flat when ``long_only``);
    ``close`` targets flat; ``hold`` (or NaN) keeps the current target.
    """
    unknown = sorted(set(actions.dropna().astype(str)) - {*_ACTIONS, "hold"})
    if unknown:
        raise ConfigError(f"unknown action(s) {unknown}; expected buy, sell, close or hold")
    mapping = dict(_ACTIONS)
    mapping["buy"] = size
    mapping["sell"] = 0.0 if long_only else -size
    target = actions.map(lambda a: mapping.get(str(a), np.nan) if pd.notna(a) else np.nan)
    return pd.DataFrame({"target": target.astype("float64")}, index=actions.index)


def normalize_signals(
    signals: pd.DataFrame | pd.Series, index: pd.DatetimeIndex, *, allow_short: bool = False
) -> pd.DataFrame:
    """Check a signal frame against the candle index and return it with all three
    columns, ``target`` forward-filled from an initial flat book."""
    if isinstance(signals, pd.Series):
        signals = signals.rename("target").to_frame()
    if "target" not in signals.columns:
        raise ConfigError(
            f"signal frame needs a 'target' column; got {list(map(str, signals.columns))}"
        )
    extra = sorted(set(map(str, signals.columns)) - set(SIGNAL_COLUMNS))
    if extra:
        raise ConfigError(f"unknown signal column(s) {extra}; expected {list(SIGNAL_COLUMNS)}")
    if not signals.index.equals(index):
        raise ConfigError(
            f"signal index ({len(signals)} rows, {signals.index.min()} .. {signals.index.max()}) "
            f"does not match the candles ({len(index)} rows, {index.min()} .. {index.max()})"
        )
    out = pd.DataFrame(index=index)
    target = pd.to_numeric(signals["target"], errors="coerce").astype("float64")
    finite = target.dropna()
    if (finite.abs() > 1.0 + 1e-12).any():
        bad = finite[finite.abs() > 1.0 + 1e-12]
        raise ConfigError(
            f"target must lie in [-1, 1] (a fraction of equity); "
            f"got {bad.iloc[0]} at {bad.index[0]}"
        )
    if not allow_short and (finite < 0).any():
        first = finite[finite < 0].index[0]
        raise ConfigError(
            f"short target at {first} but shorts are disabled; pass allow_short=True or "
            "use targets in [0, 1]"
        )
    out["target"] = target.ffill().fillna(0.0)
    for col in ("stop_loss", "take_profit"):
        values = signals[col] if col in signals.columns else pd.Series(np.nan, index=index)
        values = pd.to_numeric(values, errors="coerce").astype("float64")
        if (values.dropna() <= 0).any():
            raise ConfigError(f"{col} levels must be positive prices")
        out[col] = values
    return out
