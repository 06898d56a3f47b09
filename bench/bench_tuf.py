"""A warm TUF refresh + download of a 64 MiB release vs a plain served pull of the same release.

One 64 MiB release is registered, signed and promoted with a release key in a fresh
hub with a TUF repository, and served by uvicorn on loopback. In the same run,
interleaved (order rotated each repetition), into an empty blob cache each time:

- ``tuf``: ``Hub.tuf(url, root=…)`` on a client whose trusted metadata is already
  cached (warm): refresh (root, timestamp, snapshot, targets, the release role),
  resolve ``distill@production`` through ``aliases.json``, verify the OpenSSF
  signature against the delegated keys, download the weights through the Updater
  into the verified cache;
- ``plain`` (the yardstick): ``Hub.served(url)``: resolve, download into the verified
  cache (``fetch``, what ``models pull`` does).

Medians and the ratio are printed; the goal is a ratio of at most 1.1.

    .venv/bin/python bench/bench_tuf.py                 # 64 MiB, 7 runs each
    .venv/bin/python bench/bench_tuf.py --size-mib 16 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "server"))
GOAL = 1.1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-tuf-"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "xdg")
    from conftest import LiveServer  # the tests' uvicorn-on-loopback helper
    from sentenialx.hub.hub import Hub
    from sentenialx.hub.server import create_app
    from sentenialx.hub.signing import generate_keypair

    keys = tmp / "keys"
    for name in ("root", "targets", "release"):
        generate_keypair(keys / f"{name}.pem", keys / f"{name}.pub")
    hub = Hub(tmp / "hub")
    ts = hub.trust_store()
    ts.trust_key(keys / "release.pub", name="release")
    hub.save_trust(ts, action="trust-key", detail={"bench": True})
    hub.tuf_init(root_keys=[keys / "root.pem"], targets_key=keys / "targets.pem",
                 online_dir=tmp / "online")
    os.environ["SENTENIALX_TUF_ONLINE_KEYS"] = str(tmp / "online")
    src = tmp / "threat_student.onnx"
    with open(src, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1024 * 1024))
    info = hub.register("distill", src, data_digest="d" * 64, metadata={"metrics": {
        "accuracy": 0.97, "latency_p95_ms": 5.0, "false_positive_rate": 0.01}})
    hub.sign(info.ref, keys / "release.pem")
    hub.promote(info.ref, to="production", key=keys / "release.pem")
    root = hub.tuf_repository().root_bytes()
    server = LiveServer(create_app(hub, anonymous_read=True)).start()
    size = info.files[0].size

    # Warm: the TUF client's trusted metadata is in place before the timed runs.
    warm = tmp / "tuf-client"
    Hub.tuf(server.url, root=root, cache_dir=warm).resolve("distill@production")

    def tuf_run() -> float:
        shutil.rmtree(warm / "blobs", ignore_errors=True)
        t = time.perf_counter()
        h = Hub.tuf(server.url, root=root, cache_dir=warm)
        h.generation()  # the refresh a following client does
        got = h.fetch(h.resolve("distill@production"), info.files[0])
        dt = time.perf_counter() - t
        assert got.stat().st_size == size
        return dt

    def plain_run() -> float:
        cache = tmp / "plain-client"
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter()
        h = Hub.served(server.url, cache_dir=cache)
        got = h.fetch(h.resolve("distill@production"), info.files[0])
        dt = time.perf_counter() - t
        h.close()
        assert got.stat().st_size == size
        return dt

    samples: dict[str, list[float]] = {"tuf": [], "plain": []}
    runs = [("tuf", tuf_run), ("plain", plain_run)]
    try:
        for i in range(args.runs):
            for name, fn in runs[i % 2:] + runs[:i % 2]:
                samples[name].append(fn())
    finally:
        server.stop()
        hub.close()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratio = med["tuf"] / med["plain"]
    mib = size / 2**20
    print(f"release {mib:.0f} MiB over loopback, {args.runs} runs each, medians"
          f" (load {os.getloadavg()[0]:.2f})")
    print(f"{'what':<42} {'median s':>9} {'MiB/s':>8} {'best s':>8}")
    print(f"{'TUF: warm refresh + resolve + download':<42} {med['tuf']:>9.3f}"
          f" {mib / med['tuf']:>8.0f} {min(samples['tuf']):>8.3f}")
    print(f"{'plain served pull (yardstick)':<42} {med['plain']:>9.3f}"
          f" {mib / med['plain']:>8.0f} {min(samples['plain']):>8.3f}")
    verdict = "PASS" if ratio <= GOAL else "FAIL"
    print(f"ratio TUF / plain {ratio:.2f}x (goal <= {GOAL}x) {verdict}")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
