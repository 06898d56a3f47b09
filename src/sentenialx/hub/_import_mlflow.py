"""Importing an MLflow model registry: models, versions, aliases, tags, metrics and lineage.

Read through MLflow's own client (any registry it reaches: a tracking server, a
``sqlite:///…`` database, a file store). Each MLflow version becomes one hub version,
in MLflow's version order, so the MLflow plugin's numbers for a fresh hub are MLflow's:

1. its files are downloaded with MLflow into a private staging folder, checked
   against MLflow's own listing (every path, every size) and hashed;
2. the folder (or single file) is registered through :meth:`Hub.register`, which
   hashes while storing and commits in one transaction, or leaves nothing;
3. the manifest it made must match the hashes of step 1, or the version is removed.

Semver: the version's ``sentenialx.version`` tag if it has one, else ``N.0.0`` for MLflow
version ``N``. Its metadata carries the run's metrics and params, the description and
``mlflow``: the identity of the source version (model, number, creation time), the
run id and source as lineage, the tracking URI, tags and stage. A version whose identity
is already in the hub is skipped without downloading, so a re-run adds nothing, and a
run interrupted (Ctrl-C) resumes where it stopped: a version is imported whole or not.
Aliases follow once a model's versions are in; a gated alias is never moved here (its
gates need a promotion), and the report says so.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentenialx.hub.errors import (
    AlreadyExists,
    HubError,
    IntegrityError,
    InvalidInput,
    InvalidName,
    InvalidVersion,
    NotFound,
    PermissionDenied,
    StoreUnavailable,
    one_line,
    require,
)
from sentenialx.hub.hashing import hash_file
from sentenialx.hub.refs import Version, validate_alias, validate_name

if TYPE_CHECKING:
    from sentenialx.hub.hub import Hub
    from sentenialx.hub.values import VersionInfo

VERSION_TAG = "sentenialx.version"
"""An MLflow version tag that names the semver to import it as."""
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ImportedVersion:
    """One MLflow version and the hub version it is."""

    model: str
    mlflow_version: int
    version: str
    digest: str
    status: str  # imported | present

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"model": self.model, "mlflow_version": self.mlflow_version,
                "version": self.version, "digest": self.digest, "status": self.status}


@dataclass(slots=True)
class MlflowImportReport:
    """What :func:`import_mlflow` brought in, found already there, and left alone."""

    versions: list[ImportedVersion] = field(default_factory=list)
    aliases: list[dict[str, Any]] = field(default_factory=list)  # moves made
    notes: list[str] = field(default_factory=list)

    @property
    def imported(self) -> list[ImportedVersion]:
        """The versions this run registered."""
        return [v for v in self.versions if v.status == "imported"]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"versions": [v.to_dict() for v in self.versions], "aliases": self.aliases,
                "notes": self.notes}


def import_mlflow(hub: Hub, tracking_uri: str, *, models: Sequence[str] = (),
                  registry_uri: str | None = None, actor: str | None = None) -> MlflowImportReport:
    """Import the registered models (all, or those named) of the MLflow registry at ``tracking_uri``.

    Args:
        hub: the hub to import into.
        tracking_uri: MLflow's tracking URI (runs, metrics and artifacts).
        models: registered model names; default every model.
        registry_uri: MLflow's registry URI, if it is not the tracking URI.
        actor: who imports (default ``$SENTENIALX_ACTOR`` or user@host).

    Raises:
        MissingDependency: mlflow (the ``mlflow`` extra) is not installed.
        InvalidName: an MLflow model or alias name the hub cannot hold.
        NotFound: a named model is not in the MLflow registry.
        StoreUnavailable: MLflow cannot be read, or a version's files cannot be downloaded
            (nothing of that version is adopted; a re-run resumes there).
        IntegrityError: downloaded files differ from MLflow's listing or from what was stored.
        AlreadyExists: the semver an MLflow version maps to holds another version.
    """
    require("mlflow", "mlflow")
    from mlflow import MlflowClient

    for name in models:
        validate_name(name)
    for uri in (tracking_uri, registry_uri):
        _check_sqlite_exists(uri)
    report = MlflowImportReport()
    with _mlflow_errors(f"reading the MLflow registry at {tracking_uri}"):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
        names = list(models) or sorted(m.name for m in _pages(client.search_registered_models))
    for name in names:
        validate_name(name)
        with _mlflow_errors(f"reading MLflow model {name!r}"):
            rm = client.get_registered_model(name)
            mvs = sorted(_pages(client.search_model_versions, f"name = '{name}'"),
                         key=lambda mv: int(mv.version))
        made: dict[int, VersionInfo] = {}
        for mv in mvs:
            if str(mv.status) != "READY":
                report.notes.append(f"MLflow {name} version {mv.version} is {mv.status}, not"
                                    " READY; skipped")
                continue
            info, status = _import_version(hub, client, tracking_uri, rm, mv, actor=actor,
                                           notes=report.notes)
            made[int(mv.version)] = info
            report.versions.append(ImportedVersion(name, int(mv.version), info.version,
                                                   info.digest or "", status))
        _import_aliases(hub, name, dict(rm.aliases), made, actor=actor, report=report)
    return report


def _check_sqlite_exists(uri: str | None) -> None:
    """A ``sqlite:///`` URI must name an existing database: MLflow would create an empty one."""
    if uri is None or not uri.startswith("sqlite://"):
        return
    # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute.db, sqlite:// in memory.
    path = uri.removeprefix("sqlite://").split("?", 1)[0].removeprefix("/")
    if path not in ("", ":memory:") and not Path(path).is_file():
        raise InvalidInput(f"no MLflow database at {uri}; give the tracking URI of an existing"
                           " registry (MLflow would create an empty one)")


