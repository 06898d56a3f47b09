"""Register and load throughput: PostgreSQL + S3 (Ceph RGW) beside the local default and boto3.

Run from the repository root, with the services up::

    scripts/services/up.sh && source "${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env"
    .venv/bin/python bench/bench_scale.py              # 256 MiB file, medians of 3
    .venv/bin/python bench/bench_scale.py --size 64    # quicker

One file of random bytes, in the same run:

- local default hub (SQLite + files in the folder): ``register``, then ``open`` (read,
  hash, compare with the manifest);
- PostgreSQL + S3 hub: ``register`` (multipart upload, Content-MD5 per part, sha256
  while sending, sidecars, index transaction), ``open`` with an empty read cache
  (download, hash into the cache, read back and hash again: what a first load costs)
  and ``open`` again with the cache warm;
- boto3's own ``upload_file`` / ``download_file`` of the same file to the same RGW, with
  its defaults (multipart in 8 MiB parts, 10 threads; no sha256, nothing verified).

Each figure is the median of ``--reps`` repetitions, the three contenders interleaved
and rotated every repetition (the machine is shared). A fresh PostgreSQL database and
bucket are made for the run and removed after it. Results also go to
``<out>/bench_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _services import (  # noqa: E402 - a sibling module of this script
    MiB,
    drop_bucket,
    drop_database,
    new_bucket,
    new_database,
    random_file,
    rmtree,
    s3_client,
)


def need(*names: str) -> None:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        sys.exit(f"bench_scale: {', '.join(missing)} not set; start the services:\n"
                 "  scripts/services/up.sh && source"
                 " \"${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env\"")


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Setup:
    """A fresh database, bucket, work folder and the two hubs."""

    def __init__(self, size: int) -> None:
        from sentenialx.hub.hub import Hub

        self.size = size
        self.endpoint = os.environ["SENTENIALX_TEST_S3_ENDPOINT"]
        self.admin, self.db, pg_url = new_database("sx_bench")
        self.s3 = s3_client()
        self.bucket = new_bucket(self.s3, "sx-bench")
        # On the repository's filesystem, like a real hub folder (not tmpfs).
        self.work = Path(tempfile.mkdtemp(prefix=".bench-scale-", dir=REPO))
        self.file = random_file(self.work / "threat_student.onnx", size)
        self.local = Hub(self.work / "local")
        self.remote = Hub(self.work / "remote", index_url=pg_url, store_url=f"s3://{self.bucket}/hub",
                          s3_endpoint=self.endpoint)

    def close(self) -> None:
        for h in (self.local, self.remote):
            h.close()
        try:
            drop_bucket(self.s3, self.bucket)
        finally:
            drop_database(self.admin, self.db)
            rmtree(self.work)



def one_rep(s: Setup, rep: int, order: Sequence[str], samples: dict[str, list[float]]) -> None:
    """Register and load once with each contender, in ``order``; then clean up."""
    from boto3.s3.transfer import TransferConfig

    want = s.file.read_bytes()

    def hub_register(hub: Any, key: str) -> Any:
        t = time.perf_counter()
        v = hub.register("bench", s.file, version=f"1.0.{rep}", actor="bench")
        samples[key].append(time.perf_counter() - t)
        return v

    def hub_load(hub: Any, ref: str, key: str) -> None:
        t = time.perf_counter()
        data = hub.open(ref)
        samples[key].append(time.perf_counter() - t)
        assert data == want

    def local() -> None:
        v = hub_register(s.local, "register local")
        hub_load(s.local, v.ref, "load local")
        s.local.delete(v.ref, confirm=True)

    def remote() -> None:
        v = hub_register(s.remote, "register pg+s3")
        s.remote.cache.prune(0)  # a first load: nothing cached
        hub_load(s.remote, v.ref, "load pg+s3")
        hub_load(s.remote, v.ref, "load pg+s3 cached")
        s.remote.delete(v.ref, confirm=True)
        s.remote.cache.prune(0)

    def boto() -> None:
        key = f"boto3/{rep}.onnx"
        cfg = TransferConfig()  # boto3's defaults
        samples["register boto3"].append(timed(
            lambda: s.s3.upload_file(str(s.file), s.bucket, key, Config=cfg)))
        dest = s.work / f"download-{rep}"
        samples["load boto3"].append(timed(
            lambda: s.s3.download_file(s.bucket, key, str(dest), Config=cfg)))
        assert dest.stat().st_size == s.size
        dest.unlink()
        s.s3.delete_object(Bucket=s.bucket, Key=key)

    runs = {"local": local, "pg+s3": remote, "boto3": boto}
    for name in order:
        log(f"  rep {rep + 1}: {name}")
        runs[name]()


ROWS = [
    ("register", "register local", "register pg+s3", "register boto3"),
    ("load (cold)", "load local", "load pg+s3", "load boto3"),
    ("load (cached)", None, "load pg+s3 cached", None),
]


def table(samples: dict[str, list[float]], size: int) -> tuple[list[list[str]], dict[str, Any]]:
    def rate(key: str | None) -> float | None:
        if key is None or not samples.get(key):
            return None
        return size / MiB / statistics.median(samples[key])

    def cell(key: str | None) -> str:
        r = rate(key)
        if r is None:
            return "-"
        return f"{r:7.1f} MiB/s ({statistics.median(samples[key or '']):.2f} s)"

    rows, doc = [], {}
    for label, lk, rk, bk in ROWS:
        lr, rr, br = rate(lk), rate(rk), rate(bk)
        ratio = f"{rr / br:.2f}x" if rr and br else "-"
        rows.append([label, cell(lk), cell(rk), cell(bk), ratio])
        doc[label] = {"local_mib_s": lr, "pg_s3_mib_s": rr, "boto3_mib_s": br}
    return rows, doc


def print_table(rows: list[list[str]], title: str, plain: bool) -> None:
    head = ["", "local default (SQLite + files)", "PostgreSQL + S3 hub", "boto3 upload/download_file",
            "hub / boto3"]
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=title)
            for h in head:
                t.add_column(h, justify="right" if h else "left")
            for r in rows:
                t.add_row(*r)
            Console(width=None if sys.stdout.isatty() else 120).print(t)
            return
        except ImportError:
            pass
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print(title)
    for r in [head, *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="file size in MiB (default 256)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3; medians)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--plain", action="store_true", help="plain text instead of a rich table")
    args = ap.parse_args(argv)
    need("SENTENIALX_TEST_PG_URL", "SENTENIALX_TEST_S3_ENDPOINT", "AWS_ACCESS_KEY_ID",
         "AWS_SECRET_ACCESS_KEY")
    os.environ.setdefault("SENTENIALX_PROGRESS", "0")
    size = args.size * MiB
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log(f"bench_scale: {args.size} MiB file, {args.reps} repetitions")
    s = Setup(size)
    samples: dict[str, list[float]] = {k: [] for row in ROWS for k in row[1:] if k}
    contenders = ["local", "pg+s3", "boto3"]
    try:
        for rep in range(args.reps):
            order = contenders[rep % 3:] + contenders[:rep % 3]
            one_rep(s, rep, order, samples)
    finally:
        s.close()
    rows, doc = table(samples, size)
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print_table(rows, f"Register and load of one {args.size} MiB file, medians of {args.reps}",
                args.plain)
    print(f"Load average at start {load_start}, at end {load_end} on {os.cpu_count()} CPUs;"
          " RGW and PostgreSQL share the machine with the client.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_scale.json").write_text(json.dumps({
        "size_mib": args.size, "reps": args.reps, "throughput": doc, "samples_s": samples,
        "loadavg_start": load_start, "loadavg_end": load_end, "cpus": os.cpu_count(),
        "platform": platform.platform()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
