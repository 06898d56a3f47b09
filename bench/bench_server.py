"""Download throughput over loopback: the hub server vs ``python -m http.server``, both fetched by curl.

One ~256 MiB file is registered in a fresh hub; the hub is served by
``sentenialx models serve`` (uvicorn) and the same stored file by
``python -m http.server`` from the hub's folder, in the same run. curl fetches each
several times to /dev/null; the best and median rates are printed, with the ratio.
Extra rows: the same download resumed half way (Range), the remote client
(``Hub.served(url).fetch``: download + sha256 + write to its cache, what ``pull`` and
``path`` do), and its yardstick, ``curl -o FILE && sha256sum FILE``.

    .venv/bin/python bench/bench_server.py            # 256 MiB, 5 runs each
    .venv/bin/python bench/bench_server.py --size-mib 64 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def curl_rate(url: str, headers: list[str], *, expect: int) -> float:
    """Bytes per second of one curl download to /dev/null (checks the byte count)."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}",
           "--no-buffer", url]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    size, speed = int(float(out[0])), float(out[1])
    if size != expect:
        raise RuntimeError(f"curl got {size} bytes from {url}, expected {expect}")
    return speed


def fmt(bps: float) -> str:
    return f"{bps / 1024**2:.0f} MiB/s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not shutil.which("curl"):
        print("curl is needed (apt-get install curl)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE.parent / "src"))
    from sentenialx.hub.hub import Hub

    work = Path(tempfile.mkdtemp(prefix="sentenialx-bench-server-"))
    procs: list[subprocess.Popen[bytes]] = []
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
        secret, _ = hub.tokens.create("bench", scope="read")
        hub.close()
        auth = [f"Authorization: Bearer {secret}"]

        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sentenialx", "models", "serve", "--port", str(port),
             "--hub", str(work / "hub"), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        hub_url = (f"http://127.0.0.1:{port}/api/v1/models/bench/versions/{info.version}"
                   f"/files/{entry.path}")
        wait_up(f"http://127.0.0.1:{port}/healthz")
        sport = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "http.server", str(sport), "--bind", "127.0.0.1",
             "--directory", str(work / "hub" / "bench")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        plain_url = f"http://127.0.0.1:{sport}/{entry.path}"
        wait_up(f"http://127.0.0.1:{sport}/")

        rows: list[tuple[str, list[float]]] = []
        # Warm the page cache and both servers once, then alternate to share any noise.
        curl_rate(hub_url, auth, expect=size)
        curl_rate(plain_url, [], expect=size)
        ours, theirs, resumed = [], [], []
        for _ in range(args.runs):
            ours.append(curl_rate(hub_url, auth, expect=size))
            theirs.append(curl_rate(plain_url, [], expect=size))
            resumed.append(curl_rate(hub_url, auth + [f"Range: bytes={size // 2}-",
                                                      f'If-Range: "{entry.sha256}"'],
                                     expect=size - size // 2))
        client = []
        for i in range(max(2, args.runs // 2)):
            cache = work / f"cache{i}"
            remote = Hub.served(f"http://127.0.0.1:{port}", token=secret, cache_dir=cache)
            rinfo = remote.resolve(f"bench@{info.version}")
            t = time.perf_counter()
            p = remote.fetch(rinfo, entry)
            client.append(size / (time.perf_counter() - t))
            remote.close()
            p.unlink()
            shutil.rmtree(cache, ignore_errors=True)
        naive = []
        for i in range(max(2, args.runs // 2)):
            # The client's yardstick: what a script would do for verified bytes on disk.
            out = work / f"curl{i}.bin"
            t = time.perf_counter()
            subprocess.run(["curl", "-sS", "-o", str(out), "-H", auth[0], hub_url], check=True)
            digest = subprocess.run(["sha256sum", str(out)], check=True, capture_output=True,
                                    text=True).stdout.split()[0]
            naive.append(size / (time.perf_counter() - t))
            assert digest == entry.sha256
            out.unlink()
        rows = [
            ("python -m http.server, curl", theirs),
            ("sentenialx serve, curl", ours),
            ("sentenialx serve, curl, Range from 50%", resumed),
            ("sentenialx serve, Hub.served().fetch (+sha256, cache)", client),
            ("sentenialx serve, curl -o FILE && sha256sum FILE", naive),
        ]
        base = statistics.median(theirs)
        print(f"\nDownload of a {args.size_mib} MiB file over loopback ({args.runs} runs;"
              f" {os.cpu_count()} CPUs)\n")
        print(f"| {'server, client':<52} | {'best':>12} | {'median':>12} | vs http.server |")
        print(f"|{'-' * 54}|{'-' * 14}|{'-' * 14}|{'-' * 16}|")
        for name, vals in rows:
            med = statistics.median(vals)
            print(f"| {name:<52} | {fmt(max(vals)):>12} | {fmt(med):>12} |"
                  f" {med / base:>13.2f}x |")
        print()
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
