"""Fixtures for the scale suite: one PostgreSQL + S3 hub shared by several "machines".

- ``shared_hub``: a fresh database and ``s3://bucket/prefix`` on the real services (see
  ``tests/contract/_services.py``; skipped without them, failed under ``CI=true``).
  ``shared_hub.folder(name)`` makes a hub folder holding the hub.toml a team would copy
  around (each worker process gets its own, as on its own machine);
  ``shared_hub.open(name)`` opens it; every hub opened so is closed at teardown.
- ``run_worker(mode, **args)``: start ``_worker.py`` in a new Python process.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.config import write_config
from sentenialx.hub.hub import Hub


def _load_services() -> Any:
    name = "sentenialx_test_services"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "contract" / "_services.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


services = _load_services()
pg_admin = services.pg_admin
pg_database = services.pg_database
s3_client = services.s3_client
s3_bucket = services.s3_bucket
s3_store = services.s3_store
WORKER = Path(__file__).with_name("_worker.py")


@dataclass
class SharedHub:
    """One PostgreSQL index + S3 store, opened from as many folders as needed."""

    base: Path
    index_url: str
    s3: Any  # services.S3Place
    endpoint: str
    opened: list[Hub] = field(default_factory=list)

    def folder(self, name: str) -> Path:
        root = self.base / name
        if not (root / "hub.toml").exists():
            write_config(root, index=self.index_url, store=self.s3.url, s3_endpoint=self.endpoint)
        return root

    def open(self, name: str) -> Hub:
        h = Hub.open(self.folder(name))
        self.opened.append(h)
        return h


@pytest.fixture
def shared_hub(tmp_path: Path, pg_database: str, s3_store: Any) -> Iterator[SharedHub]:
    sh = SharedHub(tmp_path / "machines", pg_database, s3_store, services.s3_endpoint())
    yield sh
    for h in sh.opened:
        h.close()


@pytest.fixture
def run_worker() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str, **args: Any) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, str(WORKER), mode, json.dumps(args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout:
            p.stdout.close()
        if p.stderr:
            p.stderr.close()
