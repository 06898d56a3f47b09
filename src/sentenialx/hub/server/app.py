"""The hub over HTTP: ``create_app(hub)`` gives a FastAPI app with the REST API and the web pages.

API (``/api/v1``, described at ``/openapi.json``)
    Read (scope ``read``): models, versions, a ref resolved to a version, a
    version's manifest and metadata, aliases and their history, events, file
    downloads (``ETag`` = sha256, ``Range``, ``If-None-Match``, ``If-Range``) and
    verify. Write (scope ``write``): register by streaming upload, alias moves
    with an expected previous version, revoke and un-revoke. Admin: delete.

OCI (``/v2/``)
    A read-only registry in the CNCF ModelPack layout for oras, skopeo and other
    registry clients: :mod:`sentenialx.hub.server.oci`.

Auth
    ``Authorization: Bearer sxt_...`` (see :mod:`sentenialx.hub._tokens`). Web pages also accept the
    ``sx_token`` cookie set by ``/login`` (HttpOnly, SameSite=Strict); API writes
    take the header only. Without ``anonymous_read`` a request without a token gets
    401. Writes are recorded in the event history as ``token:<name>``.

Errors
    Every error is ``{"error": {"type", "message", "facts"}}`` with the status from
    :data:`sentenialx.hub.errors.HTTP_ERRORS`, the one table between hub errors and
    HTTP that the client reads back with ``from_http``. A stored value a reader
    cannot decode or render answers 422 naming the version; only a fault of the
    server itself answers 500, and never with a traceback.

Model limits
    A token limited to some models learns nothing about the others: listings are
    filtered, lineage pointing at a hidden model is redacted, a parent in a hidden
    model is refused the same way whether it exists or not, and a NotFound answer
    lists nothing.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentenialx.hub._tokens import Token
from sentenialx.hub.errors import (
    HTTP_STATUS,
    HubError,
    InvalidInput,
    NotFound,
    TooLarge,
    UnreadableRecord,
    http_status,
    to_http,
)
from sentenialx.hub.hub import Hub
from sentenialx.hub.manifest import Manifest
from sentenialx.hub.refs import validate_name
from sentenialx.hub.server import _upload
from sentenialx.hub.server._common import (  # noqa: F401 - re-exported for callers of app
    COOKIE,
    HIDDEN,
    Principal,
    Settings,
    TokenChecker,
    _bearer,
    _model,
    _ref,
    _secret_from,
    _version_info,
    api_principal,
    find_entry,
    hub_of,
    principal_of,
    redact_event,
    redact_lineage,
    redirect_entry,
    run,
    stream_entry,
    version_doc,
)
from sentenialx.hub.server._download import Transfers

log = logging.getLogger("sentenialx.server")

HERE = Path(__file__).parent
DEFAULT_MAX_UPLOAD = 8 * 1024**3
"""Default upload limit (8 GiB): the largest request body a server accepts."""
API = "/api/v1"
DEFAULT_PRESIGN_TTL = 300
"""Lifetime of a presigned download URL: long enough to start, short as a credential."""
MAX_PRESIGN_TTL = 7 * 24 * 3600

ERROR_STATUS = HTTP_STATUS
"""The hub's one error table (:data:`sentenialx.hub.errors.HTTP_ERRORS`), by class."""
status_for = http_status

STORED_VALUE_ERRORS = (RecursionError, ValueError, OverflowError)
"""What decoding or rendering a stored value past the input bounds raises (too deep,
an integer too long for ``str``, too large for ``float``): answered 422, not 500."""


