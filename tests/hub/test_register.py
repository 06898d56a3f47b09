"""Registering files and folders: versions, metadata, lineage, attachments, layout, dedup,
and bad input that changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from sentenialx.hub.errors import (
    AlreadyExists,
    HubError,
    InvalidInput,
    InvalidName,
    InvalidVersion,
    NotFound,
)
from sentenialx.hub.manifest import FileEntry


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_read_only(p: Path) -> None:
    assert stat.S_IMODE(p.stat().st_mode) & 0o222 == 0, f"{p} is writable"


def sha256sum_c(folder: Path, sidecar: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sha256sum", "--strict", "-c", sidecar], cwd=folder,
                          capture_output=True, text=True, check=False)


@pytest.fixture
def adapter(tmp_path: Path) -> Path:
    """A folder version: weights, a config and nested files."""
    d = tmp_path / "inputs" / "lora_adapter"
    (d / "tokenizer" / "extra").mkdir(parents=True)
    (d / "adapter_model.safetensors").write_bytes(os.urandom(3000))
    (d / "adapter_config.json").write_text('{"r": 8}')
    (d / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (d / "tokenizer" / "extra" / "merges.bin").write_bytes(os.urandom(500))
    return d


# -- single files -------------------------------------------------------------------------


def test_register_file_layout_and_sidecars(hub, sample_file, registry_ok) -> None:
    src = sample_file(5000, seed=1, name="threat_student.onnx")
    v = hub.register("distill", src)
    assert (v.model, v.version, v.state, v.layout) == ("distill", "1.0.0", "ready", "file")
    assert v.stem == "threat_student_v1.0.0"
    folder = hub.root / "distill"
    weights = folder / "threat_student_v1.0.0.onnx"
    assert sorted(p.name for p in folder.iterdir()) == [
        "threat_student_v1.0.0.onnx", "threat_student_v1.0.0.sha256",
        "threat_student_v1.0.0_meta.json"]
    assert weights.read_bytes() == src.read_bytes()
    assert v.files == (FileEntry("threat_student_v1.0.0.onnx", 5000, sha(src), "weights"),)
    assert v.size == 5000
    # Read-only, sidecars included; the input is untouched (copy mode).
    for p in folder.iterdir():
        assert_read_only(p)
    assert stat.S_IMODE(src.stat().st_mode) & 0o200
    assert src.stat().st_ino != weights.stat().st_ino
    # The sidecar passes coreutils' own check in the model's folder.
    r = sha256sum_c(folder, "threat_student_v1.0.0.sha256")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "threat_student_v1.0.0.onnx: OK" in r.stdout
    meta = json.loads((folder / "threat_student_v1.0.0_meta.json").read_text())
    assert meta["model"] == "distill" and meta["version"] == "1.0.0"
    assert meta["digest"] == v.digest and meta["layout"] == "file"
    assert meta["metadata"]["format"] == "onnx"
    assert meta["files"] == [f.to_dict() for f in v.files]
    assert hub.path("distill") == weights
    assert hub.open("distill") == src.read_bytes()
    registry_ok(hub)


def test_version_suffix_in_input_name_is_not_doubled(hub, sample_file) -> None:
    v = hub.register("distill", sample_file(10, name="threat_student_v0.9.0.onnx"))
    assert v.stem == "threat_student_v1.0.0"
    v = hub.register("distill", sample_file(11, name="anything.onnx"), name="custom")
    assert v.stem == "custom_v1.0.1"
    assert (hub.root / "distill" / "custom_v1.0.1.onnx").is_file()


def test_explicit_versions_and_bumps(hub, sample_file, registry_ok) -> None:
    seen = []
    for i, kw in enumerate([{}, {"bump": "patch"}, {"bump": "minor"}, {"bump": "major"},
                            {"version": "1.5.0"}, {}, {"version": "v3.0.0-rc.1"},
                            {"bump": "patch"}, {"bump": "minor"}]):
        seen.append(hub.register("m", sample_file(100, seed=i), **kw).version)
        registry_ok(hub)
    assert seen == ["1.0.0", "1.0.1", "1.1.0", "2.0.0", "1.5.0", "2.0.1", "3.0.0-rc.1",
                    "3.0.0", "3.1.0"]
    assert [v.version for v in hub.versions("m")] == [
        "1.0.0", "1.0.1", "1.1.0", "1.5.0", "2.0.0", "2.0.1", "3.0.0-rc.1", "3.0.0", "3.1.0"]
    assert hub.resolve("m").version == "3.1.0"


def test_first_version_is_1_0_0_whatever_the_bump(hub, sample_file) -> None:
    assert hub.register("a", sample_file(1, seed=1), bump="major").version == "1.0.0"
    assert hub.register("b", sample_file(1, seed=2), bump="minor").version == "1.0.0"


def test_metadata_known_and_free_form_keys(hub, sample_file) -> None:
    meta = {
        "description": "student distilled from the teacher", "framework": "pytorch",
        "metrics": {"accuracy": 0.97, "f1": 0.95, "per_class": {"benign": 0.99}},
        "params": {"lr": 0.001, "epochs": 3}, "inputs": [{"name": "x", "shape": [1, 128]}],
        "outputs": [{"name": "logits", "shape": [1, 4]}], "tags": ["prod"],
        "owner": {"team": "detection", "ids": [1, 2, 3]}, "notes": None,
    }
    v = hub.register("distill", sample_file(100), metadata=meta)
    expected = dict(meta, format="onnx")
    assert v.meta == expected
    assert hub.resolve("distill").meta == expected
    doc = json.loads((hub.root / "distill" / f"{v.stem}_meta.json").read_text())
    assert doc["metadata"] == expected
    # An explicit format wins over detection.
    v2 = hub.register("distill", sample_file(100, seed=5), metadata={"format": "custom"})
    assert v2.meta["format"] == "custom"


@pytest.mark.parametrize(("name", "fmt"), [
    ("w.onnx", "onnx"), ("w.pt", "torch"), ("w.bin", "torch"), ("w.safetensors", "safetensors"),
    ("w.pkl", "pickle"), ("w.gguf", "gguf"), ("weights", "binary"),
])
def test_format_detected_from_extension(hub, sample_file, name: str, fmt: str) -> None:
    assert hub.register("m", sample_file(10, name=name)).meta["format"] == fmt


@pytest.mark.parametrize("meta", [
    {"metrics": [1, 2]}, {"metrics": {"acc": "high"}}, {"metrics": {"acc": True}},
    {"params": "lr=1"}, {"description": 5}, {"framework": ["x"]}, {"format": 1},
    {"x": float("nan")}, {"x": {1, 2}}, {"x": object()}, {"x": b"bytes"},
])
def test_bad_metadata_refused(hub, sample_file, snapshot, meta) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    with pytest.raises(InvalidInput):
        hub.register("m", sample_file(10, seed=9), metadata=meta)
    assert snapshot(hub) == before


def test_lineage_parents_and_data_digest(hub, sample_file) -> None:
    teacher = hub.register("teacher", sample_file(100, seed=1))
    base = hub.register("base", sample_file(100, seed=2), version="2.1.0")
    hub.set_alias("base@2.1.0", "stable")
    data = hashlib.sha256(b"training data").hexdigest()
    v = hub.register("distill", sample_file(100, seed=3),
                     parents=["teacher=teacher", "base@stable"],
                     data_digest="sha256:" + data.upper())
    assert v.lineage == {
        "parents": [
            {"role": "teacher", "ref": "teacher", "model": "teacher", "version": "1.0.0",
             "digest": teacher.digest},
            {"role": "parent", "ref": "base@stable", "model": "base", "version": "2.1.0",
             "digest": base.digest},
        ],
        "data_digest": data,
    }
    doc = json.loads((hub.root / "distill" / f"{v.stem}_meta.json").read_text())
    assert doc["lineage"] == v.lineage
    ev = hub.events(model="distill")[-1]
    assert ev.kind == "register" and ev.payload["data_digest"] == data
    assert [p["digest"] for p in ev.payload["parents"]] == [teacher.digest, base.digest]


def test_bad_lineage_changes_nothing(hub, sample_file, snapshot) -> None:
    hub.register("teacher", sample_file(100, seed=1))
    before = snapshot(hub)
    with pytest.raises(NotFound):
        hub.register("distill", sample_file(10), parents=["teacher@9.9.9"])
    with pytest.raises(NotFound):
        hub.register("distill", sample_file(10), parents=["nope"])
    with pytest.raises(InvalidInput):
        hub.register("distill", sample_file(10), parents=["teacher@^y"])
    with pytest.raises(InvalidInput):
        hub.register("distill", sample_file(10), data_digest="not-a-digest")
    assert snapshot(hub) == before


def test_attachments_named_after_the_stem(hub, sample_file, tmp_path) -> None:
    att = tmp_path / "att"
    att.mkdir()
    files = {"log": "train.log", "chart": "loss.png", "report": "report.md",
             "config": "config.yaml", "other": "notes.txt"}
    for i, n in enumerate(files.values()):
        (att / n).write_bytes(f"{n} {i}\n".encode())
    v = hub.register("distill", sample_file(100, name="student.onnx"),
                     attachments=[(role, att / n) for role, n in files.items()])
    by_path = v.manifest.by_path()
    assert by_path["student_v1.0.0.onnx"].role == "weights"
    for role, n in files.items():
        rel = f"student_v1.0.0_{n}"
        assert by_path[rel].role == role
        stored = hub.root / "distill" / rel
        assert stored.read_bytes() == (att / n).read_bytes()
        assert by_path[rel].sha256 == sha(stored)
        assert_read_only(stored)
    r = sha256sum_c(hub.root / "distill", "student_v1.0.0.sha256")
    assert r.returncode == 0, r.stdout
    assert r.stdout.count(": OK") == 6
    assert hub.open("distill", file="report.md") == (att / "report.md").read_bytes()
    assert hub.open("distill", file="student_v1.0.0_train.log").startswith(b"train.log")


@pytest.mark.parametrize(("role", "exc"), [("weights", InvalidInput), ("bogus", InvalidInput)])
def test_bad_attachment_roles(hub, sample_file, snapshot, role, exc) -> None:
    before = snapshot(hub)
    with pytest.raises(exc):
        hub.register("m", sample_file(10), attachments=[(role, sample_file(5, name="r.md"))])
    assert snapshot(hub) == before


def test_bad_attachments_change_nothing(hub, sample_file, tmp_path, snapshot) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    r1 = sample_file(5, seed=1, name="r.md")
    r2 = sample_file(5, seed=2, name="r.md", dir=tmp_path / "other")
    for attachments in ([("report", tmp_path / "missing.md")], [("report", tmp_path)],
                        [("report", r1), ("log", r2)], [("report", sample_file(5, name="meta.json"))],
                        [("log", sample_file(5, name="bad name.log"))]):
        with pytest.raises(InvalidInput):
            hub.register("m", sample_file(10, seed=3), attachments=attachments)
    assert snapshot(hub) == before


def test_progress_counts_every_input_byte_once(hub, sample_file) -> None:
    seen: list[int] = []
    big = sample_file(9 * 1024 * 1024 + 7, seed=4)
    rep = sample_file(1234, seed=5, name="report.md")
    hub.register("m", big, attachments=[("report", rep)], progress=seen.append)
    assert sum(seen) == big.stat().st_size + rep.stat().st_size


# -- folders ------------------------------------------------------------------------------


def test_register_folder(hub, adapter, tmp_path, registry_ok) -> None:
    report = tmp_path / "eval.md"
    report.write_text("eval\n")
    v = hub.register("lora", adapter, attachments=[("report", report)])
    assert (v.version, v.layout, v.stem) == ("1.0.0", "dir", "lora_adapter_v1.0.0")
    folder = hub.root / "lora"
    stored = folder / "lora_adapter_v1.0.0"
    assert sorted(p.name for p in folder.iterdir()) == [
        "lora_adapter_v1.0.0", "lora_adapter_v1.0.0.sha256", "lora_adapter_v1.0.0_eval.md",
        "lora_adapter_v1.0.0_meta.json"]
    roles = {f.path: f.role for f in v.files}
    assert roles == {
        "lora_adapter_v1.0.0/adapter_config.json": "config",
        "lora_adapter_v1.0.0/adapter_model.safetensors": "weights",
        "lora_adapter_v1.0.0/tokenizer/extra/merges.bin": "weights",
        "lora_adapter_v1.0.0/tokenizer/vocab.txt": "config",
        "lora_adapter_v1.0.0_eval.md": "report",
    }
    for f in v.files:
        p = folder / f.path
        assert p.is_file() and f.sha256 == sha(p) and f.size == p.stat().st_size
        assert_read_only(p)
    assert (stored / "tokenizer" / "extra" / "merges.bin").read_bytes() == \
        (adapter / "tokenizer" / "extra" / "merges.bin").read_bytes()
    assert v.meta["format"] == "safetensors"
    r = sha256sum_c(folder, "lora_adapter_v1.0.0.sha256")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": OK") == 5
    assert hub.path("lora") == stored
    assert set(hub.read_files("lora")) == {f.path for f in v.files if f.role in
                                           ("weights", "config")}
    reg = registry_ok(hub)
    assert reg["lora"]["file"] == "lora/lora_adapter_v1.0.0"


def test_folder_appears_in_one_step(hub, adapter, monkeypatch) -> None:
    final = hub.root / "lora" / "lora_adapter_v1.0.0"
    calls: list[Path] = []
    original = hub.store._write_tmp

    def spy(dst, src, **kw):  # type: ignore[no-untyped-def]
        # While members are being written, the final folder must not exist yet.
        assert not final.exists(), "folder visible before it is complete"
        calls.append(dst)
        return original(dst, src, **kw)

    monkeypatch.setattr(hub.store, "_write_tmp", spy)
    hub.register("lora", adapter)
    assert len(calls) == 4
    assert all(final not in c.parents for c in calls)
    assert final.is_dir()


def test_folder_with_internal_symlink_is_stored_as_a_copy(hub, adapter) -> None:
    (adapter / "alias.json").symlink_to("adapter_config.json")
    v = hub.register("lora", adapter)
    p = hub.root / "lora" / v.stem / "alias.json"
    assert not p.is_symlink() and p.read_text() == '{"r": 8}'


def test_folder_bad_inputs_change_nothing(hub, adapter, tmp_path, snapshot) -> None:
    hub.register("lora", adapter)
    before = snapshot(hub)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    escaping = tmp_path / "escaping"
    escaping.mkdir()
    (escaping / "a.bin").write_bytes(b"x")
    (escaping / "leak.txt").symlink_to(outside)
    with pytest.raises(InvalidInput, match="escapes"):
        hub.register("lora", escaping)
    dotdot = tmp_path / "dotdot"
    (dotdot / "sub").mkdir(parents=True)
    (dotdot / "a.bin").write_bytes(b"x")
    (dotdot / "sub" / "up.txt").symlink_to("../../secret.txt")
    with pytest.raises(InvalidInput, match="escapes"):
        hub.register("lora", dotdot)
    linked_dir = tmp_path / "linked_dir"
    linked_dir.mkdir()
    (linked_dir / "a.bin").write_bytes(b"x")
    (linked_dir / "sub").symlink_to(tmp_path / "escaping")
    with pytest.raises(InvalidInput, match="symlink"):
        hub.register("lora", linked_dir)
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / "a.bin").write_bytes(b"x")
    (dangling / "gone.bin").symlink_to("nothing-here")
    with pytest.raises(InvalidInput):
        hub.register("lora", dangling)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="empty"):
        hub.register("lora", empty)
    assert snapshot(hub) == before


# -- link mode and dedup ------------------------------------------------------------------


def test_link_mode_shares_the_inode(hub, sample_file) -> None:
    src = sample_file(4096, seed=7)
    v = hub.register("distill", src, link=True)
    stored = hub.root / "distill" / v.files[0].path
    assert stored.stat().st_ino == src.stat().st_ino
    assert stored.stat().st_nlink >= 2
    assert_read_only(src)  # documented: the input becomes read-only
    assert hub.verify(deep=True).ok


def test_link_mode_for_folders(hub, adapter) -> None:
    v = hub.register("lora", adapter, link=True)
    for f in v.files:
        rel = f.path.split("/", 1)[1]
        assert (hub.root / "lora" / f.path).stat().st_ino == (adapter / rel).stat().st_ino


def test_identical_bytes_are_stored_once(hub, sample_file, tmp_path) -> None:
    src = sample_file(20000, seed=8)
    report = tmp_path / "report.md"
    report.write_text("same report\n")
    v1 = hub.register("distill", src, attachments=[("report", report)])
    v2 = hub.register("distill", src, attachments=[("report", report)])
    v3 = hub.register("other", src)
    inode = {(hub.root / m / f.path).stat().st_ino
             for m, v in (("distill", v1), ("distill", v2), ("other", v3)) for f in v.files
             if f.role == "weights"}
    assert len(inode) == 1
    r1, r2 = (hub.root / "distill" / f"{v.stem}_report.md" for v in (v1, v2))
    assert r1.stat().st_ino == r2.stat().st_ino
    assert v1.digest != v2.digest  # different names, same bytes
    assert hub.verify(deep=True).ok and hub.fsck().ok
    # Deleting one version keeps the shared bytes for the others.
    hub.delete("distill@1.0.0", confirm=True)
    assert hub.open("distill@1.0.1") == src.read_bytes()
    assert hub.open("other") == src.read_bytes()
    assert hub.fsck(deep=True).ok


def test_identical_folder_members_are_stored_once(hub, adapter) -> None:
    v1 = hub.register("lora", adapter)
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(3000))
    v2 = hub.register("lora", adapter)
    by1 = {f.path.split("/", 1)[1]: hub.root / "lora" / f.path for f in v1.files}
    by2 = {f.path.split("/", 1)[1]: hub.root / "lora" / f.path for f in v2.files}
    for rel in ("adapter_config.json", "tokenizer/vocab.txt", "tokenizer/extra/merges.bin"):
        assert by1[rel].stat().st_ino == by2[rel].stat().st_ino, rel
    w = "adapter_model.safetensors"
    assert by1[w].stat().st_ino != by2[w].stat().st_ino
    assert hub.verify(deep=True).ok and hub.fsck().ok


def test_dedup_never_spreads_tampered_bytes(hub, sample_file) -> None:
    src = sample_file(1000, seed=9)
    v1 = hub.register("distill", src)
    stored = hub.root / "distill" / v1.files[0].path
    os.chmod(stored, 0o644)
    with open(stored, "r+b") as f:
        f.write(b"\x00")
    v2 = hub.register("distill", src)
    new = hub.root / "distill" / v2.files[0].path
    assert new.stat().st_ino != stored.stat().st_ino
    assert new.read_bytes() == src.read_bytes()


# -- bad input ----------------------------------------------------------------------------


def test_duplicate_version_refused(hub, sample_file, snapshot) -> None:
    hub.register("m", sample_file(10), version="1.0.0")
    before = snapshot(hub)
    with pytest.raises(AlreadyExists, match="immutable"):
        hub.register("m", sample_file(10, seed=1), version="1.0.0")
    with pytest.raises(AlreadyExists):
        hub.register("m", sample_file(10, seed=1), version="v1.0.0")
    assert snapshot(hub) == before
    assert isinstance(AlreadyExists("x"), FileExistsError)


BAD_NAMES = ["a/b", "../m", "..", "a..b", "m\\x", "m\x00", "m\x1b[31m", "m\n", "con", "NUL",
             "latest", "registry.json", "registry.db", "m.sha256", "m.tmp", "", " m", "-m",
             ".m", "x" * 101]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_model_names_change_nothing(hub, sample_file, snapshot, name) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    with pytest.raises(InvalidName):
        hub.register(name, sample_file(10, seed=1))
    assert snapshot(hub) == before


@pytest.mark.parametrize("version", ["1", "1.0", "1.0.0.0", "01.0.0", "1.0.0-", "x.y.z", "-1.0.0",
                                     "1.0.0?", "../1.0.0", "1.0.0/2", "1.0.0-a..b", ""])
def test_malformed_versions_change_nothing(hub, sample_file, snapshot, version) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    with pytest.raises(InvalidInput):
        hub.register("m", sample_file(10, seed=1), version=version)
    assert snapshot(hub) == before


@pytest.mark.parametrize("kw", [{"version": "1.0.0", "bump": "patch"}, {"bump": "mega"},
                                {"alias": "latest"}, {"alias": "a/b"}, {"alias": "9lives"},
                                {"name": "bad/name"}, {"name": ".."}, {"name": "bad\x01"}])
def test_bad_options_change_nothing(hub, sample_file, snapshot, kw) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    with pytest.raises(InvalidInput):
        hub.register("m", sample_file(10, seed=1), **kw)
    assert snapshot(hub) == before


def test_missing_and_odd_inputs_change_nothing(hub, sample_file, tmp_path, snapshot) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    with pytest.raises(InvalidInput, match="does not exist"):
        hub.register("m", tmp_path / "missing.onnx")
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "bad\x01name.onnx").write_bytes(b"x")
    with pytest.raises(InvalidName):
        hub.register("m", ctl / "bad\x01name.onnx")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match="neither"):
        hub.register("m", fifo)
    assert snapshot(hub) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode (chmod 000)")
def test_unreadable_input_changes_nothing(hub, sample_file, adapter, snapshot) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    locked = sample_file(10, seed=1)
    os.chmod(locked, 0)
    member = adapter / "adapter_config.json"
    os.chmod(member, 0)
    try:
        with pytest.raises(InvalidInput, match="not readable"):
            hub.register("m", locked)
        with pytest.raises(InvalidInput, match="not readable"):
            hub.register("lora", adapter)
    finally:
        os.chmod(locked, 0o644)
        os.chmod(member, 0o644)
    assert snapshot(hub) == before


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_input_that_fails_mid_read_changes_nothing(hub, sample_file, snapshot) -> None:
    """Even as root (where chmod 000 does not stop reads), a read error leaves no trace."""
    hub.register("m", sample_file(10))
    before = snapshot(hub)
    with pytest.raises(OSError):  # reading /proc/self/mem at offset 0 fails with EIO
        hub.register("m", "/proc/self/mem")
    after = snapshot(hub)
    # The reservation and its removal bumped the change counter; nothing else moved.
    for snap in (before, after):
        snap["index"].pop("hub_state")
    assert after == before
    assert not hub.index.pending_versions()


def test_errors_are_hub_errors_with_builtin_bases() -> None:
    assert issubclass(InvalidName, ValueError) and issubclass(InvalidVersion, ValueError)
    assert issubclass(NotFound, LookupError) and issubclass(NotFound, HubError)


def test_failed_copy_leaves_nothing_behind(hub, sample_file, snapshot, monkeypatch) -> None:
    hub.register("m", sample_file(10))
    before = snapshot(hub)

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hub.store, "put_small", boom)
    with pytest.raises(OSError, match="No space"):
        hub.register("m", sample_file(1000, seed=2), attachments=[
            ("report", sample_file(10, seed=3, name="r.md"))])
    monkeypatch.undo()
    after = snapshot(hub)
    # The pending row and every file written for it are gone again.
    assert after["files"] == before["files"]
    assert after["index"]["versions"] == before["index"]["versions"]
    assert after["index"]["events"] == before["index"]["events"]
    assert hub.index.pending_versions() == []
    assert hub.fsck().ok


# -- commit is the truth: what happens after the completing transaction ------------------------
def _enospc(*a, **k):  # type: ignore[no-untyped-def]
    raise OSError(28, "No space left on device", "registry.json")


def _db_gone(*a, **k):  # type: ignore[no-untyped-def]
    # What the index raises for a database that went away (index/sql.py translates it).
    from sentenialx.hub.errors import StoreUnavailable

    raise StoreUnavailable("index db lost the connection; check --index and that the database"
                           " is running, then try again")


def _sqlite_full(self, sql, seq):  # type: ignore[no-untyped-def]
    # The disk fills under the stat-cache upsert alone, inside the index's own transaction.
    import sqlite3

    if "stat_cache" in sql:
        raise sqlite3.OperationalError("database or disk is full")
    return _REAL_MANY(self, sql, seq)


def _real_many():  # type: ignore[no-untyped-def]
    from sentenialx.hub.index._sqlite import SqliteTx

    return SqliteTx.many


_REAL_MANY = _real_many()


@pytest.mark.parametrize(("target", "fault", "what"), [
    ("views", _enospc, "registry.json"),
    ("views", _db_gone, "registry.json"),
    ("stats", _enospc, "stat cache"),
    ("stats", _db_gone, "stat cache"),
    ("stat_cache_put", _db_gone, "stat cache"),
    ("sqlite_many", _sqlite_full, "stat cache"),
])
def test_a_failure_after_the_commit_still_returns_the_version(
        hub, sample_file, monkeypatch, caplog, registry_ok, target, fault, what) -> None:
    import logging

    from sentenialx.hub._register import Registrar
    from sentenialx.hub._views import Views
    from sentenialx.hub.index._sqlite import SqliteTx
    from sentenialx.hub.index.sql import SqlIndex

    first = hub.register("m", sample_file(100))
    owner, name = {"views": (Views, "write_registry_json"),
                   "stats": (Registrar, "_remember_stats"),
                   "stat_cache_put": (SqlIndex, "stat_cache_put"),
                   "sqlite_many": (SqliteTx, "many")}[target]
    monkeypatch.setattr(owner, name, fault)
    with caplog.at_level(logging.WARNING, logger="sentenialx.register"):
        done = hub.register("m", sample_file(200, seed=1), idempotency_key="k-after-commit")
    monkeypatch.undo()
    # The caller is told the truth: the version exists, complete and verifiable.
    assert done.version == "1.0.1" and done.state == "ready"
    assert hub.resolve("m").digest == done.digest
    assert hub.verify("m@1.0.1", deep=True).ok
    assert hub.index.count_versions() == 2 and not hub.index.pending_versions()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "m@1.0.1 is registered" in warned[0] and what in warned[0]
    assert ("fsck --repair" in warned[0]) if target == "views" else ("verify" in warned[0])
    # A retry of the same request (the caller never saw the error, but a cautious one
    # may retry anyway) returns the same version and stores nothing.
    assert hub.register("m", sample_file(200, seed=1),
                        idempotency_key="k-after-commit").id == done.id
    assert hub.index.count_versions() == 2
    if target == "views":
        # registry.json still shows the version before; fsck sees it, the next write mends it.
        assert json.loads((hub.root / "registry.json").read_text())["m"]["version"] == \
            first.version
        # Both views of the index are one write behind: registry.json and events.jsonl.
        assert sorted(p.kind for p in hub.fsck().problems) == ["registry", "view"]
        hub.register("other", sample_file(10, seed=5))
    registry_ok(hub)
    assert json.loads((hub.root / "registry.json").read_text())["m"]["version"] == "1.0.1"
    assert hub.fsck().ok


def test_an_unexpected_error_after_the_commit_is_not_swallowed(hub, sample_file,
                                                               monkeypatch) -> None:
    from sentenialx.hub._views import Views

    def bug(*a, **k):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Views, "write_registry_json", bug)
    with pytest.raises(ZeroDivisionError):
        hub.register("m", sample_file(100))


# -- idempotency keys ---------------------------------------------------------------------------
def test_a_retry_with_the_same_key_returns_the_first_version(hub, sample_file, tmp_path,
                                                             snapshot, monkeypatch) -> None:
    src = sample_file(300)
    report = sample_file(20, seed=2, name="report.md")
    first = hub.register("m", src, bump="minor", metadata={"metrics": {"acc": 0.9}},
                         attachments=[("report", report)], idempotency_key="job-42")
    before = snapshot(hub)
    # The same inputs from another folder (as a retried upload is staged) are the same request.
    again = tmp_path / "elsewhere"
    again.mkdir()
    (again / src.name).write_bytes(src.read_bytes())
    (again / report.name).write_bytes(report.read_bytes())
    stored: list[str] = []
    monkeypatch.setattr(hub.store, "put_file", lambda *a, **k: stored.append(a[0]))
    second = hub.register("m", again / src.name, bump="minor", metadata={"metrics": {"acc": 0.9}},
                          attachments=[("report", again / report.name)], idempotency_key="job-42")
    monkeypatch.undo()
    assert second == first and stored == []
    after = snapshot(hub)
    assert after["files"] == before["files"]
    assert after["index"]["versions"] == before["index"]["versions"]
    assert after["index"]["events"] == before["index"]["events"]
    assert hub.index.count_versions() == 1
    # Without a key, the same call is a new registration, as before.
    assert first.version == "1.0.0" and hub.register("m", src, bump="minor").version == "1.1.0"


@pytest.mark.parametrize("change", ["content", "model", "bump", "metadata", "name"])
def test_the_same_key_for_another_request_is_a_conflict(hub, sample_file, snapshot,
                                                        change) -> None:
    from sentenialx.hub.errors import Conflict

    src = sample_file(300)
    hub.register("m", src, idempotency_key="job-7")
    hub.register("n", sample_file(5, seed=9))
    before = snapshot(hub)
    kwargs: dict[str, object] = {}
    model, path = "m", src
    if change == "content":
        path = sample_file(300, seed=1)
    elif change == "model":
        model = "n"
    elif change == "bump":
        kwargs["bump"] = "major"
    elif change == "metadata":
        kwargs["metadata"] = {"description": "other"}
    else:
        kwargs["name"] = "renamed"
    with pytest.raises(Conflict) as exc:
        hub.register(model, path, idempotency_key="job-7", **kwargs)  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "\n" not in msg and "'job-7'" in msg and "m@1.0.0" in msg and "nothing was stored" in msg
    assert snapshot(hub) == before


def test_a_concurrent_attempt_with_the_same_key_drops_its_own_copy(hub, sample_file,
                                                                   snapshot, monkeypatch) -> None:
    # Two attempts with one key race past the lookup; the second to complete gets the
    # first's version, and its own pending row and files go.
    src = sample_file(300)
    monkeypatch.setattr(hub.index, "idempotent_version", lambda key: None)
    first = hub.register("m", src, idempotency_key="race")
    before = snapshot(hub)
    second = hub.register("m", src, idempotency_key="race")
    monkeypatch.undo()
    assert second.id == first.id and second.version == "1.0.0"
    after = snapshot(hub)
    assert after["files"] == before["files"]
    assert after["index"]["versions"] == before["index"]["versions"]
    assert after["index"]["events"] == before["index"]["events"]
    assert not hub.index.pending_versions()


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "tab\tkey", "é"])
def test_bad_idempotency_keys_change_nothing(hub, sample_file, snapshot, key) -> None:
    before = snapshot(hub)
    with pytest.raises(InvalidInput, match="idempotency key"):
        hub.register("m", sample_file(10), idempotency_key=key)
    assert snapshot(hub) == before


def test_deleting_a_version_frees_its_key(hub, sample_file) -> None:
    src = sample_file(100)
    hub.register("m", src, idempotency_key="k")
    hub.delete("m@1.0.0", confirm=True, actor="t")
    # The key went with its version (ON DELETE CASCADE): this registers afresh.
    assert hub.index.idempotent_version("k") is None
    again = hub.register("m", src, idempotency_key="k")
    assert again.state == "ready" and hub.index.count_versions() == 1
    assert [e.kind for e in hub.index.events()].count("register") == 2
    assert hub.index.idempotent_version("k") == (hub.index.idempotent_version("k")[0], again)


def test_cli_idempotency_key(hub, sample_file) -> None:
    from click.testing import CliRunner

    from sentenialx.hub.cli import cli

    src = sample_file(100)
    args = ["models", "register", "m", str(src), "--hub", str(hub.root), "--json",
            "--idempotency-key", "ci-run-9"]
    r1 = CliRunner().invoke(cli, args)
    r2 = CliRunner().invoke(cli, args)
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.output, r2.output)
    assert json.loads(r1.stdout)["version"] == json.loads(r2.stdout)["version"] == "1.0.0"
    r3 = CliRunner().invoke(cli, args[:3] + [str(sample_file(100, seed=4))] + args[4:])
    assert r3.exit_code != 0 and "idempotency key 'ci-run-9'" in r3.output
    assert len(r3.output.strip().splitlines()) == 1
    assert hub.index.count_versions() == 1
