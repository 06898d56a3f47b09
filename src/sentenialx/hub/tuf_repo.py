"""A hub's TUF repository (python-tuf Metadata API): what edge hosts that trust no server verify.

Layout (in the hub folder; no private key is ever here)::

    tuf/config.json                         hub id and each role's expiry period
    tuf/metadata/<N>.root.json              every root version (clients walk them in order)
    tuf/metadata/<N>.targets.json           top-level targets: delegations only (offline key)
    tuf/metadata/<N>.release-<p>.json       releases of models matching pattern <p> (release keys)
    tuf/metadata/<N>.snapshot.json          online key
    tuf/metadata/timestamp.json             online key
    tuf/targets/<model>/<sha256>.<name>     the small documents: <version>.json, aliases.json

Consistent snapshots are on, so every file but ``timestamp.json`` is written once
under a new name and never replaced. Target paths:

- ``<model>/<version>/<file path>``: each file of a published release (its bytes are
  served from the blob store by the sha256 in the URL; nothing is copied here);
- ``<model>/<version>.json``: the release's version record (files, metadata, digest);
- ``<model>/<version>.sig``: its OpenSSF model-signing bundle (the ``.sig`` sidecar);
- ``<model>/aliases.json``: ``{"aliases": {alias: version}, "versions": [...]}``.

Keys: ``root`` (threshold of offline keys) and ``targets`` (offline) are given by the
operator; ``snapshot`` and ``timestamp`` are online keys kept outside the hub, in
:func:`online_keys_dir`. ``targets`` delegates, for each model pattern the trust
policy names, one role to the release keys trusted for it; ``models sign`` and
``models promote --key`` re-sign that role with the release key. The server alone
holds only the online keys, so it can refresh ``snapshot`` and ``timestamp`` and
nothing else: what a client resolves and downloads was signed by a release key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentenialx.hub.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    SignatureError,
    require,
)
from sentenialx.hub.manifest import canonical_json
from sentenialx.hub.refs import Version

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec
    from tuf.api.metadata import Metadata, TargetFile, Targets

    from sentenialx.hub.trust import TrustedKey
    from sentenialx.hub.values import VersionInfo

TUF_DIR = "tuf"
ONLINE_KEYS_ENV = "SENTENIALX_TUF_ONLINE_KEYS"
ONLINE_ROLES = ("snapshot", "timestamp")
DEFAULT_EXPIRY: dict[str, timedelta] = {
    "root": timedelta(days=365), "targets": timedelta(days=365),
    "release": timedelta(days=365), "snapshot": timedelta(days=7),
    "timestamp": timedelta(days=1),
}
"""How long each role's metadata is valid once signed (``release`` = the delegated roles)."""
MAX_DEPTH = 16
"""Deepest target path a release role covers (a folder version's nested files)."""
_META_NAME = re.compile(r"^(?:([1-9][0-9]{0,9})\.)?(root|targets|snapshot|timestamp"
                        r"|release-[a-z0-9][a-z0-9._-]{0,79})\.json$")
_PLAIN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _tuf() -> Any:
    require("tuf.api.metadata", "tuf")
    import tuf.api.metadata as m

    return m


def now() -> datetime:
    """UTC now without microseconds (TUF's expiry format)."""
    return datetime.now(UTC).replace(microsecond=0)