def _without_secrets(uri: str) -> str:
    """``uri`` without a user or password (kept in metadata that every reader sees)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _identity(mv: Any) -> str:
    # Name, number and creation time name one MLflow version for good: a number reused
    # after a delete has a later creation time.
    return f"{mv.name}/{int(mv.version)}@{int(mv.creation_timestamp or 0)}"


def _already(hub: Hub, name: str, identity: str) -> VersionInfo | None:
    try:
        versions = hub.versions(name)
    except NotFound:
        return None
    for v in versions:
        src = v.meta.get("mlflow")
        if isinstance(src, dict) and src.get("identity") == identity:
            return v
    return None


def _semver(mv: Any) -> str:
    tagged = (mv.tags or {}).get(VERSION_TAG)
    if tagged:
        try:
            return str(Version.parse(str(tagged)))
        except InvalidVersion as exc:
            raise InvalidVersion(f"MLflow {mv.name} version {mv.version}: tag {VERSION_TAG}:"
                                 f" {exc}") from None
    return f"{int(mv.version)}.0.0"


def _import_version(hub: Hub, client: Any, tracking_uri: str, rm: Any, mv: Any, *,
                    actor: str | None, notes: list[str]) -> tuple[VersionInfo, str]:
    name, number = rm.name, int(mv.version)
    identity = _identity(mv)
    earlier = _already(hub, name, identity)
    if earlier is not None:
        return earlier, "present"
    version = _semver(mv)
    where = f"MLflow {name} version {number}"
    meta = _metadata(client, rm, mv, identity=identity, tracking_uri=tracking_uri, where=where,
                     notes=notes)
    staging = Path(tempfile.mkdtemp(prefix="sentenialx-mlflow-"))
    try:
        src, expected = _download(client, tracking_uri, mv, staging, where=where)
        try:
            info = hub.register(name, src, version=version, metadata=meta, name=name, actor=actor)
        except AlreadyExists:
            # Another import of the same version may have committed first.
            earlier = _already(hub, name, identity)
            if earlier is not None:
                return earlier, "present"
            raise AlreadyExists(f"{name}@{version} exists and is not {where}; give that MLflow"
                                f" version a {VERSION_TAG} tag naming a free semver") from None
        _check_stored(hub, info, expected, where=where)
        return info, "imported"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(client: Any, tracking_uri: str, mv: Any, staging: Path, *, where: str
              ) -> tuple[Path, dict[str, tuple[int, str]]]:
    """Download a version's files into ``staging``; check them against MLflow's listing.

    Returns the downloaded file or folder and ``{relative path: (size, sha256)}``.
    """
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with _mlflow_errors(f"downloading {where}"):
        uri = client.get_model_version_download_uri(mv.name, mv.version)
        listed = dict(_walk(get_artifact_repository(uri, tracking_uri=tracking_uri)))
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging / "in"),
                                                       tracking_uri=tracking_uri))
    got = got.resolve()
    if not got.is_relative_to(staging) or not got.exists():
        raise StoreUnavailable(f"{where}: MLflow gave {got}, not a download; nothing was imported")
    if got.is_file():
        d = hash_file(got)
        return got, {got.name: (d.size, d.sha256)}
    found: dict[str, tuple[int, str]] = {}
    for p in sorted(got.rglob("*")):
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            raise IntegrityError(f"{where}: {p.relative_to(got)} is not a plain file; nothing"
                                 " was imported", path=str(p.relative_to(got)))
        if p.is_file():
            d = hash_file(p)
            found[p.relative_to(got).as_posix()] = (d.size, d.sha256)
    if not found:
        raise InvalidInput(f"{where} has no files; nothing was imported")
    if set(found) != set(listed):
        extra, missing = sorted(set(found) - set(listed)), sorted(set(listed) - set(found))
        raise IntegrityError(f"{where}: the download differs from MLflow's listing (missing:"
                             f" {missing or 'none'}, not listed: {extra or 'none'}); nothing was"
                             " imported")
    for rel, (size, _sha) in found.items():
        if listed[rel] is not None and listed[rel] != size:
            raise IntegrityError(f"{where}: {rel} is {size} bytes, MLflow lists {listed[rel]};"
                                 " nothing was imported", path=rel)
    return got, found


def _walk(repo: Any, path: str | None = None) -> Iterator[tuple[str, int | None]]:
    for fi in repo.list_artifacts(path):
        if fi.is_dir:
            yield from _walk(repo, fi.path)
        else:
            yield fi.path, fi.file_size


def _check_stored(hub: Hub, info: VersionInfo, expected: dict[str, tuple[int, str]], *,
                  where: str) -> None:
    """The manifest the hub made must hold exactly the bytes hashed after the download."""
    if info.layout == "dir":
        prefix = info.stem + "/"
        stored = {f.path[len(prefix):]: (f.size, f.sha256) for f in info.files}
    else:  # one file, stored under the version's stem: compare it with the one downloaded
        stored = {rel: (f.size, f.sha256) for rel, f in zip(expected, info.files, strict=False)}
        if len(info.files) != len(expected):
            stored = {}
    if stored != expected:
        bad = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
        hub.delete(info.ref, confirm=True)
        raise IntegrityError(f"{where}: stored files differ from the download ({', '.join(bad)});"
                             f" {info.ref} was removed again", path=bad[0] if bad else "")


def _metadata(client: Any, rm: Any, mv: Any, *, identity: str, tracking_uri: str, where: str,
              notes: list[str]) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
        except Exception as exc:  # noqa: BLE001 - any MLflow failure: the run is gone
            notes.append(f"{where}: run {mv.run_id} unreadable ({one_line(exc, limit=200)});"
                         " imported without its metrics")
        else:
            for k, v in run.data.metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    metrics[k] = v
                else:
                    notes.append(f"{where}: metric {k}={v} is not a finite number; left out")
            params = {str(k): str(v) for k, v in run.data.params.items()}
    meta: dict[str, Any] = {
        "metrics": metrics,
        "mlflow": {
            "identity": identity, "tracking_uri": _without_secrets(tracking_uri), "model": mv.name,
            "version": int(mv.version), "created": int(mv.creation_timestamp or 0),
            "run_id": mv.run_id or None, "source": mv.source, "run_link": mv.run_link or None,
            "user_id": mv.user_id or None, "stage": mv.current_stage or None,
            "tags": dict(mv.tags or {}), "model_tags": dict(rm.tags or {}),
            "model_description": rm.description or None,
        },
    }
    if params:
        meta["params"] = params
    if mv.description:
        meta["description"] = str(mv.description)
    return meta


def _import_aliases(hub: Hub, name: str, aliases: dict[str, Any], made: dict[int, VersionInfo], *,
                    actor: str | None, report: MlflowImportReport) -> None:
    current = {a.alias: a.version for a in hub.aliases(name)} if made else {}
    for alias, number in sorted(aliases.items()):
        target = made.get(int(number))
        if target is None:
            report.notes.append(f"MLflow {name}@{alias} points at version {number}, which was not"
                                " imported; alias left alone")
            continue
        try:
            validate_alias(alias)
        except InvalidName as exc:
            report.notes.append(f"MLflow {name}@{alias}: {exc}; alias left alone")
            continue
        if current.get(alias) == target.version:
            continue
        if hub.is_gated(alias):
            report.notes.append(f"{name}@{alias} is gated: not moved to {target.version}; run"
                                f" `sentenialx models promote {target.ref} --to {alias}`")
            continue
        previous = hub.set_alias(target.ref, alias, expect=current.get(alias, ""), actor=actor)
        report.aliases.append({"model": name, "alias": alias, "version": target.version,
                               "previous": previous})


def _pages(search: Any, *args: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(*args, max_results=_PAGE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


@contextlib.contextmanager
def _mlflow_errors(doing: str) -> Iterator[None]:
    """Turn MLflow's errors into hub errors: one line, the right exit code."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow, its stores and its HTTP client
        from mlflow.exceptions import MlflowException

        msg = f"{doing}: {one_line(getattr(exc, 'message', exc), limit=500)}"
        code = exc.error_code if isinstance(exc, MlflowException) else ""
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(msg) from exc
        if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise PermissionDenied(msg) from exc
        if code == "INVALID_PARAMETER_VALUE":
            raise InvalidInput(msg) from exc
        raise StoreUnavailable(msg) from exc


__all__ = ["ImportedVersion", "MlflowImportReport", "import_mlflow"]
