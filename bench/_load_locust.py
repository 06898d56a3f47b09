"""The locust side of ``bench_load.py``: run as its own process (locust's gevent patches it).

Reads one JSON argument (servers, token, the versions to pull, how many pullers, rounds
and writers, whether to probe, whether to skip the hub and GET presigned URLs made
beforehand straight from S3: the ``direct`` yardstick). Once its users are spawned it
prints ``ready`` and waits for ``go`` on stdin, so that every process starts at the same
moment however long its imports took; at the end it prints one JSON line of results
(each finished pull's start, end, bytes and time to the hub's answer; locust's stats;
the CPU seconds it used while pulling). ``bench_load.py`` runs several such processes,
as locust's own workers would, and adds them up:

- ``Puller`` (``pullers`` users, ``rounds`` pulls each): GET a version's weights file
  from one of the servers (alternating), follow the 307 to the presigned S3 URL without
  the hub's token, as the hub's own client does, read the body in 1 MiB pieces, hash it
  and compare it with the manifest's sha256. A wrong digest counts as a failure.
  ``HttpUser`` (requests), not ``FastHttpUser``: for large bodies geventhttpclient's
  reader copies every byte several times (parser callback, body buffer, slice) and costs
  about 40% more CPU per GiB than requests here.
- ``Writer`` (``writers`` users): register a small new version by multipart upload every
  1-2 s, until the pulls are done.
- ``Prober`` (one user): GET one version's JSON record every 50 ms: the "small GET".
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

import gevent
import gevent.event
from locust import HttpUser, between, constant, events, task
from locust.env import Environment
from locust.exception import StopUser

CFG: dict[str, Any] = json.loads(sys.argv[1])
# (start, end, bytes, seconds until the hub's answer) of every finished pull
DONE: list[tuple[float, float, int, float]] = []
FAILED: list[str] = []
CHUNK = 1024 * 1024  # read and hash in the same 1 MiB pieces as the boto3 yardstick
GO = gevent.event.Event()  # set when bench_load.py says "go" on stdin


def _server(i: int) -> str:
    servers: list[str] = CFG["servers"]
    return servers[i % len(servers)]


class Puller(HttpUser):
    fixed_count = CFG["pullers"]
    wait_time = constant(0)
    host = CFG["servers"][0]
    _n = 0

    def on_start(self) -> None:
        Puller._n += 1
        self.me = Puller._n + CFG["first_puller"]
        self.rounds = 0
        # The token goes to the hub only, never to the presigned URL (the URL is its own
        # credential; S3 refuses a second one).
        self.auth = {"Authorization": f"Bearer {CFG['token']}"}
        GO.wait()  # every process starts pulling at the same moment

    @task
    def pull(self) -> None:
        if self.rounds >= CFG["rounds"]:
            raise StopUser()
        v = CFG["versions"][(self.me + self.rounds) % len(CFG["versions"])]
        self.rounds += 1
        url = (f"{_server(self.me + self.rounds)}/api/v1/models/{CFG['model']}/versions/"
               f"{v['version']}/files/{v['path']}")
        h = hashlib.sha256()
        n = 0
        t0 = time.time()
        hub_s = 0.0
        err: Exception | None = None
        try:
            if CFG["direct"]:
                # The yardstick: the same client straight to S3, no hub on the way.
                r = self.client.get(v["direct_url"], stream=True, name="pull: straight from S3")
            else:
                r = self.client.get(url, headers=self.auth, stream=True, allow_redirects=False,
                                    name="pull: the hub's answer (307 or the bytes)")
                hub_s = time.time() - t0
            if r.status_code in (302, 307):
                location = r.headers["location"]
                r.content  # noqa: B018 - read the short body: the connection goes back to the pool
                r = self.client.get(location, stream=True,
                                    name="pull: the presigned URL's answer")
            r.raise_for_status()
            for chunk in r.iter_content(CHUNK):
                h.update(chunk)
                n += len(chunk)
            if h.hexdigest() != v["sha256"] or n != v["size"]:
                err = ValueError(f"pull of {v['version']}: sha256 mismatch")
        except Exception as exc:  # noqa: BLE001 - reported to locust as a failure
            err = exc
        t1 = time.time()
        events.request.fire(request_type="PULL", name=f"pull {v['size'] >> 20} MiB, verified",
                            response_time=(t1 - t0) * 1000, response_length=n, exception=err,
                            context={})
        if err is None:
            DONE.append((t0, t1, n, hub_s))
        else:
            FAILED.append(str(err)[:200])


class Writer(HttpUser):
    fixed_count = CFG["writers"]
    wait_time = between(1.0, 2.0)
    host = CFG["servers"][0]
    _n = 0

    def on_start(self) -> None:
        Writer._n += 1
        self.me = Writer._n
        self.count = 0
        self.client.headers["Authorization"] = f"Bearer {CFG['token']}"
        GO.wait()

    @task
    def register(self) -> None:
        self.count += 1
        data = os.urandom(CFG["write_bytes"])
        spec = {"layout": "file", "version": f"9.{self.me}.{self.count}",
                "files": [{"path": "w.bin", "size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()}], "attachments": []}
        sha = spec["files"][0]["sha256"]  # type: ignore[index]
        files = [("spec", (None, json.dumps(spec).encode(), "application/json")),
                 ("blob", (sha, data, "application/octet-stream"))]
        self.client.post(f"{_server(self.me + self.count)}/api/v1/models/{CFG['write_model']}"
                         "/versions", files=files, name="register 1 version (upload)")


class Prober(HttpUser):
    fixed_count = 1 if CFG["prober"] else 0
    wait_time = constant(0.05)
    host = CFG["servers"][0]

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {CFG['token']}"
        self.i = 0
        GO.wait()

    @task
    def small_get(self) -> None:
        self.i += 1
        v = CFG["versions"][0]["version"]
        self.client.get(f"{_server(self.i)}/api/v1/models/{CFG['model']}/versions/{v}",
                        name="small GET (a version's JSON)")


def main() -> None:
    env = Environment(user_classes=[Puller, Writer, Prober], events=events)
    runner = env.create_local_runner()
    users = CFG["pullers"] + CFG["writers"] + (1 if CFG["prober"] else 0)
    runner.start(users, spawn_rate=users)
    while runner.user_count < users:
        gevent.sleep(0.01)
    # The barrier with the other processes: say ready, wait for "go" (read in a thread
    # so the hub keeps running), then let every user go at once.
    print("ready", flush=True)
    if gevent.get_hub().threadpool.apply(sys.stdin.readline).strip() != "go":
        sys.exit("_load_locust: no go on stdin")
    t0 = time.time()
    cpu0 = time.process_time()
    GO.set()
    want = CFG["pullers"] * CFG["rounds"]
    deadline = time.time() + CFG["timeout"]
    # The writers and the prober run until the pullers of every process are done.
    while time.time() < deadline and (len(DONE) + len(FAILED) < want if want else
                                      not os.path.exists(CFG["stop_file"])):
        gevent.sleep(0.1)
    t1 = time.time()
    cpu_s = time.process_time() - cpu0
    runner.quit()
    stats = {}
    for (name, method), s in env.stats.entries.items():
        stats[name] = {"method": method, "count": s.num_requests, "failures": s.num_failures,
                       "p50_ms": s.get_response_time_percentile(0.5),
                       "p99_ms": s.get_response_time_percentile(0.99),
                       "median_ms": s.median_response_time, "bytes": s.total_content_length}
    print(json.dumps({"pulls": [list(d) for d in DONE], "failed": FAILED[:5],
                      "n_failed": len(FAILED), "stats": stats, "t0": t0, "t1": t1,
                      "cpu_s": cpu_s}),
          flush=True)


if __name__ == "__main__":
    main()
