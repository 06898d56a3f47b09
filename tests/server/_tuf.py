"""A hub published over TUF on loopback for the TUF tests: keys, repository, server, proxy.

``Edge(tmp)`` makes the release keys (root, targets, release, and a rogue key nobody
trusts), trusts the release key for every model, runs ``tuf init``, serves the hub
with uvicorn and puts a small replaying proxy in front (``edge.proxy.url``): it
relays every request to the server unless ``overrides`` holds an answer for the
path, which is how a captured (older) metadata file is replayed to a client.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import random
import stat
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sentenialx.hub.hub import Hub
from sentenialx.hub.signing import generate_keypair, load_private_key
from sentenialx.hub.values import VersionInfo

from .conftest import LiveServer

GOOD = {"metrics": {"accuracy": 0.97, "latency_p95_ms": 5.0, "false_positive_rate": 0.01}}
"""Metrics that pass the default production gates."""
DATA = "d" * 64


class Proxy:
    """A relaying HTTP proxy in front of the server; ``overrides[path] = bytes`` replays."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.overrides: dict[str, bytes] = {}
        self.seen: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                proxy.seen.append(self.path)
                if self.path in proxy.overrides:
                    body = proxy.overrides[self.path]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    conn.request("GET", self.path, headers={k: v for k, v in self.headers.items()
                                                            if k.lower() != "host"})
                    resp = conn.getresponse()
                    body = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k in ("Content-Type", "ETag"):
                    if resp.getheader(k):
                        self.send_header(k, resp.getheader(k))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> Proxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Edge:
    """A hub with a TUF repository, served on loopback behind a replaying proxy."""

    def __init__(self, tmp: Path, *, hub: Hub | None = None,
                 timestamp: timedelta = timedelta(hours=1)) -> None:
        from sentenialx.hub.server import create_app

        self.tmp = tmp
        self.keys = tmp / "keys"
        for name in ("root1", "root2", "root3", "root4", "targets", "release", "rogue"):
            generate_keypair(self.keys / f"{name}.pem", self.keys / f"{name}.pub")
        self.hub = hub or Hub(tmp / "hub")
        ts = self.hub.trust_store()
        ts.trust_key(self.keys / "release.pub", name="release")
        self.hub.save_trust(ts, action="trust-key", detail={"key": "release"})
        self.hub.tuf_init(root_keys=[self.key("root1")], targets_key=self.key("targets"),
                          online_dir=tmp / "online", expiry={"timestamp": timestamp})
        self.repo = self.hub.tuf_repository()
        self.online = self.repo.load_online_keys(tmp / "online")
        self.server = LiveServer(create_app(self.hub, tuf_online_keys=tmp / "online")).start()
        self.proxy = Proxy(self.server.url).start()
        self.root_json = tmp / "root.json"
        self.root_json.write_bytes(self.repo.root_bytes())
        self._n = 0

    def key(self, name: str) -> Path:
        return self.keys / f"{name}.pem"

    @property
    def url(self) -> str:
        """Where clients connect: the proxy."""
        return self.proxy.url

    def release(self, model: str = "distill", data: bytes | None = None, *,
                key: str | None = "release", promote: bool = True, name: str = "threat_student.onnx",
                **kw: Any) -> VersionInfo:
        """Register ``data`` (random bytes by default), sign it with ``key`` and promote with it."""
        self._n += 1
        src = self.tmp / "inputs" / str(self._n) / name
        src.parent.mkdir(parents=True)
        src.write_bytes(data if data is not None else random.Random(self._n).randbytes(50_000))
        kw.setdefault("metadata", GOOD)
        info = self.hub.register(model, src, data_digest=DATA, **kw)
        if key is not None:
            self.hub.sign(info.ref, self.key(key))
            if promote:
                self.hub.promote(info.ref, to="production", key=self.key(key))
        return info

    def weights(self, info: VersionInfo) -> Path:
        return self.hub.root / info.model / info.files[0].path

    def tamper(self, info: VersionInfo) -> None:
        """Flip one byte of the version's weights on the server's disk (same size)."""
        p = self.weights(info)
        os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))

    def refresh_online(self) -> None:
        """The server re-signs snapshot and timestamp now (as it does before they expire)."""
        assert self.online is not None
        self.repo.refresh_online(self.online, force=True)

    def metadata(self, name: str) -> bytes:
        return (self.repo.metadata / name).read_bytes()

    def replay(self, name: str, data: bytes) -> None:
        """Make the proxy answer ``/tuf/metadata/<name>`` with ``data``."""
        self.proxy.overrides[f"/tuf/metadata/{name}"] = data

    def forge_role(self, role: str, key: str = "rogue") -> None:
        """What a server holding only the online keys can do: re-sign a release role itself."""
        from sentenialx.hub.tuf_repo import signer_for

        md = self.repo.load(role)
        md.signed.version += 1
        md.signatures.clear()
        md.sign(signer_for(load_private_key(self.key(key))))
        (self.repo.metadata / f"{md.signed.version}.{role}.json").write_bytes(md.to_bytes())
        self.refresh_online()

    def stop(self) -> None:
        self.proxy.stop()
        self.server.stop()
        self.hub.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
