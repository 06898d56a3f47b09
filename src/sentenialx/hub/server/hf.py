"""The Hugging Face–compatible read API under ``/hf``: ``HF_ENDPOINT={server}/hf``.

``huggingface_hub`` (``hf_hub_download``, ``snapshot_download``, offline mode,
``hf cache verify``) and ``transformers`` (``from_pretrained(…, revision=…)``) read
the hub through these routes unchanged:

- ``GET /api/models/{id}`` and ``/api/models/{id}/revision/{rev}``: ``sha`` and
  ``siblings``;
- ``GET /api/models/{id}/tree/{rev}[/{path}]``: the listing (``recursive``),
  paginated with a ``Link: <…>; rel="next"`` header, every file an LFS file whose
  ``lfs.oid`` is its sha256;
- ``HEAD``/``GET /{id}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (the
  sha256), ``Content-Length``, ``Accept-Ranges``, ``Range`` → 206. A HEAD by a
  revision other than the commit answers a relative redirect to the commit's URL,
  so every file URL a client is given pins that commit.

Every route is an adapter over the Hub's guarded verbs: the revision becomes a ref
for :meth:`Hub.resolve` (``main`` = latest; an alias, exact version or semver
range; a 40-hex commit = ``MODEL@sha256:<commit>``), the bytes come from
:meth:`Hub.verified_byte_source` (hashed against the manifest while sent, because
huggingface_hub does not check what it downloads), and the bearer token
(``HF_TOKEN``) is checked with the same scopes and model limits as the API.
Repo ids and paths are computed in :mod:`sentenialx.hub._hf`.

Errors answer ``{"error": message}`` with ``X-Error-Code``: ``RepoNotFound`` (also for
a model the token may not see), ``RevisionNotFound`` or ``EntryNotFound`` (with
``X-Repo-Commit``), all 404; without these the client would fall back to its cache
and report something misleading.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from sentenialx.hub import _hf
from sentenialx.hub._tokens import Token
from sentenialx.hub.errors import HubError, InvalidInput, NotFound, Unauthenticated, to_http
from sentenialx.hub.hub import Hub
from sentenialx.hub.server._common import _ref, hub_of, principal_of, stream_entry
from sentenialx.hub.values import VersionInfo

PREFIX = "/hf"
TREE_PAGE = 1000
"""Entries per tree page; ``app.state.hf_tree_page`` overrides it."""
_MAIN = ("main", "latest", "HEAD")


class _HfRoute(APIRoute):
    """A route whose hub errors answer the way Hugging Face clients read them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def hf_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HubError as exc:
                return _error_response(request, exc)

        return hf_handler


router = APIRouter(prefix=PREFIX, include_in_schema=False, route_class=_HfRoute)


def _header_text(text: str) -> str:
    return " ".join(text.split()).encode("ascii", "replace").decode()[:300]


def _error_response(request: Request, exc: HubError) -> Response:
    stage = getattr(request.state, "hf_stage", "repo")
    status, body = to_http(exc)
    message = str(body["error"]["message"])
    headers: dict[str, str] = {}
    if isinstance(exc, NotFound) or (isinstance(exc, InvalidInput) and stage != "repo"):
        # Past the repo, bad input names a revision or a file that cannot exist.
        status = 404
        headers["X-Error-Code"] = {"repo": "RepoNotFound", "revision": "RevisionNotFound",
                                   "entry": "EntryNotFound"}[stage]
        commit = getattr(request.state, "hf_commit", None)
        if stage == "entry" and commit:
            headers["X-Repo-Commit"] = commit
    headers["X-Error-Message"] = _header_text(message)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="sentenialx"'
        if request.headers.get("authorization") is not None:
            # The words huggingface_hub reads as "bad token" rather than "no such repo".
            headers["X-Error-Message"] = "Invalid credentials in Authorization header"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# -- the guarded steps every route takes ----------------------------------------------------
