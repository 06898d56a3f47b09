"""The hub's web pages (Jinja2, server-rendered, no build step).

``/`` models; ``/models/{model}`` versions, alias history and a metric across
versions; ``/models/{model}/versions/{version}`` metadata, metrics, files, a
"verify now" button (a deep re-hash for admin tokens, the quick check otherwise),
training curves from the ``log`` attachment, attached charts, the report
(sanitised) and the lineage graph. Pages read with the same token rules as the
API; a browser signs in once at ``/login`` and keeps the token in an HttpOnly,
SameSite=Strict cookie.

Every form carries a CSRF token (double submit): a random value in the
``sx_csrf`` cookie (HttpOnly, SameSite=Strict) that the page also puts in the
form. A post is accepted only when both are present and equal and its Origin,
when sent, is this server. A cross-site page can neither read the value nor make
the browser send the cookie, so it cannot post a form here: in particular it
cannot sign a victim in under the attacker's token (login CSRF), whatever Origin
(``null``, or none) its request carries.
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from sentenialx.hub._format import human_size
from sentenialx.hub._tokens import Token
from sentenialx.hub.errors import HubError, IntegrityError, NotFound, PermissionDenied
from sentenialx.hub.hub import Hub
from sentenialx.hub.server import _charts, _render
from sentenialx.hub.server._common import (
    COOKIE,
    _version_info,
    find_entry,
    hub_of,
    principal_of,
    redact_lineage,
    run,
    stream_entry,
)
from sentenialx.hub.values import VerifyReport, VersionInfo

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

LOG_MAX = 32 * 1024 * 1024
REPORT_MAX = 2 * 1024 * 1024
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}
COOKIE_MAX_AGE = 12 * 3600
CSRF_COOKIE = "sx_csrf"
CSRF_FIELD = "csrf"
_CSRF_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

templates.env.filters["human"] = human_size
templates.env.filters["short"] = lambda s: (s or "")[:12]
templates.env.filters["q"] = lambda s: quote(str(s), safe="/")


def _csrf_cookie(request: Request) -> str | None:
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if _CSRF_RE.match(value) else None


def _render_page(request: Request, name: str, context: dict[str, Any], *,
                 status: int = 200) -> Response:
    csrf = _csrf_cookie(request)
    fresh = csrf is None
    if csrf is None:
        csrf = secrets.token_urlsafe(32)
    ctx = {"nonce": getattr(request.state, "nonce", ""),
           "root": request.scope.get("root_path", ""), "csrf": csrf, **context}
    resp = templates.TemplateResponse(request, name, ctx, status_code=status)
    if fresh:
        resp.set_cookie(CSRF_COOKIE, csrf, max_age=COOKIE_MAX_AGE, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return resp


def _me(request: Request) -> Token:
    return principal_of(request, cookie=True)


def _check_form(request: Request, csrf: str) -> None:
    """Refuse a form post that did not come from one of our own pages.

    Raises:
        PermissionDenied: a foreign Origin, or no CSRF token matching the cookie.
    """
    origin = request.headers.get("origin")
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != "null" and origin.rstrip("/") != expected:
        raise PermissionDenied(f"cross-site form post from {origin[:100]!r} refused")
    cookie = _csrf_cookie(request)
    if cookie is None or not hmac.compare_digest(cookie.encode(), csrf.encode()[:100]):
        raise PermissionDenied("form post without a valid CSRF token refused; reload the page"
                               " and submit again")


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_redirect(request: Request) -> Response:
    """Send a browser to the sign-in page, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


def error_page(request: Request, status: int, type_: str, message: str) -> Response:
    """An HTML error page (the API answers JSON instead)."""
    return _render_page(request, "error.html", {"status": status, "type": type_,
                                                "message": message, "me": None}, status=status)


# -- sign in --------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - query name
    return _render_page(request, "login.html", {"next": _safe_next(next), "error": None,
                                                "me": None})


@router.post("/login")
def login(request: Request, token: str = Form(""), next: str = Form("/"),  # noqa: A002
          csrf: str = Form("")) -> Response:
    _check_form(request, csrf)
    try:
        request.app.state.auth.authenticate(token.strip())
    except HubError as exc:
        return _render_page(request, "login.html", {"next": _safe_next(next), "error": str(exc),
                                                    "me": None}, status=401)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(COOKIE, token.strip(), max_age=COOKIE_MAX_AGE, httponly=True,
                    samesite="strict", secure=request.url.scheme == "https", path="/")
    return resp


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    _check_form(request, csrf)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# -- pages ----------------------------------------------------------------------------------
@router.get("/")
def models_page(request: Request) -> Response:
    me = _me(request)
    hub = hub_of(request)
    rows = [m for m in hub.models() if me.may_see(m["model"])]
    return _render_page(request, "models.html", {"me": me, "models": rows, "title": "Models"})


