"""The Sentenial-X model hub: a versioned, verifiable store for model artifacts.

Open one with :meth:`Hub.open` (``$SENTENIALX_HUB`` or ``./models/artifacts``), then
``register``, ``resolve``, ``open`` (verified bytes), ``verify``, ``fsck`` and ``gc``.
"""

from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    HubError,
    IntegrityError,
    InvalidInput,
    InvalidName,
    InvalidRef,
    InvalidVersion,
    MissingDependency,
    NotFound,
    SignatureError,
    StoreUnavailable,
    UnsafeArtifact,
)
from sentenialx.hub.hub import FsckReport, GcReport, Hub, Problem, VerifyReport
from sentenialx.hub.index.base import AliasInfo, AliasMove, VersionInfo
from sentenialx.hub.manifest import FileEntry, Manifest
from sentenialx.hub.refs import Ref, Version, VersionRange, parse_ref

__all__ = [
    "AliasInfo", "AliasMove", "AlreadyExists", "Conflict", "FileEntry", "FsckReport", "GcReport",
    "Hub", "HubError", "IntegrityError", "InvalidInput", "InvalidName", "InvalidRef",
    "InvalidVersion", "Manifest", "MissingDependency", "NotFound", "Problem", "Ref",
    "SignatureError", "StoreUnavailable", "UnsafeArtifact", "Version", "VersionInfo",
    "VersionRange", "VerifyReport", "parse_ref",
]
