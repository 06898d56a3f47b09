"""What the API routes and the web pages share: who is asking, which hub, and how a file is sent.

Both ``app`` and ``web`` import from here, so neither imports the other.
"""


from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Protocol

import anyio
from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer

from sentenialx.hub import bounds
from sentenialx.hub._tokens import ANONYMOUS, Token
from sentenialx.hub.errors import (
    NotFound,
    Unauthenticated,
)
from sentenialx.hub.events import Event
from sentenialx.hub.hub import Hub
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Ref, Version, parse_ref, validate_name, validate_relpath
from sentenialx.hub.server._download import Transfers, file_response, redirect_response
from sentenialx.hub.values import VersionInfo

log = logging.getLogger("sentenialx.server")

COOKIE = "sx_token"
"""The session cookie that carries a token for the web pages."""


class Settings:
    """What the operator chose when starting the server."""

    def __init__(self, *, anonymous_read: bool, max_upload_bytes: int,
                 presign_ttl: int | None = None) -> None:
        self.anonymous_read = anonymous_read
        self.max_upload_bytes = max_upload_bytes
        # Seconds a presigned download URL lives; None streams every download.
        self.presign_ttl = presign_ttl


class TokenChecker(Protocol):
    """What the app needs to check a bearer secret (default: the hub's ``Tokens``)."""

    def authenticate(self, secret: str) -> Token:
        """The token for ``secret``; raises :class:`Unauthenticated` if there is none."""


_bearer = HTTPBearer(auto_error=False, description="A token from `sentenialx models token create`.")


def _secret_from(request: Request, *, cookie: bool, basic: bool = False) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if basic and scheme.lower() == "basic":
            return _basic_password(value)
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("use the header `Authorization: Bearer <token>`")
        return value.strip()
    if cookie:
        return request.cookies.get(COOKIE) or None
    return None


def _basic_password(value: str) -> str:
    """The password of HTTP Basic credentials: registry clients send the API token so."""
    import base64
    import binascii

    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed HTTP Basic credentials; send the API token as the"
                              " password") from None
    _user, sep, password = decoded.partition(":")
    if not sep or not password:
        raise Unauthenticated("HTTP Basic credentials need the API token as the password")
    return password


def principal_of(request: Request, *, cookie: bool, basic: bool = False) -> Token:
    """Who is asking: the token's record, or anonymous when allowed.

    ``basic`` also accepts HTTP Basic credentials whose password is the token (any
    user name), as registry clients send them.

    Raises:
        Unauthenticated: no token (and no anonymous reads), or a bad one.
    """
    secret = _secret_from(request, cookie=cookie, basic=basic)
    settings: Settings = request.app.state.settings
    if secret is None:
        if settings.anonymous_read:
            return ANONYMOUS
        raise Unauthenticated("this hub needs a token: send `Authorization: Bearer <token>`"
                              " (the operator creates one with `sentenialx models token create`)")
    auth: TokenChecker = request.app.state.auth
    tok = auth.authenticate(secret)
    request.state.principal = tok
    return tok


def api_principal(request: Request, _cred: Annotated[Any, Depends(_bearer)] = None) -> Token:
    """The API's auth dependency: GET and HEAD also accept the web cookie."""
    return principal_of(request, cookie=request.method in ("GET", "HEAD"))


Principal = Annotated[Token, Depends(api_principal)]


def hub_of(request: Request) -> Hub:
    """The hub this app serves."""
    hub: Hub = request.app.state.hub
    return hub


# -- helpers ----------------------------------------------------------------------------
def _model(model: str) -> str:
    return validate_name(model)


def _ref(text: str) -> Ref:
    """A ref from a request, its version bounded before anything compares it."""
    r = parse_ref(text)
    if r.kind in ("version", "range"):
        bounds.check_version_text(r.value)
    return r


def _version_info(hub: Hub, model: str, version: str, *, include_revoked: bool = True
                  ) -> VersionInfo:
    validate_name(model)
    v = str(Version.parse(bounds.check_version_text(version)))
    return hub.resolve(f"{model}@{v}", include_revoked=include_revoked)


