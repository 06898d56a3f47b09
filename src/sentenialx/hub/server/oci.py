"""A read-only OCI distribution API under ``/v2/``: every version is a CNCF ModelPack artifact.

So ``oras``, ``skopeo`` and other registry clients pull from the hub unchanged.

Repositories
    A model whose name is a valid OCI repository name (lowercase letters and digits,
    separated by single ``.``, one or two ``_`` or any run of ``-``) is the repository
    of the same name. Every model, whatever its name, is also ``hex/<name as UTF-8,
    hex-encoded>`` (``Distill`` is ``hex/44697374696c6c``); ``/v2/_catalog`` lists
    each model once, under the first of these names it has.

Tags
    ``latest``, every exact version with ``+`` written ``_`` (``1.2.0+build.5`` is
    ``1.2.0_build.5``) and every alias. A tag that reads as a version after that
    mapping is the version, even if an alias has the same spelling. Ranges are not
    tags. Revoked versions are neither listed nor served.

Manifests
    An OCI image manifest with ``artifactType``
    ``application/vnd.cncf.model.manifest.v1+json``, a ModelPack config blob and one
    layer per file whose digest is the file's own sha256 (nothing is repacked),
    annotated with its path. It is canonical JSON made only from the version's
    record, so a version's manifest is byte-identical on every request; its sha256
    is the ``Docker-Content-Digest``. It is not the hub's version digest, which the
    config carries as ``descriptor.revision``.

Blobs
    By sha256: a file or the config of a version the caller may read. Bytes go
    through :meth:`Hub.verified_byte_source`: a stored file that no longer matches its
    manifest is never sent whole (clients such as oras-py do not check digests).
    ``Range`` answers 206.

Auth
    The registry token flow: a request without valid credentials gets 401 with
    ``WWW-Authenticate: Bearer realm="{server}/v2/token",service=...,scope=...``;
    ``/v2/token`` takes HTTP Basic with the API token as the password (any user
    name) and answers ``{"token": <that API token>}``, so revoking the API token ends
    the access at once and no second kind of secret exists. HTTP Basic and
    ``Authorization: Bearer <API token>`` are also accepted on every route. Scopes and
    model limits are the API's (``read`` on the model).

Errors
    ``{"errors": [{"code", "message", "detail"}]}`` with the distribution-spec codes
    and the status of the hub's one error table; writes answer 405 ``UNSUPPORTED``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import IO, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from sentenialx.hub._tokens import Token
from sentenialx.hub.errors import (
    HubError,
    InvalidInput,
    InvalidName,
    InvalidRef,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    http_status,
)
from sentenialx.hub.hub import Hub
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Ref, validate_name
from sentenialx.hub.server._common import _ref, _secret_from, hub_of, principal_of
from sentenialx.hub.server._download import file_response
from sentenialx.hub.values import VersionInfo

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"
HEX_PREFIX = "hex/"
MAX_PAGE = 1000
"""The most entries one ``_catalog`` or ``tags/list`` answer holds; ``Link`` names the next page."""

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^sha256:([0-9a-f]{64})$")
_SCOPE_NAME = re.compile(r"^[A-Za-z0-9._/-]{1,300}$")
_HEX = re.compile(r"^(?:[0-9a-f]{2}){1,100}$")
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml", ".txt", ".model", ".tiktoken", ".jinja",
                    ".vocab", ".merges", ".ini", ".cfg")
_CODE_SUFFIXES = (".py", ".sh", ".js", ".ts")
_DOC_ROLES = ("log", "chart", "report")


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# -- names ------------------------------------------------------------------------------
def repository_of(model: str) -> str:
    """The repository name ``_catalog`` lists for ``model``."""
    return model if _COMPONENT.match(model) else HEX_PREFIX + model.encode().hex()


def model_of(repository: str) -> str:
    """The model a repository name reaches.

    Raises:
        InvalidName: the name is neither a valid OCI repository name of a model nor
            ``hex/<hex of a model name>``.
    """
    if repository.startswith(HEX_PREFIX):
        h = repository[len(HEX_PREFIX):]
        if not _HEX.match(h):
            raise InvalidName(f"repository {repository[:120]!r}: after 'hex/' comes the model"
                              " name as lowercase hex")
        try:
            name = bytes.fromhex(h).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidName(f"repository {repository[:120]!r} does not decode to a model"
                              " name") from None
        return validate_name(name)
    if not _COMPONENT.match(repository):
        raise InvalidName(f"repository name {repository[:120]!r} is not one this registry"
                          " serves; a model whose name OCI refuses (capitals, some"
                          " separators) is reached as hex/<its name hex-encoded>")
    return validate_name(repository)


def tag_of(version: str) -> str:
    """The tag of an exact version: ``+`` becomes ``_`` (OCI tags have no ``+``)."""
    return version.replace("+", "_")


def ref_of_tag(model: str, tag: str) -> Ref:
    """The ref a tag names: ``latest``, an exact version (``_`` read as ``+``) or an alias.

    Raises:
        InvalidRef: not a valid OCI tag.
        NotFound: a valid tag that names no version or alias (a range, say).
    """
    if not _TAG.match(tag):
        raise InvalidRef(f"reference {tag[:140]!r} is neither a tag nor a sha256 digest")
    if tag == "latest":
        return Ref(model, "latest")
    if "_" in tag:
        try:
            r = _ref(f"{model}@{tag.replace('_', '+')}")
        except InvalidInput:
            pass
        else:
            if r.kind == "version":
                return r
    try:
        r = _ref(f"{model}@{tag}")
    except InvalidInput:
        r = Ref(model, "range", tag)
    if r.kind not in ("version", "alias", "latest"):
        raise NotFound(f"no tag {tag!r}: tags are exact versions and aliases", what="tag",
                       name=tag)
    return r


# -- documents --------------------------------------------------------------------------
def media_type(entry: FileEntry) -> str:
    """The ModelPack layer media type of a file, from its role and, for weights, its suffix."""
    name = entry.path.rsplit("/", 1)[-1].lower()
    if entry.role == "config":
        return WEIGHT_CONFIG
    if entry.role in _DOC_ROLES or name.endswith((".md", ".rst")):
        return DOC
    if name.endswith(_CODE_SUFFIXES):
        return CODE
    if name.endswith(_CONFIG_SUFFIXES):
        return WEIGHT_CONFIG
    return WEIGHT if entry.role == "weights" else DOC


def _files(info: VersionInfo) -> list[FileEntry]:
    return sorted(info.files, key=lambda f: f.path)


def model_config(info: VersionInfo) -> bytes:
    """The ModelPack model config of a version, as canonical JSON (no timestamps)."""
    descriptor: dict[str, Any] = {"name": info.model, "version": info.version}
    if info.digest:
        descriptor["revision"] = f"sha256:{info.digest}"
    desc = info.meta.get("description")
    if isinstance(desc, str) and desc:
        descriptor["description"] = desc[:2000]
    config: dict[str, Any] = {}
    fmt = info.meta.get("format")  # set at registration from the files when not given
    if isinstance(fmt, str) and fmt:
        config["format"] = fmt[:100]
    return _canonical({"descriptor": descriptor, "config": config, "modelfs": {
        "type": "layers", "diff_ids": [f"sha256:{f.sha256}" for f in _files(info)]}})


def image_manifest(info: VersionInfo) -> bytes:
    """The OCI image manifest of a version: same bytes for the same version, always."""
    config = model_config(info)
    layers = [{"mediaType": media_type(f), "digest": f"sha256:{f.sha256}", "size": f.size,
               "annotations": {TITLE: f.path, FILEPATH: f.path}} for f in _files(info)]
    annotations = {"org.opencontainers.image.version": info.version}
    if info.digest:
        annotations["org.opencontainers.image.revision"] = f"sha256:{info.digest}"
    return _canonical({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": "sha256:" + hashlib.sha256(config)
                   .hexdigest(), "size": len(config)},
        "layers": layers, "annotations": annotations})


# -- errors -----------------------------------------------------------------------------
def _challenge(request: Request) -> str:
    base = str(request.base_url).rstrip("/")
    service = request.url.netloc
    header = f'Bearer realm="{base}/v2/token",service="{service}"'
    name = request.path_params.get("name")
    if isinstance(name, str) and _SCOPE_NAME.match(name):
        header += f',scope="repository:{name}:pull"'
    elif request.url.path.rstrip("/") == "/v2/_catalog":
        header += ',scope="registry:catalog:*"'
    return header


def oci_error(request: Request, status: int, code: str, message: str,
              detail: Any = None) -> JSONResponse:
    """The distribution-spec error body; a 401 carries the token-flow challenge."""
    headers = {"WWW-Authenticate": _challenge(request)} if status == 401 else {}
    headers["Docker-Distribution-API-Version"] = "registry/2.0"
    body = {"errors": [{"code": code, "message": message, "detail": detail or {}}]}
    return JSONResponse(body, status_code=status, headers=headers)


def _code_for(request: Request, exc: HubError) -> tuple[int, str, str]:
    status = http_status(exc)
    path = request.url.path
    if isinstance(exc, Unauthenticated):
        return 401, "UNAUTHORIZED", str(exc)
    if isinstance(exc, PermissionDenied):
        return 403, "DENIED", str(exc)
    if isinstance(exc, NotFound):
        # Our own words, never the index's message: it may list names the token may not see.
        if exc.what == "model":
            return 404, "NAME_UNKNOWN", "repository name not known to registry"
        if "/blobs/" in path:
            return 404, "BLOB_UNKNOWN", "blob unknown to registry"
        return 404, "MANIFEST_UNKNOWN", "manifest unknown to registry"
    if isinstance(exc, InvalidName):
        return 400, "NAME_INVALID", str(exc)
    if isinstance(exc, InvalidRef):
        return 400, ("DIGEST_INVALID" if "/blobs/" in path else "MANIFEST_INVALID"), str(exc)
    if isinstance(exc, InvalidInput) and path.endswith(("/tags/list", "/_catalog")):
        return 400, "PAGINATION_NUMBER_INVALID", str(exc)
    if isinstance(exc, InvalidInput):
        return 400, "UNSUPPORTED", str(exc)
    return status, "UNKNOWN", str(exc)


class OciRoute(APIRoute):
    """A route whose errors are answered in the distribution-spec shape, not the API's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The default handler, with hub and request errors rendered as OCI errors."""
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except HubError as exc:
                status, code, message = _code_for(request, exc)
                return oci_error(request, status, code, message[:2000])
            except RequestValidationError as exc:
                first = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}:"
                                  f" {e.get('msg', '')}" for e in exc.errors()[:3])
                return oci_error(request, 400, "UNSUPPORTED", f"invalid request: {first}")
            except StarletteHTTPException as exc:
                return oci_error(request, exc.status_code, "UNSUPPORTED", str(exc.detail))

        return guarded


