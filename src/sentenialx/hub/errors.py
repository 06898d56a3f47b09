"""Every error the hub raises, in one tree under :class:`HubError`.

Each error carries its facts as attributes and renders a one-line message that
says what was asked, what was found and what to do next. Where a built-in
exception fits, the error also inherits it, so ordinary ``except LookupError``
or ``except ValueError`` clauses keep working.

The CLI maps each class to a distinct exit code (``exit_code``); the table is
documented in the README.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every hub error."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(HubError, LookupError):
    """A model, version, alias, file or key does not exist."""

    exit_code = 3

    def __init__(self, message: str, *, what: str = "", name: str = "") -> None:
        super().__init__(message)
        self.what = what
        self.name = name


class AlreadyExists(HubError, FileExistsError):
    """The version (or other named thing) is already there; versions are immutable."""

    exit_code = 4


class InvalidInput(HubError, ValueError):
    """Input that can never be valid: a bad name, ref, version, metadata or path."""

    exit_code = 5


class InvalidName(InvalidInput):
    """A model, alias or file name that is not allowed (path tricks, control characters...)."""


class InvalidRef(InvalidInput):
    """A ref that does not parse (``name``, ``name@1.2.0``, ``name@^1.2``, ``name@sha256:...``)."""


class InvalidVersion(InvalidInput):
    """A version string that is not semver, or a range that does not parse."""


class IntegrityError(HubError):
    """Stored bytes do not match the manifest."""

    exit_code = 6

    def __init__(
        self,
        message: str | None = None,
        *,
        path: str = "",
        expected: str = "",
        actual: str = "",
        hint: str = "",
    ) -> None:
        if message is None:
            message = f"{path}: sha256 mismatch (expected {expected[:12]}…, got {actual[:12]}…)"
            if hint:
                message += f"; {hint}"
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual


class SignatureError(HubError):
    """A signature is missing, invalid, or made by a key the trust policy does not trust."""

    exit_code = 7

    def __init__(
        self,
        message: str,
        *,
        version: str = "",
        found_keys: tuple[str, ...] = (),
        trusted_keys: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.version = version
        self.found_keys = found_keys
        self.trusted_keys = trusted_keys


class UnsafeArtifact(HubError):
    """An artifact would run code when loaded (e.g. a pickle importing ``os.system``)."""

    exit_code = 8

    def __init__(self, message: str, *, path: str = "", offending: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.offending = offending


class Conflict(HubError):
    """A concurrent change won (e.g. an alias moved since the caller looked)."""

    exit_code = 9


class GateFailed(HubError):
    """A promotion was refused because one or more gates did not pass."""

    exit_code = 12

    def __init__(self, message: str, *, failed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.failed = failed


class StateError(HubError):
    """A hub state a client was shown is older than one it saw, expired, or not signed right."""

    exit_code = 13


class PermissionDenied(HubError, PermissionError):
    """The token lacks the scope or the model this needs (HTTP 403)."""

    exit_code = 14


class Unauthenticated(PermissionDenied):
    """No token, or one that is unknown, revoked or expired (HTTP 401)."""


class TooLarge(InvalidInput):
    """An upload is larger than the server accepts (HTTP 413)."""


class StoreUnavailable(HubError, OSError):
    """The index or the blob store cannot be reached or read."""

    exit_code = 10


class MissingDependency(HubError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    exit_code = 11

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with `pip install 'sentenialx[{extra}]'`"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str) -> object:
    """Import an optional module, or raise :class:`MissingDependency` naming the extra.

    Raises:
        MissingDependency: the module cannot be imported.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(module, extra) from exc


EXIT_CODES: dict[type[HubError], int] = {
    cls: cls.exit_code
    for cls in (
        HubError,
        NotFound,
        AlreadyExists,
        InvalidInput,
        IntegrityError,
        SignatureError,
        UnsafeArtifact,
        Conflict,
        StoreUnavailable,
        MissingDependency,
        GateFailed,
        StateError,
        PermissionDenied,
    )
}
