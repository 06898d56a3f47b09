"""The end-to-end demo: a fresh hub, a model registered, resolved, verified, promoted."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sentenialx.hub import Hub


def _sample_weights(path: Path, *, seed: int, size: int = 4 * 1024 * 1024) -> Path:
    """A deterministic stand-in weights file (bytes from a seeded generator)."""
    import random

    rng = random.Random(seed)
    path.write_bytes(rng.randbytes(size))
    return path


def run_demo(hub_path: str | None, *, quick: bool = True) -> Hub:
    """Run the demo and return the hub it made."""
    console = Console(stderr=False)
    err = Console(stderr=True)
    t0 = time.perf_counter()
    root = Path(hub_path) if hub_path else Path(f"demo-hub-{time.strftime('%Y%m%d-%H%M%S')}")
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"error: {root} is not empty; the demo needs a fresh hub folder")
    hub = Hub.open(root)
    err.print(f"[bold]hub[/bold] {hub.root}")
    with tempfile.TemporaryDirectory() as tmp:
        w1 = _sample_weights(Path(tmp) / "threat_student.onnx", seed=1)
        v1 = hub.register("distill", w1, metadata={"description": "sample student",
                                                   "metrics": {"accuracy": 0.95}},
                          alias="production")
        err.print(f"registered {v1.ref} sha256:{v1.digest[:16]}…")
        w2 = _sample_weights(Path(tmp) / "threat_student.onnx", seed=2)
        v2 = hub.register("distill", w2, bump="minor",
                          metadata={"description": "better sample student",
                                    "metrics": {"accuracy": 0.97}})
        err.print(f"registered {v2.ref} sha256:{v2.digest[:16]}…")
    table = Table("ref", "resolves to", "path")
    for ref in ("distill", "distill@production", "distill@^1.0", f"distill@sha256:{v1.digest[:10]}"):
        v = hub.resolve(ref)
        table.add_row(ref, v.version, os.path.relpath(hub.path(ref)))
    console.print(table)
    hub.set_alias("distill@1.1.0", "production", expect="1.0.0")
    console.print(f"production -> {hub.resolve('distill@production').version}")
    rep = hub.verify(deep=True)
    console.print(f"verify --deep: {'OK' if rep.ok else 'FAILED'} ({rep.files} files)")
    fsck = hub.fsck()
    console.print(f"fsck: {'OK' if fsck.ok else 'FAILED'}; chain head {fsck.chain_head[:16]}…")
    err.print(f"done in {time.perf_counter() - t0:.1f} s")
    if not (rep.ok and fsck.ok):
        sys.exit(1)
    return hub
