"""Views repair themselves: a torn events.jsonl, an edited registry.json, a stale stat cache,
and the leftovers fsck reports and gc removes (real files, real SQLite)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.hub import Hub


def index_rows(h: Hub) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(h.root / "registry.db")
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()  # noqa: S608
                for t in ("versions", "files", "aliases", "events")}
    finally:
        conn.close()


@pytest.fixture
def busy(hub: Hub, sample_file: Callable[..., Path]) -> Hub:
    for seed in range(3):
        hub.register("distill", sample_file(3000, seed=seed), bump="patch")
    hub.set_alias("distill@1.0.1", "staging")
    assert hub.fsck().ok
    return hub


def tear(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-40])  # mid-line, no newline at the end
    else:
        path.write_bytes(data + b"\x00garbage{not json\n")


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("mend", ["next write", "fsck --repair"])
def test_torn_events_export_is_named_then_repaired(busy: Hub, cli: Any, sample_file: Any,
                                                    how: str, mend: str) -> None:
    path = busy.root / "events.jsonl"
    n_lines = len(path.read_bytes().splitlines())
    before = index_rows(busy)
    tear(path, how)
    bad_line = n_lines if how == "truncated" else n_lines + 1

    r = cli("log", "--verify")
    assert r.exit_code == 1 and f"events.jsonl line {bad_line}" in r.stdout
    rep = busy.fsck()
    views = [p for p in rep.problems if p.kind == "view"]
    assert views and all(p.path == "events.jsonl" for p in views)
    assert any(f"line {bad_line}" in p.message for p in views)
    r = cli("fsck")
    assert r.exit_code == 1 and f"events.jsonl line {bad_line}" in r.stdout
    assert index_rows(busy) == before  # fsck without --repair writes nothing

    if mend == "next write":
        busy.set_alias("distill@1.0.0", "staging")
        before = index_rows(busy)
    else:
        r = cli("fsck", "--repair")
        assert r.exit_code == 0, r.stdout
        assert "REBUILT  events.jsonl: rewritten from the index" in r.stdout
        assert index_rows(busy) == before  # the repair rebuilt views only

    assert cli("log", "--verify").exit_code == 0
    rep = busy.fsck()
    assert rep.ok, rep.problems
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [d["seq"] for d in lines] == [e.seq for e in busy.events()]
    assert path.read_bytes().endswith(b"\n")


def test_fragment_followed_by_appends_is_mended(busy: Hub, sample_file: Any) -> None:
    """The old failure: a fragment, then later events glued after it in the same line."""
    path = busy.root / "events.jsonl"
    path.write_bytes(path.read_bytes()[:-30])
    busy.register("distill", sample_file(3000, seed=9), bump="patch")
    busy.set_alias("distill@1.0.3", "staging")
    assert busy.verify_log().ok
    assert busy.fsck().ok
    assert len(path.read_bytes().splitlines()) == len(busy.events())


def test_export_keeps_hub_signatures_of_lines_it_keeps(busy: Hub, cli: Any) -> None:
    r = cli("keys", "hub-key", "--out", busy.root.parent / "secret" / "hub.pem", models=False)
    assert r.exit_code == 0, r.stdout
    busy.set_alias("distill@1.0.0", "staging")
    path = busy.root / "events.jsonl"
    signed = {d["seq"]: d["hub_sig"] for d in map(json.loads, path.read_text().splitlines())
              if "hub_sig" in d}
    assert signed
    tear(path, "truncated")
    busy.set_alias("distill@1.0.1", "staging")
    after = {d["seq"]: d.get("hub_sig") for d in map(json.loads, path.read_text().splitlines())}
    last = max(signed)
    assert all(after[s] == sig for s, sig in signed.items() if s != last)  # verbatim
    assert after[last] and after[max(after)]  # the torn one and the new one signed anew
    assert busy.verify_log().ok and busy.fsck().ok


def test_disagreeing_export_line_is_never_rewritten(busy: Hub) -> None:
    """An export that disagrees with the index is evidence (of an edit on one side)."""
    path = busy.root / "events.jsonl"
    lines = path.read_text().splitlines()
    doc = json.loads(lines[1])
    doc["actor"] = "mallory@evil"
    lines[1] = json.dumps(doc, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    busy.set_alias("distill@1.0.0", "staging")
    busy.fsck(repair=True)
    assert "mallory@evil" in path.read_text()
    rep = busy.verify_log()
    assert not rep.ok and rep.first_bad == 2


def test_stale_export_is_reported_and_repaired(busy: Hub) -> None:
    path = busy.root / "events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))  # a writer killed between commit and export
    rep = busy.fsck()
    assert [p.kind for p in rep.problems] == ["view"]
    assert f"events {len(lines) - 1}..{len(lines)}" in rep.problems[0].message
    rep = busy.fsck(repair=True)
    assert rep.ok and any("events.jsonl" in r for r in rep.repaired)
    assert path.read_bytes().splitlines(keepends=True) == lines


@pytest.mark.parametrize("damage", ["deleted", "edited"])
def test_registry_json_is_reported_then_rebuilt(busy: Hub, cli: Any, damage: str) -> None:
    reg = busy.root / "registry.json"
    good = json.loads(reg.read_text())
    if damage == "deleted":
        reg.unlink()
    else:
        os.chmod(reg, 0o644)
        doc = dict(good)
        doc["distill"] = dict(doc["distill"], version="9.9.9")
        reg.write_text(json.dumps(doc))
    rep = busy.fsck()
    assert [(p.kind, p.path) for p in rep.problems] == [("registry", "registry.json")]
    assert "--repair" in rep.problems[0].message
    if damage == "deleted":  # opening a hub (the CLI does) recreates a missing view itself
        rep = busy.fsck(repair=True)
        assert rep.ok and rep.repaired == ["registry.json: rebuilt from the index (was missing)"]
    else:
        r = cli("fsck")
        assert r.exit_code == 1 and "REGISTRY" in r.stdout and "registry.json" in r.stdout
        r = cli("fsck", "--repair")
        assert r.exit_code == 0, r.stdout
        assert "REBUILT  registry.json: rebuilt from the index (was stale or edited)" in r.stdout
    assert json.loads(reg.read_text()) == good
    assert busy.fsck().ok
    # A clean hub: nothing to rebuild, nothing claimed.
    assert [x for x in busy.fsck(repair=True).repaired if "registry.json" in x] == []


def test_stale_stat_cache_entry_is_rerecorded(busy: Hub, cli: Any) -> None:
    key = next(iter(busy.index.stat_cache()))
    p = busy.root / key
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # same bytes, older mtime
    stale = busy.index.stat_cache()[key]
    assert stale[1] != p.stat().st_mtime_ns
    assert busy.fsck().ok
    assert busy.index.stat_cache()[key] == stale  # plain fsck only reads
    r = cli("fsck", "--repair")
    assert r.exit_code == 0 and f"REBUILT  stat cache: {key} re-hashed and recorded (was stale)" \
        in r.stdout
    st = p.stat()
    assert busy.index.stat_cache()[key][:4] == (st.st_size, st.st_mtime_ns, st.st_ino,
                                                 st.st_ctime_ns)


def _staging(h: Hub, name: str, age_s: float) -> Path:
    d = h.root / f".tmp-upload-{name}"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "part.bin").write_bytes(b"u" * 1000)
    then = time.time() - age_s
    for p in (d / "sub" / "part.bin", d / "sub", d):
        os.utime(p, (then, then))
    return d


def test_staging_folders_are_reported_with_age_and_collected(busy: Hub, cli: Any) -> None:
    old = _staging(busy, "old", 3 * 3600 + 120)
    young = _staging(busy, "young", 60)
    rep = busy.fsck()
    staging = [p for p in rep.problems if p.kind == "staging"]
    assert [p.path for p in staging] == [".tmp-upload-old/"]
    assert "3h 2m ago" in staging[0].message and staging[0].age_s and staging[0].age_s > 3 * 3600
    assert {p.kind for p in rep.problems} == {"staging"}  # its files are not orphans too
    r = cli("fsck")
    assert r.exit_code == 1 and ".tmp-upload-old/" in r.stdout and "young" not in r.stdout

    rep = busy.gc(dry_run=True)
    assert rep.removed == [".tmp-upload-old/"] and old.exists()
    rep = busy.gc()
    assert rep.removed == [".tmp-upload-old/"] and rep.freed_bytes == 1000
    assert not old.exists() and young.exists() and (young / "sub" / "part.bin").exists()
    assert busy.fsck().ok
    assert busy.gc(grace=timedelta(seconds=10)).removed == [".tmp-upload-young/"]


def test_leftovers_carry_their_age(busy: Hub) -> None:
    stray = busy.root / "distill" / "stray.bin"
    stray.write_bytes(b"x" * 7)
    info = busy.index.reserve_version("distill", version=None, bump="patch",
                                      stem_for=lambda v: f"student_v{v}", layout="file", meta={},
                                      lineage={}, actor="crashed")
    rep = busy.fsck(grace=timedelta(0))
    orphan = next(p for p in rep.problems if p.kind == "orphan")
    # An orphan's age is its last change, ctime included (a copy may keep an old mtime),
    # which os.utime cannot set back: only its presence is checked here.
    assert orphan.path == "distill/stray.bin" and orphan.age_s is not None
    assert re.search(r"7 bytes, changed \d+[smhd]( \d+[smh])? ago", orphan.message)
    pending = next(p for p in rep.problems if p.kind == "pending")
    assert pending.version == info.version and " ago" in pending.message
    assert pending.age_s is not None
