"""``import-hf`` on Hugging Face cache folders laid out as huggingface_hub lays them out.

``blobs/<sha256>`` for LFS files, ``blobs/<git blob id>`` for the others, snapshots of
relative symlinks, ``refs/<name>`` holding a commit. (tests/server/test_hf.py imports
a cache that huggingface_hub itself filled from our /hf endpoint.)
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub._hf import git_blob_id
from sentenialx.hub._import_hf import import_hf, scan
from sentenialx.hub.errors import IntegrityError, InvalidInput
from sentenialx.hub.hub import Hub

C1 = "1" * 40
C2 = "2" * 40

REV1 = {"config.json": b'{"hidden": 16}\n', "model.safetensors": b"\x01" * 5000,
        "sub/vocab.txt": b"a\nb\n"}
REV2 = {"config.json": b'{"hidden": 32}\n', "model.safetensors": b"\x02" * 7000,
        "sub/vocab.txt": b"a\nb\n"}


def make_cache(root: Path, repo_id: str, revisions: dict[str, dict[str, bytes]],
               refs: dict[str, str]) -> Path:
    """A cache repo folder: .safetensors as LFS blobs (sha256), the rest as git blobs."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for commit, files in revisions.items():
        for rel, data in files.items():
            name = (hashlib.sha256(data).hexdigest() if rel.endswith(".safetensors")
                    else git_blob_id(data))
            (repo / "blobs" / name).write_bytes(data)
            link = repo / "snapshots" / commit / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(repo / "blobs" / name, link.parent))
    for name, commit in refs.items():
        p = repo / "refs" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(commit)
    return repo


def blob_of(repo: Path, commit: str, rel: str) -> Path:
    return (repo / "snapshots" / commit / rel).resolve()


def served_bytes(hub: Hub, ref: str) -> dict[str, bytes]:
    info = hub.resolve(ref)
    return {e.path.split("/", 1)[1]: hub.read_entry(info, e) for e in info.files}


