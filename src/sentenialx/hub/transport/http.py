"""A served hub as a transport: its index, its bytes and its writes, over HTTP.

``Hub.open("http://host:8000")`` builds the same :class:`~sentenialx.hub.hub.Hub`
as a local hub, over the parts of this module instead of SQL and a folder (as
MLflow keeps one client over its REST and SQL stores):

- :class:`HttpIndex`: the read side of the index protocol (resolve, listings,
  events, generation), each answer validated and remembered for offline use;
- :class:`HttpBlobStore`: the bytes of a version's files, downloaded into the
  verified cache (resumable); the Hub's one read path hashes them against the
  manifest like any other store's;
- :class:`HttpWrites`: writes are requests to the server's own Hub (upload,
  alias moves, rollback, revoke, delete), whose gates and bounds apply there;
- :class:`ServedTrust` and :class:`ServedViews`: what only the hub's own host can
  do (its trust policy, signatures, views, fsck, gc) is refused here with one line.

The token comes from ``$SENTENIALX_TOKEN``. Files are downloaded into a local cache
(``$SENTENIALX_CACHE`` or ``~/.cache/sentenialx``), keyed by sha256 and verified on
arrival, so a pipeline on an edge host keeps working offline against what it last
verified:

```
<cache>/blobs/sha256/ab/<sha256>            verified bytes, read-only
<cache>/blobs/sha256/ab/<sha256>.partial    a download in progress (resumed with Range)
<cache>/hubs/<host-port>/responses/...      the last answer to each read (for offline use)
<cache>/hubs/<host-port>/files/<model>/...  the files of a version under their own names
                                            (hardlinks to the blobs), as path() returns them
```

A download resumes where it stopped (``Range`` with ``If-Range`` = the sha256, so
two different files can never be spliced) and the whole file is hashed before it
is renamed into the cache; bytes that do not match are never used.

The server is untrusted input: every answer is read up to a bound and checked by
:mod:`sentenialx.hub._untrusted` (names, versions, stems, paths, sizes, digests,
the model asked for) before any path is built from it, and every path under the
cache is confined by :mod:`sentenialx.hub.cache`.

Requires the ``server`` extra (httpx).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, cast
from urllib.parse import SplitResult, quote, urlsplit

from sentenialx.hub import _untrusted as U
from sentenialx.hub import errors as E
from sentenialx.hub.cache import (
    BlobCache,
    PartialBlob,
    default_cache_dir,
    read_bounded,
    write_atomic,
)
from sentenialx.hub.errors import (
    IntegrityError,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from sentenialx.hub.events import GENESIS, ChainReport, Event, verify_chain
from sentenialx.hub.hashing import Progress, hash_file
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import parse_ref, validate_name, validate_relpath
from sentenialx.hub.values import AliasInfo, AliasMove, VerifyReport, VersionInfo

if TYPE_CHECKING:
    from sentenialx.hub.trust import GateResult, TrustStore

log = logging.getLogger("sentenialx.remote")

CHUNK = 1024 * 1024
RETRIES = 4
"""How many times a broken download is resumed before giving up."""


def _httpx() -> Any:
    return E.require("httpx", "server")


def _hub_key(parts: SplitResult) -> str:
    """The folder name of one served hub under ``<cache>/hubs`` (host and port, never ``..``)."""
    host = parts.hostname or "_"
    key = re.sub(r"[^A-Za-z0-9._-]", "_", f"{host}_{parts.port}" if parts.port else host)
    if key.startswith("."):
        key = "_" + key
    if parts.path.strip("/"):
        key += "_" + hashlib.sha256(parts.path.encode()).hexdigest()[:8]
    return key[:120]


class _Answer:
    """A bounded, fully read response, shaped as :meth:`HttpClient.raise_for` reads one."""

    def __init__(self, status_code: int, data: bytes) -> None:
        self.status_code = status_code
        self._data = data

    @property
    def text(self) -> str:
        return self._data[:65536].decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return json.loads(self._data)
        except RecursionError:
            raise ValueError("error body nested too deep") from None


def local_only(verb: str, url: str) -> InvalidInput:
    """The refusal of a verb that works on the hub's own files, asked of a served hub."""
    return InvalidInput(f"`{verb}` works on the hub's own files; run it on the server host"
                        f" with --hub PATH (this is {url})")


