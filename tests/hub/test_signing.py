"""OpenSSF model-signing signatures, checked against the real ``model_signing`` CLI.

Every test uses real files in ``tmp_path`` and runs the real tool (model-signing
1.1.1, from the dev extra) in a subprocess: our signatures must verify with it,
its signatures must verify with us, and each kind of tampering must fail in both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sentenialx.hub.errors import AlreadyExists, InvalidInput, NotFound, SignatureError
from sentenialx.hub.signing import (
    DEFAULT_IGNORE_PATHS,
    PAYLOAD_TYPE,
    VerifiedSignature,
    bundle_key_ids,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_files,
    verify_bundle,
)

Files = list[tuple[str, str]]


# -- helpers ---------------------------------------------------------------------------------
def _cli() -> str:
    beside = Path(sys.executable).with_name("model_signing")
    if beside.exists():
        return str(beside)
    found = shutil.which("model_signing")
    assert found, "the model_signing CLI is missing; install the dev extra (pip install -e '.[dev]')"
    return found


def run_tool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_cli(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def tool_sign(model: Path, private_key: Path, signature: Path, *extra: str) -> bytes:
    proc = run_tool("sign", "key", model, "--private_key", private_key, "--signature", signature,
                    *extra, cwd=model.parent)
    assert proc.returncode == 0, proc.stderr
    return signature.read_bytes()


def tool_verify(model: Path, signature: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    return run_tool("verify", "key", model, "--signature", signature, "--public_key", public_key,
                    cwd=model.parent)


def file_digests(model: Path) -> Files:
    """What the hub hands the verifier: (relative posix path, sha256) of every file."""
    if model.is_file():
        return [(".", hashlib.sha256(model.read_bytes()).hexdigest())]
    return sorted((p.relative_to(model).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
                  for p in model.rglob("*") if p.is_file())


def statement_of(bundle: bytes) -> dict[str, Any]:
    st: dict[str, Any] = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
    return st


def resign(bundle: bytes, private_key: ec.EllipticCurvePrivateKey, *,
           statement: Callable[[dict[str, Any]], None] | None = None,
           payload_type: str = PAYLOAD_TYPE,
           media_type: str | None = None) -> bytes:
    """A bundle whose statement was edited and then properly signed again with ``private_key``.

    This is what a holder of a trusted key could produce: the DSSE signature is
    good, so only our checks of the statement itself stand in the way.
    """
    doc = json.loads(bundle)
    st = statement_of(bundle)
    if statement:
        statement(st)
    payload = json.dumps(st, indent=2).encode()
    t = payload_type.encode()
    pae = b"DSSEv1 %d %s %d " % (len(t), t, len(payload)) + payload
    sig = private_key.sign(pae, ec.ECDSA(hashes.SHA256()))
    doc["dsseEnvelope"] = {"payload": base64.b64encode(payload).decode(),
                           "payloadType": payload_type,
                           "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}]}
    if media_type is not None:
        doc["mediaType"] = media_type
    return json.dumps(doc).encode()


class KeyPair:
    def __init__(self, folder: Path, name: str, passphrase: bytes | None = None) -> None:
        self.priv_path = folder / f"{name}.pem"
        self.pub_path = folder / f"{name}.pub"
        self.kid = generate_keypair(self.priv_path, self.pub_path, passphrase=passphrase)
        self.priv = load_private_key(self.priv_path, passphrase)
        self.pub = load_public_key(self.pub_path)

    @property
    def trusted(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {self.kid: self.pub}


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    (tmp_path / "keys").mkdir()
    return KeyPair(tmp_path / "keys", "signer")


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    (tmp_path / "other").mkdir()
    return KeyPair(tmp_path / "other", "stranger")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder model whose names sort differently by path component than as strings."""
    root = tmp_path / "distill"
    for rel, data in {
        "a/b": b"weights in a/b",
        "a-b/c": b"config in a-b/c",
        "a.txt": b"notes",
        "a/b2/deep.bin": bytes(range(256)) * 40,
        "Z": b"",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "threat_student_v1.2.0.onnx"
    p.write_bytes(os.urandom(4096))
    return p


def sign_ours(model: Path, keys: KeyPair, sig: Path) -> bytes:
    bundle = sign_files(file_digests(model), model_name=model.name, private_key=keys.priv)
    sig.write_bytes(bundle)
    return bundle


# -- our signatures verify with the tool, and the tool's with us ------------------------------
@pytest.mark.parametrize("kind", ["file", "dir"])
def test_our_signature_verifies_with_the_tool(kind: str, model_file: Path, model_dir: Path,
                                              keys: KeyPair, tmp_path: Path) -> None:
    model = model_file if kind == "file" else model_dir
    sig = tmp_path / "ours.sig"
    bundle = sign_ours(model, keys, sig)
    proc = tool_verify(model, sig, keys.pub_path)
    assert proc.returncode == 0, proc.stderr
    assert "Verification succeeded" in proc.stdout
    # And with ourselves, naturally.
    v = verify_bundle(bundle, files=file_digests(model), public_keys=keys.trusted)
    assert v.key_id == keys.kid and v.model_name == model.name


def test_single_file_resource_is_dot(model_file: Path, keys: KeyPair, tmp_path: Path) -> None:
    bundle = sign_ours(model_file, keys, tmp_path / "s.sig")
    tool = tool_sign(model_file, keys.priv_path, tmp_path / "t.sig")
    assert [r["name"] for r in statement_of(bundle)["predicate"]["resources"]] == ["."]
    assert [r["name"] for r in statement_of(tool)["predicate"]["resources"]] == ["."]


def test_our_statement_matches_the_tools(model_dir: Path, keys: KeyPair, tmp_path: Path) -> None:
    ours = sign_ours(model_dir, keys, tmp_path / "ours.sig")
    theirs = tool_sign(model_dir, keys.priv_path, tmp_path / "theirs.sig")
    a, b = statement_of(ours), statement_of(theirs)
    # Ordered by path components, like the tool: "a/b" < "a/b2/..." < "a-b/c" < "a.txt".
    names = [r["name"] for r in a["predicate"]["resources"]]
    assert names == ["Z", "a/b", "a/b2/deep.bin", "a-b/c", "a.txt"]
    assert names == [r["name"] for r in b["predicate"]["resources"]]
    # The tool writes ignore_paths from a set, in no fixed order.
    ia = a["predicate"]["serialization"].pop("ignore_paths")
    ib = b["predicate"]["serialization"].pop("ignore_paths")
    assert sorted(ia) == sorted(ib) == sorted(DEFAULT_IGNORE_PATHS)
    assert a == b  # same subject name and digest, resources, serialization
    # Same bundle shape, field for field.
    ja, jb = json.loads(ours), json.loads(theirs)
    assert list(ja) == list(jb) == ["mediaType", "verificationMaterial", "dsseEnvelope"]
    assert ja["mediaType"] == jb["mediaType"]
    assert ja["verificationMaterial"] == jb["verificationMaterial"]
    assert list(ja["dsseEnvelope"]) == list(jb["dsseEnvelope"])
    assert ja["dsseEnvelope"]["payloadType"] == jb["dsseEnvelope"]["payloadType"]
    assert [list(s) for s in ja["dsseEnvelope"]["signatures"]] == [["sig", "keyid"]]
    assert jb["dsseEnvelope"]["signatures"][0]["keyid"] == ""


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_tool_signature_verifies_with_us(kind: str, model_file: Path, model_dir: Path,
                                         keys: KeyPair, tmp_path: Path) -> None:
    model = model_file if kind == "file" else model_dir
    bundle = tool_sign(model, keys.priv_path, tmp_path / "tool.sig")
    v = verify_bundle(bundle, files=file_digests(model), public_keys=keys.trusted)
    assert isinstance(v, VerifiedSignature)
    assert v.key_id == keys.kid
    assert v.model_name == model.name
    assert sorted(v.resources) == file_digests(model)
    assert sorted(v.ignore_paths) == sorted(DEFAULT_IGNORE_PATHS)
    assert v.to_dict()["key_id"] == keys.kid


def test_no_ignore_paths_roundtrips(model_dir: Path, keys: KeyPair, tmp_path: Path) -> None:
    bundle = sign_files(file_digests(model_dir), model_name=model_dir.name,
                        private_key=keys.priv, ignore_paths=())
    assert "ignore_paths" not in statement_of(bundle)["predicate"]["serialization"]
    (tmp_path / "s.sig").write_bytes(bundle)
    assert tool_verify(model_dir, tmp_path / "s.sig", keys.pub_path).returncode == 0
    v = verify_bundle(bundle, files=file_digests(model_dir), public_keys=keys.trusted)
    assert v.ignore_paths == ()


# -- tampering fails in both directions -------------------------------------------------------
def flip_byte(model: Path) -> str:
    target = model if model.is_file() else model / "a" / "b2" / "deep.bin"
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    return "." if model.is_file() else "a/b2/deep.bin"


def add_file(model: Path) -> str:
    (model / "a-b" / "extra.bin").write_bytes(b"smuggled")
    return "a-b/extra.bin"


def remove_file(model: Path) -> str:
    (model / "a-b" / "c").unlink()
    return "a-b/c"


MUTATIONS: dict[str, tuple[Callable[[Path], str], str, str]] = {
    # name: (mutate, what the tool says, what we say)
    "flipped byte": (flip_byte, "Hash mismatch", "changed since signing"),
    "added file": (add_file, "Extra files", "not covered by the signature"),
    "removed file": (remove_file, "Missing files", "is missing"),
}


# A single-file model has no files to add or remove.
CASES = [("file", "flipped byte")] + [("dir", m) for m in MUTATIONS]


@pytest.mark.parametrize(("kind", "mutation"), CASES)
def test_tool_rejects_our_signature_after_tampering(kind: str, mutation: str, model_file: Path,
                                                    model_dir: Path, keys: KeyPair,
                                                    tmp_path: Path) -> None:
    model = model_file if kind == "file" else model_dir
    mutate, tool_says, _ = MUTATIONS[mutation]
    sig = tmp_path / "ours.sig"
    sign_ours(model, keys, sig)
    assert tool_verify(model, sig, keys.pub_path).returncode == 0
    name = mutate(model)
    proc = tool_verify(model, sig, keys.pub_path)
    assert proc.returncode != 0
    assert tool_says in proc.stderr and name in proc.stderr


@pytest.mark.parametrize(("kind", "mutation"), CASES)
def test_we_reject_tool_signature_after_tampering(kind: str, mutation: str, model_file: Path,
                                                  model_dir: Path, keys: KeyPair,
                                                  tmp_path: Path) -> None:
    model = model_file if kind == "file" else model_dir
    mutate, _, we_say = MUTATIONS[mutation]
    bundle = tool_sign(model, keys.priv_path, tmp_path / "tool.sig")
    name = mutate(model)
    with pytest.raises(SignatureError) as exc:
        verify_bundle(bundle, files=file_digests(model), public_keys=keys.trusted)
    msg = str(exc.value)
    assert we_say in msg and repr(name) in msg
    assert "\n" not in msg and "re-sign" in msg


def test_wrong_key_fails_both_ways(model_dir: Path, keys: KeyPair, other_keys: KeyPair,
                                   tmp_path: Path) -> None:
    # The tool refuses our signature with a key that did not make it...
    ours = tmp_path / "ours.sig"
    sign_ours(model_dir, keys, ours)
    proc = tool_verify(model_dir, ours, other_keys.pub_path)
    assert proc.returncode != 0 and "Key mismatch" in proc.stderr
    # ...and we refuse the tool's.
    theirs = tool_sign(model_dir, keys.priv_path, tmp_path / "theirs.sig")
    with pytest.raises(SignatureError) as exc:
        verify_bundle(theirs, files=file_digests(model_dir), public_keys=other_keys.trusted)
    assert "not among the trusted keys" in str(exc.value)
    assert exc.value.found_keys == (keys.kid,)
    assert exc.value.trusted_keys == (other_keys.kid,)
    # With both keys trusted, the right one is picked by its hint.
    both = {**other_keys.trusted, **keys.trusted}
    assert verify_bundle(theirs, files=file_digests(model_dir), public_keys=both).key_id == keys.kid


def test_forged_hint_does_not_help(model_dir: Path, keys: KeyPair, other_keys: KeyPair,
                                   tmp_path: Path) -> None:
    # A stranger signs and claims to be the trusted key: the hint selects the trusted
    # key, whose check of the DSSE signature fails; the tool refuses it too.
    doc = json.loads(sign_files(file_digests(model_dir), model_name=model_dir.name,
                                private_key=other_keys.priv))
    doc["verificationMaterial"]["publicKey"]["hint"] = keys.kid
    forged = json.dumps(doc).encode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_bundle(forged, files=file_digests(model_dir), public_keys=keys.trusted)
    (tmp_path / "forged.sig").write_bytes(forged)
    assert tool_verify(model_dir, tmp_path / "forged.sig", keys.pub_path).returncode != 0


def test_bundle_without_hint_tries_every_trusted_key(model_dir: Path, keys: KeyPair,
                                                     other_keys: KeyPair) -> None:
    doc = json.loads(sign_files(file_digests(model_dir), model_name=model_dir.name,
                                private_key=keys.priv))
    del doc["verificationMaterial"]["publicKey"]["hint"]
    bundle = json.dumps(doc).encode()
    both = {**other_keys.trusted, **keys.trusted}
    assert verify_bundle(bundle, files=file_digests(model_dir), public_keys=both).key_id == keys.kid
    with pytest.raises(SignatureError, match="any of the 1 trusted keys"):
        verify_bundle(bundle, files=file_digests(model_dir), public_keys=other_keys.trusted)


def test_tampered_payload_is_refused_by_both(model_dir: Path, keys: KeyPair,
                                             tmp_path: Path) -> None:
    bundle = tool_sign(model_dir, keys.priv_path, tmp_path / "tool.sig")
    name = flip_byte(model_dir)
    # The attacker rewrites the signed digest to match the altered file, and the
    # subject digest to stay consistent, but cannot re-sign.
    st = statement_of(bundle)
    now = dict(file_digests(model_dir))
    h = hashlib.sha256()
    for r in st["predicate"]["resources"]:
        r["digest"] = now[r["name"]]
        h.update(bytes.fromhex(r["digest"]))
    st["subject"][0]["digest"]["sha256"] = h.hexdigest()
    doc = json.loads(bundle)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st, indent=2).encode()).decode()
    forged = json.dumps(doc).encode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_bundle(forged, files=file_digests(model_dir), public_keys=keys.trusted)
    (tmp_path / "forged.sig").write_bytes(forged)
    proc = tool_verify(model_dir, tmp_path / "forged.sig", keys.pub_path)
    assert proc.returncode != 0, f"tool accepted a forged payload after {name} changed"


