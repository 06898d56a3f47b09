"""The OCI blob route on every index x store combination: whole, ranged, and never wrong.

The ``/v2/`` API reads through :meth:`Hub.verified_byte_source`, which opens local files
and S3 objects alike; bytes changed behind the hub's back (a local file rewritten,
an S3 object overwritten) never reach a client whole.
"""

from __future__ import annotations

import base64
import hashlib
import random
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentenialx.hub.layout import file_key

pytestmark = pytest.mark.timeout(120)


def _live_server() -> Any:
    # The server tests' uvicorn-on-loopback helper, loaded by path (tests are not a package).
    import importlib.util

    name = "sentenialx_test_server_conftest"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "server" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name].LiveServer


def test_blobs_are_verified_on_every_backend(backend: Any, tmp_path: Path) -> None:
    from sentenialx.hub.server import create_app

    hub = backend.hub()
    data = random.Random(5).randbytes(1_300_000)  # more than one streamed chunk
    src = tmp_path / "w.onnx"
    src.write_bytes(data)
    info = hub.register("edge", src)
    entry = hub.weights_entry(info)
    secret, _ = hub.tokens.create("puller", scope="read")
    auth = {"Authorization": "Basic " + base64.b64encode(f"x:{secret}".encode()).decode()}
    server = _live_server()(create_app(hub)).start()
    try:
        url = f"{server.url}/v2/edge/blobs/sha256:{entry.sha256}"
        layers = httpx.get(f"{server.url}/v2/edge/manifests/latest", headers=auth).json()["layers"]
        assert [la["digest"] for la in layers] == [f"sha256:{entry.sha256}"]
        whole = httpx.get(url, headers=auth, timeout=30)
        assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == entry.sha256
        part = httpx.get(url, headers={**auth, "Range": "bytes=1048570-1048599"}, timeout=30)
        assert part.status_code == 206 and part.content == data[1048570:1048600]

        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x01
        backend.write_raw(file_key("edge", entry.path), bytes(bad))
        for headers in ({}, {"Range": "bytes=0-9"}):
            got = bytearray()
            with pytest.raises(httpx.RemoteProtocolError):
                with httpx.stream("GET", url, headers={**auth, **headers}, timeout=30) as r:
                    assert r.status_code in (200, 206)
                    for chunk in r.iter_bytes():
                        got += chunk
            assert len(got) < int(r.headers["content-length"])
    finally:
        server.stop()
