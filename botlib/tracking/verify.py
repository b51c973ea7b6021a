"""Models are served only from the registry, and only as promoted.

An active-model entry in Redis names what to serve, and Redis is writable by more
processes than MLflow is. So the loop and the bridge never load what an entry points
at: they load ``models:/NAME/VERSION`` — the entry's ``model_uri`` must be exactly that
form, of the entry's version (a local path, a ``runs:/`` URI or any other scheme is
refused) — and before a byte of it is deserialized, the SHA-256 digest of the
downloaded artifacts is compared with the digest recorded on that registered version
when it was trained — or, for a version trained before digests were kept, first
promoted (tag ``botlib.artifact_digest``). A mismatch — artifacts changed
after promotion — or a version with no recorded digest is refused with the reason.

Some of a model's files can execute code when loaded: the pyfunc wrapper
(``python_model.pkl``, cloudpickle) and the reinforcement-learning agents
(stable-baselines3's ``agent.zip``, cloudpickle inside). botlib loads the latter only
through this check, and never unpickles the former.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botlib.errors import ConfigError

__all__ = [
    "DIGEST_TAG",
    "artifact_digest",
    "download_model",
    "load_verified",
    "private_copy",
    "record_digest",
    "registry_version",
    "verified_folder",
    "verify_member",
]

DIGEST_TAG = "botlib.artifact_digest"
_REGISTRY_URI = re.compile(r"models:/([A-Za-z0-9_.-]{1,200})/([0-9]{1,9})")


def artifact_digest(root: Path) -> str:
    """SHA-256 over every file under ``root``: relative path and content, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def download_model(uri: str, dst: Path) -> tuple[Path, Path]:
    """Download a logged model into the folder ``dst``: (the downloaded folder, the
    botlib model inside it). ``dst`` is required: without one, MLflow hands back a
    local store's own folder and writes a file into it (see ``private_copy``)."""
    import mlflow

    from botlib.tracking import use_store
    from botlib.tracking.pyfunc import resolve_model_uri

    use_store()
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    return root, resolve_model_uri(uri, local=root)


@contextmanager
def private_copy(uri: str) -> Iterator[tuple[Path, Path]]:
    """``download_model`` into a temporary folder of this call's own, removed on
    leaving the block. Never the store's own folder: MLflow writes a
    ``registered_model_meta`` file (name and version) into a local store's artifact
    folder on every download, so two processes loading at once (``botlib up --loops
    2``), or two versions of one artifact folder, would hash each other's writes and
    refuse a sound model."""
    with tempfile.TemporaryDirectory(prefix="botlib-model-") as scratch:
        yield download_model(uri, Path(scratch))


def registry_version(entry: dict[str, Any]) -> tuple[str, str]:
    """(registered name, version) of an active-model entry whose ``model_uri`` is a
    registry version of the entry's own version; anything else is refused."""
    uri = str(entry.get("model_uri") or "")
    match = _REGISTRY_URI.fullmatch(uri)
    version = str(entry.get("version") or "")
    if match is None or match.group(2) != version:
        raise ConfigError(
            f"model_uri {uri[:200]!r} is not a registry version models:/NAME/{version or 'N'} "
            "of the entry's version: only registered, promoted versions are served"
        )
    return match.group(1), match.group(2)


def verify_member(uri: str, client: Any = None) -> None:
    """An ensemble member named over Redis: a registry version whose artifacts still
    have the digest recorded when it was trained or promoted."""
    match = _REGISTRY_URI.fullmatch(uri)
    if match is None:
        raise ConfigError(f"ensemble member {uri[:200]!r} is not a registry version")
    with verified_folder({"model_uri": uri, "version": match.group(2)}, client):
        pass


def load_verified(entry: dict[str, Any], client: Any = None) -> Any:
    """The model of an active-model entry, loaded only after its artifacts' digest
    matched the one recorded on the registered version."""
    from botlib.models import load_model

    with verified_folder(entry, client) as folder:
        return load_model(folder)


@contextmanager
def verified_folder(entry: dict[str, Any], client: Any = None) -> Iterator[Path]:
    """The model folder of an entry's registry version, once its digest matched the
    recorded one (see the module doc); a ``private_copy``, removed on leaving the
    block."""
    from botlib.tracking import mlflow_client

    name, version = registry_version(entry)
    client = client or mlflow_client()
    tags = client.get_model_version(name, version).tags or {}
    recorded = tags.get(DIGEST_TAG)
    if not recorded:
        raise ConfigError(
            f"{name} v{version} has no recorded artifact digest: promote it (again) with "
            "`botlib promote` to serve it"
        )
    given = entry.get("artifact_digest")
    if given and given != recorded:
        raise ConfigError(
            f"{name} v{version}: the entry's artifact digest {str(given)[:12]}… is not the "
            f"registry's {recorded[:12]}…"
        )
    with private_copy(f"models:/{name}/{version}") as (root, folder):
        actual = artifact_digest(root)
        if actual != recorded:
            raise ConfigError(
                f"{name} v{version}: artifacts changed after promotion (sha256 "
                f"{actual[:12]}…, recorded {recorded[:12]}…); not loaded"
            )
        yield folder


def record_digest(name: str, version: str, client: Any = None) -> str:
    """Record the digest of a freshly registered version's artifacts on it (at
    training: the bytes botlib wrote). Returns the digest."""
    from botlib.tracking import mlflow_client

    client = client or mlflow_client()
    with private_copy(f"models:/{name}/{version}") as (root, _):
        digest = artifact_digest(root)
    client.set_model_version_tag(name, version, DIGEST_TAG, digest)
    return digest