# -- ignore rules ----------------------------------------------------------------------------
def test_ignore_paths_covering_a_loaded_file_are_refused(model_dir: Path, keys: KeyPair,
                                                         tmp_path: Path) -> None:
    sig = tmp_path / "tool.sig"
    bundle = tool_sign(model_dir, keys.priv_path, sig, "--ignore-paths",
                       str(model_dir / "a.txt"))
    assert "a.txt" in statement_of(bundle)["predicate"]["serialization"]["ignore_paths"]
    # The trap: the tool trusts the signer's ignore rules, so a.txt can change freely.
    (model_dir / "a.txt").write_bytes(b"anything at all")
    assert tool_verify(model_dir, sig, keys.pub_path).returncode == 0
    # We refuse the signature outright, since a.txt is a file a loader would read.
    with pytest.raises(SignatureError) as exc:
        verify_bundle(bundle, files=file_digests(model_dir), public_keys=keys.trusted)
    assert "'a.txt'" in str(exc.value) and "covers file" in str(exc.value)


@pytest.mark.parametrize("rules", [["a"], ["a/b2"], ["./a-b"], ["."], [""], [".."], ["../distill"],
                                   ["/abs"]])
def test_signed_ignore_rules_that_may_cover_files_are_refused(rules: list[str], model_dir: Path,
                                                              keys: KeyPair) -> None:
    bundle = sign_files(file_digests(model_dir), model_name=model_dir.name, private_key=keys.priv)

    def set_rules(st: dict[str, Any]) -> None:
        st["predicate"]["serialization"]["ignore_paths"] = rules

    with pytest.raises(SignatureError):
        verify_bundle(resign(bundle, keys.priv, statement=set_rules),
                      files=file_digests(model_dir), public_keys=keys.trusted)


