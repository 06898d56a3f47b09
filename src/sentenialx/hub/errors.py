"""Every error the hub raises, in one tree under :class:`HubError`.

Each error carries its facts as attributes and renders a one-line message that
says what was asked, what was found and what to do next. Where a built-in
exception fits, the error also inherits it, so ordinary ``except LookupError``
or ``except ValueError`` clauses keep working.

The CLI maps each class to a distinct exit code in one table
(``sentenialx.hub.cli.EXIT_TABLE``), documented in the README.

The HTTP side is :data:`HTTP_ERRORS`, one table used both ways: the server
answers :func:`to_http` and the client raises :func:`from_http`, which rebuilds
the same class with the same facts.
"""

from __future__ import annotations

import unicodedata
from typing import Any


class HubError(Exception):
    """Base of every hub error."""


    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(HubError, LookupError):
    """A model, version, alias, file or key does not exist."""


    def __init__(self, message: str, *, what: str = "", name: str = "") -> None:
        super().__init__(message)
        self.what = what
        self.name = name


class AlreadyExists(HubError, FileExistsError):
    """The version (or other named thing) is already there; versions are immutable."""



class InvalidInput(HubError, ValueError):
    """Input that can never be valid: a bad name, ref, version, metadata or path."""



class InvalidName(InvalidInput):
    """A model, alias or file name that is not allowed (path tricks, control characters...)."""


class InvalidRef(InvalidInput):
    """A ref that does not parse (``name``, ``name@1.2.0``, ``name@^1.2``, ``name@sha256:...``)."""


class InvalidVersion(InvalidInput):
    """A version string that is not semver, or a range that does not parse."""


class IntegrityError(HubError):
    """Stored bytes do not match the manifest."""


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


