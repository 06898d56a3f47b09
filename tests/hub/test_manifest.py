"""Manifests, sidecars, the event chain and one-pass hashing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import threading

import pytest

from sentenialx.hub import hashing
from sentenialx.hub.errors import IntegrityError, InvalidInput, InvalidName
from sentenialx.hub.events import GENESIS, Event, chain, verify_chain
from sentenialx.hub.hashing import copy_and_hash, hash_bytes, hash_file, hash_files, read_verified
from sentenialx.hub.manifest import (
    MANIFEST_SCHEMA,
    FileEntry,
    Manifest,
    canonical_json,
    parse_sha256sum,
)

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()


def test_canonical_json_is_sorted_and_compact() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": "é"}]}) == \
        '{"a":[1,{"c":"é","d":2}],"b":1}'.encode()


def test_manifest_sorted_and_digest_from_canonical_bytes() -> None:
    m = Manifest((FileEntry("z.bin", 1, SHA_A), FileEntry("a/b.json", 1, SHA_B, "config")))
    assert [f.path for f in m.files] == ["a/b.json", "z.bin"]
    assert m.to_dict()["schema"] == MANIFEST_SCHEMA
    assert m.canonical_bytes() == canonical_json(m.to_dict())
    assert m.digest == hashlib.sha256(m.canonical_bytes()).hexdigest()
    # Order of construction does not change the digest.
    m2 = Manifest(tuple(reversed(m.files)))
    assert m2.digest == m.digest
    assert m.total_size == 2
    assert [f.path for f in m.weights()] == ["z.bin"]
    assert set(m.by_path()) == {"a/b.json", "z.bin"}
    # Any change to a size, hash, path or role changes the digest.
    for other in (
        Manifest((FileEntry("z.bin", 2, SHA_A), FileEntry("a/b.json", 1, SHA_B, "config"))),
        Manifest((FileEntry("z.bin", 1, SHA_B), FileEntry("a/b.json", 1, SHA_B, "config"))),
        Manifest((FileEntry("y.bin", 1, SHA_A), FileEntry("a/b.json", 1, SHA_B, "config"))),
        Manifest((FileEntry("z.bin", 1, SHA_A), FileEntry("a/b.json", 1, SHA_B, "other"))),
    ):
        assert other.digest != m.digest


def test_manifest_round_trip_and_malformed() -> None:
    m = Manifest((FileEntry("w.onnx", 10, SHA_A), FileEntry("w_log.txt", 3, SHA_B, "log")))
    assert Manifest.from_dict(json.loads(m.canonical_bytes())) == m
    for bad in ({}, {"schema": "x", "files": []}, {"schema": MANIFEST_SCHEMA, "files": "no"},
                {"schema": MANIFEST_SCHEMA, "files": [{"path": "a"}]}, [1]):
        with pytest.raises(InvalidInput):
            Manifest.from_dict(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="twice"):
        Manifest((FileEntry("a", 1, SHA_A), FileEntry("a", 1, SHA_B)))


@pytest.mark.parametrize(("args", "exc"), [
    (("a", 1, SHA_A, "weights-ish"), InvalidInput),
    (("a", 1, "abc"), InvalidInput),
    (("a", 1, SHA_A.upper()), InvalidInput),
    (("a", -1, SHA_A), InvalidInput),
    (("../a", 1, SHA_A), InvalidName),
    (("/a", 1, SHA_A), InvalidName),
    (("a/./b", 1, SHA_A), InvalidName),
])
def test_file_entry_validation(args: tuple, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        FileEntry(*args)


def test_sha256sum_sidecar_round_trip() -> None:
    m = Manifest((FileEntry("w_v1.0.0/a.bin", 1, SHA_A), FileEntry("w_v1.0.0_r.md", 1, SHA_B)))
    text = m.sha256sum_text()
    assert text == f"{SHA_A}  w_v1.0.0/a.bin\n{SHA_B}  w_v1.0.0_r.md\n"
    assert parse_sha256sum(text) == {"w_v1.0.0/a.bin": SHA_A, "w_v1.0.0_r.md": SHA_B}
    # Binary-mode lines (`sha256sum -b`) and blank lines parse too.
    assert parse_sha256sum(f"{SHA_A.upper()} *x.bin\n\n") == {"x.bin": SHA_A}
    with pytest.raises(InvalidInput, match="line 2"):
        parse_sha256sum(f"{SHA_A}  ok\nnot a line\n")


# -- the event chain ----------------------------------------------------------------------


def _events(n: int = 4) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        out.append(chain(out[-1] if out else None, ts=f"2024-01-0{i + 1}T00:00:00Z",
                         kind="register", model="m", version=f"1.0.{i}", actor="t",
                         payload={"digest": str(i)}))
    return out


def test_chain_links_and_verifies() -> None:
    evs = _events()
    assert evs[0].prev_hash == GENESIS and evs[0].seq == 1
    assert all(b.prev_hash == a.hash for a, b in zip(evs, evs[1:], strict=False))
    rep = verify_chain(evs)
    assert rep.ok and rep.count == 4 and rep.head == evs[-1].hash
    assert Event.from_dict(evs[2].to_dict()) == evs[2]
    assert verify_chain([]).ok


def test_chain_detects_edit_removal_and_reorder() -> None:
    evs = _events()
    e = evs[2]
    edited = Event(e.seq, e.ts, e.kind, e.model, "6.6.6", e.actor, e.payload, e.prev_hash, e.hash)
    rep = verify_chain([*evs[:2], edited, evs[3]])
    assert not rep.ok and rep.first_bad == 3 and "event 3" in rep.reason
    assert "6.6.6" in rep.reason
    rep = verify_chain([evs[0], evs[2], evs[3]])
    assert not rep.ok and rep.first_bad == 3 and "removed" in rep.reason
    # Re-hashing an edited event does not help: the next one no longer follows it.
    rehashed = Event(e.seq, e.ts, e.kind, e.model, "6.6.6", e.actor, e.payload, e.prev_hash)
    rehashed = Event(*[getattr(rehashed, f) for f in ("seq", "ts", "kind", "model", "version",
                                                     "actor", "payload", "prev_hash")],
                     rehashed.compute_hash())
    rep = verify_chain([*evs[:2], rehashed, evs[3]])
    assert not rep.ok and rep.first_bad == 4 and "does not follow" in rep.reason


# -- hashing ------------------------------------------------------------------------------


def test_hash_file_and_bytes(tmp_path) -> None:
    data = bytes(range(256)) * 40000  # > one chunk
    p = tmp_path / "f"
    p.write_bytes(data)
    seen: list[int] = []
    d = hash_file(p, progress=seen.append)
    assert d.sha256 == hashlib.sha256(data).hexdigest() and d.size == len(data)
    assert sum(seen) == len(data)
    assert hash_bytes(data) == d
    (tmp_path / "g").write_bytes(b"")
    assert hash_files([p, tmp_path / "g", p]) == [d, hash_bytes(b""), d]
    with pytest.raises(OSError):
        hash_file(tmp_path / "missing")


def test_copy_and_hash_reads_once_and_copies_exactly() -> None:
    data = b"xyz" * (3 * 1024 * 1024)  # spans several chunks
    src, dst = io.BytesIO(data), io.BytesIO()
    d = copy_and_hash(src, dst)
    assert dst.getvalue() == data
    assert d.sha256 == hashlib.sha256(data).hexdigest() and d.size == len(data)


def test_copy_and_hash_propagates_write_errors() -> None:
    class Broken(io.BytesIO):
        def write(self, b):  # type: ignore[no-untyped-def, override]
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        copy_and_hash(io.BytesIO(b"x" * (9 * 1024 * 1024)), Broken())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_write_behind_starts_each_window_and_copies_exactly(tmp_path, monkeypatch) -> None:
    """Every full window is handed to the kernel once, in order, and the bytes are unchanged."""
    real = hashing._sync_file_range()
    assert real is not None
    calls: list[tuple[int, int]] = []

    def counting(fd: int, off: int, n: int, flags: int) -> int:
        calls.append((off, n))
        return real(fd, off, n, flags)

    monkeypatch.setattr(hashing, "_sync_file_range", lambda: counting)
    data = os.urandom(3 * hashing.CHUNK + 12345)
    src, out = tmp_path / "src", tmp_path / "out"
    src.write_bytes(data)
    with open(src, "rb", buffering=0) as fin, open(out, "wb", buffering=0) as fout:
        d = copy_and_hash(fin, fout, write_behind=2 * hashing.CHUNK)
    assert out.read_bytes() == data
    assert d == hash_bytes(data)
    # Windows close on chunk boundaries: one of 2 chunks; the tail is left to the fsync.
    assert calls == [(0, 2 * hashing.CHUNK)]


def test_write_behind_refused_by_a_pipe_still_copies_exactly() -> None:
    """sync_file_range refuses a pipe (ESPIPE): write-behind turns off, the copy goes on."""
    data = os.urandom(2 * hashing.CHUNK + 7)
    r, w = os.pipe()
    got = bytearray()

    def drain() -> None:
        with open(r, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                got.extend(chunk)

    t = threading.Thread(target=drain)
    t.start()
    with open(w, "wb", buffering=0) as fout:
        d = copy_and_hash(io.BytesIO(data), fout, write_behind=1)
    t.join()
    assert bytes(got) == data and d == hash_bytes(data)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="vmsplice is Linux's")
def test_splice_moves_every_chunk_through_the_pipe_exactly(tmp_path, monkeypatch) -> None:
    """With splice, the bytes go through vmsplice (counted here) and land unchanged."""
    real = hashing._vmsplice()
    assert real is not None
    moved: list[int] = []

    def counting(fd: int, addr: int, n: int) -> int:
        k = real(fd, addr, n)
        moved.append(k)
        return k

    monkeypatch.setattr(hashing, "_vmsplice", lambda: counting)
    data = os.urandom(3 * hashing.CHUNK + 4097)
    src, out = tmp_path / "src", tmp_path / "out"
    src.write_bytes(data)
    with open(src, "rb", buffering=0) as fin, open(out, "wb", buffering=0) as fout:
        d = copy_and_hash(fin, fout, splice=True, write_behind=hashing.CHUNK)
    assert out.read_bytes() == data
    assert d == hash_bytes(data)
    assert sum(moved) == len(data)


def test_splice_refused_by_an_append_only_file_falls_back_to_writes(tmp_path) -> None:
    """splice refuses a file opened O_APPEND (EINVAL) before moving a byte: writes take over."""
    data = os.urandom(2 * hashing.CHUNK + 3)
    out = tmp_path / "out"
    out.write_bytes(b"head")
    with open(out, "ab", buffering=0) as fout:
        d = copy_and_hash(io.BytesIO(data), fout, splice=True)
    assert out.read_bytes() == b"head" + data
    assert d == hash_bytes(data)


def test_read_verified(tmp_path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    assert read_verified(p, expected=good, size=5) == b"hello"
    with pytest.raises(IntegrityError) as ei:
        read_verified(p, expected=SHA_A)
    assert ei.value.expected == SHA_A and ei.value.actual == good and "f" in str(ei.value)
    with pytest.raises(IntegrityError, match="size"):
        read_verified(p, expected=good, size=6)


# -- a registered version's manifest ------------------------------------------------------


def test_registered_version_digest_is_manifest_digest(hub, sample_file, tmp_path) -> None:
    rpt = tmp_path / "report.md"
    rpt.write_text("# report\n")
    v = hub.register("distill", sample_file(1000, seed=3), attachments=[("report", rpt)])
    assert v.digest == Manifest(v.files).digest == v.manifest.digest
    meta = json.loads((hub.root / "distill" / f"{v.stem}_meta.json").read_text())
    assert meta["digest"] == v.digest
    assert Manifest.from_dict({"schema": MANIFEST_SCHEMA, "files": meta["files"]}).digest == v.digest
    side = (hub.root / "distill" / f"{v.stem}.sha256").read_text()
    assert side == v.manifest.sha256sum_text()
    assert parse_sha256sum(side) == {f.path: f.sha256 for f in v.files}