def test_harmless_ignore_rules_pass(model_dir: Path, keys: KeyPair) -> None:
    bundle = sign_files(file_digests(model_dir), model_name=model_dir.name, private_key=keys.priv,
                        ignore_paths=("a/b3", "a.txt.bak", "model.sig", "a-b/c/d"))
    v = verify_bundle(bundle, files=file_digests(model_dir), public_keys=keys.trusted)
    assert v.ignore_paths == ("a/b3", "a.txt.bak", "model.sig", "a-b/c/d")


def test_sign_refuses_files_under_ignore_paths(model_dir: Path, keys: KeyPair) -> None:
    (model_dir / ".gitignore").write_text("*.tmp\n")
    with pytest.raises(InvalidInput, match=r"'\.gitignore' is under ignore path"):
        sign_files(file_digests(model_dir), model_name=model_dir.name, private_key=keys.priv)
    with pytest.raises(InvalidInput, match="leaves the model folder"):
        sign_files(file_digests(model_dir), model_name=model_dir.name, private_key=keys.priv,
                   ignore_paths=("../x",))


# -- statements we do not accept, even properly signed ----------------------------------------
def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(st: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = st
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (_set("predicate.serialization.method", "shards"), "'shards'"),
    (_set("predicate.serialization.hash_type", "blake2"), "'blake2'"),
    (_set("predicateType", "https://model_signing/Digests/v0.1"), "predicate type"),
    (_set("_type", "https://in-toto.io/Statement/v0.1"), "statement has type"),
    (_set("subject.0.digest.sha256", "0" * 64), "inconsistent"),
    (_set("predicate.resources.0.algorithm", "sha512"), "'sha512'"),
    (_set("subject", []), "exactly one subject"),
])
def test_signed_but_unacceptable_statements(edit: Callable[[dict[str, Any]], None], message: str,
                                            model_dir: Path, keys: KeyPair) -> None:
    bundle = sign_files(file_digests(model_dir), model_name=model_dir.name, private_key=keys.priv)
    with pytest.raises(SignatureError, match=message):
        verify_bundle(resign(bundle, keys.priv, statement=edit), files=file_digests(model_dir),
                      public_keys=keys.trusted)