HIDDEN = "hidden"
"""What stands in for a model a token may not see, wherever lineage names one."""


def redact_lineage(lineage: dict[str, Any], tok: Token) -> dict[str, Any]:
    """``lineage`` with every parent in a model ``tok`` may not see reduced to its role."""
    parents = lineage.get("parents")
    if not tok.limited or not isinstance(parents, list):
        return lineage
    out = []
    for p in parents:
        if isinstance(p, dict) and tok.may_see(str(p.get("model", ""))):
            out.append(p)
        else:
            role = p.get("role", "parent") if isinstance(p, dict) else "parent"
            out.append({"role": str(role)[:100], "model": HIDDEN, "hidden": True})
    return dict(lineage, parents=out)


def redact_event(ev: Event, tok: Token) -> dict[str, Any]:
    """An event as ``tok`` may see it: parents in hidden models reduced to their role."""
    d = ev.to_dict()
    payload = d.get("payload")
    if tok.limited and isinstance(payload, dict) and isinstance(payload.get("parents"), list):
        d["payload"] = redact_lineage(payload, tok)
        d["redacted"] = True
    return d


def version_doc(hub: Hub, info: VersionInfo, tok: Token) -> dict[str, Any]:
    """A version as the API returns it to ``tok``: :meth:`VersionInfo.to_dict` plus aliases."""
    d = info.to_dict()
    d["lineage"] = redact_lineage(info.lineage, tok)
    d["aliases"] = sorted(a.alias for a in hub.aliases(info.model) if a.version == info.version)
    d["ref"] = info.ref
    return d


def find_entry(info: VersionInfo, path: str) -> FileEntry:
    """The manifest entry at ``path``.

    Raises:
        InvalidName: the path has ``..``, is absolute or has control characters.
        NotFound: the version has no such file.
    """
    validate_relpath(path)
    for f in info.files:
        if f.path == path:
            return f
    raise NotFound(f"{info.ref} has no file {path!r}; files: "
                   f"{', '.join(f.path for f in info.files)}", what="file", name=path)


def stream_entry(request: Request, hub: Hub, info: VersionInfo, entry: FileEntry, *,
                 content_type: str = "application/octet-stream", inline: bool = False,
                 verified: bool = False) -> Response:
    """Stream a version's file from the store (ETag, Range, conditional requests).

    ``verified=True`` is for clients that do not hash what they download (the HF and
    OCI ones): the bytes are hashed against the manifest while sent, and a file that no
    longer matches is never sent whole (:meth:`Hub.verified_byte_source`).

    Raises:
        NotFound: the file is missing from the store.
        StoreUnavailable: its size differs from the manifest.
    """
    size, opener = (hub.verified_byte_source if verified else hub.byte_source)(info, entry)
    return file_response(request.headers, entry, size=size, opener=opener,
                         filename=Path(entry.path).name, content_type=content_type,
                         inline=inline, counter=transfers_of(request))


def transfers_of(request: Request) -> Transfers | None:
    """The app's download counters."""
    return getattr(request.app.state, "transfers", None)


def redirect_entry(request: Request, hub: Hub, info: VersionInfo, entry: FileEntry
                   ) -> Response | None:
    """A redirect to a presigned URL of a file, or None to stream it instead.

    None when the server streams (``presign_ttl`` unset), when the store signs no URLs,
    and for HEAD (answered from the manifest by the stream response). The caller has
    already checked the token's scope for the model and resolved the version.

    Raises:
        InvalidInput: the configured lifetime is out of the store's range.
    """
    settings: Settings = request.app.state.settings
    if settings.presign_ttl is None or request.method != "GET":
        return None
    url = hub.presigned_url(info, entry, expires=settings.presign_ttl)
    if url is None:
        return None
    resp = redirect_response(request.headers, entry, url=url, expires=settings.presign_ttl)
    counter = transfers_of(request)
    if resp.status_code == 307 and counter is not None:
        counter.redirected()
        log.info("download %s %s: presigned URL for %d s", info.ref, entry.path,
                 settings.presign_ttl)
    return resp


async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking hub work in a worker thread."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


# -- the app ----------------------------------------------------------------------------
