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
* ``@champion`` deleted while the model serves: the model stops serving;
* ``@champion`` on a version botlib published before (tag ``botlib.promoted_at``, not
  refused since) while nothing of that model is served — Redis lost its entries, or a
  new Redis: served again without a second gate, as ``botlib up`` activates the
  champions of an empty Redis (``restored``, event ``activated``).

Its view is kept in ``botlib:registry`` (name → JSON: champion, served, last action),
which ``botlib status`` shows. ``run()`` polls every ``interval_s`` until ``stop()``.

Against an authenticated server every request costs a password check (about 0.3 s
here), and downloading a model's artifacts is a dozen requests. So the watcher fetches
ahead, in a background thread, the artifacts of each model's newest version and of its
``@previous`` (botlib's own versions only, kept only when their digest is the one
recorded at training), and reuses what it read in the same pass: when the alias moves,
the gate reads the version and its run and finds the files already here.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
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
    activate,
    evaluate_gate,
    publish_version,
)
from botlib.transport import active_models, connect, dumps, redis_names

__all__ = ["GRACE_S", "FetchAhead", "RegistryWatcher", "WatchAction", "botlib_origin"]

log = logging.getLogger("botlib.registry")

#: a version marked ``botlib.publishing_at`` less than this long ago is being published
#: by ``botlib promote`` / ``rollback`` (they mark it before moving the alias and clear
#: the mark once published): left alone
GRACE_S = 30.0


@dataclass(frozen=True)
class WatchAction:
    """What the watcher did about one model: ``published``, ``refused``,
    ``rolled_back``, ``restored`` or ``stopped``."""

    name: str
    action: str
    version: str | None
    detail: str = ""


def botlib_origin(client: Any, name: str, version: str) -> str:
    """Why ``name`` v``version`` is not a version botlib's training logged ("" if it
    is): the artifacts' digest recorded on the version at training, equal to the one on
    its run."""
    return _origin(client, name, client.get_model_version(name, version))[0]


def _origin(client: Any, name: str, mv: Any) -> tuple[str, Any]:
    """``botlib_origin`` of the model version ``mv``, and its run (None when refused
    before the run was read)."""
    from botlib.tracking.verify import DIGEST_TAG

    recorded = (mv.tags or {}).get(DIGEST_TAG)
    if not recorded:
        return "not logged by botlib's training (no artifact digest recorded on the version)", None
    if not mv.run_id:
        return "not logged by botlib's training (the version has no run)", None
    run = client.get_run(mv.run_id)
    tags = dict(run.data.tags)
    if tags.get("artifact_digest") != recorded or tags.get("model_name") != name:
        return "not logged by botlib's training (its run does not record these artifacts)", run
    return "", run


def _published_before(mv: Any) -> bool:
    """Whether botlib published the version before (``botlib promote`` or this
    watcher tagged it then) and did not refuse it since."""
    tags = mv.tags or {}
    return "botlib.promoted_at" in tags and not str(tags.get("botlib.gate", "")).startswith(
        "refused"
    )


@dataclass(frozen=True)
class _Files:
    root: Path
    folder: Path
    digest: str