def test_wrong_payload_or_media_type(model_dir: Path, keys: KeyPair) -> None:
    bundle = sign_files(file_digests(model_dir), model_name=model_dir.name, private_key=keys.priv)
    files = file_digests(model_dir)
    with pytest.raises(SignatureError, match="payload type"):
        verify_bundle(resign(bundle, keys.priv, payload_type="application/json"), files=files,
                      public_keys=keys.trusted)
    with pytest.raises(SignatureError, match="media type"):
        verify_bundle(resign(bundle, keys.priv,
                             media_type="application/vnd.dev.sigstore.bundle+json;version=0.2"),
                      files=files, public_keys=keys.trusted)
    for garbage in (b"", b"not json", b"[]", b'{"mediaType": 1}', b"\xff\xfe"):
        with pytest.raises(SignatureError):
            verify_bundle(garbage, files=files, public_keys=keys.trusted)
    with pytest.raises(SignatureError, match="no trusted key"):
        verify_bundle(bundle, files=files, public_keys={})


def test_bundle_key_ids(model_dir: Path, keys: KeyPair) -> None:
    bundle = sign_files(file_digests(model_dir), model_name=model_dir.name, private_key=keys.priv)
    assert bundle_key_ids(bundle) == (keys.kid,)
    for garbage in (b"", b"{}", b"[1]", b'{"verificationMaterial": {"publicKey": {}}}', b"\xff"):
        assert bundle_key_ids(garbage) == ()


# -- keys ------------------------------------------------------------------------------------
def test_private_key_is_0600_and_key_id_is_the_tools_hint(model_file: Path, keys: KeyPair,
                                                          tmp_path: Path) -> None:
    assert stat.S_IMODE(keys.priv_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.pub_path.stat().st_mode) & 0o022 == 0
    bundle = tool_sign(model_file, keys.priv_path, tmp_path / "tool.sig")
    hint = json.loads(bundle)["verificationMaterial"]["publicKey"]["hint"]
    assert hint == keys.kid == key_id(keys.pub) == key_id(keys.priv)
    assert key_id(keys.pub_path.read_bytes()) == key_id(keys.pub_path.read_text()) == hint
    # Another spelling of the same key (CRLF line ends) has the same id.
    assert key_id(keys.pub_path.read_bytes().replace(b"\n", b"\r\n")) == hint
    # No temporary files are left beside the keys.
    assert sorted(p.name for p in keys.priv_path.parent.iterdir()) == ["signer.pem", "signer.pub"]


def test_passphrase_encrypted_key_roundtrips(model_dir: Path, tmp_path: Path) -> None:
    kp = KeyPair(tmp_path, "locked", passphrase=b"correct horse")
    assert stat.S_IMODE(kp.priv_path.stat().st_mode) == 0o600
    assert kp.priv_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(InvalidInput, match="is encrypted; give its passphrase"):
        load_private_key(kp.priv_path)
    with pytest.raises(InvalidInput, match="wrong passphrase"):
        load_private_key(kp.priv_path, b"battery staple")
    sig = tmp_path / "locked.sig"
    sign_ours(model_dir, kp, sig)
    assert tool_verify(model_dir, sig, kp.pub_path).returncode == 0
    v = verify_bundle(sig.read_bytes(), files=file_digests(model_dir), public_keys=kp.trusted)
    assert v.key_id == kp.kid


def test_unencrypted_key_with_a_passphrase_is_refused(keys: KeyPair) -> None:
    with pytest.raises(InvalidInput, match="not encrypted"):
        load_private_key(keys.priv_path, b"pw")


def test_generate_keypair_never_overwrites(keys: KeyPair, tmp_path: Path) -> None:
    before = keys.priv_path.read_bytes()
    with pytest.raises(AlreadyExists):
        generate_keypair(keys.priv_path, tmp_path / "fresh.pub")
    with pytest.raises(AlreadyExists):
        generate_keypair(tmp_path / "fresh.pem", keys.pub_path)
    assert keys.priv_path.read_bytes() == before
    assert not (tmp_path / "fresh.pem").exists() and not (tmp_path / "fresh.pub").exists()
    with pytest.raises(InvalidInput, match="empty"):
        generate_keypair(tmp_path / "e.pem", tmp_path / "e.pub", passphrase=b"")


def test_key_files_that_are_not_p256(tmp_path: Path) -> None:
    k384 = ec.generate_private_key(ec.SECP384R1())
    priv = tmp_path / "p384.pem"
    priv.write_bytes(k384.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    pub = k384.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidInput, match="not ECDSA P-256"):
        load_private_key(priv)
    with pytest.raises(InvalidInput, match="not ECDSA P-256"):
        load_public_key(pub)
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        load_public_key(b"hello")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(InvalidInput, match="not a PEM private key"):
        load_private_key(tmp_path / "junk.pem")
    with pytest.raises(NotFound):
        load_private_key(tmp_path / "absent.pem")
    with pytest.raises(NotFound):
        load_public_key(tmp_path / "absent.pub")
    with pytest.raises(InvalidInput, match="not ECDSA P-256"):
        sign_files([(".", "0" * 64)], model_name="m", private_key=k384)


@pytest.mark.parametrize("files", [
    [],
    [("a", "0" * 64), ("a", "1" * 64)],
    [(".", "0" * 64), ("a", "0" * 64)],
    [("../a", "0" * 64)],
    [("/a", "0" * 64)],
    [("a//b", "0" * 64)],
    [("a/./b", "0" * 64)],
    [("a", "A" * 64)],
    [("a", "0" * 63)],
])
def test_sign_refuses_malformed_file_lists(files: Files, keys: KeyPair) -> None:
    with pytest.raises(InvalidInput):
        sign_files(files, model_name="m", private_key=keys.priv)
