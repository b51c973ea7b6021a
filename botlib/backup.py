"""Backups of everything a project cannot recompute: the MLflow store (database and
artifacts) and the Redis history (predictions, signals, dead letters, model events,
the active models).

``create_backup`` writes one ``.tar.gz``: ``manifest.json`` (what is inside, counts,
SHA-256 of every member), ``mlflow/mlflow.db`` (a consistent copy through SQLite's
backup API, safe while services write), ``mlflow/artifacts/…`` and ``redis/*.jsonl``
(one stream entry per line: its id and fields; the active-model hash as JSON).
Nothing is pickled.

``restore_backup`` unpacks into the store the settings point at — which must be empty:
a restore never overwrites — rewrites the artifact locations recorded in the database
to the new artifacts folder, and re-adds the stream entries with their original ids,
so the registry, the aliases and the signal history come back identical.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botlib.errors import ConfigError
from botlib.settings import Settings, get_settings
from botlib.transport import RedisNames

__all__ = ["BackupSummary", "create_backup", "restore_backup", "sqlite_path"]

FORMAT = 1


@dataclass
class BackupSummary:
    path: Path
    registered_models: int = 0
    model_versions: int = 0
    runs: int = 0
    artifact_files: int = 0
    streams: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def sqlite_path(settings: Settings | None = None) -> Path:
    """The MLflow database file (only ``sqlite:///`` stores can be backed up here)."""
    from botlib.tracking import tracking_uri

    uri = tracking_uri(settings)
    if not uri.startswith("sqlite:///"):
        raise ConfigError(
            f"backups need a sqlite MLflow store, the tracking URI is {uri!r}; back up a "
            "tracking server's database with its own tools"
        )
    return Path(uri[len("sqlite:///") :])


def _streams(names: RedisNames) -> list[str]:
    return [names.predictions, names.signals, names.deadletter, names.model_events]


def _counts(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        a, b, c = (
            int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            for t in ("registered_models", "model_versions", "runs")
        )
        return a, b, c


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, sums: dict[str, str]) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))
    sums[name] = hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def create_backup(
    dest: Path,
    *,
    client: Any | None = None,
    names: RedisNames | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackupSummary:
    """Archive the MLflow store and (unless ``client`` is ``False``) the Redis history
    into ``dest`` (a ``.tar.gz``; a folder gets a dated file name)."""
    from botlib.transport import connect, redis_names

    settings = settings or get_settings()
    names = names or redis_names()
    say = progress or (lambda _msg: None)
    db = sqlite_path(settings)
    if not db.is_file():
        raise ConfigError(f"no MLflow database at {db}: nothing to back up")
    artifacts = Path(settings.mlflow_artifacts_dir)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / time.strftime("botlib-backup-%Y%m%dT%H%M%SZ.tar.gz", time.gmtime())
    if dest.exists():
        raise ConfigError(f"{dest} exists: a backup never overwrites, pick a new name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    summary = BackupSummary(dest)
    sums: dict[str, str] = {}
    partial = dest.with_name(dest.name + ".partial")
    # the archive holds the whole registry and the Redis history: its owner's alone
    partial.touch(mode=0o600, exist_ok=True)
    partial.chmod(0o600)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(partial, "w:gz") as tar:
        copy = Path(tmp) / "mlflow.db"
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)  # consistent even while a service writes
        summary.registered_models, summary.model_versions, summary.runs = _counts(copy)
        tar.add(copy, "mlflow/mlflow.db")
        sums["mlflow/mlflow.db"] = _sha256(copy)
        say(f"MLflow database: {summary.runs} runs, {summary.model_versions} model versions")
        files = sorted(p for p in artifacts.rglob("*") if p.is_file()) if artifacts.is_dir() else []
        for i, path in enumerate(files, 1):
            name = "mlflow/artifacts/" + path.relative_to(artifacts).as_posix()
            tar.add(path, name)
            sums[name] = _sha256(path)
            if i % 500 == 0:
                say(f"artifacts: {i}/{len(files)} files")
        summary.artifact_files = len(files)
        say(f"artifacts: {len(files)} files")
        if client is not False:
            r = client if client is not None else connect()
            for stream in _streams(names):
                lines = [
                    json.dumps({"id": entry_id, "fields": fields}, ensure_ascii=False)
                    for entry_id, fields in r.xrange(stream) or []
                ]
                data = ("\n".join(lines) + "\n" if lines else "").encode()
                _add_bytes(tar, f"redis/{_safe(stream)}.jsonl", data, sums)
                summary.streams[stream] = len(lines)
            active = {
                "hash": r.hgetall(names.active_models),
                "revision": r.get(names.active_revision),
            }
            _add_bytes(tar, "redis/active_models.json", json.dumps(active).encode(), sums)
            say("redis: " + ", ".join(f"{k} {v}" for k, v in summary.streams.items()))
        else:
            summary.notes.append("Redis history not included (--no-redis)")
        manifest = {
            "format": FORMAT,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "artifacts_root": str(artifacts.resolve()),
            "counts": {
                "registered_models": summary.registered_models,
                "model_versions": summary.model_versions,
                "runs": summary.runs,
                "artifact_files": summary.artifact_files,
            },
            "streams": {
                stream: {"file": f"redis/{_safe(stream)}.jsonl", "entries": n}
                for stream, n in summary.streams.items()
            },
            "sha256": sums,
        }
        _add_bytes(tar, "manifest.json", json.dumps(manifest, indent=2).encode(), {})
    partial.rename(dest)  # a backup that stopped half way never looks finished
    return summary


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _rewrite_locations(db: Path, old: str, new: str) -> int:
    """Replace the artifacts root ``old`` by ``new`` at the start of every text value
    (as a path and as a ``file://`` URI). Returns the number of values changed."""
    changed = 0
    pairs = [(Path(old).as_uri(), Path(new).as_uri()), (old, new)]
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, column, kind, *_ in conn.execute(f'PRAGMA table_info("{table}")'):
                if not any(t in (kind or "").upper() for t in ("CHAR", "TEXT", "CLOB")):
                    continue
                for before, after in pairs:
                    cur = conn.execute(
                        f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                        f'WHERE substr("{column}", 1, ?) = ?',
                        (after, len(before) + 1, len(before), before),
                    )
                    changed += cur.rowcount
    return changed


def _check_member(name: str) -> None:
    parts = Path(name).parts
    if name.startswith("/") or ".." in parts:
        raise ConfigError(f"refusing archive member {name!r}: it would land outside the target")


def restore_backup(
    archive: Path,
    *,
    client: Any | None = None,
    names: RedisNames | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackupSummary:
    """Restore ``archive`` into the (empty) store and Redis the settings point at."""
    from botlib.transport import connect, redis_names

    settings = settings or get_settings()
    names = names or redis_names()
    say = progress or (lambda _msg: None)
    archive = Path(archive)
    if not archive.is_file():
        raise ConfigError(f"no backup at {archive}")
    db = sqlite_path(settings)
    artifacts = Path(settings.mlflow_artifacts_dir).resolve()
    if db.exists() and db.stat().st_size > 0:
        raise ConfigError(
            f"{db} already exists: restore into an empty project (point "
            "BOTLIB_MLFLOW_TRACKING_URI and BOTLIB_MLFLOW_ARTIFACTS_DIR at new paths); "
            "a restore never overwrites"
        )
    if artifacts.is_dir() and any(artifacts.iterdir()):
        raise ConfigError(f"{artifacts} is not empty: a restore never overwrites")
    r = None
    if client is not False:
        r = client if client is not None else connect()
        held = {s: r.xlen(s) for s in _streams(names)}
        busy = {s: n for s, n in held.items() if n}
        if busy or r.hlen(names.active_models):
            what = ", ".join(f"{k} ({v} entries)" for k, v in busy.items()) or names.active_models
            raise ConfigError(
                f"Redis already holds {what}: restore into an empty database (e.g. another "
                "db number in BOTLIB_REDIS_URL) or use --no-redis"
            )
    summary = BackupSummary(archive)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member.name)
            if not (member.isfile() or member.isdir()):
                raise ConfigError(f"refusing archive member {member.name!r}: not a plain file")
        try:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        except KeyError:
            raise ConfigError(f"{archive} is not a botlib backup (no manifest.json)") from None
        if manifest.get("format") != FORMAT:
            raise ConfigError(f"backup format {manifest.get('format')!r}, expected {FORMAT}")
        tar.extractall(tmp, filter="data")
        root = Path(tmp)
        for name, digest in manifest["sha256"].items():
            if _sha256(root / name) != digest:
                raise ConfigError(f"{archive}: {name} does not match its checksum (corrupt)")
        say(f"checked {len(manifest['sha256'])} files against their checksums")
        staged = root / "mlflow" / "mlflow.db"
        n = _rewrite_locations(staged, manifest["artifacts_root"], str(artifacts))
        say(f"artifact locations moved to {artifacts} ({n} values)")
        summary.registered_models, summary.model_versions, summary.runs = _counts(staged)
        artifacts.mkdir(parents=True, exist_ok=True)
        src = root / "mlflow" / "artifacts"
        if src.is_dir():
            for item in src.iterdir():
                shutil.move(str(item), str(artifacts / item.name))
        summary.artifact_files = manifest["counts"]["artifact_files"]
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(db))
        say(f"MLflow: {summary.runs} runs, {summary.model_versions} model versions restored")
        if r is not None:
            for stream, info in manifest["streams"].items():
                text = (root / info["file"]).read_text(encoding="utf-8")
                pipe = r.pipeline(transaction=False)
                count = 0
                for line in text.splitlines():
                    if line:
                        item = json.loads(line)
                        pipe.xadd(stream, item["fields"], id=item["id"])
                        count += 1
                pipe.execute()
                summary.streams[stream] = count
            active = json.loads((root / "redis" / "active_models.json").read_text())
            if active["hash"]:
                r.hset(names.active_models, mapping=active["hash"])
            if active["revision"] is not None:
                r.set(names.active_revision, active["revision"])
            say("redis: " + ", ".join(f"{k} {v}" for k, v in summary.streams.items()))
        elif manifest["streams"]:
            summary.notes.append("Redis history in the backup was not restored (--no-redis)")
    return summary
