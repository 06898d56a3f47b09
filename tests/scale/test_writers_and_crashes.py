"""Many writers and a killed upload on PostgreSQL + S3 (Ceph RGW), each in its own process.

Every worker opens the hub from its own folder (its own copy of hub.toml, as on its
own machine); they meet only in PostgreSQL and the bucket.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import NotFound

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

WRITERS = 4
PER_WRITER = 6
MiB = 1024 * 1024


def _wait_for(path: Path, proc: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"worker did not reach {path.name} in {timeout} s")
        time.sleep(0.01)


def test_four_processes_register_and_promote_at_once_lose_nothing(
        shared_hub: Any, run_worker: Callable[..., Any], tmp_path: Path) -> None:
    start = tmp_path / "start"
    procs = [run_worker("writer", id=i, root=str(shared_hub.folder(f"machine{i}")),
                        inputs=str(tmp_path / f"in{i}"), n=PER_WRITER, size=48_000 + i,
                        model="encoder", alias="champion", start=str(start))
             for i in range(WRITERS)]
    time.sleep(1.0)  # let every worker import, open the hub and write its inputs
    start.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    # They really ran at once: registrations of different workers overlapped in time.
    overlaps = sum(1 for a in results for b in results if a["id"] < b["id"]
                   for s in a["spans"] for t in b["spans"] if s[0] < t[1] and t[0] < s[1])
    assert overlaps > 0, "the workers ran one after another; nothing was tested"
    print(f"overlapping registrations: {overlaps}; alias conflicts retried:"
          f" {sum(r['conflicts'] for r in results)}")

    hub = shared_hub.open("auditor")  # a fifth machine, after the fact
    mine = {v: d for r in results for v, d in r["versions"].items()}
    # No duplicates: every worker got distinct versions; no gaps: 1.0.0 ... 1.0.23.
    assert sum(len(r["versions"]) for r in results) == len(mine) == WRITERS * PER_WRITER
    want = [f"1.0.{i}" for i in range(WRITERS * PER_WRITER)]
    versions = hub.versions("encoder")
    assert [v.version for v in versions] == want
    assert {v.version: v.digest for v in versions} == mine
    assert hub.index.pending_versions() == []
    # Every alias move that reported success is in the history, in one unbroken line:
    # each move's "previous" is the version the move before it set (no lost update).
    moves = [(m.previous, m.version) for m in hub.alias_history("encoder", "champion")]
    reported = sorted((m[0] or "", m[1]) for r in results for m in r["moves"])
    assert sorted((a or "", b) for a, b in moves) == reported
    assert len(moves) == WRITERS * PER_WRITER
    for before, after in zip(moves, moves[1:], strict=False):
        assert after[0] == before[1]
    assert moves[0][0] is None
    assert hub.resolve("encoder@champion").version == moves[-1][1]
    # The history: one register and one alias event per success, the chain intact.
    kinds = [e.kind for e in hub.events()]
    assert kinds.count("register") == kinds.count("alias") == WRITERS * PER_WRITER
    assert hub.verify_log().ok
    # Bytes: each version holds exactly what its writer sent.
    for i, r in enumerate(results):
        for n, version in enumerate(sorted(r["versions"], key=lambda s: int(s.split(".")[2]))):
            data = hub.open(f"encoder@{version}")
            assert data == (tmp_path / f"in{i}" / f"w{i}_{n}.onnx").read_bytes()
    rep = hub.fsck(deep=True, grace=timedelta(0))
    assert rep.ok, [p.message for p in rep.problems]
    assert hub.verify(deep=True).ok
    # Each machine's folder holds views (registry.json, events.jsonl) that the others'
    # writes left behind; opening the hub there brings them up to date.
    for i in range(WRITERS):
        rep = shared_hub.open(f"machine{i}").fsck()
        assert rep.ok, (i, [p.message for p in rep.problems])


def test_concurrent_verifiers_share_the_stat_cache(
        shared_hub: Any, run_worker: Callable[..., Any], tmp_path: Path) -> None:
    # Regression: on PostgreSQL two verifiers recording the same files in the stat cache
    # at once died with a UniqueViolation (delete-then-insert outside the write lock).
    # Local files keep the verify loop tight, so the writes really collide.
    from sentenialx.hub.hub import Hub

    root = tmp_path / "hub"
    hub = Hub(root, index_url=shared_hub.index_url)
    shared_hub.opened.append(hub)
    for i in range(30):
        f = tmp_path / f"m{i}.onnx"
        f.write_bytes(os.urandom(1000))
        hub.register("encoder", f, name="encoder")
    start = tmp_path / "start"
    procs = [run_worker("verifier", root=str(root), index=shared_hub.index_url, n=25,
                        start=str(start)) for i in range(3)]
    time.sleep(1.0)
    start.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1]) == {"problems": []}
    assert len(hub.index.stat_cache()) == 30
    assert hub.verify().hashed == 0


def test_upload_killed_half_way_leaves_nothing_and_gc_aborts_it(
        shared_hub: Any, run_worker: Callable[..., Any], tmp_path: Path) -> None:
    big = tmp_path / "teacher.onnx"
    big.write_bytes(os.urandom(64 * MiB))  # four 16 MiB parts
    marker = tmp_path / "one-part-sent"
    p = run_worker("upload", root=str(shared_hub.folder("trainer")), model="teacher",
                   path=str(big), marker=str(marker))
    _wait_for(marker, p)
    os.kill(p.pid, signal.SIGKILL)  # mid-multipart: one part of four sent
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL

    s3 = shared_hub.s3
    uploads = s3.uploads()
    assert len(uploads) == 1 and uploads[0]["Key"].endswith("teacher/teacher_v1.0.0.onnx")
    assert s3.keys() == {}  # nothing visible: no object, no sidecar
    hub = shared_hub.open("ops")
    with pytest.raises(NotFound):
        hub.resolve("teacher")
    assert [v.version for v in hub.index.pending_versions()] == ["1.0.0"]
    assert hub.models() == []
    rep = hub.fsck(grace=timedelta(0))
    # fsck names both leftovers gc will remove: the pending row and the open multipart upload.
    assert sorted(p.kind for p in rep.problems) == ["pending", "upload"]
    dry = hub.gc(grace=timedelta(0), dry_run=True)
    assert "multipart:teacher/teacher_v1.0.0.onnx" in dry.removed
    assert len(s3.uploads()) == 1

    done = hub.gc(grace=timedelta(0))
    assert done.stale_pending == ["teacher@1.0.0"]
    assert "multipart:teacher/teacher_v1.0.0.onnx" in done.removed
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    assert s3.keys() == {}
    assert hub.index.pending_versions() == []
    assert hub.fsck(grace=timedelta(0)).ok
    # The number is free again and a complete registration works.
    small = tmp_path / "teacher_small.onnx"
    small.write_bytes(b"t" * 1000)
    assert hub.register("teacher", small, name="teacher").version == "1.0.0"
    assert hub.fsck(deep=True).ok
