"""Keys and OpenSSF model-signing signatures, readable by the real ``model_signing`` tool.

A signature is what ``model_signing sign key`` (model-signing 1.1.1) writes: a
Sigstore bundle (v0.3 JSON) holding a DSSE envelope whose payload is an in-toto
Statement v1 with predicate ``https://model_signing/signature/v1.0``. The
predicate lists every file of the model with its sha256 (``resources``) and how
the model was serialized (``serialization``, always the ``files`` method here).
The subject is the model's file or folder name with a sha256 over the raw
per-file digests. The envelope is signed with ECDSA P-256 / SHA-256 over the
DSSE pre-authentication encoding (PAE), and the bundle names the key by its
``hint``: the hex sha256 of the public key's SubjectPublicKeyInfo PEM.

So a signature made here verifies with::

    model_signing verify key MODEL --signature MODEL.sig --public_key key.pub

and one made by the tool verifies with :func:`verify_bundle`. See
``/work/shared/notes/model-signing.md`` for the measured format.

:func:`verify_bundle` is stricter than the tool: the tool trusts the signer's
``ignore_paths`` (a file under an ignored path may be changed and still pass)
and silently accepts the broken ``shards`` method; we refuse both. The caller
passes the exact files a loader will read, and they must equal the signed ones.

This module depends on nothing else in the hub but its errors, and on
``cryptography`` only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import json
import os
import posixpath
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sentenialx.hub.errors import AlreadyExists, InvalidInput, NotFound, SignatureError

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
DEFAULT_IGNORE_PATHS: tuple[str, ...] = (".git", ".github", ".gitattributes", ".gitignore")
"""What ``model_signing sign`` ignores unless told ``--no-ignore-git-paths``."""

_HEX = frozenset("0123456789abcdef")
_FIX = "re-sign the model with `sentenialx models sign REF --key KEY`"

PublicKeyLike = ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey | bytes | str


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a signature that passed :func:`verify_bundle` says.

    Attributes:
        key_id: id (see :func:`key_id`) of the trusted key whose signature checked out.
        model_name: the statement's subject name (the model's file or folder name when
            signed; informative only, the tool does not check it either).
        subject_digest: the subject's sha256 over the raw per-file digests.
        resources: ``(path, sha256)`` of every signed file, in the signature's order.
        ignore_paths: the signer's ignore rules (none of them covers a verified file).
    """

    key_id: str
    model_name: str
    subject_digest: str
    resources: tuple[tuple[str, str], ...]
    ignore_paths: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for ``--json`` output and events)."""
        return {
            "key_id": self.key_id,
            "model_name": self.model_name,
            "subject_digest": self.subject_digest,
            "resources": [{"name": n, "sha256": d} for n, d in self.resources],
            "ignore_paths": list(self.ignore_paths),
        }


# -- keys ------------------------------------------------------------------------------------
def key_id(public_key_or_pem: PublicKeyLike) -> str:
    """The id of a public key: hex sha256 of its SubjectPublicKeyInfo PEM bytes.

    This is exactly the ``verificationMaterial.publicKey.hint`` the ``model_signing``
    tool writes. The PEM is re-encoded from the key, so two spellings of one key
    (CRLF line ends, extra text around the block) have one id.

    Args:
        public_key_or_pem: a P-256 public key, a private key (its public half is
            used), or public-key PEM as bytes or text.

    Raises:
        InvalidInput: the PEM is not a P-256 public key.
    """
    if isinstance(public_key_or_pem, ec.EllipticCurvePrivateKey):
        pub: ec.EllipticCurvePublicKey = public_key_or_pem.public_key()
    elif isinstance(public_key_or_pem, ec.EllipticCurvePublicKey):
        pub = public_key_or_pem
    else:
        pem = public_key_or_pem.encode() if isinstance(public_key_or_pem, str) else public_key_or_pem
        pub = _parse_public_pem(pem, "public key")
    return hashlib.sha256(_spki_pem(pub)).hexdigest()


def load_public_key(path_or_pem: str | os.PathLike[str] | bytes) -> ec.EllipticCurvePublicKey:
    """Read a P-256 public key from a PEM file, or from PEM bytes (or text).

    Raises:
        NotFound: the file does not exist.
        InvalidInput: the file or bytes are not a P-256 public key PEM.
    """
    if isinstance(path_or_pem, bytes):
        return _parse_public_pem(path_or_pem, "public key")
    if isinstance(path_or_pem, str) and path_or_pem.lstrip().startswith("-----BEGIN"):
        return _parse_public_pem(path_or_pem.encode(), "public key")
    path = Path(path_or_pem)
    return _parse_public_pem(_read_key_file(path, "public"), f"public key {path}")


def load_private_key(
    path: str | os.PathLike[str], passphrase: bytes | None = None
) -> ec.EllipticCurvePrivateKey:
    """Read a P-256 private key PEM, decrypting it with ``passphrase`` when it is encrypted.

    Raises:
        NotFound: the file does not exist.
        InvalidInput: the file is not a P-256 private key, it is encrypted and no
            (or the wrong) passphrase was given, or a passphrase was given for a
            key that is not encrypted.
    """
    p = Path(path)
    data = _read_key_file(p, "private")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        # cryptography says TypeError for "encrypted but no password" and for
        # "password given but not encrypted"; tell the two apart for the message.
        if passphrase is None:
            raise InvalidInput(
                f"private key {p} is encrypted; give its passphrase"
            ) from None
        raise InvalidInput(
            f"private key {p} is not encrypted but a passphrase was given; drop the passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise InvalidInput(
                f"private key {p}: wrong passphrase (or a damaged key file)"
            ) from None
        raise InvalidInput(
            f"{p} is not a PEM private key ({exc}); make one with `sentenialx keys generate`"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput(
            f"private key {p} is {_describe(key)}, not ECDSA P-256; make one with"
            " `sentenialx keys generate` (or `openssl ecparam -name prime256v1 -genkey`)"
        )
    return key


def generate_keypair(
    private_path: str | os.PathLike[str],
    public_path: str | os.PathLike[str],
    *,
    passphrase: bytes | None = None,
) -> str:
    """Make a new ECDSA P-256 key pair; returns its key id.

    The private key is written as PKCS#8 PEM with mode 0600, encrypted with
    ``passphrase`` (best available encryption) when one is given; the public key
    as SubjectPublicKeyInfo PEM. Neither file is ever overwritten, and each
    appears complete or not at all.

    Raises:
        AlreadyExists: either file already exists.
        InvalidInput: the passphrase is empty.
    """
    priv_p, pub_p = Path(private_path), Path(public_path)
    if passphrase is not None and not passphrase:
        raise InvalidInput("the passphrase is empty; give a non-empty one or none at all")
    if priv_p.resolve() == pub_p.resolve():
        raise InvalidInput(f"private and public key paths are the same file ({priv_p})")
    for p in (priv_p, pub_p):
        if os.path.lexists(p):
            raise _exists(p)
    key = ec.generate_private_key(ec.SECP256R1())
    kid = write_private_key(key, priv_p, passphrase=passphrase)
    try:
        write_public_key(key.public_key(), pub_p)
    except BaseException:
        # We made the private key a moment ago and nobody holds its public half:
        # leave no orphan behind.
        priv_p.unlink(missing_ok=True)
        raise
    return kid


def write_private_key(
    key: ec.EllipticCurvePrivateKey,
    path: str | os.PathLike[str],
    *,
    passphrase: bytes | None = None,
) -> str:
    """Write ``key`` as PKCS#8 PEM (mode 0600) to a new file, encrypted with ``passphrase``.

    The file appears complete or not at all and never replaces one; returns the key id.

    Raises:
        AlreadyExists: ``path`` exists.
        InvalidInput: the passphrase is empty.
    """
    if passphrase is not None and not passphrase:
        raise InvalidInput("the passphrase is empty; give a non-empty one or none at all")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    _write_new(p, pem, 0o600)
    return key_id(key.public_key())


def write_public_key(key: ec.EllipticCurvePublicKey, path: str | os.PathLike[str]) -> str:
    """Write ``key`` as SubjectPublicKeyInfo PEM (mode 0644) to a new file; returns its id.

    Raises:
        AlreadyExists: ``path`` exists.
    """
    pem = _spki_pem(key)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    _write_new(p, pem, 0o644)
    return hashlib.sha256(pem).hexdigest()


# -- signing ---------------------------------------------------------------------------------
def sign_files(
    files: Sequence[tuple[str, str]],
    *,
    model_name: str,
    private_key: ec.EllipticCurvePrivateKey,
    ignore_paths: Sequence[str] = DEFAULT_IGNORE_PATHS,
) -> bytes:
    """Sign a model's files; returns the Sigstore bundle JSON the ``model_signing`` tool writes.

    Args:
        files: ``(path, sha256 hex)`` of every file of the model, paths relative to
            the model folder in posix form; a single-file model is ``[(".", sha)]``.
        model_name: the subject name (the model's file or folder name, as the tool
            records it).
        private_key: a P-256 private key (see :func:`load_private_key`).
        ignore_paths: the ignore rules recorded in the signature, relative to the
            model folder. The tool's verifier skips files under them, so no file
            being signed may fall under one.

    Raises:
        InvalidInput: no files, a malformed path or digest, a duplicate path, a
            file under an ignore path, or a key that is not P-256.
    """
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise InvalidInput(f"signing key is {_describe(private_key)}, not ECDSA P-256")
    if not isinstance(model_name, str) or not model_name:
        raise InvalidInput("model_name is empty; pass the model's file or folder name")
    entries = _check_files(files)
    rules = [_check_ignore_rule(r, where="ignore path") for r in ignore_paths]
    for path, _ in entries:
        rule = _covering_rule(path, rules)
        if rule is not None:
            raise InvalidInput(
                f"file {path!r} is under ignore path {rule!r}: the tool would skip it and the"
                " signature could not be verified; rename the file or sign with other ignore paths"
            )
    statement = _statement(entries, model_name=model_name, ignore_paths=rules)
    # The tool's payload is protobuf's MessageToJson: 2-space indent, UTF-8 kept as is.
    payload = json.dumps(statement, indent=2, ensure_ascii=False).encode()
    sig = private_key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_id(private_key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


# -- verifying -------------------------------------------------------------------------------
def bundle_key_ids(bundle_bytes: bytes) -> tuple[str, ...]:
    """The key hints a bundle names (unverified; for error messages). Never raises."""
    try:
        doc = json.loads(bundle_bytes)
        hint = doc["verificationMaterial"]["publicKey"]["hint"]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return ()
    return (hint,) if isinstance(hint, str) and hint else ()


def verify_bundle(
    bundle_bytes: bytes,
    *,
    files: Sequence[tuple[str, str]],
    public_keys: Mapping[str, ec.EllipticCurvePublicKey],
) -> VerifiedSignature:
    """Check a model-signing bundle against the files a loader will read and the trusted keys.

    Passes only when the DSSE signature was made by one of ``public_keys``, the
    statement is a model-signing v1.0 statement of the ``files``/``sha256``
    method, its resources are exactly ``files`` (same paths, same digests, none
    more, none fewer), no file falls under the signer's ``ignore_paths``, and
    the subject digest matches the resources.

    Args:
        bundle_bytes: the signature file's bytes.
        files: ``(path, sha256 hex)`` of every file that will be read, as for
            :func:`sign_files` (``[(".", sha)]`` for a single-file model).
        public_keys: trusted keys; the mapping's keys are labels, ids are
            recomputed from the keys themselves.

    Raises:
        SignatureError: the bundle is malformed, signed by no given key, tampered
            with, of an unsupported kind, or does not match ``files``.
        InvalidInput: ``files`` is malformed or a given key is not P-256.
    """
    expected = _check_files(files)
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for label, pub in public_keys.items():
        if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(
            pub.curve, ec.SECP256R1
        ):
            raise InvalidInput(f"trusted key {label!r} is {_describe(pub)}, not ECDSA P-256")
        keys[key_id(pub)] = pub
    if not keys:
        raise SignatureError("no trusted key was given to check the signature against;"
                             " trust one with `sentenialx keys trust PUB`")

    doc = _json_object(bundle_bytes, "signature bundle")
    media = doc.get("mediaType")
    if media != BUNDLE_MEDIA_TYPE:
        raise SignatureError(f"signature bundle has media type {media!r}, expected"
                             f" {BUNDLE_MEDIA_TYPE!r}; {_FIX}")
    material = doc.get("verificationMaterial")
    if not isinstance(material, dict):
        raise SignatureError(f"signature bundle has no verificationMaterial; {_FIX}")
    if "publicKey" not in material:
        kinds = ", ".join(sorted(k for k in material if k != "tlogEntries")) or "nothing"
        raise SignatureError(f"signature bundle is not a key signature (it carries {kinds});"
                             f" only `model_signing sign key` signatures are supported; {_FIX}")
    pk = material["publicKey"]
    hint = pk.get("hint") if isinstance(pk, dict) else None
    if hint is not None and not isinstance(hint, str):
        raise SignatureError(f"signature bundle's key hint is not text; {_FIX}")

    env = doc.get("dsseEnvelope")
    if not isinstance(env, dict):
        raise SignatureError(f"signature bundle has no DSSE envelope; {_FIX}")
    payload_type = env.get("payloadType")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
        n = len(sigs) if isinstance(sigs, list) else 0
        raise SignatureError(f"DSSE envelope has {n} signatures, expected exactly 1; {_FIX}")
    payload = _b64(env.get("payload"), "DSSE payload")
    raw_sig = _b64(sigs[0].get("sig"), "DSSE signature")
    if not isinstance(payload_type, str):
        raise SignatureError(f"DSSE envelope has no payloadType; {_FIX}")

    # Authenticate before reading anything the payload says. With a hint, only the
    # key it names may have signed (the tool refuses a hint/key mismatch too);
    # without one (pre-1.0 bundles) any trusted key may have.
    if hint:
        if hint not in keys:
            raise SignatureError(
                f"signed by key {hint[:12]}…, which is not among the trusted keys"
                f" ({', '.join(k[:12] for k in keys)}); trust that key or {_FIX} with a"
                " trusted one",
                found_keys=(hint,), trusted_keys=tuple(keys))
        candidates = {hint: keys[hint]}
    else:
        candidates = keys
    encoded = pae(payload_type, payload)
    signer = None
    for kid, pub in candidates.items():
        try:
            pub.verify(raw_sig, encoded, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        signer = kid
        break
    if signer is None:
        found = (hint,) if hint else ()
        raise SignatureError(
            "the DSSE signature does not verify with "
            + (f"key {hint[:12]}…" if hint else f"any of the {len(keys)} trusted keys")
            + f": the signature or its payload was altered; {_FIX}",
            found_keys=found, trusted_keys=tuple(keys))

    if payload_type != PAYLOAD_TYPE:
        raise SignatureError(f"DSSE payload type is {payload_type!r}, expected {PAYLOAD_TYPE!r};"
                             f" {_FIX}")
    statement = _json_object(payload, "signed statement")
    return _check_statement(statement, expected, signer)


# -- internals -------------------------------------------------------------------------------
def _check_statement(
    st: dict[str, Any], expected: list[tuple[str, str]], signer: str
) -> VerifiedSignature:
    if st.get("_type") != STATEMENT_TYPE:
        raise SignatureError(f"signed statement has type {st.get('_type')!r}, expected"
                             f" {STATEMENT_TYPE!r}; {_FIX}")
    if st.get("predicateType") != PREDICATE_TYPE:
        raise SignatureError(f"signed statement has predicate type {st.get('predicateType')!r},"
                             f" expected {PREDICATE_TYPE!r} (model-signing v1.0); {_FIX}")
    subjects = st.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise SignatureError(f"signed statement must have exactly one subject; {_FIX}")
    name = subjects[0].get("name")
    digest = subjects[0].get("digest")
    subject_sha = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(name, str) or not _is_sha256(subject_sha):
        raise SignatureError(f"signed statement's subject has no name or no sha256; {_FIX}")
    pred = st.get("predicate")
    if not isinstance(pred, dict):
        raise SignatureError(f"signed statement has no predicate; {_FIX}")

    ser = pred.get("serialization")
    if not isinstance(ser, dict):
        raise SignatureError(f"signed statement has no serialization; {_FIX}")
    method = ser.get("method")
    if method != "files":
        why = (" (model-signing 1.1.1 cannot verify its own shard signatures)"
               if method == "shards" else "")
        raise SignatureError(f"signature uses serialization method {method!r}{why}; only"
                             f" 'files' is accepted; {_FIX}")
    if ser.get("hash_type") != "sha256":
        raise SignatureError(f"signature hashes files with {ser.get('hash_type')!r}; only"
                             f" 'sha256' is accepted; {_FIX}")
    if not isinstance(ser.get("allow_symlinks", False), bool):
        raise SignatureError(f"signature's allow_symlinks is not true/false; {_FIX}")
    raw_rules = ser.get("ignore_paths", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, str) for r in raw_rules):
        raise SignatureError(f"signature's ignore_paths is not a list of paths; {_FIX}")
    try:
        rules = [_check_ignore_rule(r, where="signature ignore path") for r in raw_rules]
    except InvalidInput as exc:
        raise SignatureError(f"{exc}; {_FIX}") from None

    res = pred.get("resources")
    if not isinstance(res, list):
        raise SignatureError(f"signed statement has no resources list; {_FIX}")
    signed: dict[str, str] = {}
    order: list[tuple[str, str]] = []
    h = hashlib.sha256()
    for r in res:
        rname = r.get("name") if isinstance(r, dict) else None
        alg = r.get("algorithm") if isinstance(r, dict) else None
        rdig = r.get("digest") if isinstance(r, dict) else None
        if not isinstance(rname, str) or not _is_sha256(rdig):
            raise SignatureError(f"signed resource {r!r} has no name or no sha256 digest; {_FIX}")
        if alg != "sha256":
            raise SignatureError(f"signed file {rname!r} is hashed with {alg!r}, only 'sha256'"
                                 f" is accepted; {_FIX}")
        if rname in signed:
            raise SignatureError(f"signature lists file {rname!r} twice; {_FIX}")
        signed[rname] = rdig
        order.append((rname, rdig))
        # The subject digest is over the raw digests in the order listed (as the tool does).
        h.update(bytes.fromhex(rdig))
    if h.hexdigest() != subject_sha:
        raise SignatureError(f"signed statement is inconsistent: subject sha256 {subject_sha[:12]}…"
                             f" but its resources hash to {h.hexdigest()[:12]}…; {_FIX}")

    # The tool trusts these rules and then does not look at covered files at all,
    # so a covered file could change undetected: refuse outright.
    for path, _ in expected:
        rule = _covering_rule(path, rules)
        if rule is not None:
            raise SignatureError(
                f"signature ignores {rule!r}, which covers file {path!r} that will be loaded;"
                f" a signature must cover every loaded file; {_FIX} without that ignore path")

    given = dict(expected)
    problems: list[str] = []
    for path in sorted(given.keys() - signed.keys(), key=_sort_key):
        problems.append(f"file {path!r} is not covered by the signature (added after signing?)")
    for path in sorted(signed.keys() - given.keys(), key=_sort_key):
        problems.append(f"signed file {path!r} is missing")
    for path in sorted(given.keys() & signed.keys(), key=_sort_key):
        if given[path] != signed[path]:
            problems.append(f"file {path!r} changed since signing (signed sha256"
                            f" {signed[path][:12]}…, now {given[path][:12]}…)")
    if problems:
        raise SignatureError("; ".join(problems) + f"; restore the signed files or {_FIX}")
    return VerifiedSignature(signer, name, subject_sha, tuple(order), tuple(raw_rules))


def _statement(
    entries: list[tuple[str, str]], *, model_name: str, ignore_paths: list[str]
) -> dict[str, Any]:
    # Order by path components, as the tool's PurePosixPath sort does: "a/b" < "a-b/c" < "a.txt".
    ordered = sorted(entries, key=lambda e: _sort_key(e[0]))
    h = hashlib.sha256()
    for _, digest in ordered:
        h.update(bytes.fromhex(digest))
    serialization_args: dict[str, Any] = {
        "method": "files", "hash_type": "sha256", "allow_symlinks": False,
    }
    if ignore_paths:
        # The tool leaves the key out when there is nothing to ignore.
        serialization_args["ignore_paths"] = list(ignore_paths)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": h.hexdigest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": [{"name": n, "algorithm": "sha256", "digest": d} for n, d in ordered],
            "serialization": serialization_args,
        },
    }


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE pre-authentication encoding (DSSE v1 protocol)."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d " % (len(t), t, len(body)) + body


def _sort_key(path: str) -> tuple[str, ...]:
    return () if path == "." else tuple(path.split("/"))


def _check_files(files: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in files:
        try:
            path, digest = item
        except (TypeError, ValueError):
            raise InvalidInput(f"file entry {item!r} is not a (path, sha256) pair") from None
        if not isinstance(path, str) or (path != "." and not _is_relpath(path)):
            raise InvalidInput(f"file path {path!r} is not a relative posix path inside the"
                               " model (no '..', '.', empty parts or leading '/')")
        if not _is_sha256(digest):
            raise InvalidInput(f"file {path!r}: sha256 {digest!r} is not 64 lowercase hex digits")
        if path in seen:
            raise InvalidInput(f"file {path!r} is listed twice")
        seen.add(path)
        out.append((path, digest))
    if not out:
        raise InvalidInput("no files given; a signature must cover at least one file")
    if "." in seen and len(out) > 1:
        raise InvalidInput("'.' names a single-file model and must be the only file")
    return out


def _check_ignore_rule(rule: str, *, where: str) -> str:
    """Refuse ignore rules whose reach cannot be judged from the relative file list.

    An absolute rule or one with ``..`` may point back into the model from
    outside, and ``.`` (or empty) covers everything.
    """
    if not isinstance(rule, str):
        raise InvalidInput(f"{where} {rule!r} is not text")
    norm = posixpath.normpath(rule) if rule else "."
    if norm == "." or norm.startswith("/") or norm == ".." or norm.startswith("../") or (
        "\x00" in rule
    ):
        raise InvalidInput(f"{where} {rule!r} is absolute, empty, '.' or leaves the model"
                           " folder; it could cover any file")
    return rule


def _covering_rule(path: str, rules: Sequence[str]) -> str | None:
    """The first rule that covers ``path`` (the tool's ``Path.is_relative_to``), if any."""
    parts = _sort_key(path)
    for rule in rules:
        rparts = tuple(posixpath.normpath(rule).split("/"))
        if parts[: len(rparts)] == rparts:
            return rule
    return None


def _is_relpath(path: str) -> bool:
    if not path or path.startswith("/") or "\x00" in path:
        return False
    return all(p not in ("", ".", "..") for p in path.split("/"))


def _is_sha256(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignatureError(f"{what} is not JSON ({exc}); {_FIX}") from None
    if not isinstance(doc, dict):
        raise SignatureError(f"{what} is not a JSON object; {_FIX}")
    return doc


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise SignatureError(f"{what} is missing; {_FIX}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64; {_FIX}") from None


def _spki_pem(pub: ec.EllipticCurvePublicKey) -> bytes:
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _parse_public_pem(pem: bytes, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"{what} is not a PEM public key ({exc}); export one with"
                           " `openssl ec -in key.pem -pubout`") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidInput(f"{what} is {_describe(key)}, not ECDSA P-256")
    return key


def _describe(key: object) -> str:
    curve = getattr(key, "curve", None)
    if curve is not None:
        return f"an EC key on {curve.name}"
    return f"a {type(key).__name__.lstrip('_')}"


def _read_key_file(path: Path, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{kind} key {path} does not exist", what="key", name=str(path)) from None
    except IsADirectoryError:
        raise InvalidInput(f"{kind} key {path} is a folder, not a PEM file") from None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file at ``path``, complete or not at all, never replacing one.

    The bytes go to a unique temporary name in the same folder (created with
    O_EXCL and ``mode`` from the start, so a private key is never readable by
    others even for a moment), are fsynced, then hard-linked to ``path``: the
    link fails if ``path`` exists, which is the no-overwrite guarantee, and needs
    no lock. Where hard links are not supported, the file is created in place
    with O_EXCL instead (still never overwriting, but a crash may leave it short).

    Raises:
        AlreadyExists: ``path`` exists.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _write_excl(tmp, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        try:
            _write_excl(path, data, mode)
        except FileExistsError:
            raise _exists(path) from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _write_excl(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; this never adds others
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _exists(path: Path) -> AlreadyExists:
    return AlreadyExists(f"{path} already exists; key files are never overwritten,"
                         " choose another path or remove it first")


def _fsync_dir(folder: Path) -> None:
    # Makes the new name durable; some filesystems cannot fsync a folder, and then
    # the synced file is the best we can do.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
