"""The :class:`~sentenialx.hub.store.base.BlobStore` contract, one class run against every store.

:class:`StoreContract` holds the primitives' rules (restic's "files are written once,
never modified"; fsspec's abstract suite); each backend subclasses it with a ``store``
fixture, plus the contract of each optional capability it has. S3 runs on a fresh
``s3://bucket/prefix`` from ``s3_store`` (conftest.py): it skips without the service and
fails under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import AlreadyExists, HubError, NotFound
from sentenialx.hub.store.base import (
    AbandonedUploads,
    BlobStore,
    Dedup,
    ServerSideCopy,
    Source,
    read_bytes,
)
from sentenialx.hub.store.local import LocalStore
from sentenialx.hub.store.s3 import S3Store


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def src_file(tmp_path: Path) -> Callable[..., Path]:
    """Write bytes to a fresh file outside the store."""
    n = 0

    def make(data: bytes, name: str = "src.bin") -> Path:
        nonlocal n
        n += 1
        p = tmp_path / "inputs" / str(n) / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    return make


class StoreContract:
    """What every blob store does; subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[BlobStore]:
        raise NotImplementedError("a backend subclass provides the store")

    def test_satisfies_the_protocol(self, store: BlobStore) -> None:
        assert isinstance(store, BlobStore)
        assert isinstance(store.url, str) and store.url

    # -- claiming keys ------------------------------------------------------------------
    def test_put_file_hashes_while_storing(self, store: BlobStore, src_file: Any) -> None:
        data = os.urandom(1 << 20) + b"tail"
        seen: list[int] = []
        d = store.put_file("distill/w_v1.0.0.onnx", src_file(data), progress=seen.append)
        assert (d.size, d.sha256) == (len(data), _sha(data))
        assert sum(seen) == len(data)
        assert read_bytes(store, "distill/w_v1.0.0.onnx") == data
        st = store.stat("distill/w_v1.0.0.onnx")
        assert st is not None and st.size == len(data)

    def test_put_file_never_replaces_a_key(self, store: BlobStore, src_file: Any) -> None:
        store.put_file("distill/w.onnx", src_file(b"first"))
        with pytest.raises(AlreadyExists):
            store.put_file("distill/w.onnx", src_file(b"second, longer"))
        assert read_bytes(store, "distill/w.onnx") == b"first"
        # The refused copy left nothing behind (no temporary, no second object).
        assert [k for k, _ in store.list("distill/")] == ["distill/w.onnx"]

    def test_a_failed_put_file_leaves_no_object(self, store: BlobStore, tmp_path: Path) -> None:
        with pytest.raises(OSError):
            store.put_file("distill/w.onnx", tmp_path / "does-not-exist")
        assert store.stat("distill/w.onnx") is None
        with pytest.raises(NotFound):
            store.open_read("distill/w.onnx")

    def test_put_dir_claims_a_folder(self, store: BlobStore, src_file: Any) -> None:
        files = {"adapter.bin": b"\x01" * 5000, "tok/vocab.json": b'{"a": 1}', "config.json": b"{}"}
        sources = [Source(rel, src_file(data, name=Path(rel).name)) for rel, data in files.items()]
        digests = store.put_dir("lora/ad_v1.0.0", sources)
        assert [(d.size, d.sha256) for d in digests] == [(len(v), _sha(v)) for v in files.values()]
        for rel, data in files.items():
            assert read_bytes(store, f"lora/ad_v1.0.0/{rel}") == data
        listed = {k: s.size for k, s in store.list("lora/ad_v1.0.0/")}
        assert listed == {f"lora/ad_v1.0.0/{rel}": len(v) for rel, v in files.items()}
        with pytest.raises(AlreadyExists):
            store.put_dir("lora/ad_v1.0.0", [Source("adapter.bin", src_file(b"other"))])
        assert read_bytes(store, "lora/ad_v1.0.0/adapter.bin") == files["adapter.bin"]

    def test_keys_outside_the_store_are_refused(self, store: BlobStore, src_file: Any) -> None:
        for key in ("../escape.bin", "distill/../../escape.bin", "/etc/escape.bin"):
            with pytest.raises(HubError):
                store.put_file(key, src_file(b"x"))
            with pytest.raises(HubError):
                store.put_small(key, b"x")
            with pytest.raises(HubError):
                store.open_read(key)

    # -- sidecars -----------------------------------------------------------------------
    def test_put_small_replaces_whole(self, store: BlobStore) -> None:
        store.put_small("distill/w_v1.0.0.sha256", b"first version of the sidecar\n")
        store.put_small("distill/w_v1.0.0.sha256", b"second\n")
        assert read_bytes(store, "distill/w_v1.0.0.sha256") == b"second\n"
        st = store.stat("distill/w_v1.0.0.sha256")
        assert st is not None and st.size == len(b"second\n")
        assert [k for k, _ in store.list("distill/")] == ["distill/w_v1.0.0.sha256"]

    # -- reading ------------------------------------------------------------------------
    def test_open_read_streams(self, store: BlobStore) -> None:
        store.put_small("m/blob", b"0123456789")
        with store.open_read("m/blob") as f:
            assert f.read(3) == b"012"
            assert f.read() == b"3456789"
            assert f.read(1) == b""

    def test_missing_keys(self, store: BlobStore) -> None:
        with pytest.raises(NotFound):
            store.open_read("nope/missing.bin")
        with pytest.raises(NotFound):
            read_bytes(store, "nope/missing.bin")
        assert store.stat("nope/missing.bin") is None
        store.delete("nope/missing.bin")  # missing is fine
        assert list(store.list("nope/")) == []

    def test_local_path_when_given_holds_the_bytes(self, store: BlobStore) -> None:
        store.put_small("m/blob", b"bytes")
        p = store.local_path("m/blob")
        assert p is None or p.read_bytes() == b"bytes"

    # -- listing and deleting -----------------------------------------------------------
    def test_list_is_recursive_and_relative_to_the_root(self, store: BlobStore) -> None:
        for key in ("a/x", "a/sub/y", "ab/z", "b/w"):
            store.put_small(key, key.encode())
        assert sorted(k for k, _ in store.list("a/")) == ["a/sub/y", "a/x"]
        every = {k: s.size for k, s in store.list()}
        assert every == {"a/x": 3, "a/sub/y": 7, "ab/z": 4, "b/w": 3}

    def test_delete_an_object_or_a_folder(self, store: BlobStore, src_file: Any) -> None:
        store.put_small("m/one", b"1")
        store.put_dir("m/dir_v1", [Source("a", src_file(b"a")), Source("b/c", src_file(b"c"))])
        store.delete("m/one")
        assert store.stat("m/one") is None
        store.delete("m/dir_v1")
        assert list(store.list("m/")) == []
        # A deleted key can be claimed again (gc removed an orphan, a writer retries).
        store.put_file("m/one", src_file(b"again"))
        assert read_bytes(store, "m/one") == b"again"


