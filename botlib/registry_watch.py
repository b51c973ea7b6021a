"""The registry as a control surface (issue 18 §1): ``@champion`` set anywhere — the
MLflow UI, its REST API, a notebook — is what the loop serves, through the same gate
as ``botlib promote``.

``RegistryWatcher.poll()`` compares every registered model's ``@champion`` with the
entry the loop serves (``botlib:active_models``) and acts on a difference:

* ``@champion`` on a new version: if the version was logged by botlib's own training
  (its artifacts' digest recorded on the version at training, the same digest on its
  run) the gate runs. A pass publishes it exactly as ``botlib promote`` does (the
  version served before becomes ``@previous``). A failure moves ``@champion`` back to
  the served version (or removes it when none is served) and records the failed
  checks on the version: tags ``botlib.gate`` and ``botlib.gate.{check}``, and a
  description the UI shows. A version from anywhere else is refused the same way,
  before anything of it is loaded (its artifacts may be in a code-executing format);
* ``@champion`` moved onto the ``@previous`` version: an emergency rollback, published
  without the gate (``@previous`` is cleared, as ``botlib rollback`` does);
* ``@champion`` deleted while the model serves: the model stops serving.

Its view is kept in ``botlib:registry`` (name → JSON: champion, served, last action),
which ``botlib status`` shows. ``run()`` polls every ``interval_s`` until ``stop()``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from botlib.promotion import (
    CHAMPION,
    PREVIOUS,
    PUBLISHING,
    GateConfig,
    GateResult,
    _announce,
    _record_digest,
    evaluate_gate,
    publish_version,
)
from botlib.transport import active_models, connect, dumps, redis_names

__all__ = ["GRACE_S", "RegistryWatcher", "WatchAction", "botlib_origin"]

log = logging.getLogger("botlib.registry")

#: a version marked ``botlib.publishing_at`` less than this long ago is being published
#: by ``botlib promote`` / ``rollback`` (they mark it before moving the alias and clear
#: the mark once published): left alone
GRACE_S = 30.0


@dataclass(frozen=True)
class WatchAction:
    """What the watcher did about one model: ``published``, ``refused``,
    ``rolled_back`` or ``stopped``."""

    name: str
    action: str
    version: str | None
    detail: str = ""


def botlib_origin(client: Any, name: str, version: str) -> str:
    """Why ``name`` v``version`` is not a version botlib's training logged ("" if it
    is): the artifacts' digest recorded on the version at training, equal to the one on
    its run."""
    from botlib.tracking.verify import DIGEST_TAG

    mv = client.get_model_version(name, version)
    recorded = (mv.tags or {}).get(DIGEST_TAG)
    if not recorded:
        return "not logged by botlib's training (no artifact digest recorded on the version)"
    if not mv.run_id:
        return "not logged by botlib's training (the version has no run)"
    run = client.get_run(mv.run_id)
    tags = dict(run.data.tags)
    if tags.get("artifact_digest") != recorded or tags.get("model_name") != name:
        return "not logged by botlib's training (its run does not record these artifacts)"
    return ""


class RegistryWatcher:
    """Keeps what the loop serves equal to the registry's ``@champion`` (see the module
    doc). ``r``: a Redis client allowed to publish models (the bridge's role)."""

    def __init__(
        self,
        r: Any = None,
        *,
        gate: GateConfig | None = None,
        interval_s: float = 2.0,
        client: Any = None,
    ) -> None:
        from botlib.tracking import mlflow_client

        self.r: Any = r if r is not None else connect(role="bridge")
        self.names = redis_names()
        self.gate = gate
        self.interval_s = interval_s
        self.client = client or mlflow_client()
        self._stop = threading.Event()

    # -- one pass -------------------------------------------------------------------
    def poll(self) -> list[WatchAction]:
        """Compare every registered model's ``@champion`` with what is served; act."""
        served = active_models(self.r, self.names)
        actions = []
        for model in self.client.search_registered_models():
            aliases = {k: str(v) for k, v in (model.aliases or {}).items()}
            entry = served.get(model.name)
            serving = str(entry["version"]) if entry else None
            champion = aliases.get(CHAMPION)
            action = None
            if champion is None and serving is not None:
                action = self._stop_serving(model.name, entry or {})
            elif champion is not None and champion != serving:
                if self._in_flight(model.name, champion):
                    continue  # botlib's own promotion, still on its way to Redis
                if champion == aliases.get(PREVIOUS) and serving is not None:
                    action = self._roll_back(model.name, champion, serving)
                else:
                    action = self._promote(model.name, champion, serving)
            self._record(model.name, champion, serving, action)
            if action is not None:
                log.info("%s: %s v%s %s", action.name, action.action, action.version,
                         action.detail)  # fmt: skip
                actions.append(action)
        return actions

    def _in_flight(self, name: str, version: str) -> bool:
        """Whether ``botlib promote`` / ``rollback`` are publishing ``version`` (their
        mark, set before the alias moves and cleared once published, is less than
        ``GRACE_S`` old: a mark left by a crash is ignored after that)."""
        tags = self.client.get_model_version(name, version).tags or {}
        try:
            at = float(tags.get(PUBLISHING, "nan"))
        except ValueError:
            return False
        return time.time() - at < GRACE_S

    def _promote(self, name: str, version: str, serving: str | None) -> WatchAction:
        started = time.monotonic()
        why = botlib_origin(self.client, name, version)
        if why:
            self._put_back(name, version, serving, [("origin", why)])
            return WatchAction(name, "refused", version, why)
        result = evaluate_gate(name, version, gate=self.gate)
        gated = time.monotonic()
        if not result.passed or not result.entry:
            failed = [(c.name, c.detail) for c in result.checks if not c.passed]
            self._put_back(name, version, serving, failed or [("entry", "cannot be served")])
            took = f" (gate {gated - started:.1f} s, put back {time.monotonic() - gated:.1f} s)"
            detail = "; ".join(f"{n}: {d}" for n, d in failed)
            return WatchAction(name, "refused", version, detail + took)
        publish_version(self.client, self.r, result, serving, alias_set=True)
        took = f"gate {gated - started:.1f} s, publish {time.monotonic() - gated:.1f} s"
        return WatchAction(name, "published", version, f"gate passed ({took})")

    def _put_back(
        self, name: str, version: str, serving: str | None, failed: list[tuple[str, str]]
    ) -> None:
        """The reasons on the refused version, then ``@champion`` back where it was
        (whoever sees the alias back finds why on the version)."""
        summary = ", ".join(n for n, _ in failed)
        self.client.set_model_version_tag(name, version, "botlib.gate", f"refused: {summary}")
        for check, detail in failed:
            self.client.set_model_version_tag(name, version, f"botlib.gate.{check}", detail[:500])
        lines = "\n".join(f"- {n}: {d}" for n, d in failed)
        self.client.update_model_version(
            name, version, description=f"botlib refused @champion for this version:\n{lines}"
        )
        if serving is not None:
            self.client.set_registered_model_alias(name, CHAMPION, serving)
        else:
            self.client.delete_registered_model_alias(name, CHAMPION)

    def _roll_back(self, name: str, version: str, serving: str) -> WatchAction:
        result: GateResult = evaluate_gate(name, version)  # the entry; no gate applies
        if not result.entry:
            self._put_back(name, version, serving, [("entry", "cannot be served")])
            return WatchAction(name, "refused", version, "cannot be served")
        _record_digest(self.client, name, version, result.entry)  # the loop checks it
        entry = {**result.entry, "promoted_at": time.time(), "gate": "rollback"}
        event = {"event": "rolled_back", "name": name, "version": version, "previous": serving}
        _announce(self.r, self.names, event, entry)  # served first, bookkeeping after
        self.client.delete_registered_model_alias(name, PREVIOUS)
        self.client.set_model_version_tag(name, serving, "botlib.rolled_back_at", str(time.time()))
        return WatchAction(name, "rolled_back", version, f"from v{serving}, without the gate")

    def _stop_serving(self, name: str, entry: dict[str, Any]) -> WatchAction:
        version = str(entry.get("version", ""))
        event = {"event": "deactivated", "name": name, "version": version}
        _announce(self.r, self.names, event, None, was=entry)
        return WatchAction(name, "stopped", version, "@champion was deleted")

    def _record(
        self, name: str, champion: str | None, serving: str | None, action: WatchAction | None
    ) -> None:
        now_serving = action.version if action and action.action != "refused" else serving
        if action is not None and action.action == "stopped":
            now_serving = None
        view: dict[str, Any] = {"champion": champion, "served": now_serving, "at": time.time()}
        if action is not None:
            view["last_action"] = asdict(action)
        else:
            previous = self.r.hget(self.names.registry, name)
            if previous:
                last = json.loads(previous).get("last_action")
                if last:
                    view["last_action"] = last
        self.r.hset(self.names.registry, name, dumps(view))

    # -- running ------------------------------------------------------------------
    def warm(self) -> None:
        """Import every built-in model family now (TensorFlow, PyTorch): a version set
        as @champion is then gated and published in seconds, not after a cold start."""
        from botlib.models import get_model_class, model_names

        for name in model_names():
            try:
                get_model_class(name)
            except Exception as exc:  # a family that cannot load is said at its gate
                log.warning("model family %s not loaded: %s", name, exc)

    def run(self) -> None:
        """Warm up, then poll until ``stop()``; a failing pass is logged and retried at
        the next."""
        self.warm()
        while not self._stop.is_set():
            try:
                self.poll()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("redis unavailable (%s); retrying", exc)
            except Exception as exc:  # the registry server restarting, a network error
                log.error("registry watch failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
