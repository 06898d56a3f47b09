"""Crash safety: a process SIGKILLed at any moment leaves no version or a complete one, and
``fsck`` after ``gc`` is clean.

Two tests: a random one (a registering process killed at random moments, many times) and
a deterministic one (the process kills itself at each named step of the write path).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def assert_recovered(hub) -> None:  # type: ignore[no-untyped-def]
    """What must hold after ``gc(grace=0)``, whatever was killed when."""
    hub.gc(grace=timedelta(0))
    assert hub.index.pending_versions() == []
    rep = hub.fsck(deep=True, grace=timedelta(0))
    assert rep.ok, [p.message for p in rep.problems]
    for v in hub.index.all_ready_versions():
        r = hub.verify(v.ref, deep=True)
        assert r.ok and r.files == len(v.files) > 0, (v.ref, r.problems)
    assert hub.verify_log().ok
    for folder in {hub.root / v.model for v in hub.index.all_ready_versions()}:
        sidecars = sorted(p.name for p in folder.glob("*.sha256"))
        r = subprocess.run(["sha256sum", "--strict", "-c", *sidecars], cwd=folder,
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
    leftovers = [p for p in hub.root.rglob(".tmp-*")]
    assert leftovers == []


# -- random kills -------------------------------------------------------------------------

# A zygote imports the hub once, then forks one registering child per request, so each
# kill costs a fork rather than an interpreter start-up. The test SIGKILLs the child itself.
# "go N" starts a child that registers for ever; "hold N" one that stops for good inside
# its first registration, after the first bytes are stored (a pending row and a
# temporary file exist), and says so: a kill mid-write that depends on no timing.
ZYGOTE = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from sentenialx.hub.hub import Hub

    root, inputs = sys.argv[1], Path(sys.argv[2])

    def register_forever(first, hold):
        hub = Hub(root)
        os.write(ready_w, b"r")

        def stop_here(n):
            os.write(ready_w, b"h")
            while True:
                time.sleep(60)

        i = first
        while True:
            if i % 2:
                # A folder version: fixed members (dedup) and one that changes every time.
                (inputs / "adapter" / "nonce.txt").write_text(f"{os.getpid()} {i}")
                hub.register("lora", inputs / "adapter", progress=stop_here if hold else None)
            else:
                hub.register("big", inputs / "weights.bin", progress=stop_here if hold else None)
            i += 1

    for line in sys.stdin:
        cmd, arg = line.split()
        if cmd in ("go", "hold"):
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                try:
                    register_forever(int(arg), cmd == "hold")
                finally:
                    os._exit(1)
            os.close(ready_w)
            want = b"rh" if cmd == "hold" else b"r"
            got = b""
            while len(got) < len(want):
                b = os.read(ready_r, 1)
                if not b:
                    break
                got += b
            os.close(ready_r)
            print(pid if got == want else -1, flush=True)
        elif cmd == "reap":
            _, status = os.waitpid(int(arg), 0)
            print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
""")


def _inputs(root: Path) -> Path:
    rnd = random.Random(1)
    (root / "adapter" / "tok").mkdir(parents=True)
    (root / "adapter" / "adapter.safetensors").write_bytes(rnd.randbytes(300_000))
    (root / "adapter" / "config.json").write_text('{"r": 8}')
    (root / "adapter" / "tok" / "vocab.txt").write_bytes(rnd.randbytes(50_000))
    (root / "adapter" / "nonce.txt").write_text("0")
    (root / "weights.bin").write_bytes(rnd.randbytes(6 * 1024 * 1024))
    return root


