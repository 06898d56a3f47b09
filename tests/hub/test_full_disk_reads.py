"""On a full disk, read paths keep working and write nothing; writes fail in one line.

A small filesystem made by the test (root only): a tmpfs, and ext4 with 1 KiB blocks
on a loop device, where SQLite's memory-mapped ``-shm`` used to kill ``models list``
with SIGBUS (no message) at a few KiB free. Each level of free space runs the read
commands in a fresh process (a SIGBUS there cannot take pytest down), with one
version's stat cache made stale first, so ``verify`` and ``path`` re-hash it and
cannot record the result. Without root on a developer machine the tests skip;
under ``CI=true`` (root) they run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub import Hub

KiB = 1024


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=60)


@contextlib.contextmanager
def small_fs(kind: str, where: Path) -> Iterator[Path]:
    """A few MiB filesystem of ``kind`` mounted at ``where/mnt``; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    mnt = where / "mnt"
    mnt.mkdir(parents=True)
    if kind == "tmpfs":
        r = run("mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt))
    else:
        if not shutil.which("mkfs.ext4"):
            unavailable("mkfs.ext4 is missing (Debian package e2fsprogs)")
        img = where / "ext4-1k.img"
        with open(img, "wb") as f:
            f.truncate(8 * 1024 * KiB)
        r = run("mkfs.ext4", "-q", "-F", "-b", "1024", "-m", "0", str(img))
        if r.returncode == 0:
            r = run("mount", "-o", "loop", str(img), str(mnt))
    if r.returncode:
        unavailable(f"cannot mount a {kind} here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        run("umount", "-l", str(mnt))


def fill(fs: Path, leave: int) -> int:
    """Fill ``fs``, then give back ``leave`` bytes; the bytes free afterwards."""
    p = fs / "filler"
    with contextlib.suppress(FileNotFoundError):
        p.unlink()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 1024, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
        os.fsync(fd)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        os.fsync(fd)
    finally:
        os.close(fd)
    st = os.statvfs(fs)
    return st.f_bavail * st.f_frsize


def listing(root: Path) -> list[tuple[str, int, int]]:
    """Every entry under ``root`` with size and mtime: a read must change none of them."""
    return sorted((p.relative_to(root).as_posix(), p.lstat().st_size, p.lstat().st_mtime_ns)
                  for p in root.rglob("*"))


# One process per level: each read command through the real entry point, its exit code
# and output; then a register, which must be refused. A SIGBUS kills the whole child.
READS = textwrap.dedent("""
    import contextlib, io, json, sys
    from sentenialx.cli import main

    hub = sys.argv[1]
    out = {}
    for name, args in [("list", ["models", "list", "--json"]),
                       ("path", ["models", "path", "distill@1.0.1"]),
                       ("path-stale", ["models", "path", "distill@1.0.0"]),
                       ("show", ["models", "show", "distill", "--json"]),
                       ("verify", ["models", "verify", "distill@1.0.0"]),
                       ("fsck", ["models", "fsck"]),
                       ("register", ["models", "register", "distill", sys.argv[2]])]:
        o, e = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            try:
                main(args + ["--hub", hub])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        out[name] = [code, o.getvalue(), e.getvalue()]
    print(json.dumps(out))
""")


@pytest.mark.parametrize(("kind", "levels"), [("tmpfs", [0, 8 * KiB, 19 * KiB]),
                                              ("ext4-1k", [0, 5 * KiB, 10 * KiB, 19 * KiB])])
def test_reads_work_and_write_nothing_on_a_full_disk(tmp_path: Path, kind: str,
                                                     levels: list[int]) -> None:
    with small_fs(kind, tmp_path) as fs:
        root = fs / "hub"
        inputs = tmp_path / "in"
        inputs.mkdir()
        (inputs / "student.onnx").write_bytes(os.urandom(3000))
        (inputs / "student2.onnx").write_bytes(os.urandom(5000))
        (inputs / "big.onnx").write_bytes(os.urandom(64 * KiB))
        # Registered by CLI processes, as a team would: each exits, and the last
        # connection's WAL is checkpointed into the main file and removed.
        for src in ("student.onnx", "student2.onnx"):
            r = subprocess.run([sys.executable, "-m", "sentenialx", "models", "register",
                                "distill", str(inputs / src), "--name", "student", "--hub",
                                str(root)], capture_output=True, text=True, timeout=120,
                               check=False)
            assert r.returncode == 0, r.stderr
        stale = root / "distill" / "student_v1.0.0.onnx"
        assert stale.is_file() and not list(root.glob("registry.db-*"))
        for leave in levels:
            free = fill(fs, leave)
            assert free < 20 * KiB, free
            # A changed ctime (same bytes): verify and path must re-hash, and then cannot
            # record the result in the stat cache.
            os.chmod(stale, stale.stat().st_mode)
            before = listing(root)
            r = subprocess.run([sys.executable, "-c", READS, str(root), str(inputs / "big.onnx")],
                               capture_output=True, text=True, timeout=120, check=False)
            assert r.returncode == 0, (kind, free, r.returncode, r.stderr[-2000:])
            res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
            for name in ("list", "path", "path-stale", "show", "verify", "fsck"):
                code, out, err = res[name]
                assert code == 0, (kind, free, name, out, err)
            assert [m["model"] for m in json.loads(res["list"][1])] == ["distill"]
            assert res["path"][1].strip() == str(root / "distill" / "student_v1.0.1.onnx")
            assert res["path-stale"][1].strip() == str(stale)
            assert json.loads(res["show"][1])["version"] == "1.0.1"
            assert "could not record them in the stat cache" in res["verify"][2]
            # The write is refused in one line naming the index and the full disk.
            code, out, err = res["register"]
            lines = err.strip().splitlines()
            assert code == 10 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
            assert str(root) in lines[0] and ("disk is full" in lines[0]
                                              or "No space left" in lines[0]), lines[0]
            # Nothing was written: no -shm or -wal made, no stat cache row, no view.
            assert listing(root) == before
        (fs / "filler").unlink()
        with Hub(root) as h:
            assert [v.version for v in h.versions("distill")] == ["1.0.0", "1.0.1"]
            rep = h.fsck(deep=True)
            assert rep.ok, [p.message for p in rep.problems]
            # With space again, the index is written normally.
            assert h.register("distill", inputs / "big.onnx").version == "1.0.2"


def test_a_wal_with_changes_on_a_full_disk_is_refused_in_one_line(tmp_path: Path) -> None:
    from sentenialx.hub.errors import StoreUnavailable
    from sentenialx.hub.index.lowspace import low_space_reason, read_only_uri

    with small_fs("tmpfs", tmp_path) as fs:
        db = fs / "registry.db"
        db.write_bytes(b"\0" * 4096)
        wal, shm = fs / "registry.db-wal", fs / "registry.db-shm"
        wal.write_bytes(b"\1" * 4096)
        assert low_space_reason(str(db)) is None  # space enough: the ordinary open
        fill(fs, 0)
        # Changes only a wal-index can read, and none can be made: refused, no SIGBUS.
        with pytest.raises(StoreUnavailable) as info:
            low_space_reason(str(db))
        msg = str(info.value)
        assert "\n" not in msg and str(db) in msg and "disk is full" in msg, msg
        # A wal-index already in place (every page allocated) is shared as it is.
        (fs / "filler").unlink()
        shm.write_bytes(b"\0" * 32768)
        fill(fs, 0)
        assert low_space_reason(str(db)) is None
        # An empty WAL: everything is in the main file, read as an immutable snapshot.
        shm.unlink()
        wal.write_bytes(b"")
        reason = low_space_reason(str(db))
        assert reason is not None and "disk is full" in reason
        assert read_only_uri(str(db)).endswith("?mode=ro&immutable=1")