@router.get("/models/{model}")
def model_page(request: Request, model: str, metric: str | None = None) -> Response:
    me = _me(request)
    me.check("read", model)
    hub = hub_of(request)
    versions = hub.versions(model)
    aliases = hub.aliases(model)
    by_version: dict[str, list[str]] = {}
    for a in aliases:
        by_version.setdefault(a.version, []).append(a.alias)
    flat = {v.version: _render.flatten_metrics(v.meta.get("metrics", {})) for v in versions}
    names = sorted({k for m in flat.values() for k in m})
    if metric not in names:
        metric = "accuracy" if "accuracy" in names else (names[0] if names else None)
    chart = ""
    if metric:
        pts = [(float(i), flat[v.version][metric]) for i, v in enumerate(versions)
               if metric in flat[v.version]]
        chart = _charts.line_chart({metric: pts}, title=f"{metric} across versions of {model}",
                                   x_label="version", x_categories=[v.version for v in versions],
                                   css_class="chart metric-chart")
    return _render_page(request, "model.html", {
        "me": me, "model": model, "versions": list(reversed(versions)), "aliases": aliases,
        "by_version": by_version, "metric": metric, "metric_names": names, "flat": flat,
        "chart": chart, "history": list(reversed(hub.alias_history(model))),
        "title": model})


@router.get("/models/{model}/versions/{version}")
def version_page(request: Request, model: str, version: str) -> Response:
    me = _me(request)
    me.check("read", model)
    return _version_response(request, me, model, version, None)


@router.post("/models/{model}/versions/{version}/verify")
async def verify_now(request: Request, model: str, version: str,
                     csrf: str = Form("")) -> Response:
    _check_form(request, csrf)
    me = await run(_me, request)
    me.check("read", model)
    hub = hub_of(request)
    info = await run(_version_info, hub, model, version)
    # A deep verify re-hashes every byte: admin tokens only, as over the API.
    report = await run(hub.verify, info.ref, deep=_may_deep_verify(me, model))
    return await run(_version_response, request, me, model, version, report)


@router.api_route("/models/{model}/versions/{version}/view/{path:path}", methods=["GET", "HEAD"])
def view_file(request: Request, model: str, version: str, path: str) -> Response:
    me = _me(request)
    me.check("read", model)
    hub = hub_of(request)
    info = _version_info(hub, model, version)
    entry = find_entry(info, path)
    ctype = IMAGE_TYPES.get(Path(entry.path).suffix.lower())
    if ctype:
        return stream_entry(request, hub, info, entry, content_type=ctype, inline=True)
    guessed = mimetypes.guess_type(entry.path)[0] or ""
    text = guessed.startswith("text/") or entry.path.endswith((".md", ".jsonl", ".log"))
    return stream_entry(request, hub, info, entry, inline=text,
                        content_type="text/plain; charset=utf-8" if text else
                        "application/octet-stream")


def _may_deep_verify(me: Token, model: str) -> bool:
    try:
        me.check("admin", model)
    except PermissionDenied:
        return False
    return True


# -- the version page's parts ---------------------------------------------------------------
def _version_response(request: Request, me: Token, model: str, version: str,
                      report: VerifyReport | None) -> Response:
    hub = hub_of(request)
    info = _version_info(hub, model, version)
    base = f"/models/{quote(model)}/versions/{quote(info.version)}"
    meta = dict(info.meta)
    metrics = _render.flatten_metrics(meta.pop("metrics", {}))
    params = meta.pop("params", {})
    description = meta.pop("description", None)
    files = [{"entry": f, "view": f"{base}/view/{quote(f.path)}",
              "download": f"/api/v1/models/{quote(model)}/versions/{quote(info.version)}"
                          f"/files/{quote(f.path)}"} for f in info.files]
    notes: list[str] = []
    curves = _training_curves(hub, info, notes)
    charts = [{"name": _short_name(info, f.path), "src": f"{base}/view/{quote(f.path)}",
               "image": Path(f.path).suffix.lower() in IMAGE_TYPES}
              for f in info.files if f.role == "chart"]
    reports = _reports(hub, info, base, notes)
    nodes, edges = _lineage(hub, info, me)
    lineage_svg = _charts.lineage_graph(nodes, edges, title=f"Lineage of {info.ref}")
    aliases = sorted(a.alias for a in hub.aliases(model) if a.version == info.version)
    events = [e for e in hub.events(model=model) if e.version == info.version]
    return _render_page(request, "version.html", {
        "me": me, "info": info, "model": model, "base": base, "metrics": metrics,
        "params": params, "description": description,
        "other_meta": json.dumps(meta, indent=2, sort_keys=True) if meta else "",
        "lineage_json": redact_lineage(info.lineage, me), "files": files, "curves": curves, "charts": charts,
        "reports": reports, "lineage_svg": lineage_svg, "has_lineage": len(nodes) > 1,
        "aliases": aliases, "events": events,
        "report": report, "notes": notes, "title": info.ref,
        "deep_verify": _may_deep_verify(me, model)})


