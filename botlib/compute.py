"""One pluggable ``map`` for expensive, independent evaluations (optimizer fitness,
walk-forward folds, hyperparameter sweeps): serial, a local process pool, or Dask.

>>> with open_mapper("dask") as pmap:          # a LocalCluster on loopback
...     scores = pmap.map(objective, candidates)

``spec`` is ``"serial"`` (default), ``"processes"`` / ``"processes:4"``, ``"dask"`` /
``"dask:4"`` (a ``distributed.LocalCluster`` with that many single-threaded worker
processes), or a scheduler address ``"tcp://HOST:PORT"`` (an existing cluster). Results
come back in the order of the inputs, so a seeded search gives the same answer on every
backend. The function is shipped to each worker once (not once per task); it must be
picklable (a module-level function or a callable object, e.g. ``RuleObjective``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

from botlib.errors import ConfigError

__all__ = ["Mapper", "SerialMapper", "open_mapper", "parse_backend"]


class Mapper(Protocol):
    """``map(fn, items)`` -> ``[fn(item) for item in items]``, possibly elsewhere."""

    name: str

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]: ...


class SerialMapper:
    name = "serial"

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return [fn(item) for item in items]


# -- a local process pool -------------------------------------------------------------
_WORKER_FN: Callable[[Any], Any] | None = None


def _install(fn: Callable[[Any], Any]) -> None:
    global _WORKER_FN
    _WORKER_FN = fn


def _apply(item: Any) -> Any:
    assert _WORKER_FN is not None, "worker started without a function"
    return _WORKER_FN(item)


class ProcessMapper:
    """A ``ProcessPoolExecutor`` per distinct function (kept while it is reused)."""

    def __init__(self, workers: int) -> None:
        self.name = f"processes:{workers}"
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._fn: Callable[[Any], Any] | None = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        if self._pool is None or self._fn is not fn:
            self.close()
            self._pool = ProcessPoolExecutor(self.workers, initializer=_install, initargs=(fn,))
            self._fn = fn
        chunk = max(1, len(items) // (4 * self.workers))
        return list(self._pool.map(_apply, items, chunksize=chunk))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


# -- Dask -------------------------------------------------------------------------------
def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


class DaskMapper:
    """Tasks on a ``distributed`` cluster; the function is scattered to every worker
    once per distinct function."""

    def __init__(self, client: Any, name: str) -> None:
        self.client, self.name = client, name
        self._fn: Callable[[Any], Any] | None = None
        self._remote: Any = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        if self._fn is not fn:
            self._remote = self.client.scatter(fn, broadcast=True, hash=False)
            self._fn = fn
        futures = self.client.map(_call, [self._remote] * len(items), list(items), pure=False)
        return list(self.client.gather(futures))


def parse_backend(spec: str) -> tuple[str, int]:
    """(kind, workers) of a backend spec; an unknown one raises ``ConfigError``."""
    kind, _, count = spec.partition(":")
    if kind.startswith("tcp") or kind.startswith("tls"):
        return "address", 0
    if kind not in ("serial", "processes", "dask"):
        from botlib.errors import unknown_name

        raise unknown_name("compute backend", kind, ["serial", "processes", "dask", "tcp://…"])
    try:
        workers = int(count) if count else min(2, os.cpu_count() or 1)
    except ValueError:
        raise ConfigError(f"compute backend {spec!r}: worker count must be a number") from None
    if workers < 1:
        raise ConfigError(f"compute backend {spec!r}: need at least one worker")
    return kind, workers


@contextmanager
def open_mapper(spec: str | None = None) -> Iterator[Mapper]:
    """The mapper named by ``spec`` (see the module doc), closed on exit (a LocalCluster
    it started is shut down; an external cluster is left running)."""
    kind, workers = parse_backend(spec or "serial")
    if kind == "serial":
        yield SerialMapper()
        return
    if kind == "processes":
        pmap = ProcessMapper(workers)
        try:
            yield pmap
        finally:
            pmap.close()
        return
    try:
        import distributed
    except ImportError:  # pragma: no cover - a dependency of botlib
        raise ConfigError("Dask backends need the `distributed` package") from None
    if kind == "address":
        client: Any = distributed.Client(str(spec), timeout="10s")  # type: ignore[no-untyped-call]
        try:
            yield DaskMapper(client, str(spec))
        finally:
            client.close()
        return
    cluster: Any = distributed.LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    )
    client = distributed.Client(cluster)  # type: ignore[no-untyped-call]
    try:
        yield DaskMapper(client, f"dask:{workers}")
    finally:
        client.close()
        cluster.close()
