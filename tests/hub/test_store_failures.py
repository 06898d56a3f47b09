"""Store and index failures are one line naming what failed, exit 10, and hub errors in process.

Real parts only: an S3 endpoint and a PostgreSQL URL on a closed loopback port (no
service needed), and a tiny tmpfs the test mounts (full, then read-only) when it runs
as root; without root a read-only folder stands in, and the full disk is skipped.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub import Hub
from sentenialx.hub import errors as E

UNAVAILABLE = 10


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def one_line(r: Any, code: int, *needles: str) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr, r.exception)
    assert r.exception is None, r.exception
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith("error: "), err
    assert "Traceback" not in r.stderr + r.stdout and "internal error" not in err, err
    for n in needles:
        assert n in err, err
    return err


def assert_unchanged(after: dict[str, Any], before: dict[str, Any]) -> None:
    """Hub state as the snapshot fixture takes it; names the table or view that moved.

    hub_state's generation and time are a change counter, not content: a register that
    reserved a version and aborted it when the store failed moves them (by 2) and leaves
    every row as it was, so only its hub_id is compared.
    """
    after, before = dict(after), dict(before)
    after["index"], before["index"] = dict(after["index"]), dict(before["index"])
    for snap in (after, before):
        snap["index"]["hub_state"] = [row[-1] for row in snap["index"]["hub_state"]]
    for table in before["index"].keys() | after["index"].keys():
        assert after["index"].get(table) == before["index"].get(table), table
    assert after == before


def raises_one_line(fn: Callable[[], Any], *needles: str) -> E.HubError:
    with pytest.raises(Exception) as info:  # noqa: PT011 - the point is what class comes out
        fn()
    exc = info.value
    assert isinstance(exc, E.StoreUnavailable), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc), str(exc)
    for n in needles:
        assert n in str(exc), str(exc)
    return exc


# -- S3 unreachable from the start -----------------------------------------------------------
@pytest.fixture
def dead_s3(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return f"http://127.0.0.1:{closed_port()}"


def test_s3_unreachable_register_verify_fsck_exit_10(cli, hub, sample_file, dead_s3, snapshot) -> None:
    # A version in the index whose bytes S3 would hold (same keys as the local layout),
    # so verify and fsck have objects to ask the dead endpoint for.
    assert cli("register", "distill", sample_file(3000, seed=1)).exit_code == 0
    s3 = ["--store", "s3://hub-bucket/p", "--s3-endpoint", dead_s3]
    before = snapshot(hub)
    for args in (["register", "distill", str(sample_file(2000, seed=2)), "--bump", "patch"],
                 ["verify", "distill@1.0.0"], ["fsck"]):
        one_line(cli(*args, *s3), UNAVAILABLE, dead_s3, "s3://hub-bucket/p", "unreachable",
                 "connection refused")
    assert_unchanged(snapshot(hub), before)


def test_s3_unreachable_in_process_is_a_hub_error(tmp_path, dead_s3, sample_file) -> None:
    from sentenialx.hub.store.s3 import S3Store

    st = S3Store("s3://hub-bucket/p", endpoint_url=dead_s3)
    for call in (lambda: st.stat("a/b"), lambda: list(st.list("a/")), lambda: st.read_bytes("k"),
                 lambda: st.put_small("k", b"x"), lambda: st.abandoned_uploads(
                     older_than=__import__("datetime").datetime.now())):
        exc = raises_one_line(call, dead_s3, "s3://hub-bucket/p")
        assert exc.where.startswith("s3://hub-bucket/p")
    h = Hub(tmp_path / "h", store_url="s3://hub-bucket/p", s3_endpoint=dead_s3)
    raises_one_line(lambda: h.register("distill", sample_file(100)), dead_s3)


# -- PostgreSQL unreachable -------------------------------------------------------------------
def test_postgres_unreachable_is_one_line_naming_host_port(cli, hub, tmp_path) -> None:
    port = closed_port()
    url = f"postgresql://hub:s3cret@127.0.0.1:{port}/hubdb"
    for args in (["list"], ["show", "distill"]):
        err = one_line(cli(*args, "--index", url), UNAVAILABLE, f"127.0.0.1:{port}/hubdb",
                       "connection refused")
        assert "s3cret" not in err
    exc = raises_one_line(lambda: Hub(tmp_path / "pg", index_url=url), f"127.0.0.1:{port}/hubdb")
    assert "s3cret" not in str(exc) and "s3cret" not in exc.where


# -- a full or read-only disk ------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                       capture_output=True, text=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(path)], capture_output=True, check=False)
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path) -> None:
    """Fill ``fs`` to the last byte."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def test_full_disk_register_is_one_line_with_the_path(cli, make_hub, sample_file, tmp_path,
                                                      snapshot) -> None:
    with tmpfs(tmp_path / "fs", "4m") as fs:
        h = make_hub(fs / "hub")
        assert cli("register", "distill", sample_file(3000, seed=1), hub=h).exit_code == 0
        big = sample_file(256 * 1024, seed=2, name="big.onnx")
        before = snapshot(h)
        fill(fs)
        r = cli("register", "distill", big, "--bump", "patch", hub=h)
        err = one_line(r, UNAVAILABLE, str(fs))
        assert "No space left on device" in err or "disk is full" in err or "I/O" in err, err
        (fs / "filler").unlink()
        assert_unchanged(snapshot(h), before)
        # In process, after filling again: a hub error, one line, naming a path on the disk.
        fill(fs)
        exc = raises_one_line(lambda: Hub(fs / "hub").register("distill", big, bump="patch"))
        assert str(fs) in str(exc) and exc.where.startswith(str(fs))
        (fs / "filler").unlink()
        assert_unchanged(snapshot(h), before)


