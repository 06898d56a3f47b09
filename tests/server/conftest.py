"""Fixtures for the server tests: a sample hub, tokens, and the real server on loopback.

- ``build_sample(root) -> Hub``: teacher -> distill (two versions, log, chart, report,
  aliases) -> lora (a folder version), all with lineage.
- ``served``: a fresh sample hub served by uvicorn on a free 127.0.0.1 port in a
  background thread, with tokens of every scope (``served.tokens[name]``).
- ``hub_state(hub)``: index rows (not the token table: its ``last_used_at`` is a hint),
  registry.json and the file listing, to prove a refused request changed nothing.
"""

from __future__ import annotations

import functools
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentenialx.hub.hub import Hub

REPORT_MD = """# Distillation report

The student keeps **97%** of the teacher's accuracy.

| metric | teacher | student |
|---|---|---|
| accuracy | 0.95 | 0.93 |

![loss curve](loss.png)

<script>window.__pwned = "script";</script>
<img src="x" onerror="window.__pwned = 'onerror'">
<a href="javascript:window.__pwned='href'">click me</a>
<iframe src="https://example.com"></iframe>
<p style="color:red" onclick="window.__pwned='onclick'">styled</p>
"""


def tiny_png(width: int = 8, height: int = 4, rgb: tuple[int, int, int] = (37, 99, 235)) -> bytes:
    """A valid PNG of one colour (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@functools.cache
def chart_png() -> bytes:
    """A real loss-curve PNG drawn with matplotlib (the kind of chart a training job attaches)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = list(range(0, 600, 10))
    ax.plot(steps, [2.0 / (1 + s * 0.03) for s in steps], label="loss")
    ax.plot(steps, [2.2 / (1 + s * 0.03) for s in steps], label="val_loss")
    ax.set_xlabel("step")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def training_log(steps: int = 50, seed: float = 0.0) -> bytes:
    lines = []
    for s in range(steps):
        loss = 2.0 / (1 + s * 0.3) + seed
        acc = min(0.99, 0.5 + s * 0.009)
        lines.append(json.dumps({"step": s * 10, "loss": round(loss, 4),
                                 "accuracy": round(acc, 4), "val_loss": round(loss * 1.1, 4)}))
    return ("\n".join(lines) + "\n").encode()


def build_sample(root: Path, inputs: Path) -> Hub:
    """A hub with teacher -> distill -> lora lineage, attachments and aliases."""
    import random

    inputs.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(7)
    hub = Hub(root)
    t = inputs / "teacher.onnx"
    t.write_bytes(rnd.randbytes(300_000))
    hub.register("teacher", t, metadata={"metrics": {"accuracy": 0.95}, "framework": "pytorch",
                                         "description": "the big teacher"})
    s1 = inputs / "threat_student.onnx"
    s1.write_bytes(rnd.randbytes(120_000))
    log = inputs / "train_log.jsonl"
    log.write_bytes(training_log(40, 0.1))
    hub.register("distill", s1, metadata={"metrics": {"accuracy": 0.90, "f1": 0.88}},
                 parents=["teacher=teacher@1.0.0"], attachments=[("log", log)])
    hub.set_alias("distill@1.0.0", "production", force=True)
    s2 = inputs / "v2" / "threat_student.onnx"
    s2.parent.mkdir()
    s2.write_bytes(rnd.randbytes(120_000))
    log2 = inputs / "v2" / "train_log.jsonl"
    log2.write_bytes(training_log(60))
    chart = inputs / "v2" / "loss.png"
    chart.write_bytes(chart_png())
    report = inputs / "v2" / "report.md"
    report.write_text(REPORT_MD)
    hub.register("distill", s2, bump="minor",
                 metadata={"metrics": {"accuracy": 0.93, "f1": 0.91}, "params": {"temperature": 4},
                           "description": "distilled student"},
                 parents=["teacher=teacher@1.0.0"],
                 attachments=[("log", log2), ("chart", chart), ("report", report)])
    hub.set_alias("distill@1.1.0", "production", expect="1.0.0", force=True)
    hub.set_alias("distill@1.1.0", "staging")
    ad = inputs / "adapter"
    ad.mkdir()
    (ad / "adapter_model.bin").write_bytes(rnd.randbytes(50_000))
    (ad / "adapter_config.json").write_text(json.dumps({"r": 8, "alpha": 16}))
    hub.register("lora", ad, metadata={"metrics": {"accuracy": 0.94}},
                 parents=["base=distill@1.1.0"])
    return hub


