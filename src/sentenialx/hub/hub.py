"""The Hub: the one facade the CLI, the server, the pipeline and the seed module use.

It owns the order of operations and the rules (DESIGN.md); each responsibility is
a part in a module of its own, composed here:

- ``_core``: the index, the stores, the read cache and ref resolution;
- ``_register``: registering versions (validate → reserve → stream → claim → commit);
- ``_read``: the one read path (resolve → read while hashing → manifest → trust);
- ``_lifecycle``: alias moves through their gates, revocation, deletion;
- ``_maintenance``: verify, fsck, gc;
- ``_views``: registry.json, events.jsonl and the signed head;
- ``_seed``: adopting a seed registry.json;
- ``release``: signatures, the trust policy and promotion gates;
- ``layout``: every store key and hub-folder name.

A served hub (``Hub.open("http://…")``) is the same facade over other parts
(``transport/http.py``): an index and a blob source that speak the server's API,
under the same resolver and read path, and writes that are requests to the
server's own Hub. ``is_served`` tells them apart where it matters (copies).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sentenialx.hub._core import Core, default_actor, weights_entry
from sentenialx.hub._lifecycle import Lifecycle
from sentenialx.hub._maintenance import Maintenance
from sentenialx.hub._read import Opener, Reader
from sentenialx.hub._register import Registrar
from sentenialx.hub._seed import SeedImport
from sentenialx.hub._tokens import Tokens
from sentenialx.hub._views import Views
from sentenialx.hub.errors import NotFound
from sentenialx.hub.events import ChainReport, Event
from sentenialx.hub.hashing import Progress
from sentenialx.hub.index.sql import SqlIndex, utcnow
from sentenialx.hub.layout import DEFAULT_ROOT, REGISTRY_DB, REGISTRY_JSON, ROOT_FILES, role_in_folder
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Ref, validate_name
from sentenialx.hub.release import Releases
from sentenialx.hub.store.local import LocalStore
from sentenialx.hub.trust import GateResult, TrustStore
from sentenialx.hub.values import (
    AliasInfo,
    AliasMove,
    FsckReport,
    GcReport,
    VerifyReport,
    VersionInfo,
)

if TYPE_CHECKING:
    from sentenialx.hub.transport.http import (
        HttpClient,
        HttpWrites,
        ServedTrust,
        ServedViews,
    )
    from sentenialx.hub.tuf_client import TufClient
    from sentenialx.hub.tuf_repo import TufRepository

_role_in_folder = role_in_folder


class _HybridOpen:
    """``Hub.open(location)`` opens a hub; ``hub.open(ref)`` returns verified bytes."""

    def __get__(self, obj: Hub | None, objtype: type[Hub]) -> Any:
        if obj is None:
            return objtype.open_hub
        return obj.open_bytes


class Hub:
    """One store: an index plus a blob store."""

    open = _HybridOpen()

    def __init__(self, root: str | os.PathLike[str], *, index_url: str | None = None,
                 store_url: str | None = None, s3_endpoint: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 cache_max_bytes: int | None = None) -> None:
        root_path = Path(root).resolve()
        # Root-level views (registry.json, events.jsonl, trust/) always live in the local
        # folder; version bytes and their sidecars go to the blob store.
        local = LocalStore(root_path)
        store: Any = local
        cache: Any = None
        if store_url and not _is_local_url(store_url):
            from sentenialx.hub.cache import BlobCache
            from sentenialx.hub.store import open_store

            store = open_store(store_url, endpoint_url=s3_endpoint)
            cache = BlobCache(Path(cache_dir) if cache_dir else root_path / ".cache" / "blobs",
                              max_bytes=cache_max_bytes)
        elif store_url:
            # Bytes in another folder; the views stay in this one.
            store = LocalStore(_local_path(store_url, root_path))
        index = SqlIndex(index_url or f"sqlite:///{root_path / REGISTRY_DB}")
        self.core = Core(root_path, index=index, store=store, local=local, cache=cache)
        self._http: HttpClient | None = None
        self._tuf: TufClient | None = None
        self._tokens: Tokens | None = Tokens(index)
        views = Views(self.core)
        releases = Releases(self.core, views=views)
        registrar = Registrar(self.core, views=views, trust=releases)
        self._views: Views | ServedViews = views
        self._releases: Releases | ServedTrust = releases
        self._registrar: Registrar | HttpWrites = registrar
        self._reader = Reader(self.core, trust=releases)
        self._lifecycle: Lifecycle | HttpWrites = Lifecycle(self.core, views=views, trust=releases)
        self._maintenance: Maintenance | HttpWrites = Maintenance(self.core, views=views,
                                                                 trust=releases)
        self._seed: SeedImport | HttpWrites = SeedImport(self.core, registrar=registrar)
        # With an index shared by many machines (PostgreSQL), the others' writes leave
        # this folder's views behind; they are views of the index, so a hub on a shared
        # index refreshes them when opened.
        if not (root_path / REGISTRY_JSON).exists():
            self.write_registry_json()
        elif index_url is not None:
            with contextlib.suppress(OSError):  # a read-only folder keeps its older view
                self.write_registry_json()

    @classmethod
    def served(cls, url: str, *, token: str | None = None,
               cache_dir: str | os.PathLike[str] | None = None, timeout: float = 60.0,
               retries: int | None = None, max_response_bytes: int | None = None) -> Hub:
        """The hub served at ``url`` (``sentenialx models serve``), as a Hub over HTTP.

        Reads go through the same resolver and read path as a local hub, over an index
        and a blob source that speak the server's API (every answer validated, files
        downloaded into the verified cache, resumably, and hashed against the manifest
        before use; offline, the last verified answers and files serve). Writes are
        requests to the server's own Hub. The token defaults to ``$SENTENIALX_TOKEN``,
        the cache to ``$SENTENIALX_CACHE`` or ``~/.cache/sentenialx``.

        Raises:
            InvalidInput: ``url`` is not http(s)://HOST[:PORT].
            MissingDependency: httpx (the ``server`` extra) is not installed.
        """
        from sentenialx.hub.transport.http import (
            RETRIES,
            HttpBlobStore,
            HttpClient,
            HttpIndex,
            HttpWrites,
            ServedTrust,
            ServedViews,
        )
        from sentenialx.hub.transport.http import U as untrusted

        client = HttpClient(url, token=token, cache_dir=cache_dir, timeout=timeout,
                            retries=RETRIES if retries is None else retries,
                            max_response_bytes=(untrusted.MAX_RESPONSE_BYTES
                                                if max_response_bytes is None
                                                else max_response_bytes))
        index = HttpIndex(client)
        # Writes are requests to the server's own Hub.
        return cls._over_remote(index, HttpBlobStore(client), client.cache,
                                writes=HttpWrites(client, index), trust=ServedTrust(client.url),
                                views=ServedViews(index), http=client)

    @classmethod
    def tuf(cls, url: str, *, root: str | os.PathLike[str] | bytes,
            cache_dir: str | os.PathLike[str] | None = None) -> Hub:
        """The hub served at ``url`` read over TUF, trusting only ``root`` (a ``root.json``).

        The same facade and read path as any hub, over parts that answer from metadata
        verified by python-tuf's ``ngclient.Updater`` (see :mod:`sentenialx.hub.tuf_client`):
        refs resolve through the model's ``aliases.json`` to releases whose OpenSSF
        signature verifies with the keys TUF delegated for the model; files come through
        the Updater into the verified cache. Read-only.

        Raises:
            InvalidInput: ``url`` is not http(s)://HOST[:PORT], or ``root`` is not TUF root.
            NotFound: the root file does not exist.
            MissingDependency: python-tuf (the ``tuf`` extra) is not installed.
        """
        from sentenialx.hub.tuf_client import TufBlobStore, TufClient, TufIndex, TufTrust, TufWrites

        client = TufClient(url, root=root, cache_dir=cache_dir)
        # TufIndex resolves refs itself; TufWrites refuses every write, views included.
        writes = TufWrites(client.url)
        return cls._over_remote(TufIndex(client), TufBlobStore(client), client.cache,
                                writes=writes, trust=TufTrust(client.url), views=writes,
                                tuf=client)

    @classmethod
    def _over_remote(cls, index: Any, store: Any, cache: Any, *, writes: Any, trust: Any,
                     views: Any, http: Any = None, tuf: Any = None) -> Hub:
        """A Hub whose index and bytes are another host's, read through the one read path.

        ``index`` implements the read side of the index protocol. ``writes`` stands in for
        every part that would write, so no write method of SqlIndex is ever asked of it;
        ``trust`` stands in for the release part.
        """
        self = cls.__new__(cls)
        self.core = Core(store.root, index=cast(SqlIndex, index), store=store, local=None,
                         cache=cache, files=store.root)
        self._http = http
        self._tuf = tuf
        self._tokens = None
        self._views = views
        self._releases = trust
        self._registrar = writes
        self._reader = Reader(self.core, trust=trust)
        self._lifecycle = writes
        self._maintenance = writes
        self._seed = writes
        return self

    @property
    def is_served(self) -> bool:
        """True for a hub reached over HTTP: its writes, policy and files are its host's."""
        return self._http is not None or self.is_tuf

    @property
    def is_tuf(self) -> bool:
        """True for a served hub read over TUF (:meth:`tuf`): its releases are verified here."""
        return self._tuf is not None

    def _client(self, verb: str) -> HttpClient:
        if self._http is None:
            from sentenialx.hub.errors import InvalidInput

            raise InvalidInput(f"`{verb}` needs a served hub (http://…); {self.root} is local")
        return self._http

    @property
    def url(self) -> str:
        """The served hub's URL, or the hub folder of a local one."""
        if self._tuf is not None:
            return self._tuf.url
        return self._http.url if self._http is not None else str(self.root)

    @property
    def hub_dir(self) -> Path:
        """A served hub's folder in this client's cache (responses, files, state seen).

        Raises:
            InvalidInput: the hub is local.
        """
        return self._client("hub_dir").hub_dir

    @property
    def tokens(self) -> Tokens:
        """The hub's API tokens (kept in its index).

        Raises:
            InvalidInput: a served hub's tokens are its host's.
        """
        if self._tokens is None:
            from sentenialx.hub.transport.http import local_only

            raise local_only("tokens", self.url)
        return self._tokens

    def whoami(self) -> dict[str, Any]:
        """The token this client uses, as the served hub sees it.

        Raises:
            InvalidInput: the hub is local.
        """
        return self._client("whoami").whoami()

    def state(self) -> dict[str, Any]:
        """A served hub's ``{"generation": n, "signed": signed state or None}`` (never cached).

        Raises:
            InvalidInput: the hub is local.
        """
        return self._client("state").state()

    def guard_state(self, public_key: str | os.PathLike[str]) -> dict[str, Any]:
        """Check a served hub's signed state against its pinned key and what was seen before.

        Raises:
            InvalidInput: the hub is local.
            StateError: forged, expired, from another hub, or older than seen before.
        """
        return self._client("guard_state").guard_state(public_key, self.signed_state())

    def fetch(self, info: VersionInfo, entry: FileEntry, *, progress: Progress | None = None
              ) -> Path:
        """The verified cached copy of one file of a version (a served or S3 hub).

        Raises:
            InvalidInput: the hub's bytes are local files (use :meth:`path`).
            IntegrityError: the bytes do not match the manifest.
            StoreUnavailable: the source is unreachable and the file is not cached.
        """
        if self.cache is None:
            from sentenialx.hub.errors import InvalidInput

            raise InvalidInput(f"{self.root} keeps its files locally; nothing to fetch")
        return self._reader.cached(info, entry, progress=progress)

    def upload(self, model: str, spec: dict[str, Any], blobs: dict[str, Path], *,
               progress: Progress | None = None, idempotency_key: str | None = None
               ) -> tuple[VersionInfo, list[str]]:
        """Register a version on a served hub from a spec, sending only files it lacks.

        The request carries ``idempotency_key`` (or a fresh key), reused on retries.

        Raises:
            InvalidInput: the hub is local, or the server refused the spec.
            IntegrityError, AlreadyExists, PermissionDenied, TooLarge: the server refused.
            Conflict: ``idempotency_key`` was used for another request.
        """
        self._client("upload")
        return cast("HttpWrites", self._registrar).upload(model, spec, blobs, progress=progress,
                                                          idempotency_key=idempotency_key)

    @property
    def root(self) -> Path:
        """The hub folder (views, trust policy; the bytes too unless the store is elsewhere).

        A served hub's root is where its files are materialised in this client's cache.
        """
        return self.core.root

    @property
    def index(self) -> SqlIndex:
        """The index: the truth about versions, aliases and the history."""
        return self.core.index

    @property
    def store(self) -> Any:
        """The blob store holding versions' bytes and sidecars."""
        return self.core.store

    @property
    def local(self) -> LocalStore:
        """The hub folder as a store."""
        return self.core.local

    @property
    def cache(self) -> Any:
        """The verified read cache of a hub whose bytes are not local files."""
        return self.core.cache

    @classmethod
    def open_hub(cls, location: str | os.PathLike[str] | None = None, *,
                 index: str | None = None,
                 tuf_root: str | os.PathLike[str] | bytes | None = None) -> Hub:
        """Open (creating if needed) the hub at ``location``, ``$SENTENIALX_HUB`` or ./models/artifacts.

        With ``tuf_root`` (a trusted ``root.json``), a served hub is read over TUF
        (:meth:`tuf`) instead of trusting the server.

        Raises:
            StoreUnavailable: the folder or the index cannot be opened.
            InvalidInput: ``tuf_root`` is given for a hub that is not served (http://…).
        """
        loc = location or os.environ.get("SENTENIALX_HUB") or DEFAULT_ROOT
        is_url = isinstance(loc, str) and loc.startswith(("http://", "https://"))
        if tuf_root is not None:
            if not is_url:
                from sentenialx.hub.errors import InvalidInput

                raise InvalidInput(f"a TUF root applies to a served hub (http://…), not {loc}")
            return cls.tuf(str(loc), root=tuf_root)
        if isinstance(loc, str) and loc.startswith(("http://", "https://")):
            # A served hub: the same facade over HTTP, token from $SENTENIALX_TOKEN.
            return cls.served(loc)
        from sentenialx.hub.config import read_config

        cfg = read_config(Path(loc))
        return cls(loc, index_url=index or cfg.get("index"), store_url=cfg.get("store"),
                   s3_endpoint=cfg.get("s3_endpoint"), cache_dir=cfg.get("cache_dir"),
                   cache_max_bytes=cfg.get("cache_max_bytes"))

    def close(self) -> None:
        """Release database connections and the store's transfer threads."""
        self.index.dispose()
        close_store = getattr(self.store, "close", None)
        if callable(close_store):
            close_store()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Hub({self.url!r})"

    def resolve(self, ref: str | Ref, *, include_revoked: bool = False) -> VersionInfo:
        """Resolve a ref to a ready version (cached until the index changes).

        Raises:
            InvalidRef: the ref is malformed.
            NotFound: nothing matches, or it is revoked and ``include_revoked`` is False.
        """
        return self.core.resolve(ref, include_revoked=include_revoked)

    @staticmethod
    def weights_entry(info: VersionInfo) -> FileEntry:
        """The version's main weights file (first by path).

        Raises:
            NotFound: the version has no weights file.
        """
        return weights_entry(info)

    _stem_base = staticmethod(Registrar._stem_base)

    def init(self) -> str:
        """Create or upgrade the index schema (and the S3 bucket); returns a one-line description.

        Raises:
            StoreUnavailable: the index or the store cannot be reached.
        """
        if self._http is not None:
            from sentenialx.hub.transport.http import local_only

            raise local_only("init", self.url)
        self.index.migrate()
        if hasattr(self.store, "ensure_bucket"):
            self.store.ensure_bucket()
        return f"index {self.index.safe_url}, store {self.store.url}"

    def all_versions(self) -> list[VersionInfo]:
        """Every ready version of every model (revoked included), with files."""
        return self.index.all_ready_versions()

    def exists(self, model: str, version: str) -> bool:
        """True when ``model@version`` is registered (revoked or not)."""
        try:
            self.index.get_version(model, version)
        except NotFound:
            return False
        return True

    # -- listing ----------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """Every model with its number of versions, latest version and aliases."""
        return self.index.models()

    def versions(self, model: str) -> list[VersionInfo]:
        """Every version of a model (revoked included), oldest first.

        Raises:
            NotFound: unknown model.
        """
        validate_name(model)
        return self.index.list_versions(model, with_files=True)

    def aliases(self, model: str | None = None) -> list[AliasInfo]:
        """Aliases of one model or of all."""
        return self.index.list_aliases(model)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of a model's aliases, oldest first."""
        return self.index.alias_history(model, alias)

    def events(self, *, model: str | None = None, limit: int | None = None) -> list[Event]:
        """The history, oldest first."""
        return self.index.events(model=model, limit=limit)

    def generation(self) -> int:
        """The index's change counter: any registration, alias move or revocation bumps it."""
        return self.index.generation()

    def signed_state(self, *, ttl: timedelta = timedelta(minutes=10)) -> dict[str, Any]:
        """The index state (generation, chain head, expiry) signed by the hub's key.

        Raises:
            StateError: the hub has no key.
        """
        from sentenialx.hub.state import signed_state

        if self._http is not None:
            return self._http.signed_state()
        return signed_state(self, ttl=ttl)

    # -- register -----------------------------------------------------------------------
    def register(
        self,
        model: str,
        path: str | os.PathLike[str],
        *,
        version: str | None = None,
        bump: str | None = None,
        metadata: dict[str, Any] | None = None,
        parents: Sequence[str] = (),
        data_digest: str | None = None,
        attachments: Sequence[tuple[str, str | os.PathLike[str]]] = (),
        alias: str | None = None,
        link: bool = False,
        actor: str | None = None,
        name: str | None = None,
        progress: Progress | None = None,
        idempotency_key: str | None = None,
    ) -> VersionInfo:
        """Register a file or a folder as a new immutable version of ``model``.

        The registration has succeeded once its index transaction commits; a failure of
        the stat cache or of the views after it is logged, not raised, and repaired by
        the next write or ``fsck --repair``.

        Args:
            model: the model's name, e.g. ``distill``.
            path: a weights file or a folder (a LoRA adapter, a tokenizer...).
            version: an explicit semver; without it, ``bump`` (default ``patch``)
                from the highest existing version, or 1.0.0 for the first.
            bump: ``major``, ``minor`` or ``patch``.
            metadata: free-form JSON metadata; known keys are checked.
            parents: refs of the models this one derives from (teacher, base...).
            data_digest: sha256 of the training data.
            attachments: ``(role, path)`` pairs: log, chart, report, config, other.
            alias: an alias to point at the new version in the same transaction.
            link: hardlink inputs instead of copying (same filesystem; the input
                becomes read-only).
            actor: who registers (default ``$SENTENIALX_ACTOR`` or user@host).
            name: the file stem to use instead of the input's name.
            progress: called with byte counts as inputs are stored.
            idempotency_key: makes a retry safe: a later call with the same key and the
                same request returns the version this one made and stores nothing (a
                served hub's client sends a fresh key itself when none is given).

        Raises:
            InvalidName: a name is not allowed.
            InvalidInput: a missing input, a symlink escaping the folder, bad metadata.
            AlreadyExists: the explicit version exists.
            NotFound: a parent ref does not resolve.
            Conflict: ``idempotency_key`` was used for another request.
        """
        return self._registrar.register(
            model, path, version=version, bump=bump, metadata=metadata, parents=parents,
            data_digest=data_digest, attachments=attachments, alias=alias, link=link, actor=actor,
            name=name, progress=progress, idempotency_key=idempotency_key)

    # -- read ---------------------------------------------------------------------------
    def path(self, ref: str, *, include_revoked: bool = False, trust: str | None = None,
             progress: Progress | None = None) -> Path:
        """Absolute path of the verified weights file (or folder) of a version.

        The same rules as :meth:`load` apply before the path is handed out: the trust
        policy (``trust`` overrides its mode), and the files against the manifest
        (re-hashed unless their stat matches the one recorded when last verified; a
        folder holding any file the manifest does not list is refused). Registered
        files are read-only; a path stays what was verified only while nobody with
        write access to the hub folder changes it, so loaders should prefer
        :meth:`open_bytes` / :meth:`load`.

        Raises:
            InvalidRef: the ref is malformed.
            NotFound: nothing matches.
            IntegrityError: a file does not match the manifest.
            SignatureError: the trust policy requires a signature this version lacks.
        """
        return self._reader.path(ref, include_revoked=include_revoked, trust=trust,
                                 progress=progress)

    def open_bytes(self, ref: str, *, file: str | None = None, include_revoked: bool = False,
                   trust: str | None = None, progress: Progress | None = None) -> bytes:
        """Read a version's file once, hashing as it is read, and return verified bytes.

        ``file`` is a manifest path; default the main weights file. ``trust`` overrides
        the policy's signature mode (``enforce``, ``warn``, ``off``).

        Raises:
            NotFound: no such version or file.
            IntegrityError: the bytes do not match the manifest.
            SignatureError: the trust policy requires a signature this version lacks.
        """
        return self._reader.open_bytes(ref, file=file, include_revoked=include_revoked, trust=trust,
                                       progress=progress)

    def read_entry(self, info: VersionInfo, entry: FileEntry) -> bytes:
        """One file of a resolved version, read once and matched to the manifest.

        At most ``size + 1`` bytes are read, so a file grown behind the hub's back is
        refused without being pulled into memory. No trust check: callers that load
        weights go through :meth:`open_bytes`, :meth:`read_files` or :meth:`load`.

        Raises:
            NotFound: the file is missing from the store.
            IntegrityError: its bytes differ from the manifest.
        """
        return self._reader.read_entry(info, entry)

    def save_entry(self, info: VersionInfo, entry: FileEntry, dest: str | os.PathLike[str], *,
                   progress: Progress | None = None) -> Path:
        """Write one file of a resolved version to ``dest``, streamed and verified.

        Like :meth:`read_entry` but in bounded memory: ``dest`` appears (by rename) only
        once the bytes written matched the manifest. No trust check, as for
        :meth:`read_entry`.

        Raises:
            NotFound: the file is missing from the store.
            IntegrityError: its bytes differ from the manifest (``dest`` is untouched).
            OSError: ``dest``'s folder cannot be written.
        """
        return self._reader.save_entry(info, entry, Path(dest), progress=progress)

    def read_files(self, ref: str, *, include_revoked: bool = False,
                   roles: Sequence[str] = ("weights", "config"),
                   trust: str | None = None) -> dict[str, bytes]:
        """Verified bytes of every file of a version with one of ``roles``, keyed by path.

        Raises:
            NotFound: no such version.
            IntegrityError: a file does not match the manifest.
        """
        return self._reader.read_files(ref, include_revoked=include_revoked, roles=roles, trust=trust)

    def load(self, ref: str, *, file: str | None = None, include_revoked: bool = False,
             trust: str | None = None) -> Any:
        """Load a version's weights with the loader its format calls for, from verified bytes.

        ONNX gives an ``onnxruntime.InferenceSession``; ``.pt``/``.bin`` a torch object
        (``weights_only``, after a pickle allowlist scan); ``.safetensors`` a dict of
        tensors. The bytes are read once, hashed, matched to the manifest and only then
        handed to the loader, so nothing can change between verify and load.

        Raises:
            NotFound: no such version or file.
            IntegrityError: the bytes do not match the manifest.
            UnsafeArtifact: a pickle would import or call something outside the allowlist.
            MissingDependency: the loader's extra is not installed.
            SignatureError: the trust policy requires a signature this version lacks.
        """
        return self._reader.load(ref, file=file, include_revoked=include_revoked, trust=trust)

    def byte_source(self, info: VersionInfo, entry: FileEntry) -> tuple[int, Opener]:
        """The stored size of one file of a version and an opener for a byte range of it.

        The bytes are as stored, not verified: this is what a server streams to clients,
        which verify them against the manifest they are also sent.

        Raises:
            NotFound: the file is missing from the store.
        """
        return self._reader.byte_source(info, entry)

    def verified_byte_source(self, info: VersionInfo, entry: FileEntry) -> tuple[int, Opener]:
        """Like :meth:`byte_source`, for clients that do not check what they receive.

        Every stream it opens reads and hashes the whole stored file; the last bytes of
        the requested range are released only once the file matches the manifest, so a
        reader gets all of the range verified or a stream that raises before its end.

        Raises:
            NotFound: the file is missing from the store.
        """
        return self._reader.verified_source(info, entry)

    def presigned_url(self, info: VersionInfo, entry: FileEntry, *, expires: int = 300
                      ) -> str | None:
        """A URL that reads one file's stored bytes for ``expires`` seconds, or None.

        Only a store that can sign such URLs (S3) gives one. Like :meth:`byte_source`
        this is what a server hands to a client it has already authorised; the client
        verifies the bytes against the manifest.

        Raises:
            InvalidInput: ``expires`` is out of the store's range.
        """
        return self._reader.presigned_url(info, entry, expires=expires)

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """Compare two versions: files added, removed, changed; metadata and metrics.

        Raises:
            NotFound: a ref does not resolve.
        """
        return self._reader.diff(a, b)

    # -- views --------------------------------------------------------------------------
    def registry_view(self) -> dict[str, Any]:
        """registry.json's content: the seed's shape plus extra keys, latest per model."""
        return self._views.registry_view()

    def write_registry_json(self) -> None:
        """Regenerate registry.json atomically (temp + fsync + rename)."""
        return self._views.write_registry_json()

    def export_registry(self, dest: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Rewrite registry.json (or write the view to ``dest``) and return it."""
        return self._views.export_registry(dest)

    def verify_log(self, *, pubkey: Any = None) -> ChainReport:
        """Check the whole event chain in the index, then its export (events.jsonl) against it.

        ``pubkey`` pins the hub's public key (object, PEM or PEM path): the signed head
        must verify with it, whatever the folder's trust/hub_key.pub says.
        """
        return self._views.verify_log(pubkey=pubkey)

    def check_head(self, seq: int, head: str) -> bool:
        """True when event ``seq`` of this hub's chain has hash ``head`` (a copy's saved head)."""
        return self._views.check_head(seq, head)

    # -- lifecycle ----------------------------------------------------------------------
    def set_alias(self, ref: str, alias: str, *, expect: str | None = None,
                  actor: str | None = None, force: bool = False) -> str | None:
        """Point ``alias`` at the version ``ref`` resolves to; returns the previous version.

        ``expect`` is the version the caller believes the alias points at now (``""``
        for "not set"); if another writer moved it first, nothing changes. A gated
        alias (``production`` by default) moves only when its promotion gates pass;
        ``force`` moves it anyway and the event records it with the failed gates.

        Raises:
            NotFound: the ref does not resolve.
            Conflict: the alias moved since the caller looked.
            GateFailed: the alias is gated and a gate failed.
        """
        return self._lifecycle.set_alias(ref, alias, expect=expect, actor=actor, force=force)

    def remove_alias(self, model: str, alias: str, *, expect: str | None = None,
                     actor: str | None = None) -> str:
        """Remove an alias; returns the version it pointed at.

        Raises:
            NotFound: no such alias.
            Conflict: it moved since the caller looked.
        """
        return self._lifecycle.remove_alias(model, alias, expect=expect, actor=actor)

    def rollback(self, model: str, alias: str, *, actor: str | None = None,
                 force: bool = False) -> str:
        """Move ``alias`` back to the version it pointed at before its last move.

        The move goes through the alias's gates like any other (``force`` to override,
        recorded), and never to a revoked version.

        Raises:
            NotFound: the alias has no earlier version (or it was deleted).
            InvalidInput: that version is revoked.
            GateFailed: the alias is gated and a gate failed.
            Conflict: the alias moved concurrently.
        """
        return self._lifecycle.rollback(model, alias, actor=actor, force=force)

    def revoke(self, ref: str, *, reason: str, actor: str | None = None) -> VersionInfo:
        """Revoke a version: it stays stored but no longer resolves unless asked for.

        Raises:
            NotFound: no such version.
            InvalidInput: no reason given.
        """
        return self._lifecycle.revoke(ref, reason=reason, actor=actor)

    def unrevoke(self, ref: str, *, actor: str | None = None) -> VersionInfo:
        """Undo a revocation.

        Raises:
            NotFound: no such version.
        """
        return self._lifecycle.unrevoke(ref, actor=actor)

    def delete(self, ref: str, *, confirm: bool = False, actor: str | None = None) -> VersionInfo:
        """Delete a version: index rows first, then its files and sidecars.

        Raises:
            InvalidInput: ``confirm`` is not set.
            NotFound: no such version.
            Conflict: an alias still points at it.
        """
        return self._lifecycle.delete(ref, confirm=confirm, actor=actor)

    # -- maintenance --------------------------------------------------------------------
    def verify(self, ref: str | None = None, *, model: str | None = None, deep: bool = False,
               progress: Progress | None = None) -> VerifyReport:
        """Check stored bytes against manifests.

        Fast mode trusts the stat cache (size, mtime, inode, ctime) for files verified
        before; ``deep`` re-hashes everything. Files are hashed in parallel.

        Raises:
            NotFound: the ref or model does not exist.
        """
        return self._maintenance.verify(ref, model=model, deep=deep, progress=progress)

    def fsck(self, model: str | None = None, *, deep: bool = False,
             grace: timedelta = timedelta(hours=1), pubkey: Any = None,
             repair: bool = False) -> FsckReport:
        """Check the index, files, sidecars, registry.json and the event chain against each other.

        ``repair`` first rebuilds every view (registry.json, events.jsonl, the signed head
        where this writer may sign it) and the stat cache; ``FsckReport.repaired`` says what.

        Raises:
            NotFound: ``model`` does not exist.
            InvalidInput: a served hub (fsck runs where the hub's folder is).
        """
        if isinstance(self._maintenance, Maintenance):
            return self._maintenance.fsck(model, deep=deep, grace=grace, pubkey=pubkey,
                                          repair=repair)
        return self._maintenance.fsck(model, deep=deep, grace=grace, pubkey=pubkey)  # raises

    def gc(self, *, grace: timedelta = timedelta(hours=1), dry_run: bool = False,
           actor: str | None = None) -> GcReport:
        """Remove what no version names: crashed registrations and stray files.

        Only files older than ``grace`` go (a registration in progress is younger);
        nothing a ready version or an alias names is ever touched.

        Raises:
            InvalidInput: registry.json names files the index does not know (a seed
                store not yet adopted): gc would delete them, so it refuses.
        """
        return self._maintenance.gc(grace=grace, dry_run=dry_run, actor=actor)

    # -- seed ---------------------------------------------------------------------------
    def import_registry(self, registry: str | os.PathLike[str], *,
                        actor: str | None = None) -> list[VersionInfo]:
        """Adopt a seed-style store: its registry.json and the files it names.

        Every file's sha256 is checked before anything is registered; one mismatch
        and nothing is imported.

        Raises:
            InvalidInput: registry.json is malformed or a file is missing.
            IntegrityError: a file's hash differs from the registry's.
        """
        return self._seed.import_registry(registry, actor=actor)



    # -- release ----------------------------------------------------------------------
    def is_gated(self, alias: str) -> bool:
        """True when ``alias`` has promotion gates, so every move of it must pass them."""
        return self._releases.is_gated(alias)

    def trust_store(self) -> TrustStore:
        """The hub's trust policy, checked against the history.

        Raises:
            SignatureError: trust/policy.json was changed outside sentenialx.
        """
        return self._releases.trust_store()

    def save_trust(self, ts: TrustStore, *, action: str, detail: dict[str, Any],
                   actor: str | None = None) -> str:
        """Write the policy and record the change as a ``trust`` event; returns its sha256.

        The event carries the whole policy and the trusted public keys, so every machine
        sharing the index applies the same policy (see :meth:`trust_store`).
        """
        return self._releases.save_trust(ts, action=action, detail=detail, actor=actor)

    def signature_subject(self, info: VersionInfo) -> tuple[str, list[tuple[str, str]]]:
        """The subject name and (path, sha256) resources an OpenSSF signature of ``info`` covers.

        A single-file version is its weights file (resource ``.``); a folder version
        is its folder, every file in it. These are exactly the files loaders read.
        The subject name binds the signature to the model and version (see
        :func:`bound_subject_name`); the ``model_signing`` tool does not compare it,
        so the signature still verifies with ``model_signing verify key``.
        """
        return self._releases.signature_subject(info)

    def sig_key(self, info: VersionInfo) -> str:
        """Store key of the version's ``.sig`` sidecar."""
        return self._releases.sig_key(info)

    def sign(self, ref: str, key_path: str | os.PathLike[str], *, passphrase: bytes | None = None,
             actor: str | None = None) -> dict[str, Any]:
        """Sign a version: an OpenSSF model-signing bundle beside it plus a provenance signature.

        The ``.sig`` sidecar verifies with ``model_signing verify key`` on the version's
        file or folder. The provenance statement (version digest, training-data digest,
        metrics) is signed with the same key and kept in the ``sign`` event.

        Raises:
            NotFound: no such version.
            InvalidInput: the key cannot be read.
        """
        return self._releases.sign(ref, key_path, passphrase=passphrase, actor=actor)

    def adopt_signature(self, ref: str, bundle: bytes, *, actor: str | None = None) -> dict[str, Any]:
        """Take a signature made elsewhere (``model_signing sign key``) as the version's ``.sig``.

        The bundle must verify, with a key trusted for the model, against exactly the
        version's files, and name this version or its file/folder; the ``sign`` event
        then records it (without a provenance statement: the hub never held the key).
        A ``.sig`` put beside a version without this is not trusted.

        Raises:
            NotFound: no such version.
            SignatureError: the bundle does not verify with a trusted key, or names
                another version.
        """
        return self._releases.adopt_signature(ref, bundle, actor=actor)

    def verify_signature(self, info: VersionInfo, *, ts: TrustStore | None = None) -> str:
        """Check the version's ``.sig`` against the keys trusted for its model; returns the key id.

        Raises:
            SignatureError: unsigned, tampered, or signed by no trusted key.
        """
        return self._releases.verify_signature(info, ts=ts)

    def check_trust(self, info: VersionInfo, *, mode: str | None = None) -> str:
        """Apply the trust policy to a version about to be opened; returns the mode applied.

        Raises:
            SignatureError: the policy (mode ``enforce``) is not met.
        """
        return self._releases.check_trust(info, mode=mode)

    def check_gates(self, ref: str, *, to: str) -> list[GateResult]:
        """Evaluate the promotion gates configured for alias ``to``."""
        return self._releases.check_gates(ref, to=to)

    def promote(self, ref: str, *, to: str = "production", force: bool = False,
                expect: str | None = None, actor: str | None = None,
                key: str | os.PathLike[str] | None = None,
                passphrase: bytes | None = None) -> list[GateResult]:
        """Move alias ``to`` to ``ref`` if every gate passes (or ``force``, recorded as such).

        With ``key`` (a release key PEM), the move is also published to TUF clients: the
        key's release role re-signs the model's ``aliases.json``. That is checked before
        anything moves; without a key (or forced alone) TUF clients see no change.

        Raises:
            GateFailed: a gate failed and ``force`` is not set.
            SignatureError: ``key`` has no TUF role for the model, or ``ref`` is not a
                release it published.
            NotFound: ``key`` is given and the hub has no TUF repository.
        """
        if key is None:
            return self._lifecycle.promote(ref, to=to, force=force, expect=expect, actor=actor)
        rel = self._local_releases("promote --key")
        from sentenialx.hub.signing import load_private_key

        priv = load_private_key(Path(key), passphrase=passphrase)
        info = self.resolve(ref)
        rel.check_alias_publishable(info, priv)
        results = self._lifecycle.promote(info.ref, to=to, force=force, expect=expect,
                                          actor=actor)
        rel.publish_alias(info, to, priv)
        return results

    # -- TUF (the repository side; see sentenialx.hub.tuf_repo) ----------------------------
    def tuf_repository(self) -> TufRepository:
        """This hub's TUF repository (``exists`` is False before ``tuf init``).

        Raises:
            InvalidInput: the hub is served (its repository is on its host).
        """
        return self._local_releases("tuf").tuf_repository()

    def tuf_init(self, *, root_keys: Sequence[str | os.PathLike[str]], threshold: int = 1,
                 targets_key: str | os.PathLike[str], online_dir: str | os.PathLike[str] | None = None,
                 expiry: dict[str, timedelta] | None = None, passphrase: bytes | None = None
                 ) -> dict[str, Any]:
        """Create the hub's TUF repository (``sentenialx tuf init``).

        ``root_keys`` and ``targets_key`` are offline private key PEMs (``keys generate``);
        they sign root v1 and targets v1 and are not kept. New snapshot and timestamp keys
        go to ``online_dir`` (default ``~/.config/sentenialx/tuf-online/<hub id>``), outside
        the hub. ``targets`` delegates each model pattern of the trust policy to the
        release keys trusted for it.

        Raises:
            AlreadyExists: the hub has a TUF repository.
            InvalidInput: a key cannot be read, the threshold is out of range, or the online
                folder is inside the hub.
        """
        from sentenialx.hub.signing import load_private_key

        rel = self._local_releases("tuf init")
        roots = [load_private_key(Path(k), passphrase=passphrase) for k in root_keys]
        tkey = load_private_key(Path(targets_key), passphrase=passphrase)
        return rel.tuf_init(root_keys=roots, threshold=threshold, targets_key=tkey,
                            online_dir=Path(online_dir) if online_dir else None, expiry=expiry)

    def tuf_delegate(self, targets_key: str | os.PathLike[str], *,
                     passphrase: bytes | None = None) -> list[str]:
        """Re-sign TUF ``targets`` from the trust policy (after ``keys trust`` / ``revoke``).

        Raises:
            NotFound: no TUF repository.
            SignatureError: not the hub's targets key.
        """
        from sentenialx.hub.signing import load_private_key

        rel = self._local_releases("tuf delegate")
        return rel.tuf_delegate(load_private_key(Path(targets_key), passphrase=passphrase))

    def tuf_rotate(self, *, old_keys: Sequence[str | os.PathLike[str]],
                   new_keys: Sequence[str | os.PathLike[str]], threshold: int | None = None,
                   passphrase: bytes | None = None,
                   new_online_dir: str | os.PathLike[str] | None = None) -> int:
        """Write the next TUF root with ``new_keys``, signed by the old and the new threshold.

        ``new_online_dir`` also replaces the snapshot and timestamp keys with new ones
        made there (the server is then told with ``serve --tuf-online-keys``).

        Raises:
            SignatureError: a threshold is not met (nothing is written).
        """
        from sentenialx.hub.signing import load_private_key

        repo = self.tuf_repository()
        return repo.rotate_root(
            old_keys=[load_private_key(Path(k), passphrase=passphrase) for k in old_keys],
            new_keys=[load_private_key(Path(k), passphrase=passphrase) for k in new_keys],
            threshold=threshold, new_online_dir=Path(new_online_dir) if new_online_dir else None)

    def _local_releases(self, verb: str) -> Releases:
        if not isinstance(self._releases, Releases):
            from sentenialx.hub.transport.http import local_only

            raise local_only(verb, self.url)
        return self._releases

    def tuf_metadata(self, name: str, *, online_keys: str | os.PathLike[str] | None = None
                     ) -> bytes:
        """One TUF metadata file by its URL name, refreshing snapshot/timestamp first if due.

        With the online keys (``online_keys`` or the default folder), a request for
        ``timestamp.json`` re-signs snapshot and timestamp when a role changed or half
        their period is gone, so the server keeps them fresh without a timer.

        Raises:
            NotFound: no TUF repository, or no such metadata file.
        """
        import logging

        repo = self.tuf_repository()
        if not repo.exists:
            raise NotFound(f"{self.root} publishes no TUF repository", what="tuf repository")
        if name == "timestamp.json":
            from sentenialx.hub.errors import HubError

            try:
                keys = repo.load_online_keys(Path(online_keys) if online_keys else None)
                if keys is not None:
                    repo.refresh_online(keys)
            except (HubError, OSError) as exc:
                # Clients then see the last signed metadata and refuse it once it expires.
                logging.getLogger("sentenialx.tuf").warning("tuf: timestamp not refreshed: %s",
                                                            exc)
        return repo.metadata_bytes(name)

    def tuf_target(self, path: str, sha256: str) -> tuple[FileEntry, int, Any]:
        """A published TUF target's entry, stored size and byte opener (bytes as stored).

        The target must be in the newest release metadata with this sha256; its bytes
        come from where the hub keeps them (the blob store for release files and
        signatures, ``tuf/targets`` for documents), never copied. Clients check them.

        Raises:
            NotFound: no published target has this path and sha256.
        """
        from sentenialx.hub._read import stored_bytes

        repo = self.tuf_repository()
        tf = repo.find_target(path) if repo.exists else None
        if tf is None or tf.hashes.get("sha256") != sha256:
            raise NotFound(f"no published TUF target {path[:200]} with sha256 {sha256[:12]}",
                           what="tuf target", name=path[:200])
        entry = FileEntry(path, int(tf.length), sha256, "other")
        kind = (tf.custom or {}).get("kind")
        if kind in ("aliases", "version"):
            doc = repo.doc_path(path, sha256).relative_to(self.root).as_posix()
            size, opener = stored_bytes(self.local, doc)
            return entry, size, opener
        model, _, rest = path.partition("/")
        if kind == "signature":
            info = self.index.get_version(model, rest.removesuffix(".sig"))
            size, opener = stored_bytes(self.store, self.sig_key(info))
            return entry, size, opener
        version, _, file = rest.partition("/")
        info = self.index.get_version(model, version)
        stored = info.manifest.by_path().get(file)
        if stored is None:
            raise NotFound(f"{path[:200]} is not a file of {info.ref}", what="tuf target")
        size, opener = self.byte_source(info, stored)
        return entry, size, opener


def _is_local_url(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str, root: Path) -> Path:
    p = Path(url.removeprefix("file://"))
    return p if p.is_absolute() else root / p


__all__ = ["DEFAULT_ROOT", "ROOT_FILES", "FsckReport", "GcReport", "Hub", "VerifyReport",
           "default_actor", "utcnow"]
