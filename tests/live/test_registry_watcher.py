"""Issue 18 §1: ``@champion`` set in the registry (as the MLflow UI sets it, through
the client's alias API) is what the loop serves, through the gate; a refused version
gets its alias moved back and its failed checks on it; ``@previous`` rolls back
without the gate; a deleted ``@champion`` stops serving; a version botlib's training
did not log is refused before anything of it is loaded."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from mlflow import MlflowClient

from botlib.promotion import GateConfig
from botlib.registry_watch import RegistryWatcher
from tests.conftest import Store
from tests.live.helpers import as_role

LENIENT = GateConfig(margin=-10.0, min_trades=0)
STRICT = GateConfig(margin=10.0)  # beat buy-and-hold by 1,000 %: nothing passes
pytestmark = pytest.mark.slow


def _served(r: redis.Redis, name: str) -> str | None:
    raw = r.hget("botlib:active_models", name)
    return str(json.loads(raw)["version"]) if raw else None


def test_the_registry_champion_is_what_the_loop_serves(
    store: Store, redis_server: Any, r: redis.Redis
) -> None:
    client = MlflowClient()
    name = store.lstm
    for version in ("1", "2"):  # as fresh from training (the session's store is shared)
        tags = client.get_model_version(name, version).tags
        for tag in ("botlib.promoted_at", "botlib.gate"):
            if tag in tags:
                client.delete_model_version_tag(name, version, tag)
    if "champion" in client.get_registered_model(name).aliases:
        client.delete_registered_model_alias(name, "champion")
    watcher = RegistryWatcher(as_role(r, "bridge"), gate=LENIENT, client=client)
    assert [a for a in watcher.poll() if a.name == name] == []  # nothing set, nothing served

    # the newest version is fetched ahead, in the background, and kept: its digest
    # is the one recorded at training
    assert watcher.fetch.settle()[(name, "2")] is True

    client.set_registered_model_alias(name, "champion", "1")  # as the UI does
    (action,) = watcher.poll()
    assert (action.action, action.version) == ("published", "1")
    assert "fetched ahead" not in action.detail  # v1 was downloaded by its gate
    assert _served(r, name) == "1"
    events = [json.loads(f["data"]) for _, f in r.xrange("botlib:model_events")]
    assert events[-1]["event"] == "promoted" and events[-1]["version"] == "1"

    client.set_registered_model_alias(name, "champion", "2")
    (action,) = watcher.poll()
    assert action.action == "published" and _served(r, name) == "2"
    assert "artifacts fetched ahead" in action.detail, action.detail
    assert str(client.get_registered_model(name).aliases["previous"]) == "1"

    # back onto @previous: an emergency rollback, without the gate (strict here)
    watcher.gate = STRICT
    client.set_registered_model_alias(name, "champion", "1")
    (action,) = watcher.poll()
    assert action.action == "rolled_back" and _served(r, name) == "1"
    assert "previous" not in client.get_registered_model(name).aliases

    # a version the gate refuses: the alias goes back, the reasons go on the version
    client.set_registered_model_alias(name, "champion", "2")
    (action,) = watcher.poll()
    assert action.action == "refused" and _served(r, name) == "1"
    assert str(client.get_registered_model(name).aliases["champion"]) == "1"
    refused = client.get_model_version(name, "2")
    assert refused.tags["botlib.gate"].startswith("refused: ")
    assert "beats" in refused.tags["botlib.gate"] or "baselines" in refused.tags["botlib.gate"]
    assert "botlib refused @champion" in refused.description
    assert watcher.poll() == []  # in sync again

    # a version registered from outside botlib's training: refused unread
    outside = client.create_model_version(name, client.get_model_version(name, "1").source)
    try:
        client.set_registered_model_alias(name, "champion", outside.version)
        (action,) = watcher.poll()
        assert action.action == "refused" and "not logged by botlib" in action.detail
        assert _served(r, name) == "1"
        # the newest version, but nothing of it is fetched ahead either
        assert watcher.poll() == []
        assert watcher.fetch.settle()[(name, str(outside.version))] is False
        assert str(client.get_registered_model(name).aliases["champion"]) == "1"
    finally:
        client.delete_model_version(name, outside.version)

    # Redis lost its entries (or a new one came up): the champion botlib published
    # before is served again, without a second gate (the strict one would refuse it)
    r.delete("botlib:active_models")
    (action,) = watcher.poll()
    assert action.action == "restored" and _served(r, name) == "1"
    assert str(client.get_registered_model(name).aliases["champion"]) == "1"

    # @champion deleted: the model stops serving
    client.delete_registered_model_alias(name, "champion")
    (action,) = watcher.poll()
    assert action.action == "stopped" and _served(r, name) is None
    view = json.loads(r.hget("botlib:registry", name) or "{}")
    assert view["champion"] is None and view["served"] is None
    assert view["last_action"]["action"] == "stopped"

    # botlib promote tags the version before it moves the alias: while its publish is
    # on its way (30 s at most), the watcher leaves the alias alone
    import time

    client.set_model_version_tag(name, "2", "botlib.publishing_at", str(time.time()))
    client.set_registered_model_alias(name, "champion", "2")
    assert watcher.poll() == [] and _served(r, name) is None
    client.delete_registered_model_alias(name, "champion")
    client.delete_model_version_tag(name, "2", "botlib.publishing_at")
    watcher.close()


def test_fetched_ahead_artifacts_are_kept_only_with_the_recorded_digest(store: Store) -> None:
    from botlib.registry_watch import FetchAhead
    from botlib.tracking.verify import DIGEST_TAG, artifact_digest

    recorded = MlflowClient().get_model_version(store.lstm, "1").tags[DIGEST_TAG]
    fetch = FetchAhead(keep=1)
    try:
        assert fetch.files(store.lstm, "1", "0" * 64) is None  # another digest: not kept
        assert fetch.settle() == {}
        root, folder = fetch.files(store.lstm, "1", recorded) or (None, None)
        assert root is not None and artifact_digest(root) == recorded
        assert (folder / "botlib_model.json").exists()
        assert fetch.files(store.lstm, "1", recorded) == (root, folder) and fetch.hits == 1
        fetch.files(store.lstm, "2", MlflowClient().get_model_version(store.lstm, "2")
                    .tags[DIGEST_TAG])  # fmt: skip
        assert not root.exists()  # keep=1: the least recently used went
    finally:
        fetch.close()
