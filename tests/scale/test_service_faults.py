"""Services failing under a running client: PostgreSQL stopped, radosgw killed, a server
SIGKILLed mid-upload. Each test asserts the one-line message and exit code the client
got, and that afterwards the hub holds exactly what the client was told: every version
reported as registered exists and verifies, nothing reported as failed exists, and what
a failure left behind is reported by fsck (with its age) and removed by gc.

The command that is in flight when a service goes away is paused at a named step (the
pattern of tests/hub/test_crash.py): it touches a marker, the test stops the service
and lets it go on. No assertion depends on timing.

- PostgreSQL: a private cluster per test (scripts/services/postgres-start.sh in a
  folder of its own, stopped with postgres-stop.sh and started again on the same
  port), so the shared test server is never disturbed. Needs root (CI runs as root).
- radosgw: only the gateway of the shared Ceph cluster is killed and started again
  (scripts/services/radosgw.sh), with its configuration: stored objects stay.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.config import write_config
from sentenialx.hub.errors import StoreUnavailable
from sentenialx.hub.hub import Hub

pytestmark = pytest.mark.slow

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"
UNAVAILABLE = 10
MiB = 1024 * 1024

# A CLI run that stops at a named step until the test says go: ``python -c PAUSED
# MARKER GO POINT ARGS...`` runs ``sentenialx ARGS...``.
# - before-commit: just before the transaction that completes the version;
# - first-part: after the first bytes of an input of 16 MiB or more reached the store (the
#   first part of a multipart upload on S3); smaller registrations are not held.
PAUSED = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    marker, go, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

    def pause():
        marker.touch()
        while not go.exists():
            time.sleep(0.01)

    if point == "before-commit":
        from sentenialx.hub.index.sql import SqlIndex
        real_complete = SqlIndex.complete_version

        def complete_version(self, *a, **k):
            pause()
            return real_complete(self, *a, **k)

        SqlIndex.complete_version = complete_version
    elif point in ("first-part", "first-part-forever"):
        from sentenialx.hub.hub import Hub
        real_register = Hub.register

        def register(self, model, path, *a, **k):
            first = [os.path.isfile(path) and os.path.getsize(path) >= 16 * 1024 * 1024]

            def progress(n):
                if first[0]:
                    first[0] = False
                    pause()
                    if point == "first-part-forever":
                        time.sleep(3600)

            k["progress"] = progress
            return real_register(self, model, path, *a, **k)

        Hub.register = register
    from sentenialx.cli import main
    main(sys.argv[4:])
""")


def _services() -> Any:
    return sys.modules["sentenialx_test_services"]  # loaded by tests/scale/conftest.py


def _env() -> dict[str, str]:
    return dict(os.environ, SENTENIALX_PROGRESS="0")


