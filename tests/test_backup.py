"""Backups of the MLflow store alone (``--no-redis``): round trip, and archives that are
corrupt, foreign or hostile are refused with the reason."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import mlflow
import pytest

from botlib.backup import create_backup, restore_backup
from botlib.errors import ConfigError
from botlib.settings import get_settings
from botlib.tracking import configure, tracking_uri


def _point_at(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTLIB_MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    monkeypatch.setenv("BOTLIB_MLFLOW_ARTIFACTS_DIR", str(root / "artifacts"))
    get_settings.cache_clear()


def _rewrite(src: Path, dest: Path, change: dict[str, bytes | None]) -> None:
    """A copy of ``src`` with members replaced (bytes) or added."""
    with tarfile.open(src, "r:gz") as old, tarfile.open(dest, "w:gz") as new:
        for member in old.getmembers():
            fh = old.extractfile(member) if member.isfile() else None
            data = fh.read() if fh is not None else None
            if member.name in change:
                data = change.pop(member.name)
                if data is None:
                    continue
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
        for name, data in change.items():
            info = tarfile.TarInfo(name)
            info.size = len(data or b"")
            new.addfile(info, io.BytesIO(data or b""))


def test_mlflow_store_round_trip_and_bad_archives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(tmp_path / "a", monkeypatch)
    configure("backup-test")
    with mlflow.start_run() as run:
        mlflow.log_metric("sharpe", 1.25)
        mlflow.log_text("hello", "note.txt")
    archive = tmp_path / "b.tar.gz"
    made = create_backup(archive, client=False)
    assert (made.runs, made.artifact_files) == (1, 1)
    assert archive.stat().st_mode & 0o777 == 0o600  # the registry and history: owner only
    with pytest.raises(ConfigError, match="never overwrites"):
        create_backup(archive, client=False)

    _point_at(tmp_path / "fresh", monkeypatch)
    restored = restore_backup(archive, client=False)
    assert restored.runs == 1
    mlflow.set_tracking_uri(tracking_uri())
    again = mlflow.get_run(run.info.run_id)
    assert again.data.metrics == {"sharpe": 1.25}
    assert again.info.artifact_uri.startswith((tmp_path / "fresh" / "artifacts").as_uri())
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="note.txt")
    assert Path(local).read_text() == "hello"

    bad = {
        "checksum": ({"mlflow/mlflow.db": b"not a database"}, "does not match its checksum"),
        "foreign": ({"manifest.json": None}, "not a botlib backup"),
        "hostile": ({"../escape.txt": b"x"}, "outside the target"),
    }
    for name, (change, why) in bad.items():
        _point_at(tmp_path / f"empty-{name}", monkeypatch)
        broken = tmp_path / f"{name}.tar.gz"
        _rewrite(archive, broken, dict(change))
        with pytest.raises(ConfigError, match=why):
            restore_backup(broken, client=False)
        assert not (tmp_path / f"empty-{name}" / "mlflow.db").exists()  # nothing half-done
    mlflow.set_tracking_uri(None)