router = APIRouter(route_class=OciRoute, tags=["oci"])


def oci_principal(request: Request) -> Token:
    """Who is asking: ``Authorization: Bearer <token>`` or HTTP Basic with the token as password.

    Raises:
        Unauthenticated: no credentials (and no anonymous reads), or bad ones.
    """
    return principal_of(request, cookie=False, basic=True)


Caller = Annotated[Token, Depends(oci_principal)]
_API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


# -- routes -----------------------------------------------------------------------------
@router.get("/v2/", summary="Registry version check (401 with a token challenge when needed)")
@router.get("/v2", include_in_schema=False)
def version_check(tok: Caller) -> JSONResponse:
    """200 for anyone who may read; the 401 challenge otherwise."""
    return JSONResponse({}, headers=_API_VERSION)


@router.get("/v2/token", summary="Registry token: HTTP Basic with the API token as password")
def token(request: Request, tok: Caller) -> JSONResponse:
    """The bearer token for registry requests: the API token the caller proved it holds."""
    secret = _secret_from(request, cookie=False, basic=True)
    if tok.anonymous or not secret:
        raise Unauthenticated("send the API token as the HTTP Basic password to get a"
                              " registry token")
    return JSONResponse({"token": secret, "access_token": secret, "expires_in": 300},
                        headers={"Cache-Control": "no-store"})