def test_revisions_become_versions_and_refs_aliases(hub: Hub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    make_cache(cache, "org/bert", {C1: REV1, C2: REV2},
               {"v1.0.0": C1, "stable": C1, "main": C2, "^1.0": C2, "pr/1": C2})
    rep = import_hf(hub, cache)
    by_commit = {r.commit: r for r in rep.results}
    # The tagged revision takes its tag's version; the other the next patch.
    assert by_commit[C1].ref == "bert@1.0.0" and by_commit[C2].ref == "bert@1.0.1"
    assert {r.status for r in rep.results} == {"imported"}
    assert served_bytes(hub, "bert@1.0.0") == REV1
    assert served_bytes(hub, "bert@1.0.1") == REV2
    assert {a.alias: a.version for a in hub.aliases("bert")} == {"stable": "1.0.0",
                                                                 "main": "1.0.1"}
    assert any("'^1.0'" in n for n in rep.notes) and any("'pr/1'" in n for n in rep.notes)
    assert hub.resolve("bert@1.0.1").meta["hf"] == {"repo": "org/bert", "commit": C2}
    assert hub.verify("bert@1.0.0", deep=True).ok

    # Idempotent: nothing is read or written again.
    gen = hub.generation()
    again = import_hf(hub, cache)
    assert {r.status for r in again.results} == {"present"}
    assert [r.ref for r in again.results] == [r.ref for r in rep.results]
    assert hub.generation() == gen


def test_a_moved_ref_moves_its_alias_and_gated_refs_are_left_alone(hub: Hub, tmp_path: Path
                                                                   ) -> None:
    cache = tmp_path / "cache"
    repo = make_cache(cache, "bert", {C1: REV1}, {"main": C1, "production": C1})
    rep = import_hf(hub, cache)
    assert rep.results[0].aliases == ("main",)
    assert any("production" in n and "gated" in n for n in rep.notes)
    make_cache(cache, "bert", {C2: REV2}, {"main": C2})
    rep2 = import_hf(hub, cache, repos=["bert"])
    assert [(r.commit, r.status) for r in rep2.results] == [(C1, "present"), (C2, "imported")]
    assert {a.alias: a.version for a in hub.aliases("bert")} == {"main": "1.0.1"}
    assert (repo / "refs" / "main").read_text() == C2


@pytest.mark.parametrize("damage", ["lfs", "git"])
def test_a_corrupted_cache_file_is_refused_and_nothing_adopted(
        hub: Hub, tmp_path: Path, snapshot: Callable[[Hub], dict[str, Any]], damage: str) -> None:
    cache = tmp_path / "cache"
    repo = make_cache(cache, "bert", {C1: REV1, C2: REV2}, {"main": C2})
    blob = blob_of(repo, C2, "model.safetensors" if damage == "lfs" else "config.json")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    blob.write_bytes(bytes(data))
    before = snapshot(hub)
    with pytest.raises(IntegrityError, match=blob.name[:12]):
        import_hf(hub, cache)
    # Not even the intact revision was adopted, and no staged bytes are left behind.
    assert snapshot(hub) == before
    assert not list(hub.root.glob(".tmp-*"))


def test_cli_refuses_a_corrupted_cache_with_one_line(cli: Any, hub: Hub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    repo = make_cache(cache, "bert", {C1: REV1}, {"main": C1})
    blob_of(repo, C1, "sub/vocab.txt").write_bytes(b"a\nc\n")
    r = cli("import-hf", cache)
    assert r.exit_code == 6, r.stderr
    assert r.stderr.startswith("error: ") and "mismatch" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert hub.models() == []


def test_interrupted_import_resumes(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                    ) -> None:
    cache = tmp_path / "cache"
    make_cache(cache, "bert", {C1: REV1, C2: REV2}, {"v1.0.0": C1, "main": C2})
    real = hub.store.put_dir
    calls = []

    def ctrl_c_on_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(hub.store, "put_dir", ctrl_c_on_second)
    with pytest.raises(KeyboardInterrupt):
        import_hf(hub, cache)
    monkeypatch.undo()
    assert [v.version for v in hub.versions("bert")] == ["1.0.0"]
    assert hub.index.pending_versions() == []
    assert not list(hub.root.glob(".tmp-*"))
    rep = import_hf(hub, cache)
    assert [(r.ref, r.status) for r in rep.results] == [("bert@1.0.0", "present"),
                                                        ("bert@1.0.1", "imported")]
    assert served_bytes(hub, "bert@1.0.1") == REV2
    assert {a.alias: a.version for a in hub.aliases("bert")} == {"main": "1.0.1"}


def test_local_download_folder(hub: Hub, make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    meta = folder / ".cache" / "huggingface" / "download"
    for rel, data in REV1.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        etag = hashlib.sha256(data).hexdigest() if rel.endswith(".safetensors") \
            else git_blob_id(data)
        m = meta / f"{rel}.metadata"
        m.parent.mkdir(parents=True, exist_ok=True)
        m.write_text(f"{C1}\n{etag}\n{time.time()}\n")
    with pytest.raises(InvalidInput, match="--repo"):
        import_hf(hub, folder)
    rep = import_hf(hub, folder, repos=["org/bert"])
    assert [(r.ref, r.status) for r in rep.results] == [("bert@1.0.0", "imported")]
    assert served_bytes(hub, "bert@1.0.0") == REV1
    other = make_hub(tmp_path / "other")
    (folder / "config.json").write_bytes(b'{"hidden": 99}\n')
    with pytest.raises(IntegrityError):
        import_hf(other, folder, repos=["org/bert"])
    (folder / "new.txt").write_bytes(b"no record\n")
    with pytest.raises(InvalidInput, match="no download record"):
        import_hf(other, folder, repos=["org/bert"])
    assert other.models() == []


def test_sources_whose_hashes_are_recorded_nowhere_are_refused(hub: Hub, tmp_path: Path,
                                                               snapshot: Callable[..., Any]) -> None:
    before = snapshot(hub)
    cache = tmp_path / "cache"
    repo = make_cache(cache, "bert", {C1: REV1}, {"main": C1})
    copy = repo / "snapshots" / C1 / "config.json"
    data = copy.read_bytes()
    copy.unlink()
    copy.write_bytes(data)
    with pytest.raises(InvalidInput, match="nothing records its hash"):
        import_hf(hub, cache)
    copy.unlink()
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(data)
    copy.symlink_to(outside)
    with pytest.raises(InvalidInput, match="outside"):
        import_hf(hub, cache)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_bytes(data)
    with pytest.raises(InvalidInput, match="not a Hugging Face cache"):
        import_hf(hub, plain)
    with pytest.raises(InvalidInput, match="not in"):
        scan(cache, repos=["other"])
    assert snapshot(hub) == before
