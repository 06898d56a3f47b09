"""S3 at wire speed: the hub's upload and cold load beside boto3's upload_file / download_file.

Run from the repository root, with the services up::

    scripts/services/up.sh && source "${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env"
    .venv/bin/python bench/bench_s3.py               # 256 MiB file, medians of 5
    .venv/bin/python bench/bench_s3.py --size 64 --reps 3

One file of random bytes, on the same RGW, in the same run, interleaved (the order
rotated every repetition, since the machine is shared):

- ``upload``: ``S3Store.put_file`` (parallel multipart, sha256 of the whole file in
  one pass, every part signed with its own sha256, which RGW checks) against
  ``boto3.upload_file`` with its defaults (8 MiB parts, 10 threads; no whole-file
  hash). Target >= 0.95x.
- ``cold load``: ``Hub.fetch`` of a version of that file on a SQLite + S3 hub with an
  empty read cache (parallel ranged GETs, hashed in one pass into the verified cache,
  fsynced, admitted only if the digest matches) against ``boto3.download_file`` of the
  same object to a file on the same filesystem (no hash, no fsync). Target >= 0.95x.
  An info row compares it with ``download_file`` followed by an fsync of the file, the
  same durability as the cache's: when the disk is slower than the network (a busy
  shared disk), that fsync, not the hash, is what the cold load waits for.
- ``register`` (info): the whole ``Hub.register`` of the file (it also hashes the file
  while sending, to find identical bytes it may copy inside the store instead).

Objects stored by a repetition are deleted at its end, so the run holds about three
copies of the file at a time (RGW's memstore, about 3 GiB here, also keeps deleted data
until its garbage collector runs). Each row also gives the client process's CPU seconds
(user + system) per run. Results go to ``<out>/bench_s3.json``. Exit code 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _services import (  # noqa: E402 - a sibling module of this script
    MiB,
    drop_bucket,
    new_bucket,
    random_file,
    rmtree,
    s3_client,
)

TARGET = 0.95


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def need(*names: str) -> None:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        sys.exit(f"bench_s3: {', '.join(missing)} not set; start the services:\n"
                 "  scripts/services/up.sh && source"
                 " \"${SENTENIALX_SERVICES_DIR:-/tmp/sentenialx-services}/services.env\"")


class Run:
    """A fresh bucket, work folder, file and SQLite + S3 hub."""

    def __init__(self, size: int, part_size: int | None, concurrency: int | None) -> None:
        from sentenialx.hub.hub import Hub
        from sentenialx.hub.store.s3 import S3Store, Transfer

        self.size = size
        self.endpoint = os.environ["SENTENIALX_TEST_S3_ENDPOINT"]
        self.s3 = s3_client()
        self.bucket = new_bucket(self.s3, "sx-bench")
        self.work = Path(tempfile.mkdtemp(prefix=".bench-s3-", dir=REPO))
        self.file = random_file(self.work / "threat_student.onnx", size)
        self.transfer = Transfer.from_env(part_size=part_size, concurrency=concurrency)
        self.store = S3Store(f"s3://{self.bucket}/store", endpoint_url=self.endpoint,
                             transfer=self.transfer)
        if part_size or concurrency:
            os.environ["SENTENIALX_S3_PART_SIZE"] = str(self.transfer.part_size)
            os.environ["SENTENIALX_S3_CONCURRENCY"] = str(self.transfer.concurrency)
        self.hub = Hub(self.work / "hub", store_url=f"s3://{self.bucket}/hub",
                       s3_endpoint=self.endpoint)
        self.info = self.hub.register("bench", self.file, version="1.0.0", actor="bench")
        self.entry = self.info.files[0]
        self.s3.upload_file(str(self.file), self.bucket, "boto3/src.bin")

    def close(self) -> None:
        self.hub.close()
        self.store.close()
        try:
            drop_bucket(self.s3, self.bucket)
        finally:
            rmtree(self.work)



def contenders(r: Run, rep: int) -> dict[str, Callable[[], Callable[[], None]]]:
    """name -> setup(); setup returns the timed step (cleanup happens untimed, in setup)."""
    from boto3.s3.transfer import TransferConfig

    cfg = TransferConfig()  # boto3's defaults: 8 MiB parts, 10 threads
    boto_key = f"boto3/{rep}.bin"

    def up_hub() -> Callable[[], None]:
        key = f"put/{rep}.bin"

        def step() -> None:
            d = r.store.put_file(key, r.file)
            assert d.size == r.size and d.sha256 == r.entry.sha256
        return step

    def up_boto() -> Callable[[], None]:
        return lambda: r.s3.upload_file(str(r.file), r.bucket, boto_key, Config=cfg)

    def load_hub() -> Callable[[], None]:
        r.hub.cache.prune(0)  # a cold load: nothing cached

        def step() -> None:
            p = r.hub.fetch(r.info, r.entry)
            assert p.stat().st_size == r.size
        return step

    def load_boto() -> Callable[[], None]:
        dest = r.work / "download.bin"
        dest.unlink(missing_ok=True)

        def step() -> None:
            r.s3.download_file(r.bucket, "boto3/src.bin", str(dest), Config=cfg)
            assert dest.stat().st_size == r.size
        return step

    def load_boto_fsync() -> Callable[[], None]:
        dest = r.work / "download-fsync.bin"
        dest.unlink(missing_ok=True)

        def step() -> None:
            r.s3.download_file(r.bucket, "boto3/src.bin", str(dest), Config=cfg)
            fd = os.open(dest, os.O_RDONLY)
            try:
                os.fsync(fd)  # as durable as the hub's cache file, which is fsynced
            finally:
                os.close(fd)
            assert dest.stat().st_size == r.size
        return step

    def register() -> Callable[[], None]:
        # Other bytes each time: identical ones would be copied inside the store instead.
        src = r.work / "other.onnx"
        shutil.copyfile(r.file, src)
        with open(src, "r+b") as f:
            f.write(os.urandom(64))

        def step() -> None:
            r.hub.register("bench", src, version=f"2.0.{rep}", actor="bench")
        return step

    return {"upload hub": up_hub, "upload boto3": up_boto, "load hub": load_hub,
            "load boto3": load_boto, "load boto3 + fsync": load_boto_fsync,
            "register hub": register}


ROWS = [("upload", "upload hub", "upload boto3", True),
        ("cold load (S3 -> verified cache)", "load hub", "load boto3", True),
        ("cold load, yardstick fsynced too (info)", "load hub", "load boto3 + fsync", False),
        ("register (whole, info)", "register hub", "upload boto3", False)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="file size in MiB (default 256)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (default 5; medians)")
    ap.add_argument("--part-size", type=int, default=None, metavar="MIB",
                    help="the hub's part size in MiB (default: $SENTENIALX_S3_PART_SIZE or 8)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="the hub's transfer threads (default: $SENTENIALX_S3_CONCURRENCY or 10)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = ap.parse_args(argv)
    need("SENTENIALX_TEST_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    os.environ.setdefault("SENTENIALX_PROGRESS", "0")
    size = args.size * MiB
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    r = Run(size, args.part_size * MiB if args.part_size else None, args.concurrency)
    log(f"bench_s3: {args.size} MiB, {args.reps} repetitions, hub part size"
        f" {r.transfer.part_size // MiB} MiB x {r.transfer.concurrency} threads")
    wall: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    try:
        for rep in range(args.reps):
            runs = contenders(r, rep)
            names = list(runs)
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                step = runs[name]()
                c0, t0 = cpu(), time.perf_counter()
                step()
                wall.setdefault(name, []).append(time.perf_counter() - t0)
                cpus.setdefault(name, []).append(cpu() - c0)
            # RGW's memstore holds about 3 GiB: every repetition removes what it stored
            # (only the hub's version 1.0.0 and boto3's source object stay for the run).
            for k in (f"store/put/{rep}.bin", f"boto3/{rep}.bin"):
                r.s3.delete_object(Bucket=r.bucket, Key=k)
            r.hub.delete(f"bench@2.0.{rep}", confirm=True, actor="bench")
            log(f"  rep {rep + 1}: " + ", ".join(f"{n} {wall[n][-1]:.2f}s" for n in order))
    finally:
        r.close()
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())

    def rate(name: str) -> float:
        return size / MiB / statistics.median(wall[name])

    head = ["", "hub", "boto3", "hub / boto3", "target", "client CPU s (hub / boto3)"]
    rows, doc, ok = [], {}, True
    for label, hk, bk, has_target in ROWS:
        ratio = rate(hk) / rate(bk)
        verdict = ("PASS" if ratio >= TARGET else "FAIL") if has_target else "(info)"
        ok = ok and (ratio >= TARGET or not has_target)
        rows.append([label, f"{rate(hk):6.1f} MiB/s", f"{rate(bk):6.1f} MiB/s", f"{ratio:.2f}x",
                     f">= {TARGET}x {verdict}" if has_target else verdict,
                     f"{statistics.median(cpus[hk]):.2f} / {statistics.median(cpus[bk]):.2f}"])
        doc[label] = {"hub_mib_s": rate(hk), "boto3_mib_s": rate(bk), "ratio": ratio}
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    print(f"S3 transfers of one {args.size} MiB file, medians of {args.reps}"
          f" (hub: {r.transfer.part_size // MiB} MiB parts x {r.transfer.concurrency} threads;"
          " boto3: TransferConfig() defaults)")
    for row in [head, *rows]:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"Load average at start {load_start}, at end {load_end} on {os.cpu_count()} CPUs;"
          " RGW, the OSD and the client share the machine.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_s3.json").write_text(json.dumps({
        "size_mib": args.size, "reps": args.reps, "part_size": r.transfer.part_size,
        "concurrency": r.transfer.concurrency, "throughput": doc, "wall_s": wall, "cpu_s": cpus,
        "loadavg_start": load_start, "loadavg_end": load_end, "cpus": os.cpu_count(),
        "platform": platform.platform()}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