class DedupContract:
    """Stores that can make one key share another's bytes."""

    def test_dedup_keeps_the_bytes(self, store: Any, src_file: Any) -> None:
        assert isinstance(store, Dedup)
        store.put_file("a/w.onnx", src_file(b"same bytes"))
        store.put_file("b/w.onnx", src_file(b"same bytes"))
        assert store.dedup("b/w.onnx", "a/w.onnx") in (True, False)
        assert read_bytes(store, "b/w.onnx") == read_bytes(store, "a/w.onnx") == b"same bytes"
        assert store.dedup("b/w.onnx", "a/missing.onnx") is False


class ServerSideCopyContract:
    """Stores that copy inside themselves."""

    def test_copy(self, store: Any) -> None:
        assert isinstance(store, ServerSideCopy)
        store.put_small("a/w.onnx", b"payload")
        store.copy("a/w.onnx", "b/w.onnx")
        assert read_bytes(store, "b/w.onnx") == b"payload"
        with pytest.raises(NotFound):
            store.copy("a/missing.onnx", "c/w.onnx")
        assert store.stat("c/w.onnx") is None


class TestLocalStore(StoreContract, DedupContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[BlobStore]:
        yield LocalStore(tmp_path / "store")

    def test_capabilities(self, store: BlobStore) -> None:
        assert isinstance(store, Dedup)
        assert not isinstance(store, ServerSideCopy) and not isinstance(store, AbandonedUploads)

    def test_dedup_shares_the_inode(self, store: Any, src_file: Any) -> None:
        store.put_file("a/w.onnx", src_file(b"same bytes"))
        store.put_file("b/w.onnx", src_file(b"same bytes"))
        assert store.dedup("b/w.onnx", "a/w.onnx") is True
        a, b = store.stat("a/w.onnx"), store.stat("b/w.onnx")
        assert a is not None and b is not None and a.ino == b.ino


@pytest.mark.s3
class TestS3Store(StoreContract, DedupContract, ServerSideCopyContract):
    @pytest.fixture
    def store(self, s3_store: Any) -> Iterator[BlobStore]:
        yield S3Store(s3_store.url, endpoint_url=os.environ["SENTENIALX_TEST_S3_ENDPOINT"])

    def test_capabilities(self, store: BlobStore) -> None:
        assert isinstance(store, ServerSideCopy) and isinstance(store, AbandonedUploads)
        assert store.local_path("a/w.onnx") is None

    def test_abandoned_uploads_are_listed_then_aborted(self, store: Any, s3_store: Any) -> None:
        s3_store.client.create_multipart_upload(Bucket=s3_store.bucket, Key=s3_store.key("m/part.bin"))
        later = datetime.now(UTC) + timedelta(minutes=5)
        assert store.abandoned_uploads(older_than=datetime.now(UTC) - timedelta(days=1)) == []
        assert store.abandoned_uploads(older_than=later) == ["multipart:m/part.bin"]
        # Its age is measured from when S3 says it started (a few seconds at most here).
        [(key, age)] = store.abandoned_upload_ages(older_than=later)
        assert key == "multipart:m/part.bin" and 0 <= age < 300, age
        assert store.abort_uploads(older_than=later) == ["multipart:m/part.bin"]
        assert store.abandoned_uploads(older_than=later) == []
        assert s3_store.uploads() == []