def online_keys_dir(hub_id: str) -> Path:
    """Where a hub's online (snapshot, timestamp) keys live by default, outside the hub.

    ``$SENTENIALX_TUF_ONLINE_KEYS`` overrides it; otherwise
    ``$XDG_CONFIG_HOME/sentenialx/tuf-online/<hub id>`` (``~/.config/...``).
    """
    env = os.environ.get(ONLINE_KEYS_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sentenialx" / "tuf-online" / hub_id


def role_for_pattern(pattern: str) -> str:
    """The delegated role name of a model pattern: ``release-distill``, ``release-all`` for ``*``."""
    if pattern == "*":
        return "release-all"
    if _PLAIN.fullmatch(pattern):
        return f"release-{pattern}"
    return "release-p" + hashlib.sha256(pattern.encode()).hexdigest()[:16]


def path_patterns(pattern: str) -> list[str]:
    """TUF path patterns for every target of models matching ``pattern`` (one per depth)."""
    return ["/".join([pattern] + ["*"] * depth) for depth in range(1, MAX_DEPTH + 1)]


def release_doc(info: VersionInfo) -> bytes:
    """The ``<model>/<version>.json`` target: the version record a client resolves to."""
    d = info.to_dict()
    d["revoked"], d["revoke_reason"] = False, None
    return canonical_json(d)


def tuf_key(public_key: Any) -> Any:
    """A cryptography public key as a securesystemslib key (its TUF key id included)."""
    require("securesystemslib", "tuf")
    from securesystemslib.signer import SSlibKey

    return SSlibKey.from_crypto(public_key)


def signer_for(private_key: ec.EllipticCurvePrivateKey) -> Any:
    """A securesystemslib signer for a P-256 private key PEM loaded by :mod:`signing`."""
    require("securesystemslib", "tuf")
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(private_key)


@dataclass(frozen=True, slots=True)
class RoleStatus:
    """One role as ``tuf status`` shows it."""

    role: str
    version: int
    expires: str
    threshold: int
    keys: tuple[str, ...]
    paths: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"role": self.role, "version": self.version, "expires": self.expires,
                "threshold": self.threshold, "keys": list(self.keys), "paths": list(self.paths)}