def test_random_sigkills_leave_no_half_versions(make_hub, tmp_path) -> None:
    """200 SIGKILLs at random moments of a registration loop; whatever survives is whole.

    Deterministic: every 20th kill waits for the child to commit first (so some
    registrations always complete) and every 20th, offset by 10, stops the child inside
    a registration before killing it (so some kills always land mid-write). The other
    kills sleep a random fraction of how long the children themselves were measured to
    take, so they spread over every step of the write path; no assertion depends on
    where they land.
    """
    kills, budget, every = 200, 480.0, 20
    hub = make_hub()
    inputs = _inputs(tmp_path / "inputs")
    hub.register("big", inputs / "weights.bin")
    hub.register("lora", inputs / "adapter")
    rnd = random.Random(int(os.environ.get("SENTENIALX_CRASH_SEED", "20240607")))
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(hub.root), str(inputs)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              bufsize=1)
    assert zygote.stdin is not None and zygote.stdout is not None

    def start(cmd: str, arg: int) -> int:
        assert zygote.stdin is not None and zygote.stdout is not None
        zygote.stdin.write(f"{cmd} {arg}\n")
        pid = int(zygote.stdout.readline())
        assert pid > 0, "registering child did not start"
        return pid

    def kill(pid: int) -> None:
        assert zygote.stdin is not None and zygote.stdout is not None
        os.kill(pid, signal.SIGKILL)
        zygote.stdin.write(f"reap {pid}\n")
        assert int(zygote.stdout.readline()) == signal.SIGKILL

    def commit_time(pid: int) -> float:
        """Let the child commit once (a bounded wait, not an assertion on speed)."""
        before = len(hub.index.all_ready_versions())
        t0 = time.monotonic()
        while len(hub.index.all_ready_versions()) == before:
            assert time.monotonic() - t0 < 60, "a registering child never committed"
            time.sleep(0.005)
        return time.monotonic() - t0

    start_t, done, waited, held, mid_write = time.monotonic(), 0, 0, 0, 0
    base = len(hub.index.all_ready_versions())
    try:
        # How long a child takes from "ready" to its first commit, measured on the
        # children themselves (cold engine included) and refreshed at every waited kill.
        pid = start("go", 1000)
        measured = [commit_time(pid)]
        kill(pid)
        base += 1
        pending_before = len(hub.index.pending_versions())
        while done < kills:
            assert time.monotonic() - start_t < budget, f"only {done} kills in {budget}s"
            if done % every == 0:
                pid = start("go", done)
                measured.append(commit_time(pid))
                waited += 1
            elif done % every == every // 2:
                pid = start("hold", done)
                held += 1
            else:
                pid = start("go", done)
                # Anywhere from before the first byte to after a whole registration (then
                # the next one is under way): every step of the write path gets hit.
                typical = sorted(measured)[len(measured) // 2]
                time.sleep(rnd.uniform(0, 1.5 * typical))
            kill(pid)
            # A kill mid-write leaves one more pending row (gc removes them at the end).
            pending = len(hub.index.pending_versions())
            mid_write += pending > pending_before
            pending_before = pending
            done += 1
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    completed = len(hub.index.all_ready_versions()) - base
    print(f"{kills} kills in {time.monotonic() - start_t:.1f}s: {completed} registrations"
          f" completed ({waited} waited for), {mid_write} kills left a pending row ({held}"
          f" held mid-write); child commit time median"
          f" {sorted(measured)[len(measured) // 2] * 1000:.0f} ms")
    assert done == kills and held == kills // every and waited == kills // every
    # The held children were killed mid-write, the waited-for ones after a commit.
    assert mid_write >= held > 0, (mid_write, held)
    assert completed >= waited > 0, (completed, waited)
    assert_recovered(hub)
    # Whatever survived is complete and correct, and the hub keeps working.
    for v in hub.index.all_ready_versions():
        assert len(v.files) == (1 if v.model == "big" else 4)
        if v.model == "big":
            assert hub.open(v.ref) == (inputs / "weights.bin").read_bytes()
    hub.register("big", inputs / "weights.bin")
    assert hub.fsck().ok


# -- deterministic crash points ------------------------------------------------------------

POINT_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from sentenialx.hub import _views
    from sentenialx.hub import hub as hubmod
    from sentenialx.hub.index import sql
    from sentenialx.hub.store import local

    root, point, action, arg = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def kill_on(owner, name, *, nth=1, after=False):
        real = getattr(owner, name)
        calls = [0]

        def wrapper(*a, **k):
            calls[0] += 1
            if calls[0] == nth and not after:
                die()
            out = real(*a, **k)
            if calls[0] == nth and after:
                die()
            return out

        setattr(owner, name, wrapper)

    if point == "before-first-byte":
        kill_on(local.LocalStore, "_write_tmp")
    elif point == "temp-written":
        kill_on(local, "copy_and_hash", after=True)
    elif point == "folder-half-staged":
        kill_on(local.LocalStore, "_write_tmp", nth=2)
    elif point == "folder-claimed":
        real_rename = os.rename
        def rename(src, dst, *a, **k):
            if str(src).endswith(".dir"):
                die()
            return real_rename(src, dst, *a, **k)
        local.os.rename = rename
    elif point == "files-in-place":
        kill_on(local.LocalStore, "put_small")
    elif point == "between-sidecars":
        kill_on(local.LocalStore, "put_small", nth=2)
    elif point == "during-dedup":
        kill_on(local.LocalStore, "dedup")
    elif point == "before-commit":
        kill_on(sql.SqlIndex, "complete_version")
    elif point == "after-commit":
        # The parts call Views.write_registry_json directly, not through the Hub facade.
        kill_on(_views.Views, "write_registry_json")
    elif point == "registry-json-temp":
        # registry.json's temp file is written and fsynced, not yet renamed into place.
        real_replace = os.replace
        def replace(src, dst, *a, **k):
            if str(dst).endswith("registry.json"):
                die()
            return real_replace(src, dst, *a, **k)
        local.os.replace = replace
    elif point == "after-index-delete":
        kill_on(local.LocalStore, "delete")

    hub = hubmod.Hub(root)
    if action == "register-file":
        hub.register("big", arg)
    elif action == "register-dir":
        hub.register("lora", arg)
    elif action == "alias":
        hub.set_alias(arg, "stable")
    elif action == "delete":
        hub.delete(arg, confirm=True)
    print("survived")
""")

POINTS = [
    ("before-first-byte", "register-file"),
    ("temp-written", "register-file"),
    ("files-in-place", "register-file"),
    ("between-sidecars", "register-file"),
    ("during-dedup", "register-file"),
    ("before-commit", "register-file"),
    ("after-commit", "register-file"),
    ("registry-json-temp", "register-file"),
    ("before-first-byte", "register-dir"),
    ("folder-half-staged", "register-dir"),
    ("folder-claimed", "register-dir"),
    ("files-in-place", "register-dir"),
    ("during-dedup", "register-dir"),
    ("before-commit", "register-dir"),
    ("after-commit", "register-dir"),
    ("after-commit", "alias"),
    ("after-commit", "delete"),
    ("after-index-delete", "delete"),
]


@pytest.mark.parametrize(("point", "action"), POINTS, ids=[f"{a}:{p}" for p, a in POINTS])
def test_kill_at_each_step(make_hub, tmp_path, point, action) -> None:
    hub = make_hub()
    inputs = _inputs(tmp_path / "inputs")
    hub.register("big", inputs / "weights.bin", version="1.0.0")
    hub.register("lora", inputs / "adapter")
    hub.register("big", inputs / "adapter" / "tok" / "vocab.txt", version="1.0.1",
                 name="weights")
    arg = {"register-file": str(inputs / "weights.bin"), "register-dir": str(inputs / "adapter"),
           "alias": "big@1.0.0", "delete": "big@1.0.1"}[action]
    before = {v.ref: v.digest for v in hub.index.all_ready_versions()}
    r = subprocess.run([sys.executable, "-c", POINT_CHILD, str(hub.root), point, action, arg],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)
    after = {v.ref: v.digest for v in hub.index.all_ready_versions()}
    # Either no new version or a complete one; nothing registered before changed.
    if action.startswith("register"):
        new = set(after) - set(before)
        assert len(new) <= 1 and set(before) <= set(after)
        assert {k: after[k] for k in before} == before
    assert_recovered(hub)
    if action == "alias":
        assert hub.resolve("big@stable").version == "1.0.0"
    if action == "delete":
        assert "big@1.0.1" not in {v.ref for v in hub.index.all_ready_versions()}
    # The store keeps working after recovery.
    hub.register("big", inputs / "weights.bin")
    assert hub.fsck().ok
    assert json.loads((hub.root / "registry.json").read_text()) == hub.registry_view()
