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
ZYGOTE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from sentenialx.hub.hub import Hub

    root, inputs = sys.argv[1], Path(sys.argv[2])

    def register_forever(first):
        hub = Hub(root)
        os.write(ready_w, b"r")
        i = first
        while True:
            if i % 2:
                # A folder version: fixed members (dedup) and one that changes every time.
                (inputs / "adapter" / "nonce.txt").write_text(f"{os.getpid()} {i}")
                hub.register("lora", inputs / "adapter")
            else:
                hub.register("big", inputs / "weights.bin")
            i += 1

    for line in sys.stdin:
        cmd, arg = line.split()
        if cmd == "go":
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                try:
                    register_forever(int(arg))
                finally:
                    os._exit(1)
            os.close(ready_w)
            ok = os.read(ready_r, 1) == b"r"
            os.close(ready_r)
            print(pid if ok else -1, flush=True)
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
    kills, budget = 55, 120.0
    hub = make_hub()
    inputs = _inputs(tmp_path / "inputs")
    hub.register("big", inputs / "weights.bin")
    hub.register("lora", inputs / "adapter")
    rnd = random.Random(int(os.environ.get("SENTENIALX_CRASH_SEED", "20240607")))
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE, str(hub.root), str(inputs)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              bufsize=1)
    assert zygote.stdin is not None and zygote.stdout is not None
    start, done, pending_seen = time.monotonic(), 0, 0
    try:
        # How long a victim takes from "ready" to its first commit, measured on a victim
        # itself (cold engine included), so the kill delays below span whole registrations
        # on this machine however fast or loaded it is. A bounded wait, not an assertion.
        before = len(hub.index.all_ready_versions())
        zygote.stdin.write("go 1000\n")
        pid = int(zygote.stdout.readline())
        assert pid > 0, "registering child did not start"
        t0 = time.monotonic()
        while len(hub.index.all_ready_versions()) == before:
            assert time.monotonic() - t0 < 60, "the calibration child never committed"
            time.sleep(0.005)
        typical = time.monotonic() - t0
        os.kill(pid, signal.SIGKILL)
        zygote.stdin.write(f"reap {pid}\n")
        assert int(zygote.stdout.readline()) == signal.SIGKILL
        hub.gc(grace=timedelta(0))  # whatever the calibration child left half-made
        calibrated = len(hub.index.all_ready_versions())
        while done < kills:
            assert time.monotonic() - start < budget, f"only {done} kills in {budget}s"
            zygote.stdin.write(f"go {done}\n")
            pid = int(zygote.stdout.readline())
            assert pid > 0, "registering child did not start"
            # Anywhere from before the first byte to after a whole registration (then the
            # next one is under way): every step of the write path gets hit sometimes.
            time.sleep(rnd.uniform(0, 1.5 * typical))
            os.kill(pid, signal.SIGKILL)
            zygote.stdin.write(f"reap {pid}\n")
            assert int(zygote.stdout.readline()) == signal.SIGKILL
            pending_seen += bool(hub.index.pending_versions())
            done += 1
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    completed = len(hub.index.all_ready_versions()) - calibrated
    # Some kills landed mid-registration, some killed children had committed first.
    assert pending_seen > 0, (pending_seen, completed, typical)
    assert completed > 0, (pending_seen, completed, typical)
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
