"""Start-up and first-hit resolve, each beside a yardstick measured in the same run.

Run from the repository root::

    .venv/bin/python bench/bench_startup.py           # full: 15 runs per command, 512 MiB, 100k versions
    .venv/bin/python bench/bench_startup.py --quick   # sanity: 5 runs, 64 MiB, 10k versions

Three tables:

- **start-up**: whole commands on the embedded default (SQLite + local files), each
  the median of N runs interleaved with ``python -c pass`` (order rotated every
  round): ``models list``, ``versions``, ``show``, ``path`` (target <= 0.15 s) and
  ``register`` of a 4 KiB file (target <= 0.25 s). None of them imports SQLAlchemy
  (the embedded default's index runs on the standard library's sqlite3).
- **register, big file**: whole-command ``register`` of a 512 MiB file against
  ``openssl dgst -sha256`` and ``cp`` + ``sync FILE`` of the same file, interleaved;
  target <= 1.3x the slower of the two. Beside it, ``Hub.register`` of the same file
  in this process (an open hub, imports done), interleaved too: what the command
  costs beyond start-up.
- **first-hit resolve** on a 100,000-version index: alias, exact version, latest
  (target <= 0.3 ms) and a semver range (<= 2 ms), the resolve cache cleared before
  every call (as after any write), beside one raw ``sqlite3`` point query; and the
  cached path (a few µs).

The commands run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` is dropped
from their environment, and one warm-up run writes the ``.pyc`` files), as an
installed package runs. The 100k index is bulk-inserted by :func:`bulk_index`, a
bench-only helper (consistent version, file and alias rows; no blobs, no events).
Exit code 1 when a target is missed. Results also go to ``<out>/bench_startup-<mode>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


@dataclass
class Row:
    """One figure beside its yardstick."""

    figure: str
    value: float
    unit: str
    yardstick: str
    limit: float | None
    target: str
    passed: bool | None
    note: str = ""


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q / 100))]


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def env() -> dict[str, str]:
    e = dict(os.environ, SENTENIALX_PROGRESS="0")
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    for k in ("SENTENIALX_HUB", "SENTENIALX_INDEX", "SENTENIALX_STORE", "SENTENIALX_S3_ENDPOINT"):
        e.pop(k, None)
    return e


def cli_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "sentenialx"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sentenialx"]


CPU: dict[str, list[float]] = {}
"""Per command line, the child's user + system CPU seconds of each run (robust to a busy machine)."""


