"""Models are served only from the registry, and only as promoted.

An active-model entry in Redis names what to serve, and Redis is writable by more
processes than MLflow is. So the loop and the bridge never load what an entry points
at: they load ``models:/NAME/VERSION`` — the entry's ``model_uri`` must be exactly that
form, of the entry's version (a local path, a ``runs:/`` URI or any other scheme is
refused) — and before a byte of it is deserialized, the SHA-256 digest of the
downloaded artifacts is compared with the digest recorded on that registered version
when it was promoted (tag ``botlib.artifact_digest``). A mismatch — artifacts changed
after promotion — or a version with no recorded digest is refused with the reason.

Some of a model's files can execute code when loaded: the pyfunc wrapper
(``python_model.pkl``, cloudpickle) and the reinforcement-learning agents
(stable-baselines3's ``agent.zip``, cloudpickle inside). botlib loads the latter only
through this check, and never unpickles the former.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from botlib.errors import ConfigError

__all__ = [
    "DIGEST_TAG",
    "artifact_digest",
    "download_model",
    "load_verified",
    "registry_version",
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


def download_model(uri: str) -> tuple[Path, Path]:
    """Download a logged model: (the downloaded folder, the botlib model inside it)."""
    import mlflow

    from botlib.tracking import use_store
    from botlib.tracking.pyfunc import resolve_model_uri

    use_store()
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    return root, resolve_model_uri(uri, local=root)


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


def load_verified(entry: dict[str, Any], client: Any = None) -> Any:
    """The model of an active-model entry, loaded only after its artifacts' digest
    matched the one recorded on the registered version at promotion."""
    from botlib.models import load_model
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
    root, folder = download_model(f"models:/{name}/{version}")
    actual = artifact_digest(root)
    if actual != recorded:
        raise ConfigError(
            f"{name} v{version}: artifacts changed after promotion (sha256 {actual[:12]}…, "
            f"recorded {recorded[:12]}…); not loaded"
        )
    return load_model(folder)