class FetchAhead:
    """Downloaded artifacts of registered versions, each kept only when its digest is
    the one recorded on the version at training (so a kept copy is the bytes botlib
    wrote). ``ahead()`` queues a download to a background thread; ``files()`` answers
    from what is kept, waits for a download in flight, or downloads now. At most
    ``keep`` versions are kept (the least recently used go); a version is fetched ahead
    once, whatever became of it."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._dir: Path | None = None  # made at the first download
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="botlib-fetch")
        self._jobs: OrderedDict[tuple[str, str], Future[_Files | None]] = OrderedDict()
        self._asked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._client: Any = None  # the background thread's own (requests sessions)
        self._count = 0
        self.fetched_ahead = 0  # downloads done in the background
        self.hits = 0  # files() answered without a download of its own

    def ahead(self, name: str, version: str) -> None:
        """Queue ``name`` v``version`` for download, unless it was asked for before."""
        key = (name, version)
        with self._lock:
            if key in self._asked or key in self._jobs:
                return
            self._asked.add(key)
            self._jobs[key] = self._pool.submit(self._fetch_ahead, name, version)
        self._trim()

    def _fetch_ahead(self, name: str, version: str) -> _Files | None:
        from botlib.tracking import mlflow_client
        from botlib.tracking.verify import DIGEST_TAG

        try:
            if self._client is None:
                self._client = mlflow_client()
            mv = self._client.get_model_version(name, version)
            if _origin(self._client, name, mv)[0]:
                return None  # not botlib's: nothing of it is downloaded
            files = self._download(name, version, str((mv.tags or {}).get(DIGEST_TAG)))
        except Exception as exc:  # the server away, a version deleted: fetched when needed
            log.debug("fetch ahead of %s v%s failed: %s", name, version, exc)
            return None
        if files is not None:
            self.fetched_ahead += 1
        return files

    def _download(self, name: str, version: str, recorded: str) -> _Files | None:
        """Download into a folder of its own; kept (returned) only when its digest is
        ``recorded``."""
        from botlib.tracking.verify import artifact_digest, download_model

        with self._lock:
            if self._dir is None:
                self._dir = Path(tempfile.mkdtemp(prefix="botlib-registry-"))
            self._count += 1
            dst = self._dir / str(self._count)
        dst.mkdir()
        root, folder = download_model(f"models:/{name}/{version}", dst)
        digest = artifact_digest(root)
        if digest != recorded:
            shutil.rmtree(dst, ignore_errors=True)
            return None
        return _Files(root, folder, digest)

    def files(self, name: str, version: str, recorded: str | None) -> tuple[Path, Path] | None:
        """The version's (root, model folder) with the ``recorded`` digest, or None
        (nothing recorded, or what the registry holds now has another digest: the
        gate downloads it and says so)."""
        if not recorded:
            return None
        key = (name, version)
        with self._lock:
            job = self._jobs.get(key)
        kept = None
        if job is not None:
            try:
                kept = job.result()
            except Exception:
                kept = None
        if kept is not None and kept.digest == recorded:
            self.hits += 1
        else:
            kept = self._download(name, version, recorded)
            if kept is None:
                return None
            done: Future[_Files | None] = Future()
            done.set_result(kept)
            with self._lock:
                self._asked.add(key)
                self._jobs[key] = done
        with self._lock:
            if key in self._jobs:
                self._jobs.move_to_end(key)
        self._trim()
        return kept.root, kept.folder

    def settle(self) -> dict[tuple[str, str], bool]:
        """Wait for every download queued; (name, version) → whether it is kept."""
        with self._lock:
            jobs = list(self._jobs.items())
        return {key: job.exception() is None and job.result() is not None for key, job in jobs}

    def _trim(self) -> None:
        with self._lock:
            while len(self._jobs) > self.keep:
                key, job = next(iter(self._jobs.items()))
                if not job.done():
                    break  # the oldest is still downloading: trimmed later
                del self._jobs[key]
                kept = job.result() if job.exception() is None else None
                if kept is not None:
                    shutil.rmtree(kept.root, ignore_errors=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


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
        fetch_ahead: bool = True,
    ) -> None:
        from botlib.tracking import mlflow_client

        self.r: Any = r if r is not None else connect(role="bridge")
        self.names = redis_names()
        self.gate = gate
        self.interval_s = interval_s
        self.client = client or mlflow_client()
        self.fetch = FetchAhead()
        self.fetch_ahead = fetch_ahead
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
            tags = dict(model.tags or {})
            action = None
            if champion is None and serving is not None:
                action = self._stop_serving(model.name, entry or {})
            elif champion is not None and champion != serving:
                mv = self.client.get_model_version(model.name, champion)
                if self._in_flight(mv):
                    continue  # botlib's own promotion, still on its way to Redis
                if champion == aliases.get(PREVIOUS) and serving is not None:
                    action = self._roll_back(model.name, mv, serving, tags)
                elif serving is None and _published_before(mv):
                    action = self._restore(model.name, mv, tags)
                else:
                    action = self._promote(model.name, mv, serving, tags)
            if self.fetch_ahead:  # what the alias may move onto next
                newest = max((int(v.version) for v in model.latest_versions or []), default=0)
                for candidate in (str(newest) if newest else None, aliases.get(PREVIOUS)):
                    if candidate and candidate != (champion or serving):
                        self.fetch.ahead(model.name, candidate)
            self._record(model.name, champion, serving, action)
            if action is not None:
                log.info("%s: %s v%s %s", action.name, action.action, action.version,
                         action.detail)  # fmt: skip
                actions.append(action)
        return actions

    def _in_flight(self, mv: Any) -> bool:
        """Whether ``botlib promote`` / ``rollback`` are publishing the version ``mv``
        (their mark, set before the alias moves and cleared once published, is less
        than ``GRACE_S`` old: a mark left by a crash is ignored after that)."""
        tags = mv.tags or {}
        try:
            at = float(tags.get(PUBLISHING, "nan"))
        except ValueError:
            return False
        return time.time() - at < GRACE_S

    def _evaluate(
        self,
        name: str,
        mv: Any,
        model_tags: dict[str, str],
        *,
        run: Any = None,
        gate: GateConfig | None = None,
    ) -> GateResult:
        """``evaluate_gate`` on what this pass read already, with the version's files
        fetched ahead when they are."""
        from botlib.tracking.verify import DIGEST_TAG

        version = str(mv.version)
        files = self.fetch.files(name, version, (mv.tags or {}).get(DIGEST_TAG))
        return evaluate_gate(name, version, gate=gate, client=self.client, mv=mv, run=run,
                             model_tags=model_tags, artifacts=files)  # fmt: skip

    def _promote(
        self, name: str, mv: Any, serving: str | None, model_tags: dict[str, str]
    ) -> WatchAction:
        started = time.monotonic()
        version = str(mv.version)
        why, run = _origin(self.client, name, mv)
        if why:
            self._put_back(name, version, serving, [("origin", why)])
            return WatchAction(name, "refused", version, why)
        hits = self.fetch.hits
        result = self._evaluate(name, mv, model_tags, run=run, gate=self.gate)
        ahead = ", artifacts fetched ahead" if self.fetch.hits > hits else ""
        gated = time.monotonic()
        if not result.passed or not result.entry:
            failed = [(c.name, c.detail) for c in result.checks if not c.passed]
            self._put_back(name, version, serving, failed or [("entry", "cannot be served")])
            took = f" (gate {gated - started:.1f} s, put back {time.monotonic() - gated:.1f} s)"
            detail = "; ".join(f"{n}: {d}" for n, d in failed)
            return WatchAction(name, "refused", version, detail + took)
        publish_version(self.client, self.r, result, serving, alias_set=True, version_tags=mv.tags)
        took = f"gate {gated - started:.1f} s{ahead}, publish {time.monotonic() - gated:.1f} s"
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

    def _restore(self, name: str, mv: Any, model_tags: dict[str, str]) -> WatchAction:
        """``@champion`` on a version botlib published before, while nothing of its
        model is served (Redis lost its entries, or came up empty): served again
        without a second gate; a version not botlib's is still refused."""
        version = str(mv.version)
        why, run = _origin(self.client, name, mv)
        if why:
            self._put_back(name, version, None, [("origin", why)])
            return WatchAction(name, "refused", version, why)
        result = self._evaluate(name, mv, model_tags, run=run)
        if not result.entry:
            self._put_back(name, version, None, [("entry", "cannot be served")])
            return WatchAction(name, "refused", version, "cannot be served")
        gate = activate(self.client, self.r, result, mv.tags or {})  # as `botlib up` does
        return WatchAction(name, "restored", version, f"published before ({gate}), not served")

    def _roll_back(
        self, name: str, mv: Any, serving: str, model_tags: dict[str, str]
    ) -> WatchAction:
        version = str(mv.version)
        result = self._evaluate(name, mv, model_tags)  # the entry; no gate applies
        if not result.entry:
            self._put_back(name, version, serving, [("entry", "cannot be served")])
            return WatchAction(name, "refused", version, "cannot be served")
        _record_digest(self.client, name, version, result.entry, mv.tags)  # the loop checks it
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
        """Warm up, then poll every ``interval_s`` (from the start of one pass to the
        next) until ``stop()``; a failing pass is logged and retried at the next."""
        self.warm()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("redis unavailable (%s); retrying", exc)
            except Exception as exc:  # the registry server restarting, a network error
                log.error("registry watch failed: %s: %s", type(exc).__name__, exc)
            # the interval counts from the pass's start: a pass that acted (a gate, the
            # bookkeeping after a publish) does not delay the next look by a whole interval
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        self.fetch.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop, and remove the artifacts fetched ahead."""
        self.stop()
        self.fetch.close()