def error_body(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON error shape."""
    return {"error": {"type": type_, "message": message, **extra}}


# -- request bodies -------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AliasBody(_Body):
    """Move an alias (compare-and-set with ``expect``)."""

    ref: str = Field(description="The version to point at: MODEL@VERSION (or any ref of MODEL).",
                     max_length=300)
    expect: str | None = Field(None, max_length=200, description=(
        "The version the alias must point at now ('' = must be unset); null = no check."))


class RevokeBody(_Body):
    """Why a version is revoked."""

    reason: str = Field(min_length=1, max_length=2000)


class VerifyBody(_Body):
    """What to verify: one ref, one model, or (null, null) the whole hub."""

    ref: str | None = Field(None, max_length=300)
    model: str | None = Field(None, max_length=100)
    deep: bool = Field(True, description="Re-hash every file (false trusts the stat cache).")


class BlobQuery(_Body):
    """Files a client is about to upload, by sha256 and size."""

    files: list[dict[str, Any]] = Field(max_length=10000)


# -- auth dependencies ----------------------------------------------------------------------
def create_app(hub: Hub, *, tokens: TokenChecker | None = None, anonymous_read: bool = False,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
               presign_ttl: int | None = DEFAULT_PRESIGN_TTL,
               tuf_online_keys: str | Path | None = None) -> FastAPI:
    """The FastAPI app serving ``hub``: the REST API, the web pages, the OpenAPI description.

    Args:
        hub: a local hub (the server reads and writes it directly).
        tokens: how bearer tokens are checked; default the hub's own token table.
        anonymous_read: let requests without a token read (never write).
        max_upload_bytes: the largest upload accepted (413 above it).
        presign_ttl: on a store that signs URLs (S3), API downloads answer ``307`` to a
            presigned URL that lives this many seconds; None streams every download.
        tuf_online_keys: the folder of the TUF snapshot and timestamp keys (default
            ``$SENTENIALX_TUF_ONLINE_KEYS`` or the hub's folder under ~/.config).

    Raises:
        InvalidInput: ``hub`` is not a local hub, or a limit is not positive.
    """
    if not isinstance(hub, Hub):
        raise InvalidInput("the server serves a local hub; open it with Hub.open(PATH)")
    if max_upload_bytes <= 0:
        raise InvalidInput("max_upload_bytes must be positive")
    if presign_ttl is not None and not 1 <= presign_ttl <= MAX_PRESIGN_TTL:
        raise InvalidInput(f"presign_ttl must be 1..{MAX_PRESIGN_TTL} seconds")
    app = FastAPI(
        title="Sentenial-X Model Hub",
        version="1",
        description="Versioned, verifiable model artifacts. Authenticate with"
                    " `Authorization: Bearer <token>`.",
        # No Swagger/ReDoc pages: they load script from a CDN, which our CSP (and a
        # closed network) refuses. The description itself is at /openapi.json.
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )
    app.state.hub = hub
    app.state.auth = tokens or hub.tokens
    app.state.settings = Settings(anonymous_read=anonymous_read,
                                  max_upload_bytes=max_upload_bytes, presign_ttl=presign_ttl)
    app.state.transfers = Transfers()
    _install_errors(app)
    _install_security_headers(app)
    _api_routes(app)
    from sentenialx.hub.server import hf, oci, web

    app.include_router(oci.router)  # read-only OCI registry under /v2/ (issue 11)
    app.include_router(hf.router)  # HF_ENDPOINT={server}/hf (issue 11)
    app.include_router(web.router)
    from sentenialx.hub.server import tuf

    app.state.tuf_online_keys = tuf_online_keys
    app.include_router(tuf.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/openapi", "/healthz", "/static/", "/v2", "/tuf/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _install_errors(app: FastAPI) -> None:
    def respond(request: Request, status: int, type_: str, message: str,
                **extra: Any) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="sentenialx"'} if status == 401 else {}
        if _wants_html(request):
            from sentenialx.hub.server import web

            if status == 401:
                return web.login_redirect(request)
            return web.error_page(request, status, type_, message)
        return JSONResponse(error_body(type_, message, **extra), status_code=status,
                            headers=headers)

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> Response:
        status, body = to_http(exc)
        err = body["error"]
        if status >= 500:
            log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        tok: Token | None = getattr(request.state, "principal", None)
        if isinstance(exc, NotFound) and tok is not None and tok.limited:
            # A model-limited token must not learn other names from a listing in the
            # message ("known models: ..."): it gets only what it asked for.
            err["message"] = f"{exc.what or 'it'} not found" + (
                f": {exc.name[:200]}" if exc.name else "")
        return respond(request, status, err["type"], err["message"], facts=err["facts"])

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                   for e in exc.errors()[:20]]
        first = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:3])
        return respond(request, 422, "ValidationError", f"invalid request: {first}",
                       details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        names = {404: "NotFound", 405: "MethodNotAllowed", 400: "BadRequest"}
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page or endpoint: {request.url.path}"
        resp = respond(request, exc.status_code, names.get(exc.status_code, "HTTPError"),
                       message)
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    async def stored_value_error(request: Request, exc: Exception) -> Response:
        # Inputs are bounded before they are stored (sentenialx.hub.bounds), so this is a
        # stored record written past them: name it, answer 422, keep serving.
        where = _record_named_by(request)
        log.warning("%s %s: unreadable stored record %s: %s: %s", request.method,
                    request.url.path, where or "?", type(exc).__name__, str(exc)[:200])
        err = UnreadableRecord(
            f"{where or 'a stored record'}: stored metadata or lineage cannot be read or"
            " rendered (nested too deep, a number too large, or not JSON); run"
            " `sentenialx models fsck`", name=where)
        status, body = to_http(err)
        return respond(request, status, body["error"]["type"], body["error"]["message"],
                       facts=body["error"]["facts"])

    for cls in STORED_VALUE_ERRORS:
        app.add_exception_handler(cls, stored_value_error)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(error_body("InternalError", "internal error; the server log has"
                                       " the details"), status_code=500)


def _record_named_by(request: Request) -> str:
    """The version (or model, or ref) a request names, for an error message."""
    params = request.path_params
    model, version = params.get("model"), params.get("version")
    if isinstance(model, str) and isinstance(version, str):
        return f"{model[:100]}@{version[:100]}"
    ref = request.query_params.get("ref")
    if ref:
        return ref[:300]
    return model[:100] if isinstance(model, str) else ""


class _SecurityHeaders:
    """Plain ASGI middleware: a nonce per request, the security headers on every answer.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
    runs each request in an extra task and pipes every body chunk through a memory
    stream, a cost paid on every small GET and every streamed byte.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        # request.state reads scope["state"]: the pages put this nonce in their scripts.
        scope.setdefault("state", {})["nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("Referrer-Policy", "no-referrer")
                h.setdefault("X-Frame-Options", "DENY")
                if h.get("content-type", "").startswith("text/html"):
                    # Script runs only with this response's nonce: a report that slipped
                    # past the sanitiser still could not run any.
                    h.setdefault("Content-Security-Policy",
                                 "default-src 'none'; img-src 'self' data:; style-src 'self';"
                                 f" script-src 'nonce-{nonce}'; form-action 'self';"
                                 " base-uri 'none'; frame-ancestors 'none'")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _install_security_headers(app: FastAPI) -> None:
    app.add_middleware(_SecurityHeaders)


def _api_routes(app: FastAPI) -> None:  # noqa: C901 - one place lists every endpoint
    @app.get("/healthz", tags=["meta"], summary="Liveness (no token needed)")
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get(f"{API}/whoami", tags=["meta"], summary="The token this request uses")
    def whoami(tok: Principal) -> dict[str, Any]:
        return tok.to_dict()

    @app.get(f"{API}/state", tags=["read"],
             summary="The index generation; signed with an expiry when the hub has a key")
    def state(request: Request, tok: Principal) -> dict[str, Any]:
        # The generation is not secret: any read token, model-limited or not, may follow it.
        tok.check("read", None if tok.models is None else next(iter(tok.models), None))
        hub = hub_of(request)
        from sentenialx.hub.state import load_hub_key

        signed = hub.signed_state() if load_hub_key(hub.root) is not None else None
        return {"generation": hub.generation(), "signed": signed}

    # -- read -------------------------------------------------------------------------
    @app.get(f"{API}/models", tags=["read"], summary="Models with latest version and aliases")
    def list_models(request: Request, tok: Principal) -> list[dict[str, Any]]:
        return [m for m in hub_of(request).models() if tok.may_see(m["model"])]

    @app.get(f"{API}/models/{{model}}/versions", tags=["read"],
             summary="Every version of a model (revoked included), oldest first")
    def list_versions(request: Request, model: str, tok: Principal) -> list[dict[str, Any]]:
        _model(model)
        tok.check("read", model)
        hub = hub_of(request)
        return [version_doc(hub, v, tok) for v in hub.versions(model)]

    @app.get(f"{API}/resolve", tags=["read"], summary="Resolve a ref to a version")
    def resolve(request: Request, tok: Principal,
                ref: Annotated[str, Query(max_length=300,
                                          description="MODEL, MODEL@VERSION, MODEL@ALIAS,"
                                                      " MODEL@RANGE or MODEL@sha256:DIGEST")],
                include_revoked: bool = False) -> dict[str, Any]:
        r = _ref(ref)
        tok.check("read", r.name)
        hub = hub_of(request)
        return version_doc(hub, hub.resolve(r, include_revoked=include_revoked), tok)

    @app.get(f"{API}/models/{{model}}/versions/{{version}}", tags=["read"],
             summary="One version: files, metadata, lineage, aliases")
    def get_version(request: Request, model: str, version: str, tok: Principal) -> dict[str, Any]:
        _model(model)
        tok.check("read", model)
        hub = hub_of(request)
        return version_doc(hub, _version_info(hub, model, version), tok)

    @app.get(f"{API}/models/{{model}}/versions/{{version}}/manifest", tags=["read"],
             summary="The canonical manifest; its sha256 is the version digest")
    def get_manifest(request: Request, model: str, version: str,
                     tok: Principal) -> dict[str, Any]:
        _model(model)
        tok.check("read", model)
        info = _version_info(hub_of(request), model, version)
        m = Manifest(info.files)
        return dict(m.to_dict(), digest=m.digest)

    @app.get(f"{API}/models/{{model}}/versions/{{version}}/metadata", tags=["read"],
             summary="Metadata and lineage")
    def get_metadata(request: Request, model: str, version: str,
                     tok: Principal) -> dict[str, Any]:
        _model(model)
        tok.check("read", model)
        info = _version_info(hub_of(request), model, version)
        return {"model": info.model, "version": info.version, "digest": info.digest,
                "metadata": info.meta, "lineage": redact_lineage(info.lineage, tok)}

    files_path = f"{API}/models/{{model}}/versions/{{version}}/files/{{path:path}}"
    file_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "Partial content"}, 304: {"description": "Not modified"},
        307: {"description": "On an S3 hub: Location is a presigned URL of the bytes (also in"
                             " the JSON body); ?redirect=false streams them instead"},
        416: {"description": "Range not satisfiable"}}

    @app.head(files_path, tags=["read"], response_class=Response, responses=file_responses,
              operation_id="head_file", summary="A file's headers (size, ETag) without its bytes")
    @app.get(files_path, tags=["read"], response_class=Response, responses=file_responses,
             operation_id="download_file",
             summary="Download a file (ETag = sha256; Range, If-None-Match, If-Range)")
    def download(request: Request, model: str, version: str, path: str,
                 tok: Principal, redirect: Annotated[bool, Query(
                     description="On an S3 hub, answer 307 to a presigned URL (default)"
                                 " instead of streaming the bytes through the server")] = True
                 ) -> Response:
        _model(model)
        tok.check("read", model)
        hub = hub_of(request)
        info = _version_info(hub, model, version)
        entry = find_entry(info, path)
        if redirect:
            moved = redirect_entry(request, hub, info, entry)
            if moved is not None:
                return moved
        return stream_entry(request, hub, info, entry)

    @app.get(f"{API}/models/{{model}}/aliases", tags=["read"], summary="A model's aliases")
    def list_aliases(request: Request, model: str, tok: Principal) -> list[dict[str, Any]]:
        _model(model)
        tok.check("read", model)
        return [a.to_dict() for a in hub_of(request).aliases(model)]

    @app.get(f"{API}/models/{{model}}/aliases/history", tags=["read"],
             summary="Every move of a model's aliases, oldest first")
    def alias_history(request: Request, model: str, tok: Principal,
                      alias: Annotated[str | None, Query(max_length=100)] = None
                      ) -> list[dict[str, Any]]:
        _model(model)
        if alias is not None:
            validate_name(alias, what="alias")
        tok.check("read", model)
        return [m.to_dict() for m in hub_of(request).alias_history(model, alias)]

    @app.get(f"{API}/events", tags=["read"], summary="The hash-chained history, oldest first")
    def events(request: Request, tok: Principal,
               model: Annotated[str | None, Query(max_length=100)] = None,
               limit: Annotated[int | None, Query(ge=1, le=100000)] = None
               ) -> list[dict[str, Any]]:
        if model is not None:
            _model(model)
            tok.check("read", model)
        else:
            tok.check("read")
        evs = hub_of(request).events(model=model, limit=limit)
        return [redact_event(e, tok) for e in evs if tok.may_see(e.model)]

    @app.post(f"{API}/verify", tags=["read"],
              summary="Check stored bytes against the manifests now (deep: admin scope)")
    async def verify(request: Request, tok: Principal,
                     body: Annotated[VerifyBody, Body()]) -> dict[str, Any]:
        hub = hub_of(request)
        # Re-hashing reads every byte of what it covers: only admins may ask for it.
        scope = "admin" if body.deep else "read"
        if body.ref is not None:
            tok.check(scope, _ref(body.ref).name)
        elif body.model is not None:
            tok.check(scope, _model(body.model))
        else:
            tok.check(scope)
        rep = await run(hub.verify, body.ref, model=body.model, deep=body.deep)
        return dict(rep.to_dict())

    # -- write ------------------------------------------------------------------------
    @app.post(f"{API}/models/{{model}}/blobs/check", tags=["write"],
              summary="Which of these files (sha256, size) the hub already holds")
    def blobs_check(request: Request, model: str, tok: Principal,
                    body: Annotated[BlobQuery, Body()]) -> dict[str, Any]:
        _model(model)
        tok.check("write", model)
        hub = hub_of(request)
        present = []
        for item in body.files:
            sha, size = item.get("sha256"), item.get("size")
            if not isinstance(sha, str) or not isinstance(size, int) or isinstance(size, bool):
                raise InvalidInput("each file needs 'sha256' (hex) and 'size' (integer)")
            if _upload.find_stored(hub, sha.lower(), size, tok) is not None:
                present.append(sha.lower())
        return {"present": present}

    @app.post(f"{API}/models/{{model}}/versions", tags=["write"], status_code=201,
              summary="Register a version by streaming upload (multipart: spec, then blobs)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {
                      "type": "object", "required": ["spec"],
                      "properties": {
                          "spec": {"type": "string", "description": (
                              "JSON: layout, name, version|bump, metadata, parents,"
                              " data_digest, alias, digest, files[{path,size,sha256}],"
                              " attachments[{role,name,size,sha256}]")},
                          "blob": {"type": "array", "items": {
                              "type": "string", "format": "binary"},
                              "description": "File contents; each part's filename is its"
                                             " sha256"}}}}}}})
    async def register(request: Request, model: str, tok: Principal,
                       idempotency_key: Annotated[str | None, Header(
                           alias="Idempotency-Key", max_length=200, description=(
                               "Makes a retry safe: the same key with the same request"
                               " answers 201 with the version the first attempt made,"
                               " storing nothing again; with another request, 409."))] = None,
                       ) -> Response:
        _model(model)
        tok.check("write", model)
        hub = hub_of(request)
        settings: Settings = request.app.state.settings
        boundary = _upload.boundary_of(request.headers.get("content-type", ""))
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"upload of {declared} bytes is larger than this server's limit of"
                           f" {limit} bytes")
        staging = await run(_upload.new_staging, hub)
        sink = _upload.UploadSink(staging, boundary)
        try:
            received = 0
            pending: list[bytes] = []
            buffered = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise TooLarge(f"upload is larger than this server's limit of {limit}"
                                   " bytes; nothing was stored")
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= 1024 * 1024:
                    await run(sink.write, b"".join(pending))
                    pending, buffered = [], 0
            if pending:
                await run(sink.write, b"".join(pending))
            spec = await run(sink.finish)
            info = await run(_upload.register_staged, hub, model, spec, sink, token=tok,
                             idempotency_key=idempotency_key)
        except ClientDisconnect:
            # Nothing to answer: the client is gone. The finally below removes every
            # byte it sent; no index row was written.
            log.info("upload to %s: client disconnected; nothing stored", model)
            return Response(status_code=400)
        finally:
            sink.close()
            await run(_upload.remove_staging, staging)
        doc = version_doc(hub, info, tok)
        return JSONResponse(doc, status_code=201, headers={
            "Location": f"{API}/models/{info.model}/versions/{info.version}"})

    @app.put(f"{API}/models/{{model}}/aliases/{{alias}}", tags=["write"],
             summary="Point an alias at a version (compare-and-set with expect)")
    def set_alias(request: Request, model: str, alias: str, tok: Principal,
                  body: Annotated[AliasBody, Body()],
                  force: Annotated[bool, Query(description="Move a gated alias even if its"
                                                           " gates fail (admin; recorded)")
                                   ] = False) -> dict[str, Any]:
        _model(model)
        tok.check("admin" if force else "write", model)
        r = _ref(body.ref)
        if r.name != model:
            raise InvalidInput(f"ref {body.ref!r} names model {r.name!r}, not {model!r}")
        hub = hub_of(request)
        prev = hub.set_alias(str(r), alias, expect=body.expect, actor=tok.actor,
                             force=force)
        now = next((a.version for a in hub.aliases(model) if a.alias == alias), None)
        return {"model": model, "alias": alias, "version": now, "previous": prev}

    @app.delete(f"{API}/models/{{model}}/aliases/{{alias}}", tags=["write"],
                summary="Remove an alias")
    def remove_alias(request: Request, model: str, alias: str, tok: Principal,
                     expect: Annotated[str | None, Query(max_length=200)] = None
                     ) -> dict[str, Any]:
        _model(model)
        tok.check("write", model)
        v = hub_of(request).remove_alias(model, alias, expect=expect, actor=tok.actor)
        return {"model": model, "alias": alias, "version": v}

    @app.post(f"{API}/models/{{model}}/aliases/{{alias}}/rollback", tags=["write"],
              summary="Move an alias back to where it pointed before its last move")
    def rollback_alias(request: Request, model: str, alias: str, tok: Principal,
                       force: Annotated[bool, Query(description="Move a gated alias even if"
                                                                " its gates fail (admin)")
                                        ] = False) -> dict[str, Any]:
        _model(model)
        tok.check("admin" if force else "write", model)
        hub = hub_of(request)
        v = hub.rollback(model, alias, actor=tok.actor, force=force)
        return {"model": model, "alias": alias, "version": v}

    @app.post(f"{API}/models/{{model}}/versions/{{version}}/revoke", tags=["write"],
              summary="Revoke a version (kept, no longer resolved)")
    def revoke(request: Request, model: str, version: str, tok: Principal,
               body: Annotated[RevokeBody, Body()]) -> dict[str, Any]:
        _model(model)
        tok.check("write", model)
        hub = hub_of(request)
        info = _version_info(hub, model, version)
        return version_doc(hub, hub.revoke(info.ref, reason=body.reason, actor=tok.actor), tok)

    @app.post(f"{API}/models/{{model}}/versions/{{version}}/unrevoke", tags=["write"],
              summary="Undo a revocation")
    def unrevoke(request: Request, model: str, version: str, tok: Principal) -> dict[str, Any]:
        _model(model)
        tok.check("write", model)
        hub = hub_of(request)
        info = _version_info(hub, model, version)
        return version_doc(hub, hub.unrevoke(info.ref, actor=tok.actor), tok)

    @app.delete(f"{API}/models/{{model}}/versions/{{version}}", tags=["admin"],
                summary="Delete a version and its files (admin)")
    def delete(request: Request, model: str, version: str, tok: Principal) -> dict[str, Any]:
        _model(model)
        tok.check("admin", model)
        hub = hub_of(request)
        info = _version_info(hub, model, version)
        gone = hub.delete(info.ref, confirm=True, actor=tok.actor)
        return {"deleted": gone.ref, "digest": gone.digest}


__all__ = ["ERROR_STATUS", "create_app", "status_for"]
