"""API tokens: bearer secrets with a scope and optional model limits.

A token is ``sxt_`` followed by 43 random URL-safe characters. The hub keeps only
its sha256 (the index's ``tokens`` table), so a copy of the index never gives
anyone access; the secret is shown once, when it is created.

Scopes nest: ``read`` < ``write`` < ``admin``. ``read`` reads, ``write`` also
registers, moves aliases and revokes, ``admin`` also deletes, forces gated alias
moves and runs deep verifies. A token may be limited to some model names
(``fnmatch`` patterns such as ``distill*``); it then neither sees nor touches
other models. Every write made with a token is recorded in the event history as
``token:<name>``.

:class:`Tokens` is the one place these rules live; the server and the CLI reach it
as ``hub.tokens``, and it reaches the table only through the index.
"""

from __future__ import annotations

import builtins
import fnmatch
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sentenialx.hub.errors import InvalidInput, PermissionDenied, Unauthenticated
from sentenialx.hub.refs import validate_name

SCOPES = ("read", "write", "admin")
_RANK = {s: i for i, s in enumerate(SCOPES)}
TOKEN_PREFIX = "sxt_"
_PATTERN_RE = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,100}$")
_TOUCH_EVERY = 300.0
"""Seconds between two ``last_used_at`` updates of one token (it is a hint, not history)."""