class UnreadableRecord(IntegrityError):
    """A stored record (metadata, lineage) that a reader cannot decode or render.

    Only a value written past the input bounds (see :mod:`sentenialx.hub.bounds`),
    e.g. straight into the index, gets here; ``name`` is the version it belongs to.
    """

    def __init__(self, message: str, *, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class SignatureError(HubError):
    """A signature is missing, invalid, or made by a key the trust policy does not trust."""


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


    def __init__(self, message: str, *, path: str = "", offending: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.offending = offending


class Conflict(HubError):
    """A concurrent change won (e.g. an alias moved since the caller looked)."""



class GateFailed(HubError):
    """A promotion was refused because one or more gates did not pass."""


    def __init__(self, message: str, *, failed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.failed = failed


class StateError(HubError):
    """A hub state a client was shown is older than one it saw, expired, or not signed right."""



class UpdateRefused(StateError):
    """A TUF client refused what a server or mirror sent; ``attack`` names what it looks like.

    One of ``rollback``, ``freeze``, ``mix-and-match``, ``arbitrary release``,
    ``untrusted key``, ``below threshold`` or ``tampered bytes``. Raised on the client
    only (it never crosses HTTP as itself).
    """

    def __init__(self, message: str, *, attack: str = "") -> None:
        super().__init__(message)
        self.attack = attack


class PermissionDenied(HubError, PermissionError):
    """The token lacks the scope or the model this needs (HTTP 403)."""



class Unauthenticated(PermissionDenied):
    """No token, or one that is unknown, revoked or expired (HTTP 401)."""


class TooLarge(InvalidInput):
    """An upload is larger than the server accepts (HTTP 413)."""


class StoreUnavailable(HubError, OSError):
    """The index or the blob store cannot be reached, read or written.

    ``where`` names what failed: a path, an S3 endpoint and bucket, or a database
    (its URL with the password hidden).
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(message)
        self.where = where


class MissingDependency(HubError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with `pip install 'sentenialx[{extra}]'`"
        )
        self.package = package
        self.extra = extra


def one_line(text: object, *, limit: int = 300) -> str:
    """``text`` on one line: whitespace runs (newlines included) become one space, cut at ``limit``.

    Drivers (psycopg, botocore, urllib3) put hints on further lines; an error message
    of ours is one line, so their text is folded before it is quoted.
    """
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


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


# -- HTTP: one table both ways --------------------------------------------------------------
HTTP_ERRORS: tuple[tuple[type[HubError], int, tuple[str, ...]], ...] = (
    (Unauthenticated, 401, ()),
    (PermissionDenied, 403, ()),
    (NotFound, 404, ("what", "name")),
    (AlreadyExists, 409, ()),
    (Conflict, 409, ()),
    (GateFailed, 409, ("failed",)),
    (StateError, 409, ()),
    (TooLarge, 413, ()),
    (InvalidName, 400, ()),
    (InvalidRef, 400, ()),
    (InvalidVersion, 400, ()),
    (InvalidInput, 400, ()),
    (UnreadableRecord, 422, ("name",)),
    # A request raises IntegrityError only for upload bytes that differ from what the
    # client declared (its fault); damage in the store shows in verify reports.
    (IntegrityError, 400, ("path", "expected", "actual")),
    (SignatureError, 422, ("version", "found_keys", "trusted_keys")),
    (UnsafeArtifact, 422, ("path", "offending")),
    (MissingDependency, 501, ("package", "extra")),
    (StoreUnavailable, 503, ("where",)),
    (HubError, 500, ()),
)
"""Every hub error class with its HTTP status and the facts (attributes) carried across.

The wire name of a class (``error.type`` in the body) is its class name.
"""

HTTP_STATUS: dict[type[HubError], int] = {cls: status for cls, status, _ in HTTP_ERRORS}
_FACTS: dict[type[HubError], tuple[str, ...]] = {cls: f for cls, _, f in HTTP_ERRORS}
_BY_NAME: dict[str, type[HubError]] = {cls.__name__: cls for cls, _, _ in HTTP_ERRORS}
_BY_STATUS: dict[int, type[HubError]] = {
    400: InvalidInput, 401: Unauthenticated, 403: PermissionDenied, 404: NotFound,
    409: Conflict, 413: TooLarge, 416: InvalidInput, 422: InvalidInput, 501: MissingDependency,
    502: StoreUnavailable, 503: StoreUnavailable, 504: StoreUnavailable,
}
_MAX_MESSAGE = 2000
_MAX_FACT = 1000
_MAX_ITEMS = 100


def _table_class(exc: BaseException) -> type[HubError]:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return cls  # type: ignore[no-any-return]
    return HubError


def http_status(exc: BaseException) -> int:
    """The HTTP status of an error: its most specific class in :data:`HTTP_ERRORS`."""
    return HTTP_STATUS[_table_class(exc)]


def to_http(exc: HubError) -> tuple[int, dict[str, Any]]:
    """The status and JSON body a server answers for ``exc``, its facts included.

    The body is ``{"error": {"type", "message", "facts"}}``; ``type`` is the most
    specific class the table knows.
    """
    cls = _table_class(exc)
    facts: dict[str, Any] = {}
    for name in _FACTS[cls]:
        v = getattr(exc, name, None)
        if isinstance(v, str):
            facts[name] = v
        elif isinstance(v, (tuple, list)):
            facts[name] = [str(x) for x in v]
    type_ = type(exc).__name__ if type(exc).__name__ in _BY_NAME else cls.__name__
    return HTTP_STATUS[cls], {"error": {"type": type_, "message": str(exc), "facts": facts}}


def _clean(text: str, limit: int) -> str:
    """A string from an untrusted peer, safe to print on one terminal line."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if not unicodedata.category(c).startswith("C") else "?" for c in text)


def from_http(status: int, body: Any) -> HubError:
    """Rebuild the error a server answered, as the same class with the same facts.

    ``body`` is untrusted: only strings (and lists of strings) of bounded size are
    read, control characters are replaced, and an unknown ``type`` falls back to
    the class for ``status`` (else :class:`HubError`).
    """
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {}
    type_ = err.get("type")
    message = err.get("message")
    if not isinstance(message, str) or not message:
        message = f"HTTP {status}"
    message = _clean(message, _MAX_MESSAGE)
    cls = _BY_NAME.get(type_) if isinstance(type_, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status, HubError)
    raw = err.get("facts")
    facts: dict[str, Any] = {}
    if isinstance(raw, dict):
        for name in _FACTS.get(cls, ()):
            v = raw.get(name)
            if isinstance(v, str):
                facts[name] = _clean(v, _MAX_FACT)
            elif isinstance(v, list) and all(isinstance(x, str) for x in v[:_MAX_ITEMS]):
                facts[name] = tuple(_clean(x, _MAX_FACT) for x in v[:_MAX_ITEMS])
    return _build(cls, message, facts)


def _build(cls: type[HubError], message: str, facts: dict[str, Any]) -> HubError:
    if cls is MissingDependency:
        exc: HubError = MissingDependency(str(facts.get("package", "")),
                                          str(facts.get("extra", "")))
        exc.message = message
        exc.args = (message,)
        return exc
    tuple_facts = {"failed", "found_keys", "trusted_keys"}
    kwargs: dict[str, Any] = {}
    for k, v in facts.items():
        if k in tuple_facts:
            kwargs[k] = (v,) if isinstance(v, str) else tuple(v)
        else:
            kwargs[k] = v if isinstance(v, str) else ", ".join(v)
    return cls(message, **kwargs)  # type: ignore[call-arg]
