"""Progress of long steps (epochs, timesteps, generations, pipeline steps), reported to
whoever listens: the command line draws ``rich`` bars; a notebook or a library user
hears nothing unless they install a reporter.

>>> from botlib.progress import reporting
>>> with reporting(lambda task, done, total: print(task, done, total)):
...     train_session("lstm", ...)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Reporter", "advance", "reporting"]

#: ``(task, done, total)``; ``total`` is None when unknown
Reporter = Callable[[str, float, "float | None"], None]

_reporter: Reporter | None = None


def advance(task: str, done: float, total: float | None = None) -> None:
    """Say that ``task`` has reached ``done`` of ``total`` (cheap when nobody listens)."""
    if _reporter is not None:
        _reporter(task, done, total)


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send ``advance`` calls made inside the block to ``reporter``."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous
