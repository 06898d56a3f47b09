"""Many processes on one hub: registrations and alias moves never lose or duplicate anything."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sentenialx.hub.refs import Version

pytestmark = pytest.mark.slow

REGISTER_WORKER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from sentenialx.hub.hub import Hub

    root, wid, n, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    work.mkdir(parents=True, exist_ok=True)
    hub = Hub(root)
    got = []
    for i in range(n):
        src = work / "w.bin"
        src.write_bytes(f"worker {wid} registration {i} ".encode() * 8)
        v = hub.register("shared", src, bump="patch", actor=f"worker-{wid}",
                         metadata={"worker": wid, "i": i})
        got.append(v.version)
    hub.close()
    print(json.dumps(got))
""")


def test_parallel_registrations_lose_nothing(make_hub, tmp_path) -> None:
    workers, per = 8, 50
    hub = make_hub()  # schema created once, before the race
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER_WORKER, str(hub.root), str(w),
                               str(per), str(tmp_path / f"work{w}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(workers)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    claimed = [v for r in results for v in r]
    assert len(claimed) == workers * per
    assert len(set(claimed)) == len(claimed), "a version was handed out twice"
    # No gaps: exactly 1.0.0 .. 1.0.399, and each worker saw its own versions increase.
    assert sorted(claimed, key=lambda s: Version.parse(s).sort_key()) == [
        f"1.0.{i}" for i in range(workers * per)]
    for r in results:
        assert r == sorted(r, key=lambda s: Version.parse(s).sort_key())
    versions = hub.versions("shared")
    assert [v.version for v in versions] == [f"1.0.{i}" for i in range(workers * per)]
    assert hub.index.pending_versions() == []
    # Every version holds the bytes its worker wrote.
    for v in versions[::37]:
        w, i = v.meta["worker"], v.meta["i"]
        assert hub.open(v.ref) == f"worker {w} registration {i} ".encode() * 8
        assert v.created_by == f"worker-{w}"
    log = hub.verify_log()
    assert log.ok and log.count == workers * per
    assert sorted(e.version for e in hub.events()) == sorted(claimed)
    rep = hub.fsck(deep=True)
    assert rep.ok, rep.problems[:5]
    reg = json.loads((hub.root / "registry.json").read_text())
    assert reg["shared"]["version"] == f"1.0.{workers * per - 1}"
    assert reg["shared"]["versions"] == workers * per


ALIAS_WORKER = textwrap.dedent("""
    import sys
    from sentenialx.hub.errors import Conflict
    from sentenialx.hub.hub import Hub

    hub = Hub(sys.argv[1])
    wid = int(sys.argv[2])
    print("ready", flush=True)
    for line in sys.stdin:
        target, expect = line.split()
        try:
            hub.set_alias(f"m@{target}", "stable", expect=expect, actor=f"w{wid}")
            print("won", target, flush=True)
        except Conflict:
            print("lost", target, flush=True)
""")


def test_concurrent_alias_moves_have_one_winner_per_round(make_hub, sample_file) -> None:
    workers, rounds = 4, 8
    hub = make_hub()
    n_versions = 1 + workers * rounds
    for i in range(n_versions):
        hub.register("m", sample_file(16, seed=i), version=f"1.0.{i}")
    hub.set_alias("m@1.0.0", "stable")
    procs = [subprocess.Popen([sys.executable, "-c", ALIAS_WORKER, str(hub.root), str(w)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, bufsize=1)
             for w in range(workers)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        current = "1.0.0"
        winners = [current]
        for r in range(rounds):
            # Every worker believes the alias is at `current` and races to move it to its
            # own, never-used-before version (so no ABA can fake a second winner).
            targets = [f"1.0.{1 + r * workers + w}" for w in range(workers)]
            for p, t in zip(procs, targets, strict=True):
                assert p.stdin is not None
                p.stdin.write(f"{t} {current}\n")
                p.stdin.flush()
            answers = [p.stdout.readline().split() for p in procs if p.stdout is not None]
            won = [t for verdict, t in answers if verdict == "won"]
            assert len(won) == 1, f"round {r}: winners {won} (answers {answers})"
            assert sorted(t for _, t in answers) == sorted(targets)
            current = won[0]
            winners.append(current)
            assert hub.resolve("m@stable").version == current
    finally:
        for p in procs:
            if p.stdin:
                p.stdin.close()
        for p in procs:
            p.wait(timeout=60)
    assert all(p.returncode == 0 for p in procs), [p.stderr.read() for p in procs if p.stderr]
    hist = hub.alias_history("m", "stable")
    assert [m.version for m in hist] == winners
    assert [m.previous for m in hist] == [None, *winners[:-1]]
    alias_events = [e for e in hub.events() if e.kind == "alias"]
    assert [e.version for e in alias_events] == winners
    assert hub.verify_log().ok
    assert hub.fsck().ok
    assert json.loads((hub.root / "registry.json").read_text())["m"]["aliases"] == {
        "stable": winners[-1]}


def test_readers_never_see_a_half_written_registry_json(make_hub, tmp_path) -> None:
    """While writers register, registry.json always parses (rename, never rewrite in place)."""
    hub = make_hub()
    writer = subprocess.Popen([sys.executable, "-c", REGISTER_WORKER, str(hub.root), "0", "30",
                               str(tmp_path / "w")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    reads = 0
    reg = Path(hub.root) / "registry.json"
    while writer.poll() is None:
        json.loads(reg.read_text())
        reads += 1
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    assert reads > 0
    assert json.loads(reg.read_text())["shared"]["version"] == "1.0.29"