def _short_name(info: VersionInfo, path: str) -> str:
    for prefix in (info.stem + "_", info.stem + "/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def _training_curves(hub: Hub, info: VersionInfo, notes: list[str]) -> list[dict[str, str]]:
    out = []
    for f in info.files:
        if f.role != "log":
            continue
        if f.size > LOG_MAX:
            notes.append(f"{f.path}: {human_size(f.size)} is too large to chart here; download it")
            continue
        try:
            data = hub.read_entry(info, f)
        except (IntegrityError, NotFound) as exc:
            notes.append(f"{f.path}: not charted: {exc}")
            continue
        series, bad = _render.parse_log(data)
        if not series:
            notes.append(f"{f.path}: no JSON lines with numbers to chart")
            continue
        if bad:
            notes.append(f"{f.path}: skipped {bad} lines that are not JSON objects")
        x_name = "step"
        for title, group in _render.group_series(series):
            out.append({"title": title, "source": _short_name(info, f.path),
                        "svg": _charts.line_chart(group, title=f"{title} ({_short_name(info, f.path)})",
                                                  x_label=x_name, css_class="chart curve")})
    return out


def _reports(hub: Hub, info: VersionInfo, base: str, notes: list[str]) -> list[dict[str, str]]:
    names = {_short_name(info, f.path): f.path for f in info.files}

    def resolve_src(src: str) -> str | None:
        path = names.get(src.removeprefix("./"))
        return f"{base}/view/{quote(path)}" if path else None

    out = []
    for f in info.files:
        if f.role != "report":
            continue
        if f.size > REPORT_MAX:
            notes.append(f"{f.path}: {human_size(f.size)} is too large to show; download it")
            continue
        try:
            data = hub.read_entry(info, f)
        except (IntegrityError, NotFound) as exc:
            notes.append(f"{f.path}: not shown: {exc}")
            continue
        text = data.decode("utf-8", "replace")
        if Path(f.path).suffix.lower() in (".md", ".markdown", ".txt", ""):
            html = _render.render_markdown(text, resolve_src=resolve_src)
        else:
            html = _render.render_markdown("```\n" + text.replace("```", "` ` `") + "\n```")
        out.append({"name": _short_name(info, f.path), "html": html})
    return out


def _lineage(hub: Hub, info: VersionInfo, me: Token
             ) -> tuple[list[_charts.Node], list[tuple[str, str, str]]]:
    def key(model: str, version: str) -> str:
        return f"{model}@{version}"

    def node(v: VersionInfo, depth: int, current: bool = False) -> _charts.Node:
        sub = " · ".join(x for x in (str(v.meta.get("format") or ""),
                                     "revoked" if v.revoked else "") if x)
        return _charts.Node(key(v.model, v.version), v.ref, sub,
                            f"/models/{quote(v.model)}/versions/{quote(v.version)}", depth,
                            current)

    nodes: dict[str, _charts.Node] = {key(info.model, info.version): node(info, 0, True)}
    edges: list[tuple[str, str, str]] = []
    queue: list[tuple[VersionInfo, int]] = [(info, 0)]
    while queue and len(nodes) < 40:
        v, depth = queue.pop(0)
        for p in v.lineage.get("parents", []) or []:
            if not isinstance(p, dict):
                continue
            pm, pv = str(p.get("model", "")), str(p.get("version", ""))
            if not me.may_see(pm):
                # Neither the name nor the version of a hidden parent reaches the page.
                hk = f"hidden:{len(nodes)}"
                nodes[hk] = _charts.Node(hk, "hidden", "not visible to this token", None,
                                         depth - 1, missing=True)
                edges.append((hk, key(v.model, v.version), str(p.get("role", "parent"))))
                continue
            pk = key(pm, pv)
            edges.append((pk, key(v.model, v.version), str(p.get("role", "parent"))))
            if pk in nodes:
                continue
            try:
                pinfo = hub.resolve(f"{pm}@{pv}", include_revoked=True)
            except (HubError, ValueError):
                nodes[pk] = _charts.Node(pk, pk, "not in this hub", None, depth - 1, missing=True)
                continue
            nodes[pk] = node(pinfo, depth - 1)
            queue.append((pinfo, depth - 1))
    children = 0
    for v in hub.all_versions():
        for p in v.lineage.get("parents", []) or []:
            if (isinstance(p, dict) and p.get("model") == info.model
                    and p.get("version") == info.version and me.may_see(v.model)
                    and children < 20):
                ck = key(v.model, v.version)
                if ck not in nodes:
                    nodes[ck] = node(v, 1)
                    children += 1
                edges.append((key(info.model, info.version), ck, str(p.get("role", "parent"))))
    return list(nodes.values()), list(dict.fromkeys(edges))