def _principal(request: Request) -> Token:
    # HF clients send the token as a bearer header (HF_TOKEN); no cookie here.
    return principal_of(request, cookie=False)


def _model(request: Request, hub: Hub, tok: Token) -> str:
    """The model the request's repo id names and the token may read.

    Raises:
        NotFound: no such model, or one the token may not see (the same answer).
        PermissionDenied: the token's scope is too low.
    """
    name = str(request.path_params["name"])
    names = [str(m["model"]) for m in hub.models()]
    model = _hf.model_for(name, names)
    if model is None or not tok.may_see(model):
        raise NotFound(f"repository {_repo_id(request)!r} not found", what="model", name=name[:100])
    tok.check("read", model)
    request.state.hf_stage = "revision"
    return model


def _revision(request: Request, hub: Hub, model: str, rev: str) -> VersionInfo:
    """The version a revision names (see the module docstring).

    Raises:
        NotFound: nothing matches (or it is revoked).
        InvalidRef: the revision is neither a commit, an alias, a version nor a range.
    """
    if rev in _MAIN:
        info = hub.resolve(model)
    elif _hf.COMMIT_RE.match(rev):
        info = hub.resolve(f"{model}@sha256:{rev}")
    else:
        info = hub.resolve(_ref(f"{model}@{rev}"))
    request.state.hf_commit = _hf.commit_of(info)
    request.state.hf_stage = "entry"
    return info


def _repo_id(request: Request) -> str:
    name = str(request.path_params.get("name", ""))
    return f"{_hf.NAMESPACE}/{name}" if getattr(request.state, "hf_ns", False) else name


def _start(request: Request, rev: str) -> tuple[Hub, VersionInfo]:
    request.state.hf_stage = "repo"
    hub = hub_of(request)
    tok = _principal(request)
    model = _model(request, hub, tok)
    return hub, _revision(request, hub, model, rev)