def hub_state(hub: Hub) -> dict[str, Any]:
    """Everything a refused request must leave unchanged (the token table excepted)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{hub.root / 'registry.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        index = {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                 for t in tables if t not in ("stat_cache", "tokens")}
    finally:
        conn.close()
    files = []
    for p in sorted(hub.root.rglob("*")):
        rel = p.relative_to(hub.root).as_posix()
        if rel.startswith("registry.db") or rel.endswith(".lock"):
            continue
        st = p.lstat()
        files.append((rel, st.st_size if p.is_file() else -1, st.st_mode, st.st_mtime_ns))
    return {"index": index, "registry.json": (hub.root / "registry.json").read_bytes(),
            "files": files}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, **protocol: Any) -> None:
        import uvicorn

        from sentenialx.hub.server._timeouts import guarded_protocol

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_keep_alive=5,
                                http=guarded_protocol(**protocol))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True, name=f"uvicorn-{self.port}")

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@dataclass
class Served:
    """A sample hub, its live server and tokens by name."""

    hub: Hub
    server: LiveServer
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, name: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"} if name else {}

    def client(self, name: str | None = "reader") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(name), timeout=30)


TOKENS = {
    "admin": ("admin", None),
    "writer": ("write", None),
    "reader": ("read", None),
    "distill-writer": ("write", ["distill"]),
    "lora-reader": ("read", ["lora"]),
}


def serve_hub(hub: Hub, **app_kwargs: Any) -> Served:
    from sentenialx.hub.server import create_app

    tokens = {}
    for name, (scope, models) in TOKENS.items():
        secret, _ = hub.tokens.create(name, scope=scope, models=models)
        tokens[name] = secret
    server = LiveServer(create_app(hub, **app_kwargs)).start()
    return Served(hub, server, tokens)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    hub = build_sample(tmp_path / "hub", tmp_path / "inputs")
    s = serve_hub(hub, max_upload_bytes=4 * 1024 * 1024)
    try:
        yield s
    finally:
        s.server.stop()
        hub.close()


@pytest.fixture
def make_served(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory for a served sample hub with custom app options."""
    made: list[Served] = []

    def make(name: str = "hub", **kwargs: Any) -> Served:
        hub = build_sample(tmp_path / name, tmp_path / f"{name}-inputs")
        s = serve_hub(hub, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.server.stop()
        s.hub.close()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private client cache ($SENTENIALX_CACHE)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("SENTENIALX_CACHE", str(d))
    return d


def make_spec(files: list[tuple[str, bytes]], *, attachments: list[tuple[str, str, bytes]] = (),
              layout: str = "file", **extra: Any) -> dict[str, Any]:
    """An upload spec declaring these files (path, bytes) and attachments (role, name, bytes)."""
    import hashlib

    spec: dict[str, Any] = {
        "layout": layout,
        "files": [{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                  for p, b in files],
        "attachments": [{"role": r, "name": n, "size": len(b),
                         "sha256": hashlib.sha256(b).hexdigest()} for r, n, b in attachments],
    }
    spec.update(extra)
    return spec


def post_upload(client: httpx.Client, model: str, spec: dict[str, Any] | bytes,
                blobs: list[tuple[str, bytes]], **kwargs: Any) -> httpx.Response:
    """POST a multipart upload: the spec part, then ``(sha256, bytes)`` blob parts."""
    raw = spec if isinstance(spec, bytes) else json.dumps(spec).encode()
    parts: list[tuple[str, Any]] = [("spec", (None, raw, "application/json"))]
    parts += [("blob", (sha, data, "application/octet-stream")) for sha, data in blobs]
    return client.post(f"/api/v1/models/{model}/versions", files=parts, **kwargs)


def blobs_of(*datas: bytes) -> list[tuple[str, bytes]]:
    import hashlib

    return [(hashlib.sha256(d).hexdigest(), d) for d in datas]


@pytest.fixture
def upload() -> Any:
    """``upload.spec(...)``, ``upload.post(client, model, spec, blobs)``, ``upload.blobs(*bytes)``."""
    class _U:
        spec = staticmethod(make_spec)
        post = staticmethod(post_upload)
        blobs = staticmethod(blobs_of)

    return _U


@pytest.fixture
def state() -> Callable[[Hub], dict[str, Any]]:
    """``state(hub)``: see :func:`hub_state`."""
    return hub_state


@pytest.fixture
def guarded(served: Any, state: Callable[[Hub], dict[str, Any]]) -> Iterator[Any]:
    """The served hub; afterwards assert it is exactly as before and no upload is staged.

    The server removes an upload's staging folder when the request ends, which may be
    just after the client has its answer: the wait is bounded, the assertion is not.
    """
    before = state(served.hub)
    yield served
    deadline = time.monotonic() + 10
    while list(served.hub.root.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(served.hub.root.glob(".tmp-*"))
    assert state(served.hub) == before