def _page(items: Iterable[str], request: Request, key: str, extra: dict[str, str]
          ) -> JSONResponse:
    """One page of a sorted listing (``n``, ``last``), with ``Link`` to the next one."""
    q = request.query_params
    raw_n, last = q.get("n"), q.get("last")
    if raw_n is not None and (not raw_n.isdigit() or len(raw_n) > 9):
        raise InvalidInput(f"n={raw_n[:20]!r}: a page size is a non-negative integer")
    n = min(int(raw_n), MAX_PAGE) if raw_n is not None else MAX_PAGE
    ordered = sorted(set(items))
    if last is not None:
        ordered = [x for x in ordered if x > last]
    page = ordered[:n]
    headers = dict(_API_VERSION)
    if len(ordered) > len(page) and page:
        headers["Link"] = (f'<{request.url.path}?n={n}&last={quote(page[-1], safe="")}>;'
                           ' rel="next"')
    return JSONResponse({**extra, key: page}, headers=headers)


@router.get("/v2/_catalog", summary="Repositories (n, last pagination)")
def catalog(request: Request, tok: Caller) -> JSONResponse:
    """Every model the caller may see, under its repository name."""
    models = [m["model"] for m in hub_of(request).models()]
    return _page((repository_of(m) for m in models if tok.may_see(m)), request,
                 "repositories", {})


def _readable(request: Request, name: str, tok: Token) -> tuple[Hub, str, list[VersionInfo]]:
    """The hub, the model ``name`` reaches and its servable versions, once ``tok`` may read it."""
    model = model_of(name)
    tok.check("read", model)
    hub = hub_of(request)
    return hub, model, [v for v in hub.versions(model) if not v.revoked]


