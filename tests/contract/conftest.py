"""The ``backend`` fixture: one hub per combination the project supports.

``backend`` is parametrised over ``sqlite-local``, ``sqlite-s3``, ``postgres-local`` and
``postgres-s3``. Every PostgreSQL test gets its own fresh database and every S3 test its
own fresh ``s3://bucket/prefix`` on the real services (see ``_services.py``); without
them those cases skip with the reason, and under ``CI=true`` they fail.

- ``backend.hub(**kw) -> Hub``: a Hub on this backend through the one constructor,
  ``Hub(root, index_url=..., store_url=..., s3_endpoint=...)``; ``root=``, ``endpoint=``,
  ``cache_max_bytes=`` override (a second hub on the same index and store, a bogus
  endpoint for offline reads...). Every hub is closed at teardown.
- ``backend.remote``: True when bytes live in S3.
- ``backend.keys() -> {key: size}``: the store's objects, listed behind the hub's back
  (boto3 or ``os.walk``), relative to the store's root.
- ``backend.write_raw(key, data)`` / ``backend.read_raw(key)``: change or read an object
  behind the hub's back (boto3 ``put_object``, or the file itself).
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.hub import ROOT_FILES, Hub


def _load_services() -> Any:
    name = "sentenialx_test_services"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_services.py"))
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

BACKENDS = [
    pytest.param("sqlite-local", id="sqlite-local"),
    pytest.param("sqlite-s3", id="sqlite-s3", marks=pytest.mark.s3),
    pytest.param("postgres-local", id="postgres-local", marks=pytest.mark.postgres),
    pytest.param("postgres-s3", id="postgres-s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
]


@dataclass
class Backend:
    """One index x store combination, with a hand to reach behind the hub's back."""

    name: str
    root: Path
    index_url: str | None = None
    s3: Any = None  # services.S3Place
    opened: list[Hub] = field(default_factory=list)

    @property
    def remote(self) -> bool:
        return self.s3 is not None

    @property
    def store_url(self) -> str | None:
        return self.s3.url if self.s3 is not None else None

    def hub(self, *, root: Path | None = None, endpoint: str | None = None,
            cache_max_bytes: int | None = None, cache_dir: Path | None = None) -> Hub:
        h = Hub(root or self.root, index_url=self.index_url, store_url=self.store_url,
                s3_endpoint=endpoint or (services.s3_endpoint() if self.remote else None),
                cache_dir=cache_dir, cache_max_bytes=cache_max_bytes)
        self.opened.append(h)
        return h

    def keys(self) -> dict[str, int]:
        if self.s3 is not None:
            return dict(self.s3.keys())
        out = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for fn in files:
                p = Path(dirpath) / fn
                rel = p.relative_to(self.root).as_posix()
                top = rel.split("/", 1)[0]
                if rel in ROOT_FILES or top in ("trust", "keys", ".cache") or "/" not in rel:
                    continue
                out[rel] = p.stat().st_size
        return out

    def write_raw(self, key: str, data: bytes) -> None:
        if self.s3 is not None:
            self.s3.client.put_object(Bucket=self.s3.bucket, Key=self.s3.key(key), Body=data)
            return
        p = self.root / key
        if p.exists():
            os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o444)

    def read_raw(self, key: str) -> bytes:
        if self.s3 is not None:
            body: bytes = self.s3.client.get_object(Bucket=self.s3.bucket,
                                                    Key=self.s3.key(key))["Body"].read()
            return body
        return (self.root / key).read_bytes()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty hub location on one index x store combination."""
    index_kind, store_kind = str(request.param).split("-")
    index_url = request.getfixturevalue("pg_database") if index_kind == "postgres" else None
    place = request.getfixturevalue("s3_store") if store_kind == "s3" else None
    b = Backend(str(request.param), tmp_path / "hub", index_url, place)
    yield b
    # Close before pg_database drops the database (fixtures tear down in reverse order).
    for h in b.opened:
        h.close()
