"""API tokens: bearer secrets with a scope and optional model limits.

A token is ``sxt_`` followed by 43 random URL-safe characters. The hub keeps only
its sha256 (table ``tokens``, migration 0002), so a copy of the index never gives
anyone access; the secret is shown once, when it is created.

Scopes nest: ``read`` < ``write`` < ``admin``. ``read`` reads (and runs verify),
``write`` also registers, moves aliases and revokes, ``admin`` also deletes. A
token may be limited to some model names (``fnmatch`` patterns such as
``distill*``); it then neither sees nor touches other models. Every write made
with a token is recorded in the event history as ``token:<name>``.

This module imports SQLAlchemy only, so the CLI's ``token`` commands work
without the server's dependencies.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update

from sentenialx.hub.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from sentenialx.hub.index import schema as S
from sentenialx.hub.index.sql import SqlIndex, utcnow
from sentenialx.hub.refs import validate_name

SCOPES = ("read", "write", "admin")
_RANK = {s: i for i, s in enumerate(SCOPES)}
TOKEN_PREFIX = "sxt_"
_PATTERN_RE = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,100}$")
_TOUCH_EVERY = 300.0
"""Seconds between two ``last_used_at`` updates of one token (it is a hint, not history)."""


class _HasIndex(Protocol):
    index: SqlIndex


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
                                   f" {', '.join(self.models or ())}; not {model!r}")

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


def _row_to_token(row: Any) -> Token:
    models = tuple(json.loads(row.models)) if row.models is not None else None
    return Token(name=row.name, scope=row.scope, models=models, created_at=row.created_at,
                 created_by=row.created_by, expires_at=row.expires_at,
                 revoked_at=row.revoked_at, last_used_at=row.last_used_at)


def _check_models(models: list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    out = []
    for m in models:
        if not _PATTERN_RE.match(m) or ".." in m or "/" in m:
            raise InvalidInput(f"model limit {m!r} is not a model name or pattern (letters,"
                               " digits, '.', '_', '-', '*', '?')")
        out.append(m)
    if not out:
        raise InvalidInput("a model limit list must name at least one model")
    return tuple(sorted(set(out)))


def create_token(hub: _HasIndex, name: str, *, scope: str = "read",
                 models: list[str] | tuple[str, ...] | None = None,
                 expires_in: timedelta | None = None, actor: str | None = None
                 ) -> tuple[str, Token]:
    """Create a token; returns the secret (shown once) and the record.

    Raises:
        InvalidName: the name is not allowed.
        InvalidInput: unknown scope, bad model limits or a non-positive lifetime.
        AlreadyExists: a token (active or revoked) already has this name.
    """
    from sentenialx.hub.hub import default_actor

    validate_name(name, what="token")
    if scope not in SCOPES:
        raise InvalidInput(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    limits = _check_models(models)
    if expires_in is not None and expires_in.total_seconds() <= 0:
        raise InvalidInput("a token's lifetime must be positive")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires = _iso(datetime.now(UTC) + expires_in) if expires_in is not None else None
    with hub.index.write() as c:
        # Names stay unique forever (revoked rows are kept) so `token:<name>` in the
        # history always means one token.
        if c.execute(select(S.tokens.c.id).where(S.tokens.c.name == name)).first():
            raise AlreadyExists(f"a token named {name!r} exists (or existed: names of revoked"
                                " tokens are not reused); pick another name")
        c.execute(insert(S.tokens).values(
            name=name, token_sha256=token_sha256(secret), scope=scope,
            models=json.dumps(list(limits)) if limits is not None else None,
            created_at=now, created_by=actor or default_actor(), expires_at=expires,
            revoked_at=None, last_used_at=None))
    return secret, Token(name=name, scope=scope, models=limits, created_at=now,
                         created_by=actor or default_actor(), expires_at=expires)


def list_tokens(hub: _HasIndex, *, include_revoked: bool = True) -> list[Token]:
    """Every token, oldest first."""
    with hub.index.read() as c:
        rows = c.execute(select(S.tokens).order_by(S.tokens.c.id)).all()
    out = [_row_to_token(r) for r in rows]
    return out if include_revoked else [t for t in out if t.revoked_at is None]


def revoke_token(hub: _HasIndex, name: str) -> Token:
    """Revoke a token now; servers refuse it from their next request on.

    Raises:
        NotFound: no token has this name, or it is already revoked.
    """
    with hub.index.write() as c:
        row = c.execute(select(S.tokens).where(S.tokens.c.name == name)).first()
        if row is None or row.revoked_at is not None:
            known = [r.name for r in c.execute(select(S.tokens.c.name).where(
                S.tokens.c.revoked_at.is_(None))).all()]
            state = "is already revoked" if row is not None else "not found"
            raise NotFound(f"token {name!r} {state}; active tokens: {', '.join(known) or 'none'}",
                           what="token", name=name)
        c.execute(update(S.tokens).where(S.tokens.c.id == row.id).values(revoked_at=utcnow()))
        row = c.execute(select(S.tokens).where(S.tokens.c.id == row.id)).one()
    return _row_to_token(row)


class Authenticator:
    """Turns a bearer secret into a :class:`Token`, with a cache that revocation clears.

    Token changes go through ``hub.index.write()``, which bumps the hub's generation,
    so a cached answer is reused only while the generation is unchanged: a revoked
    token is refused from the next request on.
    """

    def __init__(self, hub: _HasIndex) -> None:
        self.hub = hub
        self._lock = threading.Lock()
        self._cache: dict[str, Token | None] = {}
        self._gen = -1
        self._touched: dict[str, float] = {}

    def authenticate(self, secret: str) -> Token:
        """The active token whose hash matches ``secret``.

        Raises:
            Unauthenticated: unknown, revoked or expired.
        """
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise Unauthenticated("the bearer token is not a sentenialx token (sxt_...)")
        digest = token_sha256(secret)
        gen = self.hub.index.generation()
        with self._lock:
            if gen != self._gen:
                self._cache.clear()
                self._gen = gen
            hit = self._cache.get(digest, ...)
        if hit is ...:
            with self.hub.index.read() as c:
                row = c.execute(select(S.tokens).where(S.tokens.c.token_sha256 == digest)).first()
            hit = _row_to_token(row) if row is not None else None
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
        # A hint for `token list`, not history: no generation bump (that would empty
        # every resolve cache), and a busy index never fails the request.
        with contextlib.suppress(sa_exc.SQLAlchemyError):
            with self.hub.index.engine.connect().execution_options(hub_write=True) as c:
                with c.begin():
                    c.execute(update(S.tokens).where(S.tokens.c.name == name)
                              .values(last_used_at=utcnow()))


__all__ = ["ANONYMOUS", "SCOPES", "Authenticator", "Token", "create_token", "list_tokens",
           "revoke_token", "token_sha256"]