def test_read_only_hub_is_one_line_with_the_path(cli, make_hub, sample_file, tmp_path,
                                                 snapshot) -> None:
    if os.geteuid() == 0:
        ctx: Any = tmpfs(tmp_path / "fs", "8m")
    else:
        (tmp_path / "fs").mkdir()
        ctx = contextlib.nullcontext(tmp_path / "fs")
    with ctx as fs:
        h = make_hub(fs / "hub")
        h.register("distill", sample_file(3000, seed=1))
        h.core.index.dispose()
        gc.collect()  # no open file may keep the remount below busy
        before = snapshot(h)
        if os.geteuid() == 0:
            r = subprocess.run(["mount", "-o", "remount,ro", str(fs)], capture_output=True,
                               text=True, check=False)
            if r.returncode:
                pytest.skip(f"cannot remount the tmpfs read-only: {r.stderr.strip()}")
        else:
            for p in sorted(fs.rglob("*"), reverse=True):
                p.chmod(p.stat().st_mode & ~0o222)
        try:
            r2 = cli("register", "distill", sample_file(2000, seed=2), "--bump", "patch", hub=h)
            one_line(r2, UNAVAILABLE, str(fs / "hub"))
            assert_unchanged(snapshot(h), before)
        finally:
            if os.geteuid() != 0:
                for p in fs.rglob("*"):
                    p.chmod(p.stat().st_mode | 0o200)
    shutil.rmtree(tmp_path / "fs", ignore_errors=True)


def test_local_disk_errors_name_the_path(tmp_path, monkeypatch) -> None:
    """ENOSPC / EDQUOT / EROFS / EIO from a write become StoreUnavailable naming the path."""
    import errno

    from sentenialx.hub.store import local

    st = local.LocalStore(tmp_path / "s")
    for code, words in ((errno.ENOSPC, "No space left on device writing"),
                        (errno.EDQUOT, "Disk quota exceeded writing"),
                        (errno.EROFS, "Read-only file system writing"), (errno.EIO, "Input/output")):
        def boom(*_a: Any, _code: int = code, **_k: Any) -> Any:
            raise OSError(_code, os.strerror(_code))

        monkeypatch.setattr(local.os, "fsync", boom)
        exc = raises_one_line(lambda: st.put_small("m/x.sha256", b"data"), words,
                              str(tmp_path / "s" / "m" / "x.sha256"))
        assert isinstance(exc, E.HubError)
    monkeypatch.undo()
    assert not [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
