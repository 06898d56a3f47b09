"""A separate process acting on a shared hub, for the scale tests.

``python _worker.py MODE JSON_ARGS``; prints one JSON line with what it did.

- ``writer``: wait for ``start`` to exist, then ``n`` times: register a new version of
  ``model`` (bump patch) and move alias ``alias`` to it with compare-and-set (``expect``
  = what it just read), retrying on Conflict. Reports versions, digests and moves.
- ``upload``: register ``path`` to the hub; after the first multipart part is sent,
  touch ``marker`` and stall (the test SIGKILLs it there).
- ``verifier``: open ``Hub(root, index_url=index)``, wait for ``start``, then deep-verify
  the whole hub ``n`` times (each pass rewrites the stat cache for every file).
- ``copy``: ``copy_hub(src, dst)``; once ``after_bytes`` bytes were copied, touch
  ``marker`` and stall (the test SIGKILLs it there).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any


def _stall(marker: str) -> None:
    Path(marker).touch()
    time.sleep(600)


def writer(a: dict[str, Any]) -> dict[str, Any]:
    from sentenialx.hub.errors import Conflict, NotFound
    from sentenialx.hub.hub import Hub

    hub = Hub.open(a["root"])
    inputs = Path(a["inputs"])
    inputs.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(a["n"]):
        p = inputs / f"w{a['id']}_{i}.onnx"
        p.write_bytes(random.Random(f"{a['id']}-{i}").randbytes(a["size"]))
        files.append(p)
    while not Path(a["start"]).exists():
        time.sleep(0.005)
    out: dict[str, Any] = {"id": a["id"], "versions": {}, "moves": [], "conflicts": 0,
                           "spans": []}
    for p in files:
        t0 = time.time()
        v = hub.register(a["model"], p, bump="patch", actor=f"worker-{a['id']}")
        out["spans"].append([t0, time.time()])
        out["versions"][v.version] = v.digest
        while True:
            try:
                cur = hub.index.get_alias(a["model"], a["alias"]).version
            except NotFound:
                cur = ""
            try:
                hub.set_alias(v.ref, a["alias"], expect=cur, actor=f"worker-{a['id']}")
            except Conflict:
                out["conflicts"] += 1
                continue
            out["moves"].append([cur or None, v.version])
            break
    hub.close()
    return out


def verifier(a: dict[str, Any]) -> dict[str, Any]:
    from sentenialx.hub.hub import Hub

    hub = Hub(a["root"], index_url=a["index"])
    while not Path(a["start"]).exists():
        time.sleep(0.005)
    problems = []
    for _ in range(a["n"]):
        problems += [p.message for p in hub.verify(deep=True).problems]
    hub.close()
    return {"problems": problems}


def upload(a: dict[str, Any]) -> dict[str, Any]:
    from sentenialx.hub.hub import Hub

    hub = Hub.open(a["root"])
    hub.register(a["model"], a["path"], progress=lambda n: _stall(a["marker"]))
    return {"finished": True}  # never reached: the test kills us while stalled


def copy(a: dict[str, Any]) -> dict[str, Any]:
    from sentenialx.hub.hub import Hub
    from sentenialx.hub.transfer import copy_hub

    src, dst = Hub.open(a["src"]), Hub.open(a["dst"])
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if done >= a["after_bytes"]:
            _stall(a["marker"])

    rep = copy_hub(src, dst, progress=progress)
    return rep.to_dict()


if __name__ == "__main__":
    os.environ.setdefault("SENTENIALX_PROGRESS", "0")
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    result = {"writer": writer, "verifier": verifier, "upload": upload,
              "copy": copy}[mode](args)
    print(json.dumps(result))
