"""The live side: feeds that put closed candles on Redis, and the signal loop that turns
them into predictions and signals for the backend."""

from botlib.live.feeds import bars_from_candles, last_published, poll_ccxt, publish_bars, replay
from botlib.live.loop import LoopConfig, LoopStats, SignalLoop

__all__ = [
    "LoopConfig",
    "LoopStats",
    "SignalLoop",
    "bars_from_candles",
    "last_published",
    "poll_ccxt",
    "publish_bars",
    "replay",
]
