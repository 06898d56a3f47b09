"""OCI blob downloads over loopback: what verifying while sending costs, beside the plain API download.

One file is registered in a fresh hub and served by ``sentenialx models serve``.
curl fetches it, interleaved, from the REST API (bytes as stored: the yardstick)
and from ``/v2/<name>/blobs/<digest>`` (hashed while sent, the last piece held
until the whole file matches the manifest). A ranged blob read (the last MiB)
reads and hashes the whole file, so its row is the whole file's size over the
request time, beside ``openssl dgst -sha256`` of the same file. Medians and ratios.

    .venv/bin/python bench/bench_oci.py                # 256 MiB, 5 runs each
    .venv/bin/python bench/bench_oci.py --size-mib 64 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_server import curl_rate, fmt, free_port, wait_up  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not shutil.which("curl") or not shutil.which("openssl"):
        print("curl and openssl are needed", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE.parent / "src"))
    from sentenialx.hub.hub import Hub

    work = Path(tempfile.mkdtemp(prefix="sentenialx-bench-oci-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        src = work / "big.onnx"
        size = args.size_mib * 1024 * 1024
        with open(src, "wb") as f:
            chunk = os.urandom(1024 * 1024)
            for i in range(args.size_mib):
                f.write(chunk[i % 997:] + chunk[: i % 997])
        hub = Hub(work / "hub")
        info = hub.register("bench", src)
        entry = hub.weights_entry(info)
        stored = hub.root / "bench" / entry.path
        secret, _ = hub.tokens.create("bench", scope="read")
        hub.close()
        auth = [f"Authorization: Bearer {secret}"]
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sentenialx", "models", "serve", "--port", str(port),
             "--hub", str(work / "hub"), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        wait_up(f"{base}/healthz")
        api = f"{base}/api/v1/models/bench/versions/{info.version}/files/{entry.path}"
        blob = f"{base}/v2/bench/blobs/sha256:{entry.sha256}"
        tail = 1024 * 1024
        curl_rate(api, auth, expect=size)  # warm the page cache and the server
        plain, verified, ranged, hashed = [], [], [], []
        for _ in range(args.runs):
            plain.append(curl_rate(api, auth, expect=size))
            verified.append(curl_rate(blob, auth, expect=size))
            t = time.perf_counter()
            curl_rate(blob, auth + [f"Range: bytes={size - tail}-"], expect=tail)
            ranged.append(size / (time.perf_counter() - t))
            t = time.perf_counter()
            out = subprocess.run(["openssl", "dgst", "-sha256", "-r", str(stored)], check=True,
                                 capture_output=True, text=True).stdout.split()[0]
            hashed.append(size / (time.perf_counter() - t))
            assert out == entry.sha256
        yard = statistics.median(plain)
        rows = [
            ("REST API download (as stored), curl", plain),
            ("OCI blob (verified while sent), curl", verified),
            ("OCI blob, Range: last 1 MiB (whole file hashed)", ranged),
            ("openssl dgst -sha256 of the stored file", hashed),
        ]
        print(f"\n{args.size_mib} MiB file over loopback ({args.runs} runs; {os.cpu_count()} CPUs;"
              f" load {os.getloadavg()[0]:.1f})\n")
        print(f"| {'what':<50} | {'median':>12} | vs REST API |")
        print(f"|{'-' * 52}|{'-' * 14}|{'-' * 13}|")
        for name, vals in rows:
            med = statistics.median(vals)
            print(f"| {name:<50} | {fmt(med):>12} | {med / yard:>10.2f}x |")
        print()
        return 0
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
