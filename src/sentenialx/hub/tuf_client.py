"""A served hub read over TUF: every trust decision is python-tuf's ``ngclient.Updater``.

``Hub.open("http://…", tuf_root=ROOT)`` builds the Hub facade over the parts here:

- :class:`TufIndex` resolves refs through the model's ``aliases.json`` target and the
  version's ``<model>/<version>.json`` record, both downloaded and verified by the
  Updater; a version resolves only once its OpenSSF signature bundle (also a TUF
  target) verifies with the keys TUF delegated for that model and covers exactly its
  files. So nothing unverified is ever handed to the read path.
- :class:`TufBlobStore` brings each file in through ``Updater.download_target`` (length
  and sha256 from signed metadata) into the verified blob cache.
- :class:`TufTrust` is the read path's trust part: the release was verified when it
  resolved; the local trust policy does not apply to a TUF hub.

Refusals are :class:`~sentenialx.hub.errors.UpdateRefused` naming the attack. Trusted
metadata persists in ``<cache>/tuf/<host-port>-<url hash>/metadata``, which is what
protects against rollback between runs (see python-tuf's client docs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit

from sentenialx.hub import _untrusted as U
from sentenialx.hub.cache import BlobCache, default_cache_dir, make_parents
from sentenialx.hub.errors import (
    HubError,
    IntegrityError,
    InvalidInput,
    NotFound,
    SignatureError,
    StoreUnavailable,
    UpdateRefused,
    require,
)
from sentenialx.hub.hashing import Progress
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Version, VersionRange, parse_ref, validate_name
from sentenialx.hub.release import bound_subject_name, signed_files, signed_name
from sentenialx.hub.values import AliasInfo, AliasMove, VersionInfo

MAX_DOC_BYTES = 16 * 1024 * 1024
"""Largest aliases.json, version record or signature bundle a client downloads."""
TUF_ROOT_ENV = "SENTENIALX_TUF_ROOT"


def read_root(root: str | os.PathLike[str] | bytes) -> bytes:
    """The bytes of a trusted ``root.json`` (a path or the bytes themselves), checked to be one.

    Raises:
        NotFound: the file does not exist.
        InvalidInput: it is not TUF root metadata.
    """
    if isinstance(root, bytes):
        data = root
    else:
        try:
            data = Path(root).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"TUF root {root} does not exist; get it from the release team"
                           " (`sentenialx tuf root --hub H`)", what="tuf root") from None
    require("tuf.api.metadata", "tuf")
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata.from_bytes(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same bad input
        raise InvalidInput(f"the TUF root is not TUF metadata ({type(exc).__name__}: {exc})"
                           ) from None
    if not isinstance(md.signed, Root):
        raise InvalidInput(f"the TUF root is {md.signed.type} metadata, not root")
    return data


def _proxied() -> bool:
    return any(os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                           "http_proxy", "https_proxy", "all_proxy"))


_ROLLBACK = re.compile(r"must be >=|Expected \S+\.json version|Expected root version")


def refusal(exc: Exception, *, what: str, target: bool = False) -> HubError:
    """The hub error for a python-tuf failure, naming the attack it shows."""
    from tuf.api import exceptions as X

    msg = str(exc) or type(exc).__name__
    if isinstance(exc, X.ExpiredMetadataError):
        return UpdateRefused(f"freeze: {what}: {msg} (a server or mirror is serving stale"
                             " metadata, or this clock is wrong)", attack="freeze")
    if isinstance(exc, X.BadVersionNumberError):
        if _ROLLBACK.search(msg):
            return UpdateRefused(f"rollback: {what}: {msg} (older metadata than this client"
                                 " already trusts)", attack="rollback")
        return UpdateRefused(f"mix-and-match: {what}: {msg} (metadata from different"
                             " repository states)", attack="mix-and-match")
    if isinstance(exc, X.UnsignedMetadataError):
        role = msg.split(" ", 1)[0]
        if role.startswith("release-"):
            return UpdateRefused(f"untrusted key: {what}: {msg}: {role} is not signed by the"
                                 " release keys TUF delegated", attack="untrusted key")
        return UpdateRefused(f"below threshold: {what}: {msg}", attack="below threshold")
    if isinstance(exc, X.LengthOrHashMismatchError):
        if target:
            return UpdateRefused(f"tampered bytes: {what}: {msg} (the bytes served are not the"
                                 " ones the release key signed)", attack="tampered bytes")
        return UpdateRefused(f"mix-and-match: {what}: {msg}", attack="mix-and-match")
    if isinstance(exc, X.DownloadError):
        return StoreUnavailable(f"{what}: download failed: {msg}", where=what)
    if isinstance(exc, X.RepositoryError):
        if "does not contain information for" in msg:
            return UpdateRefused(f"arbitrary release: {what}: {msg} (no release was published"
                                 " there)", attack="arbitrary release")
        return UpdateRefused(f"refused: {what}: {msg}", attack="repository")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"{what}: {msg}", where=what)
    return UpdateRefused(f"refused: {what}: {type(exc).__name__}: {msg}", attack="repository")


class TufClient:
    """One served hub's TUF repository as seen by this client (an Updater per refresh)."""

    def __init__(self, url: str, *, root: str | os.PathLike[str] | bytes,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"hub URL {url!r} is not http(s)://HOST[:PORT]")
        self.url = url.rstrip("/")
        self.root_bytes = read_root(root)
        base = Path(cache_dir) if cache_dir else default_cache_dir()
        key = re.sub(r"[^A-Za-z0-9.-]", "-", parts.netloc) + "-" + \
            hashlib.sha256(self.url.encode()).hexdigest()[:8]
        self.dir = base / "tuf" / key
        self.metadata_dir = self.dir / "metadata"
        self.targets_dir = self.dir / "targets"
        self.cache = BlobCache(base / "blobs")
        self.source = f"TUF repository {self.url}/tuf/"
        self._updater: Any = None
        self._verified: dict[tuple[str, str, str], VersionInfo] = {}
        self._models: set[str] = set()

    # -- the Updater ----------------------------------------------------------------------
    def refresh(self) -> int:
        """A new Updater and a refresh (root, timestamp, snapshot, targets); the snapshot version.

        Raises:
            UpdateRefused: the metadata is a rollback, expired, mixed, or under-signed.
            StoreUnavailable: the server is unreachable.
        """
        require("tuf.ngclient", "tuf")
        from tuf.ngclient import Updater

        for d in (self.metadata_dir, self.targets_dir):
            d.mkdir(parents=True, exist_ok=True)
        # The first run trusts the root given; later runs the newest root this client
        # verified, so a replayed older root.json given again cannot move it back.
        have = (self.metadata_dir / "root.json").exists()
        try:
            u = Updater(str(self.metadata_dir), f"{self.url}/tuf/metadata/",
                        str(self.targets_dir), f"{self.url}/tuf/targets/",
                        bootstrap=None if have else self.root_bytes)
            u.refresh()
            # Delegated metadata loads lazily: load it now for every model asked about, so
            # a refused refresh leaves the last verified state (the old Updater) serving.
            for model in sorted(self._models):
                u.get_targetinfo(f"{model}/aliases.json")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a named refusal
            raise refusal(exc, what=self.source) from None
        self._updater = u
        return self.snapshot_version()

    def snapshot_version(self) -> int:
        """The version of the snapshot this client trusts now (0: none yet)."""
        try:
            return int(json.loads((self.metadata_dir / "snapshot.json").read_bytes())
                       ["signed"]["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    @property
    def updater(self) -> Any:
        """The refreshed Updater (refreshing first if there is none)."""
        if self._updater is None:
            self.refresh()
        return self._updater

    def target(self, path: str) -> Any:
        """The TargetFile for ``path`` from verified metadata, or None.

        Raises:
            UpdateRefused: delegated metadata on the way failed verification.
        """
        try:
            return self.updater.get_targetinfo(path)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a named refusal
            raise refusal(exc, what=path) from None

    def doc(self, path: str) -> tuple[Any, bytes] | None:
        """A small verified target (``aliases.json``, a version record, a bundle) and its bytes."""
        tf = self.target(path)
        if tf is None:
            return None
        if tf.length > MAX_DOC_BYTES:
            raise UpdateRefused(f"{path}: {tf.length} bytes is more than a document may be",
                                attack="repository")
        u = self.updater
        try:
            got = u.find_cached_target(tf) or u.download_target(tf)
            return tf, Path(got).read_bytes()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a named refusal
            raise refusal(exc, what=path, target=True) from None

    def fetch(self, info: VersionInfo, entry: FileEntry) -> Path:
        """The verified cached copy of one file of a resolved release, downloaded by the Updater.

        Raises:
            UpdateRefused: the file is not a target of this release (or a different one),
                or the bytes served are not the signed ones.
        """
        path = f"{info.model}/{info.version}/{entry.path}"
        hit = self.cache.get(entry.sha256, entry.size)
        tf = self.target(path)
        if tf is None:
            raise UpdateRefused(f"arbitrary release: {path} is not a target of a published"
                                " release", attack="arbitrary release")
        if tf.length != entry.size or tf.hashes.get("sha256") != entry.sha256 or \
                (tf.custom or {}).get("digest") != info.digest:
            raise UpdateRefused(f"mix-and-match: {path} is signed as {tf.length} bytes, sha256"
                                f" {str(tf.hashes.get('sha256'))[:12]}…, not the file of"
                                f" {info.ref} it was resolved as", attack="mix-and-match")
        if hit is not None:
            return hit
        with self.cache.lock(entry.sha256):
            hit = self.cache.get(entry.sha256, entry.size)
            if hit is not None:
                return hit
            if not _proxied():
                return self._stream(tf, entry)
            final = self.cache.path(entry.sha256)
            make_parents(self.cache.root, final)
            tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tuf")
            try:
                # The Updater checks length and sha256 against the signed metadata before
                # it writes here; rename() then replaces (never follows) what is at the
                # cache name, and the cache hashes the file once more as it admits it.
                self.updater.download_target(tf, filepath=str(tmp))
                os.replace(tmp, final)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a named refusal
                raise refusal(exc, what=path, target=True) from None
            finally:
                tmp.unlink(missing_ok=True)
            got = self.cache.get(entry.sha256, entry.size)
            if got is None:
                raise UpdateRefused(f"tampered bytes: {path} changed in the cache as it was"
                                    " admitted", attack="tampered bytes")
            return Path(got)

    def _stream(self, tf: Any, entry: FileEntry) -> Path:
        """Stream a large target into the verified cache in one pass, resumably.

        The Updater decided what the bytes must be (``tf``: length and sha256 from signed
        metadata); they are fetched from the URL it would use (consistent snapshot:
        ``<dir>/<sha256>.<name>``), hashed as they are written, and admitted only if they
        are exactly those. This is the served client's download (Range resume, one pass)
        instead of ``Updater.download_target``, which spools to a temporary file,
        re-reads it to hash it and copies it (three passes over a large file).
        """
        import http.client
        from urllib.parse import quote

        from sentenialx.hub.transport.http import _Broken, _pump, _StdlibBody

        sha = str(tf.hashes["sha256"])
        folder, sep, base = tf.path.rpartition("/")
        url = urlsplit(f"{self.url}/tuf/targets/{quote(f'{folder}{sep}{sha}.{base}')}")
        w = self.cache.begin(sha, int(tf.length), name=entry.path)
        conn_cls = (http.client.HTTPSConnection if url.scheme == "https"
                    else http.client.HTTPConnection)
        conn = conn_cls(url.netloc, timeout=60)
        try:
            headers = {"Range": f"bytes={w.have}-", "If-Range": f'"{sha}"'} if w.have else {}
            try:
                conn.request("GET", url.path, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise StoreUnavailable(f"{tf.path}: download failed: {exc}", where=self.url
                                       ) from None
            body = _StdlibBody(resp)
            if resp.status == 200:
                w.restart()
            elif resp.status != 206 or not w.have or \
                    body.headers.get("content-range", "").split(" ")[-1].split("-")[0] != \
                    str(w.have):
                raise StoreUnavailable(f"{tf.path}: HTTP {resp.status} from {self.url}",
                                       where=self.url)
            try:
                _pump(body, w, path=entry.path, expected=sha, progress=None)
            except _Broken as exc:
                raise StoreUnavailable(f"{tf.path}: the connection broke at {w.have} bytes"
                                       f" ({exc}); try again to resume", where=self.url
                                       ) from None
            if w.have < w.size:
                raise StoreUnavailable(f"{tf.path}: the connection closed at {w.have} of"
                                       f" {w.size} bytes; try again to resume", where=self.url)
            return Path(w.commit())
        except IntegrityError as exc:
            w.discard()
            raise UpdateRefused(f"tampered bytes: {tf.path}: {exc} (the bytes served are not"
                                " the ones the release key signed)", attack="tampered bytes"
                                ) from None
        finally:
            w.close()
            conn.close()

    # -- releases -------------------------------------------------------------------------
    def aliases(self, model: str) -> dict[str, Any]:
        """The model's verified ``aliases.json``: ``{"aliases": {...}, "versions": [...]}``.

        Raises:
            NotFound: the model has no published release.
        """
        validate_name(model)
        got = self.doc(f"{model}/aliases.json")
        self._models.add(model)
        if got is None:
            raise NotFound(f"{model} has no release published over TUF at {self.url}",
                           what="model", name=model)
        doc = U.parse_json(got[1], source=self.source, limit=MAX_DOC_BYTES)
        d = U.object_from_untrusted(doc, source=self.source, what="aliases.json")
        if d.get("model") != model:
            raise UpdateRefused(f"mix-and-match: {model}/aliases.json names model"
                                f" {str(d.get('model'))[:100]!r}", attack="mix-and-match")
        aliases = d.get("aliases")
        versions = d.get("versions")
        if not isinstance(aliases, dict) or not isinstance(versions, list):
            raise InvalidInput(f"{self.source}: {model}/aliases.json is malformed")
        return {"aliases": {str(a): str(Version.parse(str(v))) for a, v in aliases.items()},
                "versions": sorted({str(Version.parse(str(v))) for v in versions},
                                   key=Version.parse)}

    def release(self, model: str, version: str) -> VersionInfo:
        """The verified release ``model@version``: record, signature and file targets checked.

        Raises:
            UpdateRefused: not a published release, or its signature, record and targets
                do not agree.
        """
        rec_path = f"{model}/{version}.json"
        got = self.doc(rec_path)
        if got is None:
            raise UpdateRefused(f"arbitrary release: {model}@{version} is not a release signed"
                                " by a key TUF delegates (unsigned, or promoted on the server"
                                " alone); refused", attack="arbitrary release")
        tf, data = got
        sig_path = f"{model}/{version}.sig"
        sig_tf = self.target(sig_path)
        key = (model, version, str(tf.hashes.get("sha256")) + str(
            sig_tf.hashes.get("sha256") if sig_tf is not None else ""))
        if key in self._verified:
            return self._verified[key]
        info = U.version_from_untrusted(U.parse_json(data, source=self.source,
                                                     limit=MAX_DOC_BYTES),
                                        source=self.source, expect_model=model,
                                        expect_version=version, include_revoked=False)
        if (tf.custom or {}).get("digest") != info.digest:
            raise UpdateRefused(f"mix-and-match: {rec_path} is signed for digest"
                                f" {str((tf.custom or {}).get('digest'))[:12]}…, its record says"
                                f" {str(info.digest)[:12]}…", attack="mix-and-match")
        self._check_signature(info)
        for f in info.files:
            ftf = self.target(f"{model}/{version}/{f.path}")
            if ftf is None or ftf.length != f.size or ftf.hashes.get("sha256") != f.sha256:
                raise UpdateRefused(f"mix-and-match: {model}/{version}/{f.path} is not signed as"
                                    f" the file {info.ref}'s record lists", attack="mix-and-match")
        self._verified[key] = info
        return info

    def delegated_keys(self, path: str) -> dict[str, Any]:
        """``{key id: public key}`` of every release role the verified targets delegate ``path`` to."""
        from tuf.api.metadata import Metadata, Targets

        from sentenialx.hub.signing import key_id, load_public_key

        md: Metadata[Targets] = Metadata.from_bytes(
            (self.metadata_dir / "targets.json").read_bytes())
        out: dict[str, Any] = {}
        d = md.signed.delegations
        if d is None:
            return out
        for role in (d.roles or {}).values():
            if role.is_delegated_path(path):
                for kid in role.keyids:
                    pem = d.keys[kid].keyval.get("public", "")
                    pub = load_public_key(pem.encode())
                    out[key_id(pub)] = pub
        return out

    def _check_signature(self, info: VersionInfo) -> None:
        from sentenialx.hub.signing import verify_bundle

        got = self.doc(f"{info.model}/{info.version}.sig")
        if got is None:
            raise UpdateRefused(f"arbitrary release: {info.ref} has no signature target",
                                attack="arbitrary release")
        keys = self.delegated_keys(f"{info.model}/{info.version}.sig")
        name = signed_name(info)
        try:
            verified = verify_bundle(got[1], files=signed_files(info), public_keys=keys)
        except (SignatureError, InvalidInput) as exc:
            raise UpdateRefused(f"untrusted key: {info.ref}: {exc}", attack="untrusted key"
                                ) from None
        if verified.model_name not in (bound_subject_name(info.model, info.version, name), name):
            raise UpdateRefused(f"mix-and-match: {info.ref}: its signature was made for"
                                f" {verified.model_name[:200]!r}", attack="mix-and-match")


class TufIndex:
    """The read side of the index protocol, answered from verified TUF targets only."""

    def __init__(self, client: TufClient) -> None:
        self.client = client
        self.url = client.url
        self.safe_url = client.url

    def dispose(self) -> None:
        """Nothing to close (each Updater's connections are its own)."""

    def migrate(self) -> NoReturn:
        """Refused: a TUF client has no schema.

        Raises:
            InvalidInput: always.
        """
        raise InvalidInput(f"`init` needs a local hub; {self.url} is read over TUF")

    def resolve(self, ref: str, *, include_revoked: bool = False) -> VersionInfo:
        """The verified release ``ref`` names (an alias through ``aliases.json``).

        Raises:
            InvalidRef: the ref is malformed.
            NotFound: the model, alias or a matching version is not published.
            UpdateRefused: see :meth:`TufClient.release`.
        """
        del include_revoked  # a published release is never revoked; unpublished ones fail
        r = parse_ref(str(ref))
        doc = self.client.aliases(r.name)
        versions = doc["versions"]
        if r.kind == "alias":
            v = doc["aliases"].get(r.value)
            if v is None:
                raise NotFound(f"{r.name}@{r.value} is not a published alias (only `models promote"
                               " --key` publishes one)", what="alias", name=str(ref))
        elif r.kind == "version":
            v = str(Version.parse(r.value))
        elif r.kind == "latest":
            if not versions:
                raise NotFound(f"{r.name} has no published release", what="version",
                               name=r.name)
            v = versions[-1]
        elif r.kind == "digest":
            hits = [x for x in versions
                    if str(self.client.release(r.name, x).digest).startswith(r.value)]
            if len(hits) != 1:
                raise NotFound(f"{len(hits)} published releases of {r.name} have digest"
                               f" sha256:{r.value[:12]}", what="version", name=str(ref))
            v = hits[0]
        else:
            rng = VersionRange.parse(r.value)
            cands = [x for x in versions if rng.matches(Version.parse(x))]
            if not cands:
                raise NotFound(f"no published release of {r.name} matches {r.value!r}",
                               what="version", name=str(ref))
            v = cands[-1]
        return self.client.release(r.name, v)

    def latest(self, model: str) -> VersionInfo:
        """The highest published release of ``model``."""
        return self.resolve(model)

    def get_version(self, model: str, version: str, *, include_pending: bool = False
                    ) -> VersionInfo:
        """One published release."""
        del include_pending
        return self.resolve(f"{model}@{version}")

    def by_digest(self, model: str, prefix: str) -> VersionInfo:
        """The published release of ``model`` whose digest starts with ``prefix``."""
        return self.resolve(f"{model}@sha256:{prefix}")

    def models(self) -> list[dict[str, Any]]:
        """TUF lists no models: ask for one by name."""
        return []

    def list_versions(self, model: str, *, include_revoked: bool = True,
                      with_files: bool = True) -> list[VersionInfo]:
        """Every published release of ``model``, oldest first."""
        del include_revoked, with_files
        return [self.client.release(model, v) for v in self.client.aliases(model)["versions"]]

    def all_ready_versions(self) -> list[VersionInfo]:
        """Nothing: TUF lists no models."""
        return []

    def list_aliases(self, model: str | None = None) -> list[AliasInfo]:
        """The published aliases of ``model``."""
        if model is None:
            return []
        doc = self.client.aliases(model)
        return [AliasInfo(model, a, v, "", "tuf") for a, v in sorted(doc["aliases"].items())]

    def get_alias(self, model: str, alias: str) -> AliasInfo:
        """One published alias.

        Raises:
            NotFound: it is not published.
        """
        for a in self.list_aliases(model):
            if a.alias == alias:
                return a
        raise NotFound(f"{model}@{alias} is not a published alias", what="alias",
                       name=f"{model}@{alias}")

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """TUF keeps no alias history."""
        del model, alias
        return []

    def events(self, *, model: str | None = None, limit: int | None = None) -> list[Any]:
        """TUF carries no event history."""
        del model, limit
        return []

    def last_event(self, kind: str, *, model: str | None = None) -> None:
        """None: no history."""
        del kind, model

    def generation(self) -> int:
        """Refresh the TUF metadata; the trusted snapshot's version (it moves on any publish).

        Raises:
            UpdateRefused: the refresh was refused (the client keeps what it trusted).
            StoreUnavailable: the server is unreachable.
        """
        return self.client.refresh()

    def find_file_by_sha(self, sha256: str, size: int) -> None:
        """Nothing is stored on this side."""
        del sha256, size


class TufBlobStore:
    """Release files downloaded by the Updater into the verified cache (a ``FillsCache``)."""

    def __init__(self, client: TufClient) -> None:
        self.client = client
        self.cache = client.cache
        self.url = client.url
        self.root = client.dir / "files"

    def local_path(self, key: str) -> Path | None:
        """Never a local file: bytes come through the cache."""
        del key
        return None

    def open_entry(self, info: VersionInfo, entry: FileEntry) -> IO[bytes]:
        """Open the verified cached copy of ``entry``, downloading it first if needed."""
        return open(self.fetch(info, entry), "rb")  # noqa: SIM115 - caller closes

    def fetch(self, info: VersionInfo, entry: FileEntry, *, progress: Progress | None = None
              ) -> Path:
        """See :meth:`TufClient.fetch`."""
        path = self.client.fetch(info, entry)
        if progress is not None:
            progress(entry.size)
        return path


class TufTrust:
    """The trust part of a TUF hub: releases are verified as they resolve (see the module)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def check_trust(self, info: VersionInfo, *, mode: str | None = None) -> str:
        """``tuf``: the release's metadata and signature were verified when it resolved.

        Raises:
            InvalidInput: ``mode`` is ``off`` (a TUF hub never hands out unverified bytes).
        """
        if mode == "off":
            raise InvalidInput(f"{info.ref}: trust 'off' does not apply to a hub read over TUF;"
                               " every release is verified")
        return "tuf"

    def _refuse(self, verb: str) -> NoReturn:
        raise InvalidInput(f"`{verb}` needs the hub's own folder; {self.url} is read over TUF")

    def is_gated(self, alias: str) -> bool:
        """Refused: gates are the server's."""
        self._refuse("gates")

    def __getattr__(self, name: str) -> Any:
        # Keys, policy, signing and gates belong to the hub's host: every other release
        # verb is refused the same way.
        if name.startswith("_"):
            raise AttributeError(name)

        def refused(*_a: Any, **_k: Any) -> NoReturn:
            self._refuse(name.replace("_", "-"))

        return refused


class TufWrites:
    """Writes to a hub read over TUF: all refused (publishing is the release team's)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def refused(*_a: Any, **_k: Any) -> NoReturn:
            raise InvalidInput(f"`{name.replace('_', '-')}` needs the hub itself; {self.url} is"
                               " read over TUF (read-only)")

        return refused


__all__ = ["TUF_ROOT_ENV", "TufBlobStore", "TufClient", "TufIndex", "TufTrust", "TufWrites",
           "read_root", "refusal"]
