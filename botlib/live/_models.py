"""The models the loop serves: which are active, loading them, swapping them in.

Promotion writes ``botlib:active_models`` and bumps its revision; the loop polls the
revision between steps. A changed entry loads in a background thread (a version
already loaded is shared by every market it serves) and is checked — its features
computable, its schema hash the promoted one — before it takes over at the next step;
one that fails is refused and the old version keeps serving.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from botlib.models import BaseModel, ModelMeta
from botlib.tracking.verify import load_verified
from botlib.transport import RedisNames, active_models

__all__ = ["ActiveModels", "Served"]

log = logging.getLogger("botlib.serve")


@dataclass
class Served:
    """An active model entry and its loaded model."""

    entry: dict[str, Any]
    model: BaseModel

    @cached_property
    def meta(self) -> ModelMeta:
        """The model's meta, read once (a served model does not change)."""
        return self.model.meta

    @cached_property
    def required_history(self) -> int:
        return int(self.meta.required_history)

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def model_id(self) -> str:
        return str(self.entry.get("model_id") or f"{self.name}:{self.entry['version']}")

    def record_symbol(self, market_symbol: str) -> str:
        """The symbol its records carry: as the backend spells it, when bound so."""
        return str(self.entry.get("symbol_as") or market_symbol)

    def stream(self, names: RedisNames, default_exchange: str) -> str:
        exchange = str(self.entry.get("exchange") or default_exchange)
        return names.bar_stream(exchange, str(self.entry["symbol"]), str(self.entry["timeframe"]))


def _check(entry: dict[str, Any], model: BaseModel) -> str:
    from botlib.promotion import _feature_checks

    problems = _feature_checks(model)
    want = entry.get("feature_schema_hash")
    if want and want != model.meta.feature_schema_hash:
        problems.append(f"schema hash {model.meta.feature_schema_hash} != promoted {want}")
    return "; ".join(problems)


class ActiveModels:
    """``served``: registered name -> ``Served``. ``on_refused(message)`` is told of
    every version that could not be loaded or checked."""

    def __init__(self, r: Any, names: RedisNames, on_refused: Callable[[str], None]) -> None:
        self.r = r
        self.names = names
        self.on_refused = on_refused
        self.served: dict[str, Served] = {}
        self.revision: str | None = None
        self.reloads = 0
        self.refused = 0
        self._loading: dict[str, str] = {}  # name -> version being loaded
        self._loaded: queue.Queue[tuple[str, dict[str, Any], BaseModel | None, str]] = queue.Queue()
        self._cache: dict[str, BaseModel] = {}

    def _load(self, name: str, entry: dict[str, Any]) -> None:
        try:
            uri = str(entry["model_uri"])
            # one loaded copy per version, shared by every market it serves; loaded only
            # from the registry, its artifacts' digest checked first (tracking.verify)
            model = self._cache.get(uri) or load_verified(entry)
            self._cache[uri] = model
            problem = _check(entry, model)
            self._loaded.put((name, entry, None if problem else model, problem))
        except Exception as exc:  # a model that cannot load is refused, never fatal
            self._loaded.put((name, entry, None, f"{type(exc).__name__}: {exc}"))

    def load(self, *, wait: bool = True) -> None:
        """Read the active models and load any that changed (in the background unless
        ``wait``); models no longer active stop being served at once."""
        self.revision = self.r.get(self.names.active_revision)
        wanted = active_models(self.r, self.names)
        for name in list(self.served):
            if name not in wanted:
                log.info("%s is no longer active", name)
                del self.served[name]
        for name, entry in wanted.items():
            current = self.served.get(name)
            version = str(entry.get("version"))
            wanted_key = (version, entry.get("model_uri"))
            if (
                current is not None
                and (str(current.entry.get("version")), current.entry.get("model_uri"))
                == wanted_key
            ):
                continue  # the same version from the same place: nothing to reload
            if self._loading.get(name) == version:
                continue
            self._loading[name] = version
            if wait:
                self._load(name, entry)
            else:
                threading.Thread(target=self._load, args=(name, entry), daemon=True).start()
        if wait:
            self.swap()

    def swap(self) -> None:
        """Put loaded versions into service (between two steps)."""
        swapped = False
        while True:
            try:
                name, entry, model, problem = self._loaded.get_nowait()
            except queue.Empty:
                break
            self._loading.pop(name, None)
            if model is None:
                self.refused += 1
                self.on_refused(f"refused {name} v{entry.get('version')}: {problem}")
                continue
            old = self.served.get(name)
            self.served[name] = Served(entry, model)
            self.reloads += 1
            swapped = True
            log.info(
                "%s v%s serving%s",
                name,
                entry.get("version"),
                f" (was v{old.entry.get('version')})" if old else "",
            )
        if swapped:
            # the models' objects are long-lived: keep the garbage collector from walking
            # them on every collection (that is what shows in the latency's tail)
            gc.collect()
            gc.freeze()
        # keep only the versions still served (or about to be)
        wanted = {str(s.entry["model_uri"]) for s in self.served.values()}
        for uri in list(self._cache):
            if uri not in wanted and not self._loading:
                del self._cache[uri]
