"""Registry and artifact URIs of the plugin, the hubs they open, and hub errors as MLflow's.

A registry URI names a hub: ``sentenialx:///path/to/hub`` or ``sentenialx+http(s)://host:port``.
An artifact URI names one version of it: the registry URI with the query
``?model=NAME&version=SEMVER&digest=SHA256``, as ``get_model_version_download_uri``
hands it out; the digest pins the content the caller was shown.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    HubError,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SignatureError,
    StoreUnavailable,
    one_line,
)

if TYPE_CHECKING:
    from sentenialx.hub.hub import Hub

LOCAL = "sentenialx"
SERVED = ("sentenialx+http", "sentenialx+https")
SCHEMES = (LOCAL, *SERVED)


@dataclass(frozen=True, slots=True)
class HubLocation:
    """Where a registry URI points: a hub folder or a served hub's http(s) URL."""

    scheme: str
    location: str

    @property
    def registry_uri(self) -> str:
        """The canonical registry URI."""
        if self.scheme == LOCAL:
            return f"{LOCAL}://{quote(self.location)}"
        return f"{self.scheme}://{self.location}"

    def artifact_uri(self, model: str, version: str, digest: str | None) -> str:
        """The artifact URI of one version (what ``get_model_version_download_uri`` returns)."""
        query = {"model": model, "version": version}
        if digest:
            query["digest"] = digest
        return f"{self.registry_uri}?{urlencode(query)}"


def parse_registry_uri(uri: str) -> HubLocation:
    """The hub a registry (or artifact) URI names; its query, if any, is not looked at.

    Raises:
        mlflow.exceptions.MlflowException: the scheme is not ours, the folder does not
            exist, or the URL has no host.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == LOCAL:
        if parts.netloc not in ("", "localhost"):
            invalid(f"{uri!r}: a local hub is sentenialx:///absolute/path (no host); for a"
                    " served hub use sentenialx+http://host:port")
        path = unquote(parts.path)
        if not path or not Path(path).is_dir():
            # Opening a hub creates it: a mistyped path must not become an empty registry.
            invalid(f"{uri!r}: {path or '(no path)'} is not a hub folder; create one with"
                    " `sentenialx models init --hub PATH`")
        return HubLocation(LOCAL, str(Path(path).resolve()))
    if scheme in SERVED:
        if not parts.hostname:
            invalid(f"{uri!r}: a served hub is {scheme}://HOST[:PORT]")
        return HubLocation(scheme, parts.netloc + parts.path.rstrip("/"))
    invalid(f"{uri!r} is not a sentenialx registry URI; use sentenialx:///path/to/hub or"
            " sentenialx+http://host:port")


@dataclass(frozen=True, slots=True)
class VersionLocation:
    """One hub version an artifact URI names."""

    hub: HubLocation
    model: str
    version: str
    digest: str | None


def parse_artifact_uri(uri: str) -> VersionLocation:
    """The hub version an artifact URI names.

    Raises:
        mlflow.exceptions.MlflowException: it names no hub, or no single model and version.
    """
    hub = parse_registry_uri(uri.split("?", 1)[0])
    query = parse_qs(urlsplit(uri).query, keep_blank_values=True)

    def one(key: str, *, required: bool = True) -> str | None:
        vals = query.get(key, [])
        if len(vals) > 1 or (required and not vals):
            invalid(f"{uri!r}: expected one {key}= in the query (as get_model_version_download_uri"
                    " gives it)")
        return vals[0] if vals else None

    model, version = one("model"), one("version")
    assert model is not None and version is not None  # one() raised otherwise
    return VersionLocation(hub, model, version, one("digest", required=False))


_HUBS: dict[tuple[str, str, str | None, str | None], Hub] = {}
_LOCK = threading.Lock()


def open_hub(loc: HubLocation) -> Hub:
    """The Hub a location names, opened once per process (and per token and cache).

    Raises:
        mlflow.exceptions.MlflowException: the hub cannot be opened.
    """
    from sentenialx.hub.hub import Hub

    token, cache = os.environ.get("SENTENIALX_TOKEN"), os.environ.get("SENTENIALX_CACHE")
    key = (loc.scheme, loc.location, token, cache)
    with _LOCK:
        hub = _HUBS.get(key)
        if hub is None:
            with translated():
                if loc.scheme == LOCAL:
                    hub = Hub.open(loc.location)
                else:
                    hub = Hub.served(f"{loc.scheme.removeprefix('sentenialx+')}://{loc.location}")
            _HUBS[key] = hub
        return hub


def invalid(message: str) -> NoReturn:
    """Raise MLflow's invalid-parameter error with ``message``."""
    from mlflow.exceptions import MlflowException

    raise MlflowException.invalid_parameter_value(message)


def read_only(verb: str) -> NoReturn:
    """Raise MLflow's not-implemented error for a write the plugin does not take."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import NOT_IMPLEMENTED

    raise MlflowException(
        f"{verb}: a sentenialx registry is read-only through MLflow; register versions with"
        " `sentenialx models register` and move aliases with `sentenialx models alias`"
        " (or import an MLflow registry with `sentenialx models import-mlflow`)",
        error_code=NOT_IMPLEMENTED)


def _code(exc: HubError) -> str:
    # The nearest class wins, as in the CLI's exit-code table.
    for cls, code in ((NotFound, "RESOURCE_DOES_NOT_EXIST"), (AlreadyExists, "RESOURCE_ALREADY_EXISTS"),
                      (IntegrityError, "DATA_LOSS"), (SignatureError, "PERMISSION_DENIED"),
                      (PermissionDenied, "PERMISSION_DENIED"), (Conflict, "RESOURCE_CONFLICT"),
                      (StoreUnavailable, "TEMPORARILY_UNAVAILABLE"),
                      (InvalidInput, "INVALID_PARAMETER_VALUE")):
        if isinstance(exc, cls):
            return code
    return "INTERNAL_ERROR"


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn a HubError raised inside into an MlflowException with the same one-line message.

    The hub error stays attached as ``__cause__``, facts included.
    """
    try:
        yield
    except HubError as exc:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import ErrorCode

        raise MlflowException(one_line(exc, limit=2000),
                              error_code=ErrorCode.Value(_code(exc))) from exc


__all__ = ["SCHEMES", "HubLocation", "VersionLocation", "invalid", "open_hub",
           "parse_artifact_uri", "parse_registry_uri", "read_only", "translated"]