class TufRepository:
    """The TUF metadata of one hub folder; every write goes through :meth:`_locked`."""

    def __init__(self, hub_root: Path) -> None:
        self.root = Path(hub_root) / TUF_DIR
        self.metadata = self.root / "metadata"
        self.targets = self.root / "targets"

    # -- state ------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        """True once ``tuf init`` made the repository."""
        return (self.metadata / "1.root.json").is_file()

    def _need(self) -> None:
        if not self.exists:
            raise NotFound(f"{self.root.parent} has no TUF repository; create one with"
                           " `sentenialx tuf init`", what="tuf repository")

    def config(self) -> dict[str, Any]:
        """``tuf/config.json``: the hub id and expiry periods (seconds)."""
        try:
            data: dict[str, Any] = json.loads((self.root / "config.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"{self.root / 'config.json'} is missing; run `sentenialx tuf init`",
                           what="tuf config") from None
        return data

    def expiry(self, role: str) -> timedelta:
        """How long ``role``'s metadata is valid once signed."""
        kind = "release" if role.startswith("release-") else role
        secs = self.config().get("expiry", {}).get(kind)
        return timedelta(seconds=float(secs)) if secs else DEFAULT_EXPIRY[kind]

    def online_dir(self) -> Path:
        """The default folder of this hub's online keys (see :func:`online_keys_dir`)."""
        return online_keys_dir(str(self.config()["hub_id"]))

    def latest_version(self, role: str) -> int:
        """The newest version of a versioned role on disk (0: none)."""
        best = 0
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.metadata):
                m = _META_NAME.fullmatch(name)
                if m and m.group(1) and m.group(2) == role:
                    best = max(best, int(m.group(1)))
        return best

    def load(self, role: str, version: int | None = None) -> Metadata[Any]:
        """The newest (or the given) version of ``role``'s metadata.

        Raises:
            NotFound: there is none.
        """
        m = _tuf()
        if role == "timestamp":
            path = self.metadata / "timestamp.json"
        else:
            v = version or self.latest_version(role)
            path = self.metadata / f"{v}.{role}.json"
        try:
            return m.Metadata.from_bytes(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"TUF metadata {path.name} does not exist", what="tuf metadata",
                           name=path.name) from None

    def metadata_bytes(self, name: str) -> bytes:
        """The bytes of one metadata file by its URL name (``3.root.json``, ``timestamp.json``).

        Raises:
            NotFound: the name is not a metadata file name, or no such file exists.
        """
        m = _META_NAME.fullmatch(name)
        if not m or (m.group(2) == "timestamp") == bool(m.group(1)):
            raise NotFound(f"{name[:100]!r} is not a TUF metadata file", what="tuf metadata",
                           name=name[:100])
        try:
            return (self.metadata / name).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"TUF metadata {name} does not exist", what="tuf metadata",
                           name=name) from None

    def root_bytes(self) -> bytes:
        """The newest ``root.json``: what a client is given to trust first."""
        self._need()
        return self.metadata_bytes(f"{self.latest_version('root')}.root.json")

    def verified(self, role: str) -> Metadata[Any]:
        """The newest ``targets`` or release role metadata, checked against its delegator.

        A writer builds the next version on this one, so a file someone put in the
        metadata folder without the keys must never be re-signed into trust.

        Raises:
            SignatureError: the file on disk is not signed by the keys that delegate it.
        """
        from tuf.api.exceptions import UnsignedMetadataError

        md = self.load(role)
        try:
            if role == "targets":
                self.load("root").verify_delegate("targets", md)
            else:
                self.load("targets").verify_delegate(role, md)
        except (UnsignedMetadataError, ValueError) as exc:
            raise SignatureError(f"{self.metadata / f'{md.signed.version}.{role}.json'} is not"
                                 f" signed by the keys that delegate {role} ({exc}): it was put"
                                 " there without them; remove it before publishing") from None
        return md

    def release_roles(self) -> list[tuple[str, Any]]:
        """``(role name, DelegatedRole)`` of the top-level targets, in delegation order."""
        self._need()
        t = self.load("targets").signed
        return list(t.delegations.roles.items()) if t.delegations and t.delegations.roles else []

    def find_target(self, path: str) -> TargetFile | None:
        """The target ``path`` as the newest release metadata lists it (first role that has it)."""
        for name, role in self.release_roles():
            if not role.is_delegated_path(path) or not self.latest_version(name):
                continue
            tf = self.load(name).signed.targets.get(path)
            if tf is not None:
                return tf
        return None

    def doc_path(self, path: str, sha256: str) -> Path:
        """Where a document target's bytes live (``tuf/targets/<model>/<sha>.<name>``)."""
        d, _, base = path.rpartition("/")
        return self.targets / d / f"{sha256}.{base}"

    # -- writing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Read-modify-write of role versions: two writers would both pick version N+1.
        # The lock only serialises them; the no-replace link in _write_new would refuse
        # the loser anyway, so correctness does not depend on it.
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _write_role(self, role: str, md: Metadata[Any]) -> Path:
        from tuf.api.serialization.json import JSONSerializer

        data = md.to_bytes(JSONSerializer(compact=False))
        self.metadata.mkdir(parents=True, exist_ok=True)
        dest = self.metadata / f"{md.signed.version}.{role}.json"
        _write_file(dest, data, replace=False)
        return dest

    def _write_doc(self, path: str, data: bytes) -> Any:
        m = _tuf()
        sha = hashlib.sha256(data).hexdigest()
        dest = self.doc_path(path, sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            _write_file(dest, data, replace=False)
        return m.TargetFile(len(data), {"sha256": sha}, path)

    def init(self, *, hub_id: str, root_keys: Sequence[ec.EllipticCurvePrivateKey],
             threshold: int, targets_key: ec.EllipticCurvePrivateKey,
             trusted: Sequence[TrustedKey], online_dir: Path,
             expiry: dict[str, timedelta] | None = None) -> dict[str, Any]:
        """Create the repository: root v1, targets v1 (delegations), online keys, snapshot, timestamp.

        Raises:
            AlreadyExists: the hub has a TUF repository already.
            InvalidInput: fewer root keys than the threshold, a bad expiry, a key reused
                for two roles, or the online key folder is inside the hub.
        """
        m = _tuf()
        from sentenialx.hub.signing import load_private_key, write_private_key

        if self.exists:
            raise AlreadyExists(f"{self.root} already holds a TUF repository; rotate its root"
                                " keys with `sentenialx tuf rotate`")
        if threshold < 1 or threshold > len(root_keys):
            raise InvalidInput(f"--threshold {threshold} needs between 1 and {len(root_keys)}"
                               " (the number of --root-key) signatures")
        online_dir = Path(online_dir).resolve()
        if online_dir == self.root.parent.resolve() or self.root.parent.resolve() in \
                online_dir.parents:
            raise InvalidInput(f"online keys folder {online_dir} is inside the hub folder; keep"
                               " private keys outside it")
        periods = dict(DEFAULT_EXPIRY, **(expiry or {}))
        for role, p in periods.items():
            if role not in DEFAULT_EXPIRY or p <= timedelta(0):
                raise InvalidInput(f"expiry {role}={p}: roles are {', '.join(DEFAULT_EXPIRY)},"
                                   " periods positive")
        online: dict[str, Any] = {}
        for role in ONLINE_ROLES:
            pem = online_dir / f"{role}.pem"
            if pem.exists():
                online[role] = load_private_key(pem)
            else:
                from cryptography.hazmat.primitives.asymmetric import ec as _ec

                key = _ec.generate_private_key(_ec.SECP256R1())
                write_private_key(key, pem)
                online[role] = key
        ids = [tuf_key(k.public_key()).keyid for k in [*root_keys, targets_key, *online.values()]]
        if len(set(ids)) != len(ids):
            raise InvalidInput("the same key is given for two roles (or twice as a root key);"
                               " give each role its own key")
        with self._locked():
            self.root.mkdir(parents=True, exist_ok=True)
            _write_file(self.root / "config.json", json.dumps(
                {"hub_id": hub_id, "expiry": {r: p.total_seconds() for r, p in periods.items()}},
                indent=2, sort_keys=True).encode() + b"\n", replace=True)
            t = now()
            root = m.Root(expires=t + periods["root"], consistent_snapshot=True)
            for k in root_keys:
                root.add_key(tuf_key(k.public_key()), "root")
            root.roles["root"].threshold = threshold
            root.add_key(tuf_key(targets_key.public_key()), "targets")
            for role, k in online.items():
                root.add_key(tuf_key(k.public_key()), role)
            root_md = m.Metadata(root)
            for k in root_keys:
                root_md.sign(signer_for(k), append=True)
            self._write_role("root", root_md)
            targets = m.Metadata(m.Targets(expires=t + periods["targets"]))
            targets.signed.delegations = _delegations(trusted)
            targets.sign(signer_for(targets_key))
            self._write_role("targets", targets)
            self._refresh_online_locked(online, force=True)
        return {"root": str(self.metadata / "1.root.json"), "online_keys": str(online_dir),
                "roles": [name for name, _ in self.release_roles()]}

    def delegate(self, *, targets_key: ec.EllipticCurvePrivateKey,
                 trusted: Sequence[TrustedKey], online: dict[str, Any] | None = None
                 ) -> list[str]:
        """Re-sign ``targets`` with delegations from the trust policy's release keys now.

        Raises:
            SignatureError: ``targets_key`` is not the targets key root names.
        """
        self._need()
        with self._locked():
            root = self.load("root").signed
            tkey = tuf_key(targets_key.public_key())
            if tkey.keyid not in root.roles["targets"].keyids:
                raise SignatureError("that is not the targets key this hub's TUF root names;"
                                     " give the offline targets key")
            md = self.verified("targets")
            md.signed.version += 1
            md.signed.expires = now() + self.expiry("targets")
            md.signed.delegations = _delegations(trusted)
            md.signatures.clear()
            md.sign(signer_for(targets_key))
            self._write_role("targets", md)
            if online:
                self._refresh_online_locked(online)
        return [name for name, _ in self.release_roles()]

    def rotate_root(self, *, old_keys: Sequence[ec.EllipticCurvePrivateKey],
                    new_keys: Sequence[ec.EllipticCurvePrivateKey],
                    threshold: int | None = None, new_online_dir: Path | None = None) -> int:
        """Write root N+1 with ``new_keys`` as its root keys, signed by the old and new thresholds.

        With ``new_online_dir``, new snapshot and timestamp keys are made there and root
        N+1 names them instead of the old ones (after a server compromise); snapshot and
        timestamp are re-signed with them at once, and the server must be pointed at
        the new folder (``serve --tuf-online-keys``).

        Raises:
            SignatureError: the old keys do not reach the current root threshold, or the
                new ones do not reach the new threshold (nothing is written).
            InvalidInput: no new keys, or a threshold above their number.
        """
        self._need()
        m = _tuf()
        from tuf.api.exceptions import UnsignedMetadataError

        if not new_keys:
            raise InvalidInput("give at least one --new-root-key")
        want = threshold or min(len(new_keys), self.load("root").signed.roles["root"].threshold)
        if want < 1 or want > len(new_keys):
            raise InvalidInput(f"--threshold {want} needs between 1 and {len(new_keys)} new keys")
        online: dict[str, Any] | None = None
        if new_online_dir is not None:
            online = self._new_online_keys(Path(new_online_dir))
        with self._locked():
            cur = self.load("root")
            new = m.Metadata.from_bytes(cur.to_bytes())
            r = new.signed
            for kid in list(r.roles["root"].keyids):
                r.revoke_key(kid, "root")
            for k in new_keys:
                r.add_key(tuf_key(k.public_key()), "root")
            for role, key in (online or {}).items():
                for kid in list(r.roles[role].keyids):
                    r.revoke_key(kid, role)
                r.add_key(tuf_key(key.public_key()), role)
            r.roles["root"].threshold = want
            r.version += 1
            r.expires = now() + self.expiry("root")
            new.signatures.clear()
            seen: set[str] = set()
            for k in [*old_keys, *new_keys]:
                kid = tuf_key(k.public_key()).keyid
                if kid not in seen:
                    seen.add(kid)
                    new.sign(signer_for(k), append=True)
            try:
                cur.verify_delegate("root", new)
            except UnsignedMetadataError:
                have = len(seen & set(cur.signed.roles["root"].keyids))
                raise SignatureError(
                    f"below threshold: the old root keys given sign {have} of the"
                    f" {cur.signed.roles['root'].threshold} signatures root"
                    f" v{cur.signed.version} needs; nothing was written") from None
            new.verify_delegate("root", new)
            self._write_role("root", new)
            if online is not None:
                self._refresh_online_locked(online, force=True)
            return int(r.version)

    def _new_online_keys(self, folder: Path) -> dict[str, Any]:
        """Fresh snapshot and timestamp keys written to ``folder`` (outside the hub).

        Raises:
            InvalidInput: the folder is inside the hub.
            AlreadyExists: a key file is already there.
        """
        from cryptography.hazmat.primitives.asymmetric import ec as _ec

        from sentenialx.hub.signing import write_private_key

        folder = folder.resolve()
        hub = self.root.parent.resolve()
        if folder == hub or hub in folder.parents:
            raise InvalidInput(f"online keys folder {folder} is inside the hub folder; keep"
                               " private keys outside it")
        for role in ONLINE_ROLES:
            if (folder / f"{role}.pem").exists():
                raise AlreadyExists(f"{folder / (role + '.pem')} exists; new online keys go to"
                                    " a new folder")
        keys = {role: _ec.generate_private_key(_ec.SECP256R1()) for role in ONLINE_ROLES}
        for role, key in keys.items():
            write_private_key(key, folder / f"{role}.pem")
        return keys

    def publish(self, model: str, signer_key: ec.EllipticCurvePrivateKey,
                change: Callable[[dict[str, Any], Targets], None],
                online: dict[str, Any] | None) -> str:
        """Re-sign the release role ``signer_key`` holds for ``model`` after ``change``.

        ``change(aliases_doc, targets)`` edits the role's targets and the model's
        ``aliases.json`` document in place. Returns the role name.

        Raises:
            SignatureError: no release role for ``model`` delegates to this key.
        """
        self._need()
        m = _tuf()
        with self._locked():
            probe = f"{model}/aliases.json"
            role = self.role_of(model, signer_key)
            if self.latest_version(role):
                md = self.verified(role)
                md.signed.version += 1
            else:
                md = m.Metadata(m.Targets(version=1, expires=now()))
            t = md.signed
            doc = {"model": model, "aliases": {}, "versions": []}
            old = t.targets.get(probe)
            if old is not None:
                doc = json.loads(self.doc_path(probe, old.hashes["sha256"]).read_bytes())
            change(doc, t)
            doc["versions"] = sorted(set(doc["versions"]), key=Version.parse)
            t.targets[probe] = self._write_doc(probe, canonical_json(doc))
            t.targets[probe].unrecognized_fields["custom"] = {"kind": "aliases"}
            t.expires = now() + self.expiry(role)
            md.signatures.clear()
            md.sign(signer_for(signer_key))
            self._write_role(role, md)
            if online:
                self._refresh_online_locked(online)
            return role

    def role_of(self, model: str, signer_key: ec.EllipticCurvePrivateKey) -> str:
        """The release role that delegates ``model`` to this key (first in delegation order).

        Raises:
            SignatureError: no release role for ``model`` delegates to this key.
        """
        kid = tuf_key(signer_key.public_key()).keyid
        probe = f"{model}/aliases.json"
        role = next((name for name, r in self.release_roles()
                     if r.is_delegated_path(probe) and kid in r.keyids), None)
        if role is None:
            raise SignatureError(
                f"the key is not one TUF delegates {model!r} releases to, so nothing was"
                " published; trust it for the model (`sentenialx keys trust`) and re-sign the"
                " delegations with `sentenialx tuf delegate --targets-key KEY`")
        return role

    def check_release(self, info: VersionInfo, signer_key: ec.EllipticCurvePrivateKey) -> str:
        """The role of this key that published ``info``; refuses otherwise.

        Raises:
            SignatureError: the key has no role for the model, or that role did not publish
                this version (with this digest).
        """
        role = self.role_of(info.model, signer_key)
        rec = None
        if self.latest_version(role):
            rec = self.verified(role).signed.targets.get(f"{info.model}/{info.version}.json")
        if rec is None or (rec.custom or {}).get("digest") != info.digest:
            raise SignatureError(f"{info.ref} is not a release published by this key's role"
                                 f" {role}; sign it first with `sentenialx models sign {info.ref}"
                                 " --key KEY`", version=info.ref)
        return role

    def add_release(self, info: VersionInfo, bundle: bytes, signer_key: ec.EllipticCurvePrivateKey,
                    *, online: dict[str, Any] | None) -> str:
        """Publish a signed version: its files, version record and bundle as targets."""
        m = _tuf()

        def change(doc: dict[str, Any], t: Targets) -> None:
            custom = {"digest": info.digest}
            for f in info.files:
                path = f"{info.model}/{info.version}/{f.path}"
                t.targets[path] = m.TargetFile(f.size, {"sha256": f.sha256}, path,
                                               {"custom": dict(custom, role=f.role)})
            rec = f"{info.model}/{info.version}.json"
            tf = self._write_doc(rec, release_doc(info))
            tf.unrecognized_fields["custom"] = dict(custom, kind="version")
            t.targets[rec] = tf
            sig = f"{info.model}/{info.version}.sig"
            t.targets[sig] = m.TargetFile(len(bundle), {"sha256": hashlib.sha256(bundle).hexdigest()},
                                          sig, {"custom": dict(custom, kind="signature")})
            doc["versions"] = [*doc["versions"], info.version]

        return self.publish(info.model, signer_key, change, online)

    def move_alias(self, info: VersionInfo, alias: str, signer_key: ec.EllipticCurvePrivateKey,
                   *, online: dict[str, Any] | None) -> str:
        """Publish ``alias`` -> ``info.version`` in the model's ``aliases.json``.

        Raises:
            SignatureError: the version is not a release this key's role published.
        """
        self.check_release(info, signer_key)

        def change(doc: dict[str, Any], t: Targets) -> None:
            doc["aliases"] = dict(doc["aliases"], **{alias: info.version})

        return self.publish(info.model, signer_key, change, online)

    # -- online roles -------------------------------------------------------------------
    def load_online_keys(self, folder: Path | None = None) -> dict[str, Any] | None:
        """The snapshot and timestamp keys from ``folder`` (default :meth:`online_dir`), or None.

        Raises:
            SignatureError: a key there is not the one root names for its role.
        """
        from sentenialx.hub.signing import load_private_key

        folder = Path(folder) if folder else self.online_dir()
        if not all((folder / f"{r}.pem").is_file() for r in ONLINE_ROLES):
            return None
        keys = {r: load_private_key(folder / f"{r}.pem") for r in ONLINE_ROLES}
        root = self.load("root").signed
        for r, k in keys.items():
            if tuf_key(k.public_key()).keyid not in root.roles[r].keyids:
                raise SignatureError(f"{folder / (r + '.pem')} is not the {r} key this hub's TUF"
                                     " root names")
        return keys

    def refresh_online(self, online: dict[str, Any], *, force: bool = False) -> bool:
        """Re-sign snapshot and timestamp when a role changed or half their period is gone.

        Returns True when anything was written.
        """
        self._need()
        with self._locked():
            return self._refresh_online_locked(online, force=force)

    def _refresh_online_locked(self, online: dict[str, Any], *, force: bool = False) -> bool:
        m = _tuf()
        t = now()
        meta = {"targets.json": m.MetaFile(version=self.latest_version("targets"))}
        for name, _ in self.release_roles():
            v = self.latest_version(name)
            if v:
                meta[f"{name}.json"] = m.MetaFile(version=v)
        snap_v = self.latest_version("snapshot")
        snap = self.load("snapshot").signed if snap_v else None
        wrote = False
        if force or snap is None or snap.meta != meta or \
                snap.expires - t < self.expiry("snapshot") / 2:
            md = m.Metadata(m.Snapshot(version=snap_v + 1, expires=t + self.expiry("snapshot"),
                                       meta=meta))
            md.sign(signer_for(online["snapshot"]))
            self._write_role("snapshot", md)
            snap_v, wrote = snap_v + 1, True
        ts_path = self.metadata / "timestamp.json"
        ts = m.Metadata.from_bytes(ts_path.read_bytes()).signed if ts_path.exists() else None
        if wrote or ts is None or ts.snapshot_meta.version != snap_v or \
                ts.expires - t < self.expiry("timestamp") / 2:
            md = m.Metadata(m.Timestamp(version=(ts.version if ts else 0) + 1,
                                        expires=t + self.expiry("timestamp"),
                                        snapshot_meta=m.MetaFile(version=snap_v)))
            md.sign(signer_for(online["timestamp"]))
            from tuf.api.serialization.json import JSONSerializer

            _write_file(ts_path, md.to_bytes(JSONSerializer(compact=False)), replace=True)
            wrote = True
        return wrote

    # -- status -------------------------------------------------------------------------
    def status(self) -> list[RoleStatus]:
        """Each role's version, expiry, threshold and key ids (top-level, then release roles)."""
        self._need()
        root = self.load("root").signed
        out = []
        for role in ("root", "targets", "snapshot", "timestamp"):
            s = self.load(role).signed
            r = root.roles[role]
            out.append(RoleStatus(role, int(s.version), s.expires.isoformat(), r.threshold,
                                  tuple(sorted(r.keyids))))
        for name, d in self.release_roles():
            v = self.latest_version(name)
            exp = self.load(name).signed.expires.isoformat() if v else "-"
            out.append(RoleStatus(name, v, exp, d.threshold, tuple(sorted(d.keyids)),
                                  (d.paths[0].rsplit("/", 1)[0],) if d.paths else ()))
        return out


def _delegations(trusted: Sequence[TrustedKey]) -> Any:
    """One release role per model pattern the policy trusts keys for, plain names first."""
    m = _tuf()
    from sentenialx.hub.signing import load_public_key

    by_pattern: dict[str, list[Any]] = {}
    for k in trusted:
        if k.revoked or not k.pem:
            continue
        for p in k.models:
            by_pattern.setdefault(p, []).append(tuf_key(load_public_key(k.pem)))
    keys: dict[str, Any] = {}
    roles: dict[str, Any] = {}

    def order(p: str) -> tuple[int, str]:
        return (2 if p == "*" else 1 if any(c in p for c in "*?[") else 0, p)

    for p in sorted(by_pattern, key=order):
        ids = []
        for key in by_pattern[p]:
            keys[key.keyid] = key
            if key.keyid not in ids:
                ids.append(key.keyid)
        name = role_for_pattern(p)
        roles[name] = m.DelegatedRole(name=name, keyids=ids, threshold=1, terminating=False,
                                      paths=path_patterns(p))
    return m.Delegations(keys=keys, roles=roles)


def _write_file(dest: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` at ``dest`` complete or not at all: temp + fsync, then rename or link.

    A versioned file is linked into place, which fails if the name exists: it is never
    replaced, whoever else is writing.
    """
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, dest)
        else:
            try:
                os.link(tmp, dest)
            except FileExistsError:
                raise AlreadyExists(f"{dest} exists already (another writer published first);"
                                    " try again") from None
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["DEFAULT_EXPIRY", "ONLINE_KEYS_ENV", "RoleStatus", "TufRepository", "now",
           "online_keys_dir", "path_patterns", "release_doc", "role_for_pattern"]
