"""The one place where backtrader 1.9.78.123 is made to work on Python 3.11.

* ``collections.Iterable`` (and friends) moved to ``collections.abc`` in 3.10;
  backtrader's ``LineIterator.bindlines`` still looks them up on ``collections`` and
  fails as soon as it is called with a non-string argument.
* Its plotting backend imports matplotlib with a Tk GUI backend, which breaks on a
  machine without a display; botlib never plots through backtrader (reports are
  plotly), and forces matplotlib's headless ``Agg`` backend before backtrader can
  load it.

Import backtrader only as ``from botlib.backtest._compat import bt``.
"""

from __future__ import annotations

import collections
import collections.abc
import os

for _name in ("Iterable", "Mapping", "MutableMapping", "Sequence", "Callable"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

os.environ.setdefault("MPLBACKEND", "Agg")

import backtrader as bt  # noqa: E402

__all__ = ["bt"]
