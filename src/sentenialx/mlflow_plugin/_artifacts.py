"""One hub version's files as an MLflow artifact repository (read-only).

Every byte handed to MLflow comes through the Hub's read path: the version is resolved
(a revoked one is refused), the trust policy applied once, then each file is read once,
streamed, hashed and matched to the manifest (``Hub.save_entry``) under a temporary
name that is renamed into place only when it matched, in bounded memory. A file that does not match
raises, and the files of that download already written are removed again.

Artifact paths are the version's manifest paths, with a folder version's own folder
taken off its members (``<stem>/MLmodel`` is ``MLmodel``), so a model logged with MLflow
and imported into the hub downloads as MLflow laid it out.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, NoReturn

from mlflow.entities.file_info import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_STATE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.artifact.artifact_repo import ArtifactRepository

from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.values import VersionInfo
from sentenialx.mlflow_plugin._location import open_hub, parse_artifact_uri, read_only, translated


def artifact_paths(info: VersionInfo) -> dict[str, FileEntry]:
    """The version's files by artifact path (see the module docstring).

    If taking the folder off would make two paths equal, the manifest paths are used as
    they are, so no file is ever hidden by another.
    """
    prefix = info.stem + "/"
    short = {(f.path[len(prefix):] if info.layout == "dir" and f.path.startswith(prefix)
              else f.path): f for f in info.files}
    return short if len(short) == len(info.files) else {f.path: f for f in info.files}


class HubArtifactRepository(ArtifactRepository):  # type: ignore[misc]
    """The files of the hub version an artifact URI (``…?model=…&version=…&digest=…``) names."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None,
                 registry_uri: str | None = None) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        self.target = parse_artifact_uri(artifact_uri)
        self.hub = open_hub(self.target.hub)

    def _resolved(self) -> tuple[VersionInfo, dict[str, FileEntry]]:
        t = self.target
        with translated():
            info = self.hub.resolve(f"{t.model}@{t.version}")
        if t.digest and info.digest != t.digest:
            # Versions are immutable: another digest means it was deleted and registered again.
            raise MlflowException(
                f"{info.ref} is now sha256:{info.digest}, not sha256:{t.digest} as this artifact"
                " URI pins; ask the registry for the version again", error_code=INVALID_STATE)
        return info, artifact_paths(info)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        """The files and folders directly under ``path`` (a file lists nothing)."""
        _info, paths = self._resolved()
        base = (path or "").strip("/")
        if base in paths:
            return []
        prefix = base + "/" if base else ""
        out: dict[str, FileInfo] = {}
        for p, entry in paths.items():
            if not p.startswith(prefix):
                continue
            head, sep, _rest = p[len(prefix):].partition("/")
            child = prefix + head
            out[child] = FileInfo(child, True, None) if sep else FileInfo(child, False, entry.size)
        return [out[k] for k in sorted(out)]

    def download_artifacts(self, artifact_path: str, dst_path: str | None = None) -> str:
        """Download the file ``artifact_path`` (or every file under it) into ``dst_path``.

        Returns the local path of the file or folder. Nothing unverified is ever written.

        Raises:
            MlflowException: no such file, the version is revoked or untrusted
                (``PERMISSION_DENIED``), or a file does not match the manifest (``DATA_LOSS``).
        """
        info, paths = self._resolved()
        want = (artifact_path or "").strip("/")
        prefix = want + "/" if want else ""
        selected = {want: paths[want]} if want in paths else {
            p: e for p, e in paths.items() if p.startswith(prefix)}
        if not selected:
            raise MlflowException(f"{info.ref} has no artifact {want!r}; artifacts:"
                                  f" {', '.join(sorted(paths))}", error_code=RESOURCE_DOES_NOT_EXIST)
        dst = Path(dst_path if dst_path is not None else tempfile.mkdtemp()).resolve()
        dst.mkdir(parents=True, exist_ok=True)
        with translated():
            self.hub.check_trust(info)
        written: list[Path] = []
        try:
            for p, entry in sorted(selected.items()):
                target = _target(dst, p)
                with translated():
                    written.append(self.hub.save_entry(info, entry, target))
        except BaseException:
            for w in written:
                w.unlink(missing_ok=True)
            raise
        return str(dst / want) if want else str(dst)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        """Write one verified file to ``local_path``."""
        info, paths = self._resolved()
        entry = paths.get(remote_file_path.strip("/"))
        if entry is None:
            raise MlflowException(f"{info.ref} has no file {remote_file_path!r}",
                                  error_code=RESOURCE_DOES_NOT_EXIST)
        with translated():
            self.hub.check_trust(info)
            target = Path(local_path).resolve()
            self.hub.save_entry(info, entry, _target(target.parent, target.name))

    def log_artifact(self, local_file: Any, artifact_path: Any = None) -> NoReturn:
        """Refused: a version's files are immutable."""
        read_only("log_artifact")

    def log_artifacts(self, local_dir: Any, artifact_path: Any = None) -> NoReturn:
        """Refused: a version's files are immutable."""
        read_only("log_artifacts")

    def delete_artifacts(self, artifact_path: Any = None) -> NoReturn:
        """Refused: delete versions with `sentenialx models delete`."""
        read_only("delete_artifacts")


def _target(dst: Path, rel: str) -> Path:
    """``dst/rel``, refused if it would land outside ``dst``."""
    target = dst / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    # Manifest paths are validated relative paths; a symlinked folder in dst must not
    # carry a write outside it either.
    if not target.parent.resolve().is_relative_to(dst):
        raise MlflowException(f"{target} leaves the destination {dst}", error_code=INVALID_STATE)
    return target


__all__ = ["HubArtifactRepository", "artifact_paths"]
