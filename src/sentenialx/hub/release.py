"""Signed releases, the trust policy in force, and promotion gates: the Hub's release part.

Composed into :class:`~sentenialx.hub.hub.Hub` like the storage parts; the
storage parts ask it (through :class:`~sentenialx.hub._core.Trust`) whether a
version may be handed out and whether an alias move passes its gates.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentenialx.hub._core import Core, Part, default_actor, weights_entry
from sentenialx.hub._views import Views
from sentenialx.hub.errors import (
    InvalidInput,
    NotFound,
    SignatureError,
)
from sentenialx.hub.manifest import canonical_json
from sentenialx.hub.trust import GateResult, TrustStore
from sentenialx.hub.values import Problem, VersionInfo

if TYPE_CHECKING:
    from sentenialx.hub.events import Event
    from sentenialx.hub.index.sql import SqlIndex
    from sentenialx.hub.store.local import LocalStore
    from sentenialx.hub.tuf_repo import TufRepository

log = logging.getLogger("sentenialx.trust")
PROVENANCE_TYPE = "application/vnd.sentenialx.provenance+json"


class Releases(Part):
    """Signing, trust checks and promotion gates on top of the Hub's storage."""

    def __init__(self, core: Core, *, views: Views) -> None:
        super().__init__(core)
        self.views = views

    def is_gated(self, alias: str) -> bool:
        """True when ``alias`` has promotion gates, so every move of it must pass them."""
        return bool(self.trust_store().gates_for(alias))

    # -- policy ---------------------------------------------------------------------------
    def trust_store(self) -> TrustStore:
        """The hub's trust policy, checked against the history."""
        ts = TrustStore.load(self.root)
        last = self.index.last_event("trust")
        if last is not None and "policy" in last.payload:
            # The index (shared by every machine of a team hub) is the truth; the local
            # folder is a view. Bring a missing or stale view up to the recorded policy,
            # but never over a local edit: stale means "equal to an older recorded one".
            actual = ts.policy_sha256() if ts.exists else None
            if actual != last.payload.get("policy_sha256"):
                # On a hub with its own SQLite file, nobody else writes policies, so a
                # local policy equal to an older one is a rollback, reported below.
                shared = self.index.url != f"sqlite:///{self.root / 'registry.db'}"
                older = {e.payload.get("policy_sha256") for e in self.index.events()
                         if e.kind == "trust"} if shared else set()
                if actual is None or actual in older:
                    ts = self._materialise_trust(last.payload)
        if ts.exists:
            recorded = last.payload.get("policy_sha256") if last else None
            actual = ts.policy_sha256()
            if recorded != actual:
                raise SignatureError(
                    f"trust/policy.json (sha256 {actual[:12]}…) is not the policy the history"
                    f" recorded ({str(recorded)[:12]}…): it was edited outside sentenialx;"
                    " restore it or re-apply the change with `sentenialx keys`")
            # The recorded hash covers policy.json only, not trust/keys/<id>.pub: each hub
            # key file must be the key the policy names by that id, or a swapped file
            # would be trusted under the old id.
            from sentenialx.hub.signing import key_id, load_public_key

            for k in ts.keys():
                if k.source != "hub" or not k.pem:
                    continue
                try:
                    same = key_id(load_public_key(k.pem)) == k.key_id
                except (InvalidInput, SignatureError, ValueError):
                    same = False
                if not same:
                    raise SignatureError(
                        f"trust/keys/{k.key_id[:12]}….pub is not the key the policy trusts under"
                        " that id: it was replaced outside sentenialx; restore it or trust the"
                        " key again with `sentenialx keys trust PUB`")
        elif self.index.last_event("trust") is not None:
            # A deleted policy.json must not fall back to the defaults, which would drop
            # revocations, key scopes and stricter modes.
            raise SignatureError("trust/policy.json is missing although the history records trust"
                                 " changes: it was deleted outside sentenialx; restore it")
        return ts

    def _materialise_trust(self, payload: dict[str, Any]) -> TrustStore:
        """Write the policy and key files recorded in a trust event into the local folder."""
        ts = TrustStore(self.root / "trust", policy=payload["policy"])
        (ts.root / "keys").mkdir(parents=True, exist_ok=True)
        for kid, pem in payload.get("key_pems", {}).items():
            (ts.root / "keys" / f"{kid}.pub").write_text(pem)
        if ts.save() != payload.get("policy_sha256"):
            raise SignatureError("the trust policy recorded in the history does not match its"
                                 " recorded sha256; the history was altered")
        return TrustStore.load(self.root)

    def save_trust(self, ts: TrustStore, *, action: str, detail: dict[str, Any],
                   actor: str | None = None) -> str:
        """Write the policy and record the change as a ``trust`` event; returns its sha256."""

        sha = ts.save()
        pems = {k.key_id: k.pem.decode() for k in ts.keys() if k.source == "hub" and k.pem}
        self.index.append_event("trust", "", "", actor=actor or default_actor(),
                                payload=dict(detail, action=action, policy_sha256=sha,
                                             policy=ts.policy, key_pems=pems))
        self.views.write_registry_json()
        return sha

    # -- signing --------------------------------------------------------------------------
    def signature_subject(self, info: VersionInfo) -> tuple[str, list[tuple[str, str]]]:
        """The subject name and (path, sha256) resources an OpenSSF signature of ``info`` covers."""
        return bound_subject_name(info.model, info.version, self._file_name(info)), \
            self._signed_files(info)

    def _file_name(self, info: VersionInfo) -> str:
        return signed_name(info)

    def _signed_files(self, info: VersionInfo) -> list[tuple[str, str]]:
        return signed_files(info)

    def sig_key(self, info: VersionInfo) -> str:
        """Store key of the version's ``.sig`` sidecar."""
        return f"{info.model}/{info.stem}.sig"

    def sign(self, ref: str, key_path: str | os.PathLike[str], *, passphrase: bytes | None = None,
             actor: str | None = None) -> dict[str, Any]:
        """Sign a version: an OpenSSF model-signing bundle beside it plus a provenance signature."""
        from sentenialx.hub.signing import key_id, load_private_key, sign_files

        info = self.resolve(ref, include_revoked=True)
        priv = load_private_key(Path(key_path), passphrase=passphrase)
        kid = key_id(priv.public_key())
        name, files = self.signature_subject(info)
        bundle = sign_files(files, model_name=name, private_key=priv)
        self.store.put_small(self.sig_key(info), bundle)
        prov = self._provenance_statement(info)
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from sentenialx.hub.signing import pae

        sig = priv.sign(pae(PROVENANCE_TYPE, canonical_json(prov)), ec.ECDSA(hashes.SHA256()))
        payload = {"key_id": kid, "sig_sha256": hashlib.sha256(bundle).hexdigest(),
                   "provenance": prov, "provenance_sig": base64.b64encode(sig).decode()}
        self.index.append_event("sign", info.model, info.version, actor=actor or default_actor(),
                                payload=payload)
        self.views.write_registry_json()
        out = {"ref": info.ref, "key_id": kid, "sig": str(self.root / self.sig_key(info))}
        published = self._publish_release(info, bundle, priv)
        if published is not None:
            out["tuf"] = published
        return out

    # -- TUF publishing (see sentenialx.hub.tuf_repo) --------------------------------------
    def tuf_repository(self) -> TufRepository:
        """The hub's TUF repository (it may not exist yet: see ``exists``)."""
        from sentenialx.hub.tuf_repo import TufRepository

        return TufRepository(self.root)

    def tuf_init(self, *, root_keys: Sequence[Any], threshold: int, targets_key: Any,
                 online_dir: Path | None = None, expiry: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        """Create the hub's TUF repository, delegating to the release keys the policy trusts.

        Raises:
            AlreadyExists: it exists already.
            InvalidInput: see :meth:`TufRepository.init`.
        """
        from sentenialx.hub.tuf_repo import online_keys_dir

        hub_id = str(self.index.state()["hub_id"])
        repo = self.tuf_repository()
        out = repo.init(hub_id=hub_id, root_keys=root_keys, threshold=threshold,
                        targets_key=targets_key, trusted=self.trust_store().keys(),
                        online_dir=online_dir or online_keys_dir(hub_id), expiry=expiry)
        # Recorded like any trust change (the policy itself is unchanged).
        self.save_trust(self.trust_store(), action="tuf-init",
                        detail={"roles": out["roles"], "threshold": threshold})
        return out

    def tuf_delegate(self, targets_key: Any) -> list[str]:
        """Re-sign the TUF targets role with delegations from the trust policy as it is now.

        Raises:
            NotFound: no TUF repository.
            SignatureError: not the targets key.
        """
        repo = self.tuf_repository()
        return repo.delegate(targets_key=targets_key, trusted=self.trust_store().keys(),
                             online=self._online_keys(repo) if repo.exists else None)

    def _online_keys(self, repo: TufRepository) -> dict[str, Any] | None:
        # The publisher refreshes snapshot and timestamp when the online keys are on this
        # machine; otherwise the server does on the next metadata request.
        try:
            return repo.load_online_keys()
        except (SignatureError, InvalidInput, NotFound) as exc:
            log.warning("tuf: online keys not used (%s); the server refreshes snapshot and"
                        " timestamp", exc)
            return None

    def _publish_release(self, info: VersionInfo, bundle: bytes, priv: Any) -> str | None:
        """Publish a just-signed version to TUF clients; the role name, a note, or None (no TUF)."""
        repo = self.tuf_repository()
        if not repo.exists:
            return None
        try:
            role = repo.add_release(info, bundle, priv, online=self._online_keys(repo))
        except SignatureError as exc:
            log.warning("tuf: %s: %s", info.ref, exc)
            return f"not published: {exc}"
        return f"published in {role}"

    def check_alias_publishable(self, info: VersionInfo, priv: Any) -> None:
        """Refuse, before anything moves, an alias publication the key could not make.

        Raises:
            NotFound: the hub has no TUF repository.
            SignatureError: the key has no release role for the model, or ``info`` is not a
                release that role published.
        """
        repo = self.tuf_repository()
        if not repo.exists:
            raise NotFound(f"{self.root} has no TUF repository, so `--key` has nothing to"
                           " publish to; create one with `sentenialx tuf init`",
                           what="tuf repository")
        repo.check_release(info, priv)

    def publish_alias(self, info: VersionInfo, alias: str, priv: Any) -> str:
        """Publish ``alias`` -> ``info`` to TUF clients, signed by the release key ``priv``.

        Raises:
            SignatureError: see :meth:`check_alias_publishable`.
        """
        repo = self.tuf_repository()
        return repo.move_alias(info, alias, priv, online=self._online_keys(repo))

    def adopt_signature(self, ref: str, bundle: bytes, *, actor: str | None = None) -> dict[str, Any]:
        """Take a signature made elsewhere (``model_signing sign key``) as the version's ``.sig``."""
        from sentenialx.hub.signing import verify_bundle

        info = self.resolve(ref, include_revoked=True)
        trusted = self.trust_store().trusted_for(info.model)
        name, files = self.signature_subject(info)
        try:
            verified = verify_bundle(bundle, files=files, public_keys=trusted)
        except SignatureError as exc:
            raise SignatureError(f"{info.ref}: {exc}", version=info.ref,
                                 trusted_keys=tuple(trusted)) from None
        if verified.model_name not in (name, self._file_name(info)):
            raise SignatureError(f"{info.ref}: the signature was made for"
                                 f" {verified.model_name!r}, not for {name!r}; refusing",
                                 version=info.ref, trusted_keys=tuple(trusted))
        key = self.sig_key(info)
        self.store.put_small(key, bundle)
        self.index.append_event("sign", info.model, info.version, actor=actor or default_actor(),
                                payload={"key_id": verified.key_id, "adopted": True,
                                         "sig_sha256": hashlib.sha256(bundle).hexdigest()})
        self.views.write_registry_json()
        return {"ref": info.ref, "key_id": verified.key_id, "sig": str(self.root / key)}

    @staticmethod
    def _provenance_statement(info: VersionInfo) -> dict[str, Any]:
        return {"model": info.model, "version": info.version, "digest": info.digest,
                "data_digest": info.lineage.get("data_digest"),
                "parents": info.lineage.get("parents", []),
                "metrics": info.meta.get("metrics", {})}

    def verify_signature(self, info: VersionInfo, *, ts: TrustStore | None = None) -> str:
        """Check the version's ``.sig`` against the keys trusted for its model; returns the key id."""
        from sentenialx.hub.signing import bundle_key_ids, verify_bundle

        ts = ts or self.trust_store()
        trusted = ts.trusted_for(info.model)
        try:
            bundle = self.store.read_bytes(self.sig_key(info))
        except NotFound:
            raise SignatureError(
                f"{info.ref} is not signed; sign it with `sentenialx models sign {info.ref}"
                " --key KEY`", version=info.ref, trusted_keys=tuple(trusted)) from None
        found = tuple(bundle_key_ids(bundle))
        if not trusted:
            raise SignatureError(
                f"{info.ref}: no key is trusted for model {info.model!r} (signed by"
                f" {', '.join(k[:12] for k in found) or 'unknown'}); add one with"
                " `sentenialx keys trust PUB`", version=info.ref, found_keys=found)
        name, files = self.signature_subject(info)
        try:
            verified = verify_bundle(bundle, files=files, public_keys=trusted)
        except SignatureError as exc:
            raise SignatureError(
                f"{info.ref}: {exc} (signed by {', '.join(k[:12] for k in found) or 'unknown'};"
                f" trusted: {', '.join(k[:12] for k in trusted)})", version=info.ref,
                found_keys=found, trusted_keys=tuple(trusted)) from None
        # The bundle covers only file names and digests: the same bytes under another
        # version or model would pass. Bind it (DESIGN.md, read: "signatures bound to model
        # and version") by its subject name and by the history: a `sign` event of THIS
        # version must record THIS bundle, made by the key that verified it, with a
        # provenance statement naming this model, version and digest signed by that key.
        if verified.model_name not in (name, self._file_name(info)):
            raise SignatureError(
                f"{info.ref}: the signature was made for {verified.model_name!r}, not for"
                f" {name!r} (copied from another version or model?); sign it with"
                f" `sentenialx models sign {info.ref} --key KEY`", version=info.ref,
                found_keys=found, trusted_keys=tuple(trusted))
        why = recorded_signature(self.index.events(model=info.model), info,
                                 hashlib.sha256(bundle).hexdigest(), verified.key_id,
                                 trusted[verified.key_id])
        if why is not None:
            raise SignatureError(f"{info.ref}: {why}; sign it with `sentenialx models sign"
                                 f" {info.ref} --key KEY`", version=info.ref, found_keys=found,
                                 trusted_keys=tuple(trusted))
        return str(verified.key_id)

    def check_trust(self, info: VersionInfo, *, mode: str | None = None) -> str:
        """Apply the trust policy to a version about to be opened; returns the mode applied."""
        ts = self.trust_store()
        if mode is None:
            aliases = [a.alias for a in self.index.list_aliases(info.model)
                       if a.version == info.version]
            mode, why = ts.mode_for(info.model, aliases)
        else:
            why = "caller"
        if mode == "off":
            return mode
        try:
            self.verify_signature(info, ts=ts)
        except SignatureError as exc:
            if mode == "enforce":
                raise
            log.warning("trust (%s, warn): %s", why, exc)
        return mode

    # -- promotion ------------------------------------------------------------------------
    def check_gates(self, ref: str, *, to: str) -> list[GateResult]:
        """Evaluate the promotion gates configured for alias ``to``."""
        info = self.resolve(ref)
        ts = self.trust_store()
        gates = ts.gates_for(to)
        out: list[GateResult] = []
        metrics = info.meta.get("metrics", {})
        for name, lo in gates.get("min", {}).items():
            v = metrics.get(name)
            ok = isinstance(v, (int, float)) and v >= lo
            out.append(GateResult(f"metric:{name}", ok, f"{name} = {v} (needs >= {lo})"))
        for name, hi in gates.get("max", {}).items():
            v = metrics.get(name)
            ok = isinstance(v, (int, float)) and v <= hi
            out.append(GateResult(f"metric:{name}", ok, f"{name} = {v} (needs <= {hi})"))
        current = None
        try:
            cur_alias = self.index.get_alias(info.model, to)
            current = self.index.get_version(info.model, cur_alias.version)
        except NotFound:
            current = None
        for name in gates.get("not_above_current", []):
            v = metrics.get(name)
            if current is None:
                ok = isinstance(v, (int, float))
                out.append(GateResult(f"metric:{name}", ok, f"{name} = {v} (no current {to})"))
                continue
            c = current.meta.get("metrics", {}).get(name)
            ok = isinstance(v, (int, float)) and (not isinstance(c, (int, float)) or v <= c)
            out.append(GateResult(f"metric:{name}", ok,
                                  f"{name} = {v} (current {to} {current.version}: {c})"))
        signer = None
        if gates.get("signature"):
            try:
                signer = self.verify_signature(info, ts=ts)
                out.append(GateResult("signature", True, f"signed by trusted key {signer[:12]}"))
            except SignatureError as exc:
                out.append(GateResult("signature", False, str(exc)))
        if gates.get("provenance"):
            out.append(self._provenance_gate(info, ts))
        return out

    def _provenance_gate(self, info: VersionInfo, ts: TrustStore) -> GateResult:
        dd = info.lineage.get("data_digest")
        if not dd:
            return GateResult("provenance", False, "no training-data digest recorded"
                              " (register with --data-digest)")
        trusted = ts.trusted_for(info.model)
        want = canonical_json(self._provenance_statement(info))
        for ev in reversed(self.index.events(model=info.model)):
            if ev.kind != "sign" or ev.version != info.version:
                continue
            key = trusted.get(ev.payload.get("key_id", ""))
            if key is None or canonical_json(ev.payload.get("provenance")) != want:
                continue
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec

            from sentenialx.hub.signing import pae

            try:
                key.verify(base64.b64decode(ev.payload["provenance_sig"]),
                           pae(PROVENANCE_TYPE, want), ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError, KeyError):
                continue
            return GateResult("provenance", True, f"data digest {dd[:12]}… signed by"
                              f" {ev.payload['key_id'][:12]}")
        return GateResult("provenance", False, f"data digest {dd[:12]}… is recorded but not signed"
                          " by a trusted key (sign the version)")


def signed_name(info: VersionInfo) -> str:
    """The file or folder name an OpenSSF signature of ``info`` is made for."""
    return info.stem if info.layout == "dir" else str(weights_entry(info).path)


def signed_files(info: VersionInfo) -> list[tuple[str, str]]:
    """The ``(path, sha256)`` resources a signature of ``info`` covers: what loaders read."""
    if info.layout == "dir":
        prefix = info.stem + "/"
        return [(f.path[len(prefix):], f.sha256) for f in info.files
                if f.path.startswith(prefix)]
    return [(".", weights_entry(info).sha256)]


def bound_subject_name(model: str, version: str, file_name: str) -> str:
    """The subject name a hub signature carries: ``model@version:file`` (e.g.
    ``distill@1.2.0:threat_student_v1.2.0.onnx``).

    The ``model_signing`` tool records the file or folder name there and does not check
    it on verification, so carrying the model and version keeps the signature verifiable
    by the tool while tying it to one version. Signatures made before this (subject name
    = file name) are accepted only with the recorded ``sign`` event that binds them too.
    """
    return f"{model}@{version}:{file_name}"


def _provenance_ok(payload: dict[str, Any], info: VersionInfo, public_key: Any) -> bool:
    """True when the event's provenance names ``info`` and ``public_key`` signed it."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from sentenialx.hub.signing import pae

    prov = payload.get("provenance")
    if not isinstance(prov, dict) or (prov.get("model"), prov.get("version"),
                                      prov.get("digest")) != (info.model, info.version,
                                                              info.digest):
        return False
    try:
        public_key.verify(base64.b64decode(str(payload["provenance_sig"])),
                          pae(PROVENANCE_TYPE, canonical_json(prov)), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


def recorded_signature(events: Sequence[Event], info: VersionInfo, sig_sha256: str,
                       key_id: str, public_key: Any) -> str | None:
    """None when a ``sign`` event of ``info`` records this bundle and key; else why not.

    The event must name the version, record ``sig_sha256`` and ``key_id``, and carry a
    provenance statement for this model, version and digest that ``public_key`` signed;
    an event someone wrote into the index without the key fails the last test.

    Args:
        events: the model's events (other models' and versions' are skipped).
        info: the version whose ``.sig`` is being trusted.
        sig_sha256: sha256 of the ``.sig`` bytes.
        key_id: id of the key the bundle verified with.
        public_key: that key.
    """
    mine: list[Event] = []
    for e in sorted(events, key=lambda e: e.seq):
        if e.model != info.model or e.version != info.version:
            continue
        if e.kind == "delete":
            mine = []  # a version deleted and registered again is a new version
        elif e.kind == "sign":
            mine.append(e)
    if not mine:
        return ("no `sign` event of this version records its signature (copied from another"
                " version or model, or put there behind the hub's back)")
    same = [e for e in mine if e.payload.get("sig_sha256") == sig_sha256]
    if not same:
        return (f"its signature (sha256 {sig_sha256[:12]}…) is not the one the history recorded"
                f" ({', '.join(str(e.payload.get('sig_sha256'))[:12] + '…' for e in mine)})")
    for e in same:
        if e.payload.get("key_id") != key_id:
            continue
        # An adopted tool signature has no provenance (the hub never held the key); its
        # binding is the event alone, which only a pinned hub key vouches for.
        if e.payload.get("adopted") is True and "provenance" not in e.payload:
            return None
        if _provenance_ok(e.payload, info, public_key):
            return None
    return (f"the `sign` event recording its signature does not carry a provenance statement"
            f" for this version signed by key {key_id[:12]}… (the history was altered)")


def unrecorded_signatures(index: SqlIndex, store: LocalStore,
                          versions: Sequence[VersionInfo]) -> list[Problem]:
    """fsck: every ``.sig`` of ``versions`` that no ``sign`` event records, or records otherwise.

    Reports a ``signature`` problem for a ``.sig`` with no ``sign`` event for its version,
    and for one whose sha256 differs from every one its version's events recorded. (Whether
    the signature verifies with a trusted key is the trust policy's business, at read time.)

    Args:
        index: the hub's index (its events are read once).
        store: where the ``.sig`` sidecars live.
        versions: the versions to check.
    """
    recorded: dict[tuple[str, str], set[str]] = {}
    for e in index.events():
        if e.kind == "sign":
            recorded.setdefault((e.model, e.version), set()).add(str(e.payload.get("sig_sha256")))
        elif e.kind == "delete":
            recorded.pop((e.model, e.version), None)
    out: list[Problem] = []
    for v in versions:
        key = f"{v.model}/{v.stem}.sig"
        try:
            actual = hashlib.sha256(store.read_bytes(key)).hexdigest()
        except NotFound:
            continue
        want = recorded.get((v.model, v.version))
        if not want:
            out.append(Problem("signature", key, f"{key}: no `sign` event records a signature of"
                               f" {v.ref} (copied from another version, or put there behind the"
                               " hub's back); delete it or sign the version", v.model, v.version,
                               "", actual))
        elif actual not in want:
            out.append(Problem("signature", key, f"{key}: sha256 {actual[:12]}… is not the"
                               f" signature the history recorded for {v.ref}"
                               f" ({', '.join(w[:12] + '…' for w in sorted(want))})", v.model,
                               v.version, ",".join(sorted(want)), actual))
    return out