def timed_run(cmd: Sequence[str], e: dict[str, str]) -> float:
    """Wall seconds of one run; its CPU seconds go to :data:`CPU`."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=e, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(" ".join(cmd[-8:]), []).append(
        r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return wall


def interleaved(reps: int, fns: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each function ``reps`` times, round-robin, the starting one rotated every round."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(reps):
        for k in names[i % len(names):] + names[:i % len(names)]:
            out[k].append(fns[k]())
    return out


# -- start-up -----------------------------------------------------------------------------
def startup(work: Path, reps: int, rows: list[Row], samples: dict[str, Any]) -> None:
    e = env()
    cli = cli_cmd()
    root = work / "hub-startup"
    w = work / "w4k.onnx"
    for k in range(3):
        w.write_bytes(os.urandom(4096))
        subprocess.run(cli + ["models", "register", "distill", str(w), "--hub", str(root),
                              "--bump", "minor"] + (["--alias", "stable"] if k == 1 else []),
                       env=e, check=True, capture_output=True)
    cmds = {
        "models list": ["models", "list"],
        "models versions distill": ["models", "versions", "distill"],
        "models show distill@stable": ["models", "show", "distill@stable"],
        "models path distill@stable": ["models", "path", "distill@stable"],
        "models register distill 4KiB": ["models", "register", "distill", str(w), "--bump", "patch"],
    }
    fns: dict[str, Callable[[], float]] = {
        "python -c pass": lambda: timed_run([sys.executable, "-c", "pass"], e)}
    keys: dict[str, str] = {"python -c pass": " ".join([sys.executable, "-c", "pass"][-8:])}
    for name, args in cmds.items():
        full = cli + args + ["--hub", str(root)]
        keys[name] = " ".join(full[-8:])
        subprocess.run(full, env=e, check=True, capture_output=True)  # warm-up: .pyc, page cache
        fns[name] = (lambda c: lambda: timed_run(c, e))(full)

    def register_new() -> float:
        # New bytes each time: identical ones would be deduplicated into hardlinks, which
        # changes the earlier file's ctime and sends the next `path` to re-hash it.
        w.write_bytes(os.urandom(4096))
        return timed_run(cli + cmds["models register distill 4KiB"] + ["--hub", str(root)], e)

    fns["models register distill 4KiB"] = register_new
    log(f"start-up: {len(cmds)} commands x {reps}, interleaved with python -c pass")
    CPU.clear()
    s = interleaved(reps, fns)
    samples["startup"] = s
    samples["startup_cpu"] = {k: CPU.get(v, []) for k, v in keys.items()}
    py = median(s["python -c pass"])
    py_cpu = median(CPU[keys["python -c pass"]])
    for name in cmds:
        limit = 0.25 if "register" in name else 0.15
        v = median(s[name])
        cpu = median(CPU[keys[name]])
        rows.append(Row(f"`sentenialx {name}`", v, "s", "python -c pass", py, f"<= {limit} s",
                        v <= limit, f"{v / py:.1f}x python; CPU {cpu:.3f} s vs python"
                                    f" {py_cpu:.3f} s; max {max(s[name]):.3f} s"))


# -- register of a big file ----------------------------------------------------------------
def big_register(work: Path, size: int, reps: int, rows: list[Row], samples: dict[str, Any]) -> None:
    e = env()
    cli = cli_cmd()
    big = work / "big.bin"
    with big.open("wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
    root = work / "hub-big"
    subprocess.run(cli + ["models", "list", "--hub", str(root)], env=e, check=True,
                   capture_output=True)
    n = {"i": 0}

    def register() -> float:
        n["i"] += 1
        return timed_run(cli + ["models", "register", f"big{n['i']}", str(big), "--hub",
                                str(root)], e)

    def openssl() -> float:
        return timed_run(["openssl", "dgst", "-sha256", str(big)], e)

    from sentenialx.hub import Hub

    hub = Hub(work / "hub-inproc")

    def in_process() -> float:
        n["i"] += 1
        t = time.perf_counter()
        hub.register(f"big{n['i']}", big)
        return time.perf_counter() - t

    def cp_sync() -> float:
        dst = work / "copy.bin"
        dst.unlink(missing_ok=True)
        t = time.perf_counter()
        subprocess.run(["cp", str(big), str(dst)], check=True)
        subprocess.run(["sync", str(dst)], check=True)
        t = time.perf_counter() - t
        dst.unlink()
        return t

    log(f"register of {size // MiB} MiB x {reps}, interleaved with openssl and cp + sync")
    try:
        s = interleaved(reps, {"register": register, "openssl": openssl, "cp_sync": cp_sync,
                               "in_process": in_process})
    finally:
        hub.close()
        shutil.rmtree(work / "hub-inproc", ignore_errors=True)
    samples["big_register"] = s
    ossl, cps = median(s["openssl"]), median(s["cp_sync"])
    limit = max(ossl, cps)
    v = median(s["register"])
    rows.append(Row(f"`sentenialx models register` {size // MiB} MiB", v, "s",
                    "max(openssl dgst, cp + sync)", limit, "<= 1.3x", v <= 1.3 * limit,
                    f"{v / limit:.2f}x; openssl {ossl:.3f} s, cp + sync {cps:.3f} s"))
    ip = median(s["in_process"])
    rows.append(Row(f"in-process Hub.register {size // MiB} MiB", ip, "s",
                    "max(openssl dgst, cp + sync)", limit, "(info)", None,
                    f"{ip / limit:.2f}x; the command's cost beyond start-up"))
    shutil.rmtree(root, ignore_errors=True)
    big.unlink()


# -- first-hit resolve ----------------------------------------------------------------------
def bulk_index(root: Path, models: int, per_model: int) -> Any:
    """A hub whose index holds models x per_model ready versions, inserted in one transaction.

    Bench-only: the rows are those ``register`` writes (version with its sort key, one
    file, three aliases per model), with no blobs and no events; nothing but resolve is
    asked of this hub.
    """
    import sqlite3

    from sentenialx.hub import Hub
    from sentenialx.hub.refs import Version

    hub = Hub(root)
    db = sqlite3.connect(root / "registry.db", isolation_level=None)
    vrows, frows, arows = [], [], []
    vid = 0
    ts = "2026-01-01T00:00:00.000000Z"
    for m in range(models):
        model = f"m{m:03d}"
        for k in range(per_model):
            v = Version(1 + k // 100, (k // 10) % 10, k % 10)
            vid += 1
            sha = f"{vid:064x}"
            vrows.append((vid, model, str(v), v.index_key(), v.major, v.minor, v.patch, 1, "ready",
                          0, None, sha, f"{model}_v{v}", "file", '{"format": "onnx"}', "{}", 4096,
                          ts, "bench"))
            frows.append((vid, f"{model}_v{v}.onnx", 4096, sha, "weights"))
        for alias, k in (("stable", per_model // 2), ("staging", per_model - 1)):
            v = Version(1 + k // 100, (k // 10) % 10, k % 10)
            arows.append((model, alias, str(v), ts, "bench"))
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO versions (id, model, version, sort_key, major, minor, patch,"
                   " is_release, state, revoked, revoke_reason, digest, stem, layout, meta, lineage,"
                   " size, created_at, created_by) VALUES"
                   " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", vrows)
    db.executemany("INSERT INTO files (version_id, path, size, sha256, role) VALUES (?,?,?,?,?)",
                   frows)
    db.executemany("INSERT INTO aliases (model, alias, version, updated_at, updated_by)"
                   " VALUES (?,?,?,?,?)", arows)
    db.execute("UPDATE hub_state SET generation = generation + 1")
    db.execute("COMMIT")
    db.execute("ANALYZE")
    db.close()
    return hub


def resolve(work: Path, models: int, per_model: int, calls: int, rows: list[Row],
            samples: dict[str, Any]) -> None:
    import sqlite3

    root = work / "hub-index"
    total = models * per_model
    log(f"building a {total:,}-version index ({models} models x {per_model})")
    t = time.perf_counter()
    hub = bulk_index(root, models, per_model)
    build = time.perf_counter() - t
    raw = sqlite3.connect(f"file:{root / 'registry.db'}?mode=ro", uri=True)
    ms = [f"m{m:03d}" for m in range(models)]
    mid = f"{1 + (per_model // 3) // 100}.{((per_model // 3) // 10) % 10}.{(per_model // 3) % 10}"
    rng = mid.rsplit(".", 1)[0]
    kinds: dict[str, tuple[list[str], str, float]] = {
        "alias": ([f"{m}@stable" for m in ms],
                  "SELECT version FROM aliases WHERE model = ? AND alias = 'stable'", 0.3),
        "exact version": ([f"{m}@{mid}" for m in ms],
                          f"SELECT id FROM versions WHERE model = ? AND version = '{mid}'", 0.3),
        "latest": (ms, "SELECT id FROM versions WHERE model = ? ORDER BY sort_key DESC LIMIT 1",
                   0.3),
        f"range ^{rng}": ([f"{m}@^{rng}" for m in ms],
                       "SELECT id FROM versions WHERE model = ? ORDER BY sort_key DESC LIMIT 1",
                       2.0),
    }
    perf = time.perf_counter_ns
    try:
        for kind, (refs, point, target_ms) in kinds.items():
            for r in refs[:3]:
                assert hub.resolve(r).version, r
            first, cached, floor = [], [], []
            for i in range(calls):
                ref = refs[i % len(refs)]
                hub.core.clear_resolve_cache()
                t0 = perf()
                hub.resolve(ref)
                first.append((perf() - t0) / 1000)
                t0 = perf()
                hub.resolve(ref)
                cached.append((perf() - t0) / 1000)
                name = ref.split("@")[0]
                t0 = perf()
                raw.execute(point, (name,)).fetchone()
                floor.append((perf() - t0) / 1000)
            samples[f"resolve_{kind}_us"] = {"first": first, "cached": cached, "sqlite": floor}
            v = median(first)
            rows.append(Row(f"resolve {kind}, first hit, {total:,} versions", v, "us",
                            "raw sqlite3 point query", median(floor), f"<= {target_ms:g} ms",
                            v <= target_ms * 1000,
                            f"p99 {pct(first, 99):.0f} us; cache cleared before each call"))
            c = median(cached)
            rows.append(Row(f"resolve {kind}, cached", c, "us", "raw sqlite3 point query",
                            median(floor), "<= 10 us", c <= 10, f"p99 {pct(cached, 99):.1f} us"))
    finally:
        raw.close()
        hub.close()
        shutil.rmtree(root, ignore_errors=True)
    rows.append(Row(f"build the {total:,}-version index (bench helper)", build, "s", "—", None,
                    "< 60 s", build < 60, "bulk insert, one transaction"))


# -- output ---------------------------------------------------------------------------------
def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.3f} s"
    return f"{v:.1f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


def print_table(title: str, rows: list[Row]) -> None:
    head = ["figure", "median", "yardstick (same run)", "yardstick", "target", "result", "note"]
    body = [[r.figure, fmt(r.value, r.unit), r.yardstick, fmt(r.limit, r.unit), r.target,
             {True: "PASS", False: "FAIL", None: "—"}[r.passed], r.note] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip())
    print()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 runs, 64 MiB, 10k versions")
    ap.add_argument("--only", action="append", default=[],
                    choices=["startup", "register", "resolve"], help="run only these (repeatable)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    a = ap.parse_args(argv)
    reps, size, per_model, calls = (5, 64 * MiB, 100, 2000) if a.quick else (15, 512 * MiB, 1000,
                                                                            5000)
    only = set(a.only) or {"startup", "register", "resolve"}
    samples: dict[str, Any] = {}
    tables: dict[str, list[Row]] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-startup-", dir=REPO / "bench"))
    try:
        if "startup" in only:
            startup(work, reps, tables.setdefault("start-up (embedded default)", []), samples)
        if "register" in only:
            big_register(work, size, 3, tables.setdefault("register, big file", []), samples)
        if "resolve" in only:
            resolve(work, 100, per_model, calls, tables.setdefault("first-hit resolve", []),
                    samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for title, rows in tables.items():
        print_table(f"## {title}", rows)
    print(f"load average {load}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    a.out.mkdir(parents=True, exist_ok=True)
    out = a.out / f"bench_startup-{'quick' if a.quick else 'full'}.json"
    out.write_text(json.dumps({"tables": {t: [asdict(r) for r in rs] for t, rs in tables.items()},
                               "samples": samples, "loadavg": load}, indent=1))
    return 1 if any(r.passed is False for rs in tables.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
