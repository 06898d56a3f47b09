"""The Sentenial-X model hub: a versioned, verifiable store for model artifacts.

Open one with :meth:`Hub.open` (``$SENTENIALX_HUB`` or ``./models/artifacts``), then
``register``, ``resolve``, ``open`` (verified bytes), ``verify``, ``fsck`` and ``gc``.
"""

from typing import TYPE_CHECKING

from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    GateFailed,
    HubError,
    IntegrityError,
    InvalidInput,
    InvalidName,
    InvalidRef,
    InvalidVersion,
    MissingDependency,
    NotFound,
    SignatureError,
    StateError,
    StoreUnavailable,
    UnsafeArtifact,
)
from sentenialx.hub.refs import Ref, Version, VersionRange, parse_ref

if TYPE_CHECKING:
    # What _LAZY loads at run time, so type checkers see real types (kept equal by
    # tests/test_architecture.py).
    from sentenialx.hub.hub import Hub
    from sentenialx.hub.manifest import FileEntry, Manifest
    from sentenialx.hub.values import (
        AliasInfo,
        AliasMove,
        FsckReport,
        GcReport,
        Problem,
        VerifyReport,
        VersionInfo,
    )

# The facade pulls in SQLAlchemy; load it on first use so that light importers
# (the CLI's fast path, `import sentenialx`) stay fast.
_LAZY = {
    "Hub": "sentenialx.hub.hub", "FsckReport": "sentenialx.hub.values",
    "GcReport": "sentenialx.hub.values", "Problem": "sentenialx.hub.values",
    "VerifyReport": "sentenialx.hub.values", "AliasInfo": "sentenialx.hub.values",
    "AliasMove": "sentenialx.hub.values", "VersionInfo": "sentenialx.hub.values",
    "FileEntry": "sentenialx.hub.manifest", "Manifest": "sentenialx.hub.manifest",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sentenialx.hub' has no attribute {name!r}")

__all__ = [
    "AliasInfo", "AliasMove", "AlreadyExists", "Conflict", "GateFailed", "StateError",
    "FileEntry", "FsckReport", "GcReport",
    "Hub", "HubError", "IntegrityError", "InvalidInput", "InvalidName", "InvalidRef",
    "InvalidVersion", "Manifest", "MissingDependency", "NotFound", "Problem", "Ref",
    "SignatureError", "StoreUnavailable", "UnsafeArtifact", "Version", "VersionInfo",
    "VersionRange", "VerifyReport", "parse_ref",
]