@router.get("/v2/{name:path}/tags/list", summary="Tags: versions (+ as _), aliases, latest")
def tags_list(request: Request, name: str, tok: Caller) -> JSONResponse:
    """The tags of a repository, sorted, paginated with ``n`` and ``last``."""
    hub, model, versions = _readable(request, name, tok)
    tags = [tag_of(v.version) for v in versions]
    servable = {v.version for v in versions}
    tags += [a.alias for a in hub.aliases(model) if a.version in servable]
    if versions:
        tags.append("latest")
    return _page(tags, request, "tags", {"name": name})


def _version_for(hub: Hub, model: str, versions: list[VersionInfo], reference: str
                 ) -> tuple[VersionInfo, bytes]:
    m = _SHA256.match(reference)
    if m:
        for v in reversed(versions):
            doc = image_manifest(v)
            if hashlib.sha256(doc).hexdigest() == m.group(1):
                return v, doc
        raise NotFound(f"no manifest {reference}", what="manifest", name=reference)
    if ":" in reference:
        raise InvalidRef(f"digest {reference[:140]!r}: this registry serves sha256 digests"
                         " (sha256:<64 hex digits>)")
    info = hub.resolve(ref_of_tag(model, reference))
    return info, image_manifest(info)


_MANIFEST = "/v2/{name:path}/manifests/{reference}"
_BLOB = "/v2/{name:path}/blobs/{digest}"


@router.head(_MANIFEST, operation_id="oci_head_manifest", summary="A manifest's headers")
@router.get(_MANIFEST, operation_id="oci_get_manifest",
            summary="A version's OCI manifest, by tag or sha256 digest")
def manifest(request: Request, name: str, reference: str, tok: Caller) -> Response:
    """The manifest bytes with ``Docker-Content-Digest``; HEAD sends the headers only."""
    hub, model, versions = _readable(request, name, tok)
    _info, doc = _version_for(hub, model, versions, reference)
    digest = "sha256:" + hashlib.sha256(doc).hexdigest()
    headers = {**_API_VERSION, "Docker-Content-Digest": digest, "ETag": f'"{digest}"',
               "Cache-Control": "private, no-cache"}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(doc))
        return Response(status_code=200, headers=headers, media_type=MANIFEST_TYPE)
    return Response(doc, headers=headers, media_type=MANIFEST_TYPE)


def _bytes_opener(data: bytes) -> Callable[[int, int], IO[bytes]]:
    def opener(start: int, _end: int) -> IO[bytes]:
        f = io.BytesIO(data)
        f.seek(start)
        return f
    return opener


@router.head(_BLOB, operation_id="oci_head_blob", summary="A blob's headers")
@router.get(_BLOB, operation_id="oci_get_blob",
            summary="A file (verified while sent) or a config, by sha256; Range gives 206")
def blob(request: Request, name: str, digest: str, tok: Caller) -> Response:
    """A blob of a version the caller may read: a file's bytes or a ModelPack config."""
    hub, _model, versions = _readable(request, name, tok)
    m = _SHA256.match(digest)
    if not m:
        raise InvalidRef(f"digest {digest[:140]!r}: this registry serves sha256 digests"
                         " (sha256:<64 hex digits>)")
    sha = m.group(1)
    resp: Response | None = None
    for v in reversed(versions):
        entry = next((f for f in v.files if f.sha256 == sha), None)
        if entry is not None:
            size, opener = hub.verified_byte_source(v, entry)
            resp = file_response(request.headers, entry, size=size, opener=opener,
                                 filename=entry.path.rsplit("/", 1)[-1])
            break
        config = model_config(v)
        if hashlib.sha256(config).hexdigest() == sha:
            entry = FileEntry("config.json", len(config), sha, role="config")
            resp = file_response(request.headers, entry, size=len(config),
                                 opener=_bytes_opener(config), filename="config.json",
                                 content_type=CONFIG_TYPE)
            break
    if resp is None:
        raise NotFound(f"no blob {digest}", what="blob", name=digest)
    resp.headers["Docker-Content-Digest"] = digest
    resp.headers["Docker-Distribution-API-Version"] = "registry/2.0"
    return resp


@router.api_route("/v2/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                  include_in_schema=False)
def unsupported(request: Request, rest: str) -> Response:
    """Everything else under /v2/: pushes and deletes are refused, unknown paths are 404."""
    if request.method in ("GET", "HEAD"):
        return oci_error(request, 404, "UNSUPPORTED", f"no such registry endpoint:"
                         f" {request.url.path[:200]}")
    return oci_error(request, 405, "UNSUPPORTED", "this registry is read-only: register"
                     " versions with `sentenialx models register` or the API")


__all__ = ["ARTIFACT_TYPE", "CONFIG_TYPE", "MANIFEST_TYPE", "image_manifest", "model_config",
           "model_of", "ref_of_tag", "repository_of", "router", "tag_of"]