class TokenIndex(Protocol):
    """What :class:`Tokens` needs from the index (the token section of ``SqlIndex``)."""

    def generation(self) -> int: ...  # noqa: D102
    def create_token(self, name: str, *, token_sha256: str, scope: str,  # noqa: D102
                     models: Any, created_by: str, expires_at: str | None
                     ) -> dict[str, Any]: ...
    def list_tokens(self) -> list[dict[str, Any]]: ...  # noqa: D102
    def revoke_token(self, name: str) -> dict[str, Any]: ...  # noqa: D102
    def find_token_by_hash(self, token_sha256: str) -> dict[str, Any] | None: ...  # noqa: D102
    def touch_token(self, name: str) -> None: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class Token:
    """A token as the hub knows it (never the secret)."""

    name: str
    scope: str
    models: tuple[str, ...] | None = None
    created_at: str = ""
    created_by: str = ""
    expires_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None
    anonymous: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Token:
        """A token from an index row."""
        models = row.get("models")
        return cls(name=row["name"], scope=row["scope"],
                   models=tuple(models) if models is not None else None,
                   created_at=row.get("created_at") or "", created_by=row.get("created_by") or "",
                   expires_at=row.get("expires_at"), revoked_at=row.get("revoked_at"),
                   last_used_at=row.get("last_used_at"))

    @property
    def actor(self) -> str:
        """How writes made with this token appear in the event history."""
        return "anonymous" if self.anonymous else f"token:{self.name}"

    @property
    def active(self) -> bool:
        """Not revoked and not expired."""
        if self.revoked_at:
            return False
        return not (self.expires_at and _parse_ts(self.expires_at) <= datetime.now(UTC))

    @property
    def limited(self) -> bool:
        """True when the token sees only some models."""
        return self.models is not None

    def may_see(self, model: str) -> bool:
        """True when the token's model limits include ``model``."""
        if self.models is None:
            return True
        return any(fnmatch.fnmatchcase(model, p) for p in self.models)

    def check(self, scope: str, model: str | None = None) -> None:
        """Raise unless this token has ``scope`` (or more) on ``model``.

        ``model=None`` means "the whole hub": a model-limited token is refused.

        Raises:
            Unauthenticated: anonymous access asks for more than reading.
            PermissionDenied: the scope is too low or the model is outside the limits.
        """
        if _RANK[self.scope] < _RANK[scope]:
            if self.anonymous:
                raise Unauthenticated(f"this needs a token with scope {scope!r}: send"
                                      " `Authorization: Bearer <token>`")
            raise PermissionDenied(f"token {self.name!r} has scope {self.scope!r}; this needs"
                                   f" {scope!r} (`sentenialx models token create NAME --scope"
                                   f" {scope}`)")
        if model is None:
            if self.models is not None:
                raise PermissionDenied(f"token {self.name!r} is limited to models"
                                       f" {', '.join(self.models)}; this needs the whole hub")
        elif not self.may_see(model):
            raise PermissionDenied(f"token {self.name!r} is limited to models"
                                   f" {', '.join(self.models or ())}; not {model[:100]!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (no secret, no hash)."""
        return {"name": self.name, "scope": self.scope,
                "models": list(self.models) if self.models is not None else None,
                "created_at": self.created_at, "created_by": self.created_by,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at,
                "last_used_at": self.last_used_at, "active": self.active,
                "anonymous": self.anonymous}


ANONYMOUS = Token(name="anonymous", scope="read", anonymous=True)
"""Who a request without a token is when the server allows anonymous reads."""


def token_sha256(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _check_models(models: list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    out = []
    for m in models:
        if not isinstance(m, str) or not _PATTERN_RE.match(m) or ".." in m or "/" in m:
            raise InvalidInput(f"model limit {m!r} is not a model name or pattern (letters,"
                               " digits, '.', '_', '-', '*', '?')")
        out.append(m)
    if not out:
        raise InvalidInput("a model limit list must name at least one model")
    return tuple(sorted(set(out)))


class Tokens:
    """Create, list, revoke and authenticate tokens, over an index's token table.

    ``authenticate`` keeps a cache that is reused only while the index generation is
    unchanged; token changes go through index write transactions, which bump it, so a
    revoked token is refused from the next request on.
    """

    def __init__(self, index: TokenIndex) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._cache: dict[str, Token | None] = {}
        self._gen = -1
        self._touched: dict[str, float] = {}

    def create(self, name: str, *, scope: str = "read",
               models: builtins.list[str] | tuple[str, ...] | None = None,
               expires_in: timedelta | None = None, actor: str | None = None
               ) -> tuple[str, Token]:
        """Create a token; returns the secret (shown once) and the record.

        Raises:
            InvalidName: the name is not allowed.
            InvalidInput: unknown scope, bad model limits or a non-positive lifetime.
            AlreadyExists: a token (active or revoked) already has this name.
        """
        validate_name(name, what="token")
        if scope not in SCOPES:
            raise InvalidInput(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        limits = _check_models(models)
        if expires_in is not None and expires_in.total_seconds() <= 0:
            raise InvalidInput("a token's lifetime must be positive")
        if actor is None:
            from sentenialx.hub._core import default_actor

            actor = default_actor()
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = _iso(datetime.now(UTC) + expires_in) if expires_in is not None else None
        row = self.index.create_token(name, token_sha256=token_sha256(secret), scope=scope,
                                      models=limits, created_by=actor, expires_at=expires)
        return secret, Token.from_row(row)

    def list(self, *, include_revoked: bool = True) -> builtins.list[Token]:
        """Every token, oldest first."""
        out = [Token.from_row(r) for r in self.index.list_tokens()]
        return out if include_revoked else [t for t in out if t.revoked_at is None]

    def revoke(self, name: str) -> Token:
        """Revoke a token now; servers refuse it from their next request on.

        Raises:
            NotFound: no token has this name, or it is already revoked.
        """
        return Token.from_row(self.index.revoke_token(name))

    def authenticate(self, secret: str) -> Token:
        """The active token whose hash matches ``secret``.

        Raises:
            Unauthenticated: not a token, unknown, revoked or expired.
        """
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise Unauthenticated("the bearer token is not a sentenialx token (sxt_...)")
        digest = token_sha256(secret)
        gen = self.index.generation()
        with self._lock:
            if gen != self._gen:
                self._cache.clear()
                self._gen = gen
            hit = self._cache.get(digest, ...)
        if hit is ...:
            row = self.index.find_token_by_hash(digest)
            hit = Token.from_row(row) if row is not None else None
            with self._lock:
                if len(self._cache) > 10000:
                    self._cache.clear()
                self._cache[digest] = hit
        if hit is None:
            raise Unauthenticated("unknown token; create one with"
                                  " `sentenialx models token create NAME`")
        if hit.revoked_at:
            raise Unauthenticated(f"token {hit.name!r} was revoked at {hit.revoked_at}")
        if not hit.active:
            raise Unauthenticated(f"token {hit.name!r} expired at {hit.expires_at}")
        self._touch(hit.name)
        return hit

    def _touch(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(name, -_TOUCH_EVERY) < _TOUCH_EVERY:
                return
            self._touched[name] = now
        self.index.touch_token(name)


__all__ = ["ANONYMOUS", "SCOPES", "TOKEN_PREFIX", "Token", "TokenIndex", "Tokens",
           "token_sha256"]
