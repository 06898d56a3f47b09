"""MLflow plugin download throughput beside MLflow's own local artifact copy of the same files.

    .venv/bin/python bench/bench_mlflow.py            # 4 x 32 MiB folder version, 7 rounds
    .venv/bin/python bench/bench_mlflow.py --quick    # 4 x 4 MiB, 3 rounds

Needs the plugin installed (``pip install -e '.[mlflow]'``). Three ways to the same
bytes, run interleaved (order rotated each round), medians printed with the ratio to
the yardstick; no target (information only):

- yardstick: ``mlflow.artifacts.download_artifacts("file:///…/folder")``: MLflow's
  LocalArtifactRepository copying the files, nothing verified;
- read + sha256 + write of each file in plain Python: the floor of a verified copy;
- ``models:/bench/1`` through the plugin on a local hub: resolve, trust policy, each
  file read once, hashed against the manifest, written under a temporary name;
- ``models:/bench@fast``: the same through the alias (one more registry lookup).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    files, size, rounds = (4, 4 << 20, 3) if args.quick else (4, 32 << 20, 7)

    os.environ.setdefault("SENTENIALX_PROGRESS", "0")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    import mlflow

    from sentenialx.hub.hub import Hub

    work = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    try:
        folder = work / "model"
        folder.mkdir()
        rnd = random.Random(5)
        for i in range(files):
            (folder / f"part{i}.safetensors").write_bytes(rnd.randbytes(size))
        (folder / "MLmodel").write_text("flavors: {}\n")
        hub = Hub(work / "hub")
        hub.register("bench", folder)
        hub.set_alias("bench@1.0.0", "fast")
        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
        mlflow.set_registry_uri(f"sentenialx://{hub.root}")

        def download(uri: str) -> Callable[[], float]:
            def run() -> float:
                dst = work / "out"
                shutil.rmtree(dst, ignore_errors=True)
                t = time.perf_counter()
                mlflow.artifacts.download_artifacts(uri, dst_path=str(dst))
                return time.perf_counter() - t
            return run

        def verified_copy() -> float:
            import hashlib

            dst = work / "out"
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir()
            t = time.perf_counter()
            for p in sorted(folder.iterdir()):
                data = p.read_bytes()
                hashlib.sha256(data).hexdigest()
                (dst / p.name).write_bytes(data)
            return time.perf_counter() - t

        cases = {"mlflow file:// copy (yardstick)": download(folder.as_uri()),
                 "read + sha256 + write, plain Python": verified_copy,
                 "plugin models:/bench/1": download("models:/bench/1"),
                 "plugin models:/bench@fast": download("models:/bench@fast")}
        for run in cases.values():  # warm: the tracking store, the page cache
            run()
        samples: dict[str, list[float]] = {k: [] for k in cases}
        names = list(cases)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples[name].append(cases[name]())
        total = files * size
        base = statistics.median(samples[names[0]])
        print(f"\n{files} x {size >> 20} MiB folder version, {rounds} rounds, medians"
              f" (load average {os.getloadavg()[0]:.2f})\n")
        print(f"| {'download':<36} | {'median s':>9} | {'MiB/s':>8} | {'vs yardstick':>12} |")
        print(f"| {'-' * 36} | {'-' * 9} | {'-' * 8} | {'-' * 12} |")
        for name in names:
            med = statistics.median(samples[name])
            print(f"| {name:<36} | {med:9.3f} | {total / med / (1 << 20):8.0f} |"
                  f" {med / base:11.2f}x |")
        hub.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