class HttpClient:
    """The connection to one served hub: bounded requests, error mapping, offline answers."""

    def __init__(self, url: str, *, token: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, timeout: float = 60.0,
                 retries: int = RETRIES, max_response_bytes: int = U.MAX_RESPONSE_BYTES) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"hub URL {url!r} is not http(s)://HOST[:PORT]")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("SENTENIALX_TOKEN")
        self.cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
        self.cache = BlobCache(self.cache_root / "blobs")
        self.retries = retries
        self.max_response_bytes = max_response_bytes
        self.timeout = timeout
        self.hub_dir = self.cache_root / "hubs" / _hub_key(parts)
        self.source = f"served hub {self.url}"
        httpx = _httpx()
        headers = {"User-Agent": "sentenialx-remote/1"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers=headers,
                                 timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        """Close connections."""
        self.http.close()

    def raise_for(self, resp: Any) -> None:
        """Raise the hub error a non-2xx answer carries (one table both ways, facts included).

        Raises:
            HubError: the class and facts the server sent, validated as untrusted input.
        """
        if resp.status_code < 400:
            return
        try:
            body = resp.json()
        except (ValueError, TypeError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
            body = {"error": {"message": f"HTTP {resp.status_code} from {self.url}:"
                                         f" {str(resp.text)[:200]}"}}
        raise E.from_http(resp.status_code, body)

    def unreachable(self, exc: Exception) -> StoreUnavailable:
        """The error of a server that cannot be reached."""
        return StoreUnavailable(f"hub {self.url} is unreachable ({type(exc).__name__}: {exc})")

    def _response_cache(self, path: str, params: dict[str, Any] | None) -> Path:
        # The name is a hash of the request: no server or request string reaches the path.
        key = hashlib.sha256(json.dumps([path, params or {}], sort_keys=True).encode()).hexdigest()
        return self.hub_dir / "responses" / f"{key}.json"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON answer, reading at most ``max_response_bytes``.

        Raises:
            TooLarge: the answer is over the bound (it is not read further).
            InvalidInput: the answer is not JSON this client reads.
            HubError: the server answered an error (see ``raise_for``).
            httpx.TransportError: the server is unreachable.
        """
        limit = self.max_response_bytes
        with self.http.stream(method, path, **kwargs) as resp:
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise E.TooLarge(f"{self.source} announced an answer of {declared} bytes to"
                                 f" {method} {path}, over {limit}; refused")
            chunks: list[bytes] = []
            have = 0
            for chunk in resp.iter_bytes():
                have += len(chunk)
                if have > limit:
                    raise E.TooLarge(f"{self.source} sent an answer over {limit} bytes to"
                                     f" {method} {path}; refused")
                chunks.append(chunk)
            data = b"".join(chunks)
        self.raise_for(_Answer(resp.status_code, data))
        return U.parse_json(data, source=self.source, limit=limit)

    def get(self, path: str, params: dict[str, Any] | None = None, *,
            check: Callable[[Any], Any], offline_ok: bool = True) -> Any:
        """GET JSON and ``check`` it; remember it, and fall back to that answer when offline.

        Only an answer that passed ``check`` is remembered, and a remembered one is
        checked again when used.

        Raises:
            StoreUnavailable: the server is unreachable and no answer is remembered.
            HubError: the server refused, or its answer does not pass ``check``.
        """
        httpx = _httpx()
        params = {k: v for k, v in (params or {}).items() if v is not None}
        cached = self._response_cache(path, params)
        try:
            data = self._request("GET", path, params=params)
        except httpx.TransportError as exc:
            raw = read_bounded(cached, self.max_response_bytes) if offline_ok else None
            if raw is None:
                raise self.unreachable(exc) from None
            log.warning("%s unreachable; using the answer cached at %s", self.url,
                        time.ctime(cached.stat().st_mtime))
            return check(U.parse_json(raw, source=f"the cached answer of {self.source}"))
        value = check(data)
        if offline_ok:
            write_atomic(self.cache_root, cached, json.dumps(data).encode())
        return value

    def send(self, method: str, path: str, *, check: Callable[[Any], Any], **kwargs: Any
             ) -> Any:
        """Send a write (never answered from the offline cache) and ``check`` its answer.

        Raises:
            StoreUnavailable: the server is unreachable.
            HubError: the server refused, or its answer does not pass ``check``.
        """
        httpx = _httpx()
        try:
            data = self._request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None
        return check(data)

    def version(self, doc: Any, **expect: Any) -> VersionInfo:
        """A version record from the server, validated (see :mod:`sentenialx.hub._untrusted`)."""
        return U.version_from_untrusted(doc, source=self.source, **expect)

    @staticmethod
    def version_path(model: str, version: str) -> str:
        """The API path of one version."""
        return f"/models/{quote(model, safe='')}/versions/{quote(version, safe='')}"

    # -- what only a served hub answers ---------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """The token this client uses, as the server sees it."""
        return cast(dict[str, Any], self.get("/whoami", offline_ok=False, check=lambda d: (
            U.object_from_untrusted(d, source=self.source, what="whoami answer"))))

    def state(self) -> dict[str, Any]:
        """``{"generation": n, "signed": signed state or None}`` from the server (never cached)."""
        return cast(dict[str, Any], self.get("/state", offline_ok=False, check=lambda d: (
            U.state_from_untrusted(d, source=self.source))))

    def signed_state(self) -> dict[str, Any]:
        """The served hub's signed state (generation, chain head, expiry).

        Raises:
            StateError: the served hub has no key.
        """
        signed = self.state().get("signed")
        if not signed:
            raise E.StateError(f"{self.url} serves no signed state (the hub has no key)")
        return cast(dict[str, Any], signed)

    def guard_state(self, public_key: str | os.PathLike[str], signed: dict[str, Any]
                    ) -> dict[str, Any]:
        """Check ``signed`` (this hub's signed state) against its pinned key and what we saw before.

        The highest generation seen is kept in this client's cache folder, so a later
        run refuses a server (or a mirror) that replays an older state or a frozen one.

        Raises:
            StateError: forged, expired, from another hub, or older than seen before.
        """
        from sentenialx.hub.signing import load_public_key
        from sentenialx.hub.state import StateGuard

        seen = self.hub_dir / "state.json"
        prev: dict[str, Any] = {}
        raw = read_bounded(seen, 4096)
        if raw is not None:
            try:
                prev = json.loads(raw)
            except ValueError:
                prev = {}
            if not isinstance(prev, dict):
                prev = {}
        guard = StateGuard(load_public_key(Path(public_key)), hub_id=prev.get("hub_id"),
                           highest=int(prev.get("generation", -1)))
        body = guard.check_doc(signed)
        write_atomic(self.cache_root, seen, json.dumps(
            {"hub_id": body["hub_id"], "generation": body["generation"]}).encode())
        return body


class HttpIndex:
    """The read side of the index protocol, answered by a served hub's ``/api/v1``.

    Every answer is validated as untrusted input before it becomes a record; reads are
    remembered (see :meth:`HttpClient.get`), so a client offline still resolves what it
    resolved last. Writes are not index calls here: :class:`HttpWrites` asks the
    server's Hub, which records them in its own index.
    """

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.url = client.url
        self.safe_url = client.url

    def dispose(self) -> None:
        """Close connections."""
        self.client.close()

    def migrate(self) -> NoReturn:
        """The served hub's schema is its host's to upgrade.

        Raises:
            InvalidInput: always.
        """
        raise local_only("init", self.url)

    # -- resolving -----------------------------------------------------------------------
    def resolve(self, ref: str, *, include_revoked: bool = False) -> VersionInfo:
        """Resolve a ref on the server (or, offline, to what it resolved to last time).

        Raises:
            InvalidRef: the ref is malformed.
            NotFound: nothing matches.
            StoreUnavailable: the server is unreachable and this ref was never resolved.
        """
        r = parse_ref(str(ref))
        c = self.client
        return cast(VersionInfo, c.get(
            "/resolve", {"ref": str(ref), "include_revoked": include_revoked or None},
            check=lambda d: c.version(
                d, expect_model=r.name, include_revoked=include_revoked,
                expect_version=r.value if r.kind == "version" else None,
                expect_digest=r.value if r.kind == "digest" else None)))

    def latest(self, model: str) -> VersionInfo:
        """The highest ready, non-revoked version of ``model``.

        Raises:
            NotFound: the model has no such version.
        """
        validate_name(model)
        return self.resolve(model)

    def get_version(self, model: str, version: str, *, include_pending: bool = False
                    ) -> VersionInfo:
        """One ready version (revoked included; a served hub never shows pending ones).

        Raises:
            NotFound: no such version.
        """
        del include_pending
        validate_name(model)
        return self.resolve(f"{model}@{version}", include_revoked=True)

    def by_digest(self, model: str, prefix: str) -> VersionInfo:
        """The version of ``model`` whose digest starts with ``prefix``.

        Raises:
            NotFound: no version's digest starts with ``prefix``.
            InvalidInput: the prefix is shorter than 6 digits or names several versions.
        """
        validate_name(model)
        return self.resolve(f"{model}@sha256:{prefix}", include_revoked=True)

    # -- listings ------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """Every model with its number of versions, latest version and aliases."""
        c = self.client
        return cast(list[dict[str, Any]], c.get("/models", check=lambda d: (
            U.models_from_untrusted(d, source=c.source))))

    def list_versions(self, model: str, *, include_revoked: bool = True,
                      with_files: bool = True) -> list[VersionInfo]:
        """Every ready version of a model, oldest first (with files: the server sends them).

        Raises:
            NotFound: unknown model.
        """
        del with_files
        validate_name(model)
        c = self.client
        out = cast(list[VersionInfo], c.get(
            f"/models/{quote(model)}/versions", check=lambda d: U.versions_from_untrusted(
                d, source=c.source, expect_model=model)))
        return out if include_revoked else [v for v in out if not v.revoked]

    def all_ready_versions(self) -> list[VersionInfo]:
        """Every ready version of every model (revoked included)."""
        out: list[VersionInfo] = []
        for m in self.models():
            out.extend(self.list_versions(m["model"]))
        return out

    def list_aliases(self, model: str | None = None) -> list[AliasInfo]:
        """Aliases of one model or of all."""
        c = self.client
        names = [model] if model else [m["model"] for m in self.models()]
        out: list[AliasInfo] = []
        for name in names:
            validate_name(name)
            out.extend(c.get(f"/models/{quote(name)}/aliases",
                             check=functools.partial(U.aliases_from_untrusted,
                                                     source=c.source, expect_model=name)))
        return out

    def get_alias(self, model: str, alias: str) -> AliasInfo:
        """One alias of a model.

        Raises:
            NotFound: no such alias.
        """
        for a in self.list_aliases(model):
            if a.alias == alias:
                return a
        raise NotFound(f"{model} has no alias {alias!r}", what="alias", name=f"{model}@{alias}")

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of a model's aliases, oldest first."""
        validate_name(model)
        c = self.client
        return cast(list[AliasMove], c.get(
            f"/models/{quote(model)}/aliases/history", {"alias": alias},
            check=lambda d: U.alias_moves_from_untrusted(d, source=c.source,
                                                         expect_model=model)))

    def events(self, *, model: str | None = None, limit: int | None = None) -> list[Event]:
        """The history, oldest first."""
        c = self.client
        return cast(list[Event], c.get(
            "/events", {"model": model, "limit": limit},
            check=lambda d: U.events_from_untrusted(d, source=c.source, expect_model=model)))

    def last_event(self, kind: str, *, model: str | None = None) -> Event | None:
        """The newest event of ``kind`` (of ``model``), or None."""
        evs = [e for e in self.events(model=model) if e.kind == kind]
        return evs[-1] if evs else None

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest event the server shows this token."""
        evs = self.events()
        return (evs[-1].seq, evs[-1].hash) if evs else (0, GENESIS)

    def generation(self) -> int:
        """The served index's change counter (a following pipeline polls it; never cached)."""
        return int(self.client.state()["generation"])

    def state(self) -> dict[str, Any]:
        """``generation`` of the served index (its ``hub_id`` stays on its host)."""
        return {"generation": self.generation(), "hub_id": None}

    def find_file_by_sha(self, sha256: str, size: int) -> tuple[str, str] | None:
        """A served hub dedups on its own side (``blobs/check``): nothing is stored here."""
        del sha256, size
        return None


class HttpBlobStore:
    """A served hub's file bytes: each version file downloaded once into the verified cache.

    It has no keys of its own (the server names files by model, version and path), so
    it implements the read primitive ``open_entry`` and, as :class:`~sentenialx.hub.
    store.base.FillsCache`, ``fetch``: the read path asks for a cached, verified file.
    """

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.cache = client.cache
        self.url = client.url
        self.root = client.hub_dir / "files"

    def local_path(self, key: str) -> Path | None:
        """Never a local file: bytes come through the cache."""
        del key
        return None

    def open_entry(self, info: VersionInfo, entry: FileEntry) -> BinaryIO:
        """Open the cached copy of ``entry``, downloading it first if needed.

        Raises:
            IntegrityError: the download does not match the manifest.
            StoreUnavailable: the server is unreachable and the file is not cached.
        """
        return open(self.fetch(info, entry), "rb")  # noqa: SIM115 - caller closes

    def fetch(self, info: VersionInfo, entry: FileEntry, *, progress: Progress | None = None
              ) -> Path:
        """The verified cached copy of one file of a version, downloading what is missing.

        Raises:
            IntegrityError: the downloaded bytes do not match the manifest.
            StoreUnavailable: the server is unreachable and the file is not cached.
        """
        hit = self.cache.get(entry.sha256, entry.size)
        if hit is not None:
            return hit
        with self.cache.lock(entry.sha256):
            hit = self.cache.get(entry.sha256, entry.size)
            if hit is not None:
                return hit
            return self._download(info, entry, progress=progress)

    def _download(self, info: VersionInfo, entry: FileEntry, *,
                  progress: Progress | None) -> Path:
        url = f"{self.client.version_path(info.model, info.version)}/files/{quote(entry.path)}"
        # The partial write hashes every byte it receives, and an earlier attempt's bytes
        # again on resume, so the cache admits only what matches the manifest.
        w = self.cache.begin(entry.sha256, entry.size, name=entry.path)
        try:
            failures = 0
            asked = False
            while w.have < entry.size or not asked:
                asked = True
                headers = {}
                if w.have:
                    headers = {"Range": f"bytes={w.have}-", "If-Range": f'"{entry.sha256}"'}
                try:
                    with self._body(url, headers) as body:
                        if body.status == 206 and w.have:
                            start = body.headers.get("content-range", "").split(" ")[-1]
                            start = start.split("-")[0]
                            if start != str(w.have):
                                raise StoreUnavailable(f"{url}: server resumed at {start[:20]},"
                                                       f" not {w.have}")
                        elif body.status == 200:
                            w.restart()
                        else:
                            self.client.raise_for(body.as_response())
                            raise StoreUnavailable(f"{url}: unexpected HTTP {body.status}")
                        etag = body.headers.get("etag", "").strip('"')
                        if etag and etag != entry.sha256 and not body.redirected:
                            raise IntegrityError(path=entry.path, expected=entry.sha256,
                                                 actual=etag[:64],
                                                 hint="the server sent another file")
                        _pump(body, w, path=entry.path, expected=entry.sha256,
                              progress=progress)
                    if w.have < entry.size:
                        raise _Broken(f"the connection closed at {w.have} of {entry.size} bytes")
                except _Broken as exc:
                    failures += 1
                    if failures > self.client.retries:
                        raise StoreUnavailable(f"download of {entry.path} from {self.client.url} failed"
                                               f" {failures} times: {exc}") from None
                    log.info("download of %s broke at %d bytes (%s); resuming", entry.path,
                             w.have, exc)
                    time.sleep(min(0.2 * failures, 2.0))
            try:
                return w.commit()
            except IntegrityError as exc:
                raise IntegrityError(path=entry.path, expected=entry.sha256, actual=exc.actual,
                                     hint=f"the copy on {self.client.url} is damaged; its operator"
                                          f" should run `sentenialx models fsck {info.model}`"
                                     ) from None
        except IntegrityError:
            w.discard()
            raise
        finally:
            w.close()

    @contextlib.contextmanager
    def _body(self, path: str, headers: dict[str, str]) -> Iterator[_Body]:
        """GET a file's bytes, following one redirect to a presigned URL.

        An S3 hub answers ``307`` with a short-lived URL of the stored object: it is
        fetched without this hub's token (the URL is its own credential) and with the
        same ``Range``; the bytes are hashed against the manifest like any others.

        Raises :class:`_Broken` for anything a retry can fix (a retry asks the hub
        again, so an expired URL is replaced by a fresh one).
        """
        with self._get(self.client.url + "/api/v1" + path, headers,
                       auth=True) as body:
            if body.status not in _REDIRECTS:
                yield body
                return
            target = _redirect_target(body.headers.get("location", ""), self.client.url)
        hop = {k: v for k, v in headers.items() if k.lower() == "range"}
        with self._get(target, hop, auth=False) as body:
            body.redirected = True
            if body.status in (403, 500, 502, 503, 504) or body.status in _REDIRECTS:
                raise _Broken(f"the presigned URL answered HTTP {body.status}")
            if body.status not in (200, 206):
                raise StoreUnavailable(f"the store behind {self.client.url} answered HTTP"
                                       f" {body.status} for a presigned download of {path};"
                                       " its operator should run `sentenialx models fsck`")
            yield body

    @contextlib.contextmanager
    def _get(self, url: str, headers: dict[str, str], *, auth: bool) -> Iterator[_Body]:
        hdrs = dict(self.client.http.headers) if auth else {
            "User-Agent": self.client.http.headers.get("user-agent", "sentenialx-remote/1")}
        hdrs.update(headers)
        if _proxied():
            httpx = _httpx()
            try:
                if auth:
                    with self.client.http.stream("GET", url, headers=headers) as resp:
                        yield _HttpxBody(resp)
                else:
                    with httpx.Client(timeout=self.client.http.timeout) as plain, \
                            plain.stream("GET", url, headers=hdrs) as resp:
                        yield _HttpxBody(resp)
            except httpx.TransportError as exc:
                raise _Broken(str(exc)) from None
            return
        # Big files: the standard library's readinto() into one large buffer moves bytes
        # about twice as fast as httpx's 64 KiB chunks (see bench/bench_server.py).
        import http.client

        parts = urlsplit(url)
        conn_cls = (http.client.HTTPSConnection if parts.scheme == "https"
                    else http.client.HTTPConnection)
        conn = conn_cls(parts.netloc, timeout=self.client.timeout)
        try:
            try:
                conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                             headers=hdrs)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise _Broken(str(exc)) from None
            yield _StdlibBody(resp)
        finally:
            conn.close()


_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECT_URL = 8192


def _redirect_target(location: str, base: str) -> str:
    """The absolute http(s) URL a download redirect names (relative ones resolve on ``base``).

    Raises:
        StoreUnavailable: no usable URL (the redirect is refused, never followed blindly).
    """
    from urllib.parse import urljoin

    if not location or len(location) > MAX_REDIRECT_URL or any(c in location for c in "\r\n\0"):
        raise StoreUnavailable(f"served hub {base} redirected a download without a usable"
                               " Location")
    url = urljoin(base + "/", location)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StoreUnavailable(f"served hub {base} redirected a download to a"
                               f" {parts.scheme or 'relative'}: URL; only http(s) is followed")
    return url


class HttpWrites:
    """A served hub's writes: requests to the server's own Hub, whose rules apply there.

    The server applies the bounds, the gates of gated aliases (``force`` needs an admin
    token) and records the token as the actor; this side validates what comes back.
    It stands in for the local Registrar, Lifecycle, Maintenance and seed parts of a
    hub built over :class:`HttpIndex`, with their signatures.
    """

    def __init__(self, client: HttpClient, index: HttpIndex) -> None:
        self.client = client
        self.index = index

    def upload(self, model: str, spec: dict[str, Any], blobs: dict[str, Path], *,
               progress: Progress | None = None, idempotency_key: str | None = None
               ) -> tuple[VersionInfo, list[str]]:
        """Register a version from a spec, sending only files the server lacks.

        ``blobs`` maps sha256 to a local file; it is only asked for what is sent.
        Returns the new version and the sha256 of every file sent.

        Every call carries an ``Idempotency-Key`` (``idempotency_key``, or a fresh one),
        so when the connection breaks or the server is briefly unavailable the request
        is sent again with the same key: if the first attempt committed, the server
        answers with that version instead of registering a second one.

        Raises:
            InvalidInput, IntegrityError, AlreadyExists, PermissionDenied, TooLarge:
                the server refused; nothing was stored.
            Conflict: ``idempotency_key`` was used for another request.
            StoreUnavailable: the server stayed unreachable through every retry.
        """
        validate_name(model)
        key = idempotency_key or uuid.uuid4().hex
        failures = 0
        while True:
            try:
                return self._upload_once(model, spec, blobs, progress=progress, key=key)
            except StoreUnavailable as exc:
                failures += 1
                if failures > self.client.retries:
                    raise
                log.info("upload to %s failed (%s); retrying with idempotency key %s", model,
                         exc, key)
                time.sleep(min(0.2 * failures, 2.0))

    def _upload_once(self, model: str, spec: dict[str, Any], blobs: dict[str, Path], *,
                     progress: Progress | None, key: str) -> tuple[VersionInfo, list[str]]:
        c = self.client
        declared = {f["sha256"]: f["size"] for f in spec["files"] + spec.get("attachments", [])}
        present = c.send("POST", f"/models/{quote(model)}/blobs/check", json={
            "files": [{"sha256": s, "size": n} for s, n in declared.items()]},
            check=lambda d: U.sha_list_from_untrusted(d, source=c.source))
        files: list[tuple[str, Any]] = [
            ("spec", (None, json.dumps(spec).encode(), "application/json"))]
        opened: list[_Reader] = []
        sent: list[str] = []
        try:
            for sha in declared:
                if sha in present:
                    continue
                reader = _Reader(open(blobs[sha], "rb"), progress)  # noqa: SIM115 - closed below
                opened.append(reader)
                files.append(("blob", (sha, reader, "application/octet-stream")))
                sent.append(sha)
            info = c.send("POST", f"/models/{quote(model)}/versions", files=files,
                          headers={"Idempotency-Key": key},
                          check=lambda d: c.version(d, expect_model=model))
        finally:
            for r in opened:
                r.close()
        return info, sent

    def register(self, model: str, path: str | os.PathLike[str], *, version: str | None = None,
                 bump: str | None = None, metadata: dict[str, Any] | None = None,
                 parents: Sequence[str] = (), data_digest: str | None = None,
                 attachments: Sequence[tuple[str, str | os.PathLike[str]]] = (),
                 alias: str | None = None, link: bool = False, actor: str | None = None,
                 name: str | None = None, progress: Progress | None = None,
                 idempotency_key: str | None = None) -> VersionInfo:
        """Register a local file or folder on the server (streamed, hashed, deduplicated).

        ``link`` and ``actor`` are ignored: the server stores its own copy and records
        the token as the actor. Without ``idempotency_key`` a fresh one is sent, and
        reused by this call's own retries (see :meth:`upload`).

        Raises:
            InvalidInput: a missing input; the server refused the spec.
            AlreadyExists: the explicit version exists.
            PermissionDenied: the token may not write this model.
            Conflict: ``idempotency_key`` was used for another request.
        """
        del link, actor
        validate_name(model)
        src = Path(path)
        if src.is_file():
            layout, items = "file", [(src.name, src)]
        elif src.is_dir():
            layout, items = "dir", _walk(src)
        else:
            raise InvalidInput(f"input {str(src)!r} does not exist")
        att = [(role, Path(p)) for role, p in attachments]
        for _, p in att:
            if not p.is_file():
                raise InvalidInput(f"attachment {str(p)!r} does not exist or is not a file")
        blobs: dict[str, Path] = {}

        def digest(p: Path) -> dict[str, Any]:
            d = hash_file(p)
            blobs[d.sha256] = p
            return {"size": d.size, "sha256": d.sha256}

        spec = {
            "layout": layout, "name": name or (src.stem if layout == "file" else src.name),
            "version": version, "bump": bump, "metadata": metadata or {},
            "parents": list(parents), "data_digest": data_digest, "alias": alias,
            "files": [dict(digest(p), path=rel) for rel, p in items],
            "attachments": [dict(digest(p), role=role, name=p.name) for role, p in att],
        }
        info, _ = self.upload(model, spec, blobs, progress=progress,
                              idempotency_key=idempotency_key)
        return info

    def set_alias(self, ref: str, alias: str, *, expect: str | None = None,
                  actor: str | None = None, force: bool = False) -> str | None:
        """Point ``alias`` at the version ``ref`` names; returns the previous version.

        The server's Hub applies the alias's gates; ``force`` needs an admin token.

        Raises:
            NotFound: the ref does not resolve.
            Conflict: the alias moved since the caller looked (``expect``).
            GateFailed: the alias is gated and a gate failed.
        """
        del actor
        r = parse_ref(ref)
        c = self.client
        return cast(str | None, c.send(
            "PUT", f"/models/{quote(r.name)}/aliases/{quote(alias, safe='')}",
            json={"ref": str(r), "expect": expect}, params={"force": "true"} if force else None,
            check=lambda d: U.version_field(d, "previous", source=c.source, optional=True)))

    def promote(self, ref: str, *, to: str = "production", force: bool = False,
                expect: str | None = None, actor: str | None = None) -> list[GateResult]:
        """Gate reports are the server host's (``models promote`` there); refused here.

        Raises:
            InvalidInput: always; ``alias set`` moves an alias through the server's gates.
        """
        raise local_only("promote", self.client.url)

    def remove_alias(self, model: str, alias: str, *, expect: str | None = None,
                     actor: str | None = None) -> str:
        """Remove an alias; returns the version it pointed at.

        Raises:
            NotFound: no such alias.
            Conflict: it moved since the caller looked.
        """
        del actor
        c = self.client
        params = {"expect": expect} if expect is not None else None
        return str(c.send(
            "DELETE", f"/models/{quote(model)}/aliases/{quote(alias, safe='')}", params=params,
            check=lambda d: U.version_field(d, "version", source=c.source)))

    def rollback(self, model: str, alias: str, *, actor: str | None = None,
                 force: bool = False) -> str:
        """Move ``alias`` back to where it pointed before its last move (through its gates).

        Raises:
            NotFound: the alias has no earlier version.
            GateFailed: the alias is gated and a gate failed.
        """
        del actor
        c = self.client
        return str(c.send(
            "POST", f"/models/{quote(model)}/aliases/{quote(alias, safe='')}/rollback",
            params={"force": "true"} if force else None,
            check=lambda d: U.version_field(d, "version", source=c.source)))

    def revoke(self, ref: str, *, reason: str, actor: str | None = None) -> VersionInfo:
        """Revoke a version on the server.

        Raises:
            NotFound: no such version.
            InvalidInput: no reason given.
        """
        del actor
        c = self.client
        info = self.index.resolve(ref, include_revoked=True)
        return cast(VersionInfo, c.send(
            "POST", c.version_path(info.model, info.version) + "/revoke", json={"reason": reason},
            check=lambda d: c.version(d, expect_model=info.model, expect_version=info.version)))

    def unrevoke(self, ref: str, *, actor: str | None = None) -> VersionInfo:
        """Undo a revocation on the server.

        Raises:
            NotFound: no such version.
        """
        del actor
        c = self.client
        info = self.index.resolve(ref, include_revoked=True)
        return cast(VersionInfo, c.send(
            "POST", c.version_path(info.model, info.version) + "/unrevoke",
            check=lambda d: c.version(d, expect_model=info.model, expect_version=info.version)))

    def delete(self, ref: str, *, confirm: bool = False, actor: str | None = None) -> VersionInfo:
        """Delete a version on the server (needs an admin token).

        Raises:
            InvalidInput: ``confirm`` is not set.
            NotFound: no such version.
        """
        del actor
        info = self.index.resolve(ref, include_revoked=True)
        if not confirm:
            raise InvalidInput(f"deleting {info.ref} cannot be undone; pass --yes to confirm")
        self.client.send("DELETE", self.client.version_path(info.model, info.version),
                         check=lambda d: d)
        return info

    # -- maintenance: the server checks its own bytes; the rest is its host's -----------
    def verify(self, ref: str | None = None, *, model: str | None = None, deep: bool = False,
               progress: Progress | None = None) -> VerifyReport:
        """Ask the server to check its stored bytes against the manifests (deep: admin only).

        Raises:
            NotFound: the ref or model does not exist.
        """
        from sentenialx.hub.values import Problem

        del progress
        c = self.client
        d = c.send("POST", "/verify", json={"ref": ref, "model": model, "deep": deep},
                   check=lambda d: U.verify_report_from_untrusted(d, source=c.source))
        return VerifyReport(deep=bool(d["deep"]), versions=int(d["versions"]),
                            files=int(d["files"]), hashed=int(d["hashed"]),
                            bytes_hashed=int(d["bytes_hashed"]),
                            problems=[Problem(**p) for p in d["problems"]])

    def fsck(self, model: str | None = None, *, deep: bool = False,
             grace: timedelta = timedelta(hours=1), pubkey: Any = None) -> NoReturn:
        """Not available over HTTP.

        Raises:
            InvalidInput: always.
        """
        raise local_only("fsck", self.client.url)

    def gc(self, *, grace: timedelta = timedelta(hours=1), dry_run: bool = False,
           actor: str | None = None) -> NoReturn:
        """Not available over HTTP.

        Raises:
            InvalidInput: always.
        """
        raise local_only("gc", self.client.url)

    def import_registry(self, registry: str | os.PathLike[str], *,
                        actor: str | None = None) -> NoReturn:
        """Not available over HTTP.

        Raises:
            InvalidInput: always.
        """
        raise local_only("import-registry", self.client.url)


class ServedViews:
    """A served hub's views: its chain as the server shows it; the files are its host's."""

    def __init__(self, index: HttpIndex) -> None:
        self.index = index

    def verify_log(self, *, pubkey: Any = None) -> ChainReport:
        """Check the event chain the server sends (the whole chain needs an unlimited token).

        Raises:
            InvalidInput: ``pubkey`` is given: the signed head is checked on the host.
        """
        if pubkey is not None:
            raise local_only("log --verify --pubkey", self.index.url)
        return verify_chain(self.index.events())

    def check_head(self, seq: int, head: str) -> bool:
        """True when event ``seq`` of the served chain has hash ``head``."""
        if seq == 0:
            return True
        return any(e.seq == seq and e.hash == head for e in self.index.events())

    def registry_view(self) -> NoReturn:
        """Not available over HTTP.

        Raises:
            InvalidInput: always.
        """
        raise local_only("export-registry", self.index.url)

    def write_registry_json(self) -> NoReturn:
        """Not available over HTTP.

        Raises:
            InvalidInput: always.
        """
        raise local_only("export-registry", self.index.url)

    def export_registry(self, dest: str | os.PathLike[str] | None = None) -> NoReturn:
        """Not available over HTTP.

        Raises:
            InvalidInput: always.
        """
        raise local_only("export-registry", self.index.url)


class ServedTrust:
    """The trust part of a served hub: the server's Hub applies its policy, not this client.

    A served hub applies its trust policy, signatures and gates on its own host; the
    client has no policy for it and cannot re-check a signature (the API serves no
    ``.sig``). So mode ``enforce`` is refused rather than pretended (pull the version
    into a local hub, or follow it over TUF, to enforce on the client); any other mode
    is recorded as ``server``. Everything else about keys and signatures is the host's.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def check_trust(self, info: VersionInfo, *, mode: str | None = None) -> str:
        """``server`` (its policy applies there), or a refusal of ``enforce``.

        Raises:
            SignatureError: ``mode`` is ``enforce``.
        """
        if mode == "enforce":
            raise E.SignatureError(f"{info.ref}: signature enforcement on the client is not"
                                   " supported over HTTP yet; pull the version into a local hub",
                                   version=info.ref)
        return "server"

    def _refuse(self, verb: str) -> NoReturn:
        raise local_only(verb, self.url)

    def is_gated(self, alias: str) -> bool:
        """The server's gates apply there; refused here.

        Raises:
            InvalidInput: always.
        """
        self._refuse("gates")

    def trust_store(self) -> TrustStore:
        """Refused: the policy is the host's.

        Raises:
            InvalidInput: always.
        """
        self._refuse("keys")

    def save_trust(self, ts: TrustStore, *, action: str, detail: dict[str, Any],
                   actor: str | None = None) -> str:
        """Refused: the policy is the host's.

        Raises:
            InvalidInput: always.
        """
        self._refuse("keys")

    def signature_subject(self, info: VersionInfo) -> tuple[str, list[tuple[str, str]]]:
        """Refused: signatures are the host's.

        Raises:
            InvalidInput: always.
        """
        self._refuse("sign")

    def sig_key(self, info: VersionInfo) -> str:
        """Refused: signatures are the host's.

        Raises:
            InvalidInput: always.
        """
        self._refuse("sign")

    def sign(self, ref: str, key_path: str | os.PathLike[str], *, passphrase: bytes | None = None,
             actor: str | None = None) -> dict[str, Any]:
        """Refused: signing is local-only.

        Raises:
            InvalidInput: always.
        """
        self._refuse("sign")

    def adopt_signature(self, ref: str, bundle: bytes, *, actor: str | None = None
                        ) -> dict[str, Any]:
        """Refused: signatures are the host's.

        Raises:
            InvalidInput: always.
        """
        self._refuse("sign")

    def verify_signature(self, info: VersionInfo, *, ts: TrustStore | None = None) -> str:
        """Refused: the API serves no ``.sig``.

        Raises:
            InvalidInput: always.
        """
        self._refuse("verify-signature")

    def check_gates(self, ref: str, *, to: str) -> list[GateResult]:
        """Refused: gates are evaluated by the server when an alias moves.

        Raises:
            InvalidInput: always.
        """
        self._refuse("gates")


def _pump(body: _Body, w: PartialBlob, *, path: str, expected: str,
          progress: Progress | None) -> None:
    """Receive a body into the partial blob ``w``, hashing it; ``w.have`` follows the bytes.

    The receiving thread reads into one of a few preallocated buffers and hashes it
    while a writer thread writes the previous one (socket reads, hashlib and file
    writes all release the GIL). Reusing the buffers avoids allocating (and
    page-faulting) a fresh one per chunk. Whatever way this returns, every byte
    counted in ``w.have`` was both hashed and written, so a resumed request starts
    exactly there.

    Raises:
        IntegrityError: more bytes arrive than the manifest's size.
        StoreUnavailable: the cache file could not be written (the partial is dropped).
        _Broken: the connection failed.
    """
    import queue
    import threading

    size = 4 * CHUNK
    free: queue.Queue[memoryview] = queue.Queue()
    for _ in range(3):
        free.put(memoryview(bytearray(size)))
    full: queue.Queue[tuple[memoryview, int] | None] = queue.Queue()
    errors: list[BaseException] = []
    out, h = w.file, w.hasher

    def writer() -> None:
        while (item := full.get()) is not None:
            buf, n = item
            if not errors:
                try:
                    out.write(buf[:n])
                except BaseException as exc:  # noqa: BLE001 - re-raised by the receiver
                    errors.append(exc)
            free.put(buf)

    t = threading.Thread(target=writer, name="sentenialx-download-writer", daemon=True)
    t.start()
    try:
        while not errors:
            buf = free.get()
            n = body.readinto(buf)
            if not n:
                free.put(buf)
                break
            if w.have + n > w.size:
                raise IntegrityError(path=path, expected=expected, actual="",
                                     hint=f"the server sent more than {w.size} bytes")
            h.update(buf[:n])
            w.have += n
            full.put((buf, n))
            if progress:
                progress(n)
    finally:
        full.put(None)
        t.join()
    if errors:
        w.discard()
        raise StoreUnavailable(f"cannot write {str(w.path)!r}: {errors[0]}")


class _Broken(Exception):
    """A download stopped in a way a resumed request may fix."""


def _proxied() -> bool:
    return any(os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                           "http_proxy", "https_proxy", "all_proxy"))


class _Body:
    """The status, headers and body of a download response."""

    status: int
    headers: dict[str, str]
    redirected: bool = False
    """Fetched from a presigned URL: its ETag is the store's, not the manifest's sha256."""

    def readinto(self, buf: memoryview) -> int:
        """Fill ``buf`` with the next bytes; 0 at the end. Raises :class:`_Broken`."""
        raise NotImplementedError

    def as_response(self) -> Any:
        """An object :meth:`HttpClient.raise_for` can read (for error statuses)."""
        raise NotImplementedError


class _StdlibBody(_Body):
    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self.status = int(resp.status)
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def readinto(self, buf: memoryview) -> int:
        import http.client

        try:
            return int(self._resp.readinto(buf))
        except (OSError, http.client.HTTPException) as exc:
            raise _Broken(str(exc)) from None

    def as_response(self) -> Any:
        data = self._resp.read(65536)
        status = self.status

        class _R:
            status_code = status
            text = data.decode("utf-8", "replace")

            @staticmethod
            def json() -> Any:
                return json.loads(data)

        return _R()


class _HttpxBody(_Body):
    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self.status = int(resp.status_code)
        self.headers = {k.lower(): v for k, v in resp.headers.items()}
        self._it = resp.iter_raw()
        self._left = b""

    def readinto(self, buf: memoryview) -> int:
        if not self._left:
            self._left = next(self._it, b"")
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def as_response(self) -> Any:
        self._resp.read()
        return self._resp


class _Reader:
    """A file wrapper that reports bytes read (httpx streams multipart parts from it)."""

    def __init__(self, f: BinaryIO, progress: Progress | None) -> None:
        self._f = f
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._progress and data:
            self._progress(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()


def _walk(src: Path) -> list[tuple[str, Path]]:
    out = []
    root = src.resolve()
    for dirpath, _dirs, filenames in os.walk(src):
        for fn in filenames:
            p = Path(dirpath) / fn
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                raise InvalidInput(f"{str(p)!r} is a symlink that escapes the input folder")
            rel = p.relative_to(src).as_posix()
            validate_relpath(rel)
            out.append((rel, p))
    if not out:
        raise InvalidInput(f"input folder {str(src)!r} is empty")
    return sorted(out)


def is_remote(location: object) -> bool:
    """True for an ``http(s)://`` hub location."""
    return isinstance(location, str) and location.startswith(("http://", "https://"))


__all__ = ["HttpBlobStore", "HttpClient", "HttpIndex", "HttpWrites", "ServedTrust", "ServedViews",
           "is_remote", "local_only"]