def sx(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``sentenialx ARGS`` in a new process (real start-up, real exit code)."""
    return subprocess.run([sys.executable, "-m", "sentenialx", *map(str, args)], env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Paused:
    """A CLI run stopped at a step; :meth:`resume` lets it finish."""

    proc: subprocess.Popen[str]
    marker: Path
    go: Path

    def wait_paused(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"exited before pausing ({self.proc.returncode}): {err}")
            assert time.monotonic() < deadline, "the command never reached its pause point"
            time.sleep(0.01)

    def resume(self, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        self.go.touch()
        out, err = self.proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def paused_sx(tmp: Path, point: str, *args: str | Path) -> Paused:
    n = len(list(tmp.glob("pause-*"))) if tmp.exists() else 0
    marker, go = tmp / f"pause-{n}", tmp / f"go-{n}"
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", PAUSED, str(marker), str(go), point,
                             *map(str, args)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    p = Paused(proc, marker, go)
    p.wait_paused()
    return p


def ok(r: subprocess.CompletedProcess[str]) -> Any:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout) if r.stdout.strip().startswith(("{", "[")) else r.stdout


def one_line(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 10 and one line on stderr naming every needle; no traceback, not a bug."""
    assert r.returncode == UNAVAILABLE, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def inputs(folder: Path, sizes: list[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, size in enumerate(sizes):
        p = folder / f"w{i}.onnx"
        p.write_bytes(random.Random(f"fault-{i}-{size}").randbytes(size))
        out.append(p)
    return out


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_exactly_told(hub: Hub, model: str, told: dict[str, Path], failed: list[Path]) -> None:
    """The model's versions are those the client was told, with those bytes, verified."""
    got = {v.version: v for v in hub.versions(model)}
    assert set(got) == set(told), (sorted(got), sorted(told))
    for version, src in told.items():
        assert hub.open(f"{model}@{version}") == src.read_bytes()
        r = hub.verify(f"{model}@{version}", deep=True)
        assert r.ok and r.hashed == 1, r.problems
    stored = {f.sha256 for v in got.values() for f in v.files}
    assert not stored & {sha(p) for p in failed if p not in told.values()}
    assert hub.verify_log().ok
    assert hub.index.pending_versions() == []


def listing(root: Path) -> list[tuple[str, int]]:
    """Every file under ``root`` with its size (lock files aside: they are empty handles)."""
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*")
                  if p.is_file() and not p.name.endswith(".lock"))


def require_root() -> None:
    if os.geteuid() != 0:
        _services().unavailable("PostgreSQL fault tests start a private cluster as user postgres,"
                                " which needs root (CI runs as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_script(*args: str | Path, env: dict[str, str] | None = None) -> None:
    r = subprocess.run([str(a) for a in args], env={**os.environ, **(env or {})},
                       capture_output=True, text=True, timeout=180, check=False)
    assert r.returncode == 0, (args, r.stdout, r.stderr)


@dataclass
class PrivatePg:
    """A throwaway PostgreSQL cluster of one test, stopped and started on one port."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        run_script(SERVICES / "postgres-stop.sh", self.folder)

    def start(self) -> None:
        run_script(SERVICES / "postgres-start.sh", self.folder,
                   env={"SENTENIALX_PG_PORT": str(self.port)})


@pytest.fixture
def private_pg() -> Iterator[PrivatePg]:
    require_root()
    pytest.importorskip("psycopg")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs
    # as postgres.
    folder = Path(tempfile.mkdtemp(prefix="sx-fault-pg-", dir="/tmp"))
    folder.chmod(0o755)
    pg = PrivatePg(folder, free_port())
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def services_dir() -> Path:
    """The folder of the running shared services (for radosgw.sh), checked against the env."""
    _services().require_env(*_services().S3_VARS)
    folder = Path(os.environ.get("SENTENIALX_SERVICES_DIR", "/tmp/sentenialx-services"))
    env = folder / "s3.env"
    endpoint = os.environ["SENTENIALX_TEST_S3_ENDPOINT"]
    if not env.is_file() or f"SENTENIALX_TEST_S3_ENDPOINT={endpoint}\n" not in env.read_text():
        _services().unavailable(f"the S3 endpoint {endpoint} was not started from"
                                f" SENTENIALX_SERVICES_DIR={folder} (set it to the folder"
                                " up.sh used, so radosgw can be restarted)")
    return folder


@pytest.fixture
def radosgw() -> Iterator[Callable[[str], None]]:
    """``radosgw("kill")`` / ``radosgw("start")``; it is running again after the test."""
    folder = services_dir()

    def act(what: str) -> None:
        run_script(SERVICES / "radosgw.sh", what, folder)

    try:
        yield act
    finally:
        act("start")


# -- PostgreSQL stopped mid-loop ------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_stopped_mid_loop_then_restarted(private_pg: PrivatePg, tmp_path: Path,
                                                  registry_ok: Callable[[Hub], Any]) -> None:
    root = tmp_path / "hub"
    write_config(root, index=private_pg.url)
    files = inputs(tmp_path / "in", [20_000 + i for i in range(6)])
    host = f"127.0.0.1:{private_pg.port}"
    told: dict[str, Path] = {}
    failed: list[Path] = []

    def register(i: int) -> subprocess.CompletedProcess[str]:
        return sx("models", "register", "encoder", files[i], "--json", "--hub", root,
                  "--idempotency-key", f"job-{i}")

    for i in (0, 1):
        told[ok(register(i))["version"]] = files[i]
    before = listing(root)
    # In flight: stored, about to commit, when the database goes away.
    p = paused_sx(tmp_path / "pause", "before-commit", "models", "register", "encoder",
                  files[2], "--json", "--hub", root, "--idempotency-key", "job-2")
    private_pg.stop()
    one_line(p.resume(), "index postgresql://postgres@" + host, "unreachable")
    failed.append(files[2])
    # While it is down: writes and reads fail the same way, and nothing is stored.
    one_line(register(5), host)
    failed.append(files[5])  # never retried: it must not exist in any form
    one_line(sx("models", "list", "--hub", root), host, "unreachable")
    one_line(sx("models", "show", "encoder", "--hub", root), host)
    assert listing(root) == before
    private_pg.start()
    # The loop goes on. The failed attempts retried with their keys register afresh
    # (a failure consumes no key); a second retry gets the same version back.
    for i in (2, 3, 4):
        first = ok(register(i))
        again = ok(register(i))
        assert again["version"] == first["version"] and again["digest"] == first["digest"]
        told[first["version"]] = files[i]
        if files[i] in failed:
            failed.remove(files[i])
    assert len(told) == 5 and failed == [files[5]]

    hub = Hub.open(root)
    try:
        # The in-flight attempt could not even release its reservation: the one leftover.
        # fsck names it with its age, gc removes it, and then all is clean.
        rep = hub.fsck(grace=timedelta(0))
        assert [q.kind for q in rep.problems] == ["pending"], [q.message for q in rep.problems]
        assert "encoder@1.0.2" in rep.problems[0].message and " ago" in rep.problems[0].message
        assert hub.gc(grace=timedelta(0)).stale_pending == ["encoder@1.0.2"]
        assert_exactly_told(hub, "encoder", told, failed)
        assert [v.version for v in hub.versions("encoder")] == ["1.0.0", "1.0.1", "1.0.3",
                                                                 "1.0.4", "1.0.5"]
        rep = hub.fsck(deep=True, grace=timedelta(0))
        assert rep.ok, [q.message for q in rep.problems]
        registry_ok(hub)
        assert not list(root.rglob(".tmp-*"))
    finally:
        hub.close()


# -- radosgw killed mid-upload ----------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.s3
def test_radosgw_killed_mid_upload_then_restarted(shared_hub: Any, radosgw: Callable[[str], None],
                                                  tmp_path: Path) -> None:
    root = shared_hub.folder("trainer")
    endpoint = shared_hub.endpoint
    # Two small files and one that takes a multipart upload (two 16 MiB parts).
    files = inputs(tmp_path / "in", [30_000, 17 * MiB, 40_000, 50_000])
    told: dict[str, Path] = {}

    def register(i: int) -> subprocess.CompletedProcess[str]:
        return sx("models", "register", "encoder", files[i], "--json", "--hub", root,
                  "--idempotency-key", f"job-{i}")

    told[ok(register(0))["version"]] = files[0]
    p = paused_sx(tmp_path / "pause", "first-part", "models", "register", "encoder", files[1],
                  "--json", "--hub", root, "--idempotency-key", "job-1")
    assert len(shared_hub.s3.uploads()) == 1  # one part is in, the upload is open
    radosgw("kill")
    one_line(p.resume(), endpoint, "unreachable")
    # While it is down: a write fails the same way; reads of the index still answer.
    one_line(register(2), endpoint, "unreachable")
    one_line(sx("models", "verify", "encoder@1.0.0", "--hub", root), endpoint)
    listed = ok(sx("models", "list", "--json", "--hub", root))
    assert [m["model"] for m in listed] == ["encoder"] and listed[0]["latest"] == "1.0.0"
    radosgw("start")

    hub = shared_hub.open("ops")
    # The failed upload released its reservation (PostgreSQL was up) but could not abort
    # its multipart upload: fsck names it, gc aborts it.
    assert hub.index.pending_versions() == []
    rep = hub.fsck(grace=timedelta(0))
    assert [q.kind for q in rep.problems] == ["upload"], [q.message for q in rep.problems]
    assert rep.problems[0].path == "multipart:encoder/w1_v1.0.1.onnx"
    assert "never completed" in rep.problems[0].message
    done = hub.gc(grace=timedelta(0))
    assert done.removed == ["multipart:encoder/w1_v1.0.1.onnx"]
    assert shared_hub.s3.uploads() == []
    # The loop goes on; the retried key registers afresh, and once only. The input that
    # failed while the gateway was down is not retried: it must exist in no form.
    for i in (1, 3):
        first = ok(register(i))
        assert ok(register(i))["version"] == first["version"]
        told[first["version"]] = files[i]
    # A machine opening the hub afterwards (views are per folder, brought up to date on open).
    hub = shared_hub.open("auditor")
    assert_exactly_told(hub, "encoder", told, [files[2]])
    assert [v.version for v in hub.versions("encoder")] == ["1.0.0", "1.0.1", "1.0.2"]
    assert told["1.0.1"] == files[1] and told["1.0.2"] == files[3]
    rep = hub.fsck(deep=True, grace=timedelta(0))
    assert rep.ok, [q.message for q in rep.problems]
    assert {k for k in shared_hub.s3.keys() if k.startswith("encoder/")} == {
        f"encoder/{src.stem}_v{v}{ext}" for v, src in told.items()
        for ext in (".onnx", ".sha256", "_meta.json")}


# -- a server SIGKILLed mid-upload ------------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str


def start_server(root: Path, tmp: Path, *, pause: bool) -> Server:
    port = free_port()
    args = ["models", "serve", "--hub", str(root), "--port", str(port), "--log-level", "warning"]
    if pause:
        # The server's own Hub stops for good after the first part reached S3.
        cmd = [sys.executable, "-c", PAUSED, str(tmp / "server-paused"), str(tmp / "never"),
               "first-part-forever", *args]
    else:
        cmd = [sys.executable, "-m", "sentenialx", *args]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return Server(proc, url)
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}): {proc.stderr.read()}")
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.s3
def test_server_killed_mid_upload_fsck_reports_and_gc_cleans(shared_hub: Any,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    root = shared_hub.folder("server")
    hub = shared_hub.open("server")
    secret, _ = hub.tokens.create("trainer", scope="write")
    files = inputs(tmp_path / "in", [40_000, 17 * MiB])
    server = start_server(root, tmp_path, pause=True)
    client = Hub.served(server.url, token=secret, retries=1)
    try:
        kept = client.register("teacher", files[0], idempotency_key="small")
        assert kept.version == "1.0.0"
        outcome: dict[str, Any] = {}

        def upload() -> None:
            try:
                outcome["info"] = client.register("teacher", files[1], idempotency_key="big")
            except Exception as exc:  # noqa: BLE001 - the test asserts what came out
                outcome["error"] = exc

        t = threading.Thread(target=upload)
        t.start()
        deadline = time.monotonic() + 120
        while not (tmp_path / "server-paused").exists():
            assert server.proc.poll() is None and t.is_alive(), outcome
            assert time.monotonic() < deadline, "the server never reached its pause point"
            time.sleep(0.01)
        server.proc.kill()
        server.proc.wait(timeout=30)
        t.join(timeout=120)
        assert not t.is_alive()
    finally:
        client.close()
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(timeout=30)
        if server.proc.stderr:
            server.proc.stderr.close()
    # The client was told it failed, in one line naming the server.
    err = outcome.get("error")
    assert isinstance(err, StoreUnavailable), outcome
    assert server.url in str(err) and "\n" not in str(err), str(err)

    # Left behind: the staging folder (the whole upload), the pending row, the open
    # multipart upload. fsck on the server's folder names all three with their age.
    staging = sorted(p.name for p in root.glob(".tmp-upload-*"))
    assert len(staging) == 1
    assert [v.version for v in hub.index.pending_versions()] == ["1.0.1"]
    assert len(shared_hub.s3.uploads()) == 1
    young = hub.fsck()
    assert young.ok, [q.message for q in young.problems]  # within the grace: maybe running
    rep = hub.fsck(grace=timedelta(0))
    kinds = {q.kind: q for q in rep.problems}
    assert sorted(kinds) == ["pending", "staging", "upload"], [q.message for q in rep.problems]
    assert kinds["staging"].path == staging[0] + "/"
    assert f"({17 * MiB} bytes" in kinds["staging"].message, kinds["staging"].message
    for q in (kinds["staging"], kinds["pending"], kinds["upload"]):
        assert " ago" in q.message and q.age_s is not None and q.age_s >= 0, q
    assert kinds["upload"].path == "multipart:teacher/w1_v1.0.1.onnx"
    # gc after the grace removes all three; the completed version is untouched.
    done = hub.gc(grace=timedelta(0))
    assert done.stale_pending == ["teacher@1.0.1"]
    assert staging[0] + "/" in done.removed and "multipart:teacher/w1_v1.0.1.onnx" in done.removed
    assert not list(root.glob(".tmp-*")) and shared_hub.s3.uploads() == []
    assert hub.index.pending_versions() == []
    assert [v.version for v in hub.versions("teacher")] == ["1.0.0"]
    assert hub.open("teacher@1.0.0") == files[0].read_bytes()
    rep = hub.fsck(deep=True, grace=timedelta(0))
    assert rep.ok, [q.message for q in rep.problems]

    # A new server; the client retries with its key: registered once, 1.0.1 again free.
    server = start_server(root, tmp_path, pause=False)
    client = Hub.served(server.url, token=secret)
    try:
        first = client.register("teacher", files[1], idempotency_key="big")
        assert client.register("teacher", files[1], idempotency_key="big").id == first.id
        assert first.version == "1.0.1"
    finally:
        client.close()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=30)
        if server.proc.stderr:
            server.proc.stderr.close()
    assert_exactly_told(hub, "teacher", {"1.0.0": files[0], "1.0.1": files[1]}, [])
    assert hub.fsck(deep=True, grace=timedelta(0)).ok
