"""verify (fast and deep), fsck and gc on real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from sentenialx.hub.errors import IntegrityError, NotFound


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def flip_byte(p: Path, offset: int = 0, *, keep_mtime: bool = True) -> None:
    """Flip one byte in place (same size); put the mtime back so only the bytes tell."""
    st = p.stat()
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    os.chmod(p, st.st_mode & 0o7777)
    if keep_mtime:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size


def overwrite(p: Path, data: bytes) -> None:
    os.chmod(p, 0o644)
    p.write_bytes(data)
    os.chmod(p, 0o444)


@pytest.fixture
def filled(hub, sample_file, tmp_path):
    """A single-file version with attachments and a folder version with nested members."""
    rep = tmp_path / "report.md"
    rep.write_text("# distillation report\n" * 20)
    log = tmp_path / "train.log"
    log.write_text("epoch 1 loss 0.3\n" * 50)
    hub.register("distill", sample_file(300_000, seed=1, name="student.onnx"),
                 attachments=[("report", rep), ("log", log)])
    d = tmp_path / "adapter"
    (d / "tok" / "deep").mkdir(parents=True)
    (d / "adapter.safetensors").write_bytes(os.urandom(50_000))
    (d / "config.json").write_text('{"r": 16}')
    (d / "tok" / "deep" / "vocab.txt").write_text("a\nb\nc\n" * 100)
    hub.register("lora", d)
    hub.register("distill", sample_file(1000, seed=2, name="student.onnx"))
    return hub


# The registered files a flipped byte can land in: weights, attachments, folder members.
TARGETS = [
    ("distill", "student_v1.0.0.onnx", 12345),
    ("distill", "student_v1.0.0_report.md", 3),
    ("distill", "student_v1.0.0_train.log", 0),
    ("lora", "adapter_v1.0.0/adapter.safetensors", 49_999),
    ("lora", "adapter_v1.0.0/config.json", 1),
    ("lora", "adapter_v1.0.0/tok/deep/vocab.txt", 10),
]


def test_fast_verify_trusts_the_stat_cache(filled) -> None:
    filled.index.stat_cache_clear()
    first = filled.verify()
    assert first.ok and first.files == 7 and first.versions == 3
    assert first.hashed == 7
    second = filled.verify()
    assert second.ok and second.hashed == 0 and second.bytes_hashed == 0
    deep = filled.verify(deep=True)
    assert deep.ok and deep.hashed == 7
    assert deep.bytes_hashed == sum(v.size for v in filled.index.all_ready_versions())
    assert filled.verify(deep=True).hashed == 7  # deep never trusts the cache
    assert filled.verify().hashed == 0


def test_verify_scopes(filled) -> None:
    assert filled.verify("distill@1.0.0").files == 3
    assert filled.verify("lora", deep=True).files == 3
    assert filled.verify(model="distill", deep=True).versions == 2
    assert filled.verify(deep=True).versions == 3
    with pytest.raises(NotFound):
        filled.verify("nope")
    with pytest.raises(NotFound):
        filled.verify(model="nope")


@pytest.mark.parametrize(("model", "rel", "offset"), TARGETS)
def test_flipped_byte_is_reported_by_deep_verify(filled, model, rel, offset) -> None:
    p = filled.root / model / rel
    expected = sha(p)
    flip_byte(p, offset)
    actual = sha(p)
    rep = filled.verify(deep=True)
    assert not rep.ok
    assert len(rep.problems) == 1
    prob = rep.problems[0]
    assert prob.kind == "changed"
    assert prob.path == f"{model}/{rel}"
    assert (prob.expected, prob.actual) == (expected, actual)
    assert rel in prob.message and expected in prob.message and actual in prob.message
    assert prob.model == model and prob.version == "1.0.0"
    # Per-model and per-ref deep verify see it too; the other model is clean.
    assert not filled.verify(f"{model}@1.0.0", deep=True).ok
    assert filled.verify("lora" if model == "distill" else "distill", deep=True).ok
    assert not filled.fsck(deep=True).ok


@pytest.mark.parametrize(("model", "rel", "offset"), TARGETS[:1] + TARGETS[3:4])
def test_tampering_with_preserved_mtime(filled, model, rel, offset) -> None:
    """mtime put back: deep re-hashes and catches it; fast notices the ctime/size change."""
    p = filled.root / model / rel
    filled.verify()
    mtime = p.stat().st_mtime_ns
    flip_byte(p, offset, keep_mtime=True)
    assert p.stat().st_mtime_ns == mtime
    assert [x.path for x in filled.verify(deep=True).problems] == [f"{model}/{rel}"]
    assert [x.path for x in filled.verify().problems] == [f"{model}/{rel}"]


def test_verified_reads_refuse_tampered_bytes(filled) -> None:
    p = filled.root / "distill" / "student_v1.0.0.onnx"
    expected = sha(p)
    flip_byte(p, 7)
    with pytest.raises(IntegrityError) as ei:
        filled.open("distill@1.0.0")
    assert ei.value.path == "student_v1.0.0.onnx"
    assert ei.value.expected == expected and ei.value.actual == sha(p)
    assert "student_v1.0.0.onnx" in str(ei.value) and "fsck" in str(ei.value)
    assert filled.open("distill@1.0.0", file="report.md")  # the other files are fine


def test_missing_files(filled) -> None:
    w = filled.root / "distill" / "student_v1.0.1.onnx"
    member = filled.root / "lora" / "adapter_v1.0.0" / "tok" / "deep" / "vocab.txt"
    expected = sha(w)
    w.unlink()
    member.unlink()
    for deep in (False, True):
        rep = filled.verify(deep=deep)
        got = {(p.kind, p.path) for p in rep.problems}
        assert got == {("missing", "distill/student_v1.0.1.onnx"),
                       ("missing", "lora/adapter_v1.0.0/tok/deep/vocab.txt")}
        assert next(p for p in rep.problems if p.path.startswith("distill")).expected == expected


def test_changed_size_is_reported(filled) -> None:
    p = filled.root / "distill" / "student_v1.0.0_train.log"
    overwrite(p, p.read_bytes() + b"appended\n")
    rep = filled.verify()
    assert [(x.kind, x.path) for x in rep.problems] == [("changed", "distill/student_v1.0.0_train.log")]
    assert "size" in rep.problems[0].message
    # Deep mode names the actual digest too.
    rep = filled.verify(deep=True)
    assert [(x.kind, x.path, x.actual) for x in rep.problems] == [
        ("changed", "distill/student_v1.0.0_train.log", sha(p))]
    assert rep.problems[0].expected in rep.problems[0].message and "size" in rep.problems[0].message


def test_extra_file_in_a_folder_version(filled) -> None:
    extra = filled.root / "lora" / "adapter_v1.0.0" / "tok" / "injected.py"
    extra.write_text("import os\n")
    rep = filled.verify()
    assert [(p.kind, p.path) for p in rep.problems] == [("extra", "lora/adapter_v1.0.0/tok/injected.py")]
    assert not filled.verify(deep=True).ok
    kinds = {p.kind for p in filled.fsck().problems}
    assert "extra" in kinds


# -- fsck -------------------------------------------------------------------------------


def test_fsck_clean(hub, filled) -> None:
    rep = filled.fsck()
    assert rep.ok, rep.problems
    assert rep.versions == 3 and rep.events == 3 and rep.chain_head == filled.events()[-1].hash
    assert filled.fsck(deep=True).ok
    assert filled.fsck("lora").ok


def test_fsck_clean_on_a_fresh_hub(make_hub, tmp_path) -> None:
    h = make_hub(tmp_path / "fresh")
    rep = h.fsck(deep=True)
    assert rep.ok and rep.versions == 0 and rep.events == 0
    assert json.loads((h.root / "registry.json").read_text()) == {}


@pytest.mark.parametrize("which", ["sha256-edit", "sha256-gone", "meta-digest", "meta-garbage"])
def test_fsck_detects_sidecar_tampering(filled, which) -> None:
    folder = filled.root / "distill"
    side, meta = folder / "student_v1.0.0.sha256", folder / "student_v1.0.0_meta.json"
    if which == "sha256-edit":
        lines = side.read_text().splitlines()
        lines[0] = "0" * 64 + lines[0][64:]
        overwrite(side, ("\n".join(lines) + "\n").encode())
        r = subprocess.run(["sha256sum", "-c", side.name], cwd=folder, capture_output=True)
        assert r.returncode != 0
    elif which == "sha256-gone":
        side.unlink()
    elif which == "meta-digest":
        doc = json.loads(meta.read_text())
        doc["digest"] = "f" * 64
        overwrite(meta, json.dumps(doc).encode())
    else:
        overwrite(meta, b"{not json")
    rep = filled.fsck()
    assert not rep.ok
    bad = [p for p in rep.problems if p.kind == "sidecar"]
    assert bad and all(p.model == "distill" and p.version == "1.0.0" for p in bad)
    assert filled.verify(deep=True).ok  # the weights themselves are fine


def test_fsck_detects_registry_json_edits(filled, registry_ok) -> None:
    reg = filled.root / "registry.json"
    data = json.loads(reg.read_text())
    data["distill"]["version"] = "9.9.9"
    reg.write_text(json.dumps(data))
    assert [p.kind for p in filled.fsck().problems] == ["registry"]
    filled.export_registry()
    assert filled.fsck().ok
    registry_ok(filled)
    reg.write_text("{broken")
    assert [p.kind for p in filled.fsck().problems] == ["registry"]
    reg.unlink()
    assert [p.kind for p in filled.fsck().problems] == ["registry"]


def test_fsck_reports_orphans(filled) -> None:
    (filled.root / "distill" / "stray.bin").write_bytes(b"x")
    (filled.root / ".tmp-deadbeef").write_bytes(b"half a registry.json")
    (filled.root / "newmodel" / "w_v1.0.0").mkdir(parents=True)
    (filled.root / "newmodel" / "w_v1.0.0" / "a.bin").write_bytes(b"half a folder")
    (filled.root / "notes.txt").write_text("a person's note at the root is left alone")
    rep = filled.fsck()
    orphans = sorted(p.path for p in rep.problems if p.kind == "orphan")
    assert orphans == [".tmp-deadbeef", "distill/stray.bin", "newmodel/w_v1.0.0/a.bin"]
    assert {p.kind for p in rep.problems} == {"orphan"}


def test_fsck_reports_chain_edits(filled) -> None:
    import sqlite3

    conn = sqlite3.connect(filled.root / "registry.db")
    conn.execute("UPDATE events SET actor='mallory' WHERE seq=1")
    conn.commit()
    conn.close()
    chain = [p for p in filled.fsck().problems if p.kind == "chain"]
    assert len(chain) == 1 and "event 1" in chain[0].message


def test_fsck_detects_index_rows_edited_behind_its_back(filled) -> None:
    import sqlite3

    conn = sqlite3.connect(filled.root / "registry.db")
    conn.execute("UPDATE files SET sha256=? WHERE path='student_v1.0.1.onnx'", ("0" * 64,))
    conn.commit()
    conn.close()
    kinds = {p.kind for p in filled.fsck().problems}
    assert {"changed", "sidecar"} <= kinds


# -- gc ---------------------------------------------------------------------------------


def _crash_leftovers(h) -> list[Path]:
    """What a killed registration leaves: a pending row, a temp file, a staged folder."""
    info = h.index.reserve_version("distill", version=None, bump=None,
                                   stem_for=lambda v: f"student_v{v}", layout="file", meta={},
                                   lineage={}, actor="crashed")
    left = [h.root / "distill" / f"{info.stem}.onnx",
            h.root / "distill" / ".tmp-0123456789abcdef",
            h.root / "lora" / ".tmp-feedface.dir" / "adapter.safetensors"]
    for p in left:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    return left


def test_gc_keeps_young_orphans_and_removes_old_ones(filled) -> None:
    old = filled.root / "distill" / "old-orphan.bin"
    old.write_bytes(b"o" * 100)
    time.sleep(2.0)
    young = filled.root / "distill" / "young-orphan.bin"
    young.write_bytes(b"y" * 10)
    rep = filled.gc(grace=timedelta(seconds=1.0))
    assert rep.removed == ["distill/old-orphan.bin"] and rep.freed_bytes == 100
    assert rep.kept_young == 1 and not rep.dry_run
    assert not old.exists() and young.exists()
    rep = filled.gc()  # default grace: an hour
    assert rep.removed == [] and young.exists()
    assert filled.gc(grace=timedelta(0)).removed == ["distill/young-orphan.bin"]
    assert filled.fsck(deep=True).ok


def test_gc_dry_run_changes_nothing(filled, snapshot) -> None:
    left = _crash_leftovers(filled)
    (filled.root / "distill" / "stray.bin").write_bytes(b"stray")
    before = snapshot(filled)
    rep = filled.gc(grace=timedelta(0), dry_run=True)
    assert rep.dry_run
    assert set(rep.removed) >= {"distill/stray.bin", "distill/student_v1.0.2.onnx",
                                "distill/.tmp-0123456789abcdef",
                                "lora/.tmp-feedface.dir/adapter.safetensors"}
    assert rep.stale_pending == ["distill@1.0.2"]
    assert rep.freed_bytes == sum(len(b"partial") for _ in left) + len(b"stray")
    assert snapshot(filled) == before
    assert all(p.exists() for p in left)


def test_gc_removes_crashed_registrations_then_fsck_is_clean(filled, sample_file) -> None:
    left = _crash_leftovers(filled)
    # fsck's own grace: a registration younger than it may still be running.
    assert {p.kind for p in filled.fsck().problems} == {"orphan"}
    assert "pending" in {p.kind for p in filled.fsck(grace=timedelta(0)).problems}
    # A young crash is left alone by the default grace.
    rep = filled.gc()
    assert rep.stale_pending == [] and all(p.exists() for p in left)
    assert len(filled.index.pending_versions()) == 1
    rep = filled.gc(grace=timedelta(0))
    assert rep.stale_pending == ["distill@1.0.2"]
    assert not any(p.exists() for p in left)
    assert not (filled.root / "lora" / ".tmp-feedface.dir").exists()
    assert filled.index.pending_versions() == []
    assert filled.fsck(deep=True, grace=timedelta(0)).ok
    # The freed version number is simply reused by the next registration.
    assert filled.register("distill", sample_file(5, seed=50)).version == "1.0.2"
    assert filled.fsck().ok


def test_gc_never_removes_what_a_version_names(filled, snapshot, sample_file) -> None:
    filled.set_alias("distill@1.0.0", "stable")
    filled.revoke("distill@1.0.1", reason="kept but revoked")
    # Identical bytes shared by hardlink between versions stay too.
    filled.register("distill", sample_file(1000, seed=2, name="student.onnx"))
    before = snapshot(filled)
    rep = filled.gc(grace=timedelta(0))
    assert rep.removed == [] and rep.stale_pending == []
    assert snapshot(filled) == before
    assert filled.verify(deep=True).ok and filled.fsck().ok


def test_registry_json_is_regenerated_atomically(filled, monkeypatch) -> None:
    """registry.json is replaced by rename: a failed write leaves the old file whole."""
    reg = filled.root / "registry.json"
    old = reg.read_bytes()
    real = os.replace

    def failing(src, dst, *a, **k):  # type: ignore[no-untyped-def]
        if str(dst).endswith("registry.json"):
            raise OSError(28, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        filled.write_registry_json()
    monkeypatch.undo()
    assert reg.read_bytes() == old
    assert not list(filled.root.glob(".tmp-*"))