def _ns_routes(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register one endpoint under ``…/{name}…`` and ``…/sentenialx/{name}…``.

    The namespace form is listed first so ``sentenialx/<name>`` never reads as a model
    called ``sentenialx``.
    """
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def in_namespace(request: Request) -> Any:
            request.state.hf_ns = True
            return fn(request)

        router.add_api_route(path.replace("{name}", f"{_hf.NAMESPACE}/{{name}}", 1),
                             in_namespace, **kwargs)
        router.add_api_route(path, fn, **kwargs)
        return fn

    return deco


# -- routes ---------------------------------------------------------------------------------
@router.get("/api/models")
def list_models(request: Request) -> list[dict[str, Any]]:
    """The models this token may see, by repo id."""
    tok = _principal(request)
    return [{"id": _hf.repo_id_for(str(m["model"])), "modelId": _hf.repo_id_for(str(m["model"])),
             "private": False}
            for m in hub_of(request).models() if tok.may_see(str(m["model"]))]


def _repo_doc(hub: Hub, info: VersionInfo) -> dict[str, Any]:
    commit = _hf.commit_of(info)
    repo_id = _hf.repo_id_for(info.model)
    siblings = []
    for f in _hf.repo_files(info).values():
        siblings.append({"rfilename": f.path, "size": f.entry.size, "blobId": f.oid,
                         "lfs": {"sha256": f.entry.sha256, "size": f.entry.size,
                                 "pointerSize": len(_hf.lfs_pointer(f.entry))}})
    aliases = sorted(a.alias for a in hub.aliases(info.model) if a.version == info.version)
    return {"_id": commit[:24], "id": repo_id, "modelId": repo_id, "sha": commit,
            "private": False, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
            "tags": [], "siblings": siblings,
            "sentenialx": {"model": info.model, "version": info.version, "digest": info.digest,
                           "aliases": aliases}}


@_ns_routes("/api/models/{name}", methods=["GET"])
def model_info(request: Request) -> dict[str, Any]:
    """The latest version as a repo: ``sha`` and ``siblings``."""
    hub, info = _start(request, "main")
    return _repo_doc(hub, info)


@_ns_routes("/api/models/{name}/revision/{rev}", methods=["GET"])
def revision_info(request: Request) -> dict[str, Any]:
    """The version a revision names, as a repo: ``sha`` and ``siblings``."""
    hub, info = _start(request, str(request.path_params["rev"]))
    return _repo_doc(hub, info)


def _tree_entries(info: VersionInfo, sub: str, recursive: bool) -> list[dict[str, Any]]:
    files = _hf.repo_files(info)
    dirs = _hf.directories(list(files))
    prefix = f"{sub}/" if sub else ""
    if sub and sub not in dirs:
        raise NotFound(f"{info.ref} has no folder {sub!r}", what="file", name=sub[:300])
    entries: list[dict[str, Any]] = []
    for d in dirs:
        if d.startswith(prefix) and (recursive or "/" not in d[len(prefix):]):
            entries.append({"type": "directory", "path": d, "size": 0,
                            "oid": _hf.git_blob_id(f"tree {info.digest} {d}".encode())})
    for path, f in files.items():
        if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):]):
            entries.append(f.tree_entry())
    return sorted(entries, key=lambda e: str(e["path"]))


def _tree(request: Request) -> Response:
    hub, info = _start(request, str(request.path_params["rev"]))
    sub = str(request.path_params.get("path", "")).strip("/")
    recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
    entries = _tree_entries(info, sub, recursive)
    page = int(getattr(request.app.state, "hf_tree_page", TREE_PAGE))
    raw = request.query_params.get("cursor", "0")
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidInput(f"cursor {raw[:20]!r} is not a page position from a Link header")
    start = int(raw)
    headers = {"X-Repo-Commit": _hf.commit_of(info)}
    if start + page < len(entries):
        nxt = request.url.include_query_params(cursor=str(start + page))
        headers["Link"] = f'<{nxt}>; rel="next"'
    return JSONResponse(entries[start:start + page], headers=headers)


_ns_routes("/api/models/{name}/tree/{rev}", methods=["GET"])(_tree)
_ns_routes("/api/models/{name}/tree/{rev}/{path:path}", methods=["GET"])(_tree)


@_ns_routes("/{name}/resolve/{rev}/{path:path}", methods=["GET", "HEAD"])
def resolve_file(request: Request) -> Response:
    """A file's bytes (GET) or headers (HEAD) at a revision."""
    rev = str(request.path_params["rev"])
    hub, info = _start(request, rev)
    commit = _hf.commit_of(info)
    path = str(request.path_params["path"])
    f = _hf.repo_files(info).get(path)
    if f is None:
        raise NotFound(f"{info.ref} has no file {path[:300]!r}", what="file", name=path[:300])
    if request.method == "HEAD" and rev != commit:
        # Relative, so huggingface_hub follows it; the client then downloads from the
        # commit's URL and gets these very bytes even if an alias moves meanwhile.
        root = request.scope.get("root_path", "")
        where = (f"{root}{PREFIX}/{quote(_repo_id(request))}/resolve/{commit}/"
                 f"{quote(f.path)}")
        return Response(status_code=307, headers={
            "Location": where, "X-Repo-Commit": commit, "X-Linked-Etag": f'"{f.entry.sha256}"',
            "X-Linked-Size": str(f.entry.size)})
    resp = stream_entry(request, hub, info, f.entry, verified=True)
    resp.headers["X-Repo-Commit"] = commit
    resp.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(PurePosixPath(f.path).name)}"
    return resp


@router.api_route("/{rest:path}", methods=["GET", "HEAD"])
def no_such_repo(request: Request) -> Response:
    """Anything else under /hf names no repo (listed last: it only catches the rest)."""
    request.state.hf_stage = "repo"
    _principal(request)
    raise NotFound(f"no repository or route at {request.url.path[:300]!r}", what="model")


__all__ = ["PREFIX", "TREE_PAGE", "router"]
