"""S3 at wire speed, on the real Ceph RGW: parallel multipart uploads, parallel ranged cold
loads, and presigned downloads from a served PostgreSQL + S3 hub.

Files are a few MiB with 5 MiB parts (the S3 minimum, which RGW enforces: a smaller part
is refused with EntityTooSmall) and 4 threads, so every transfer has several parts in
flight. Faults are real: a part refused by RGW because its bytes no longer match their
signed sha256, a source whose digest is not the one promised, the store's transfer pool
closed mid-upload, and an object overwritten behind the hub's back.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentenialx.hub.errors import AlreadyExists, IntegrityError, StoreUnavailable
from sentenialx.hub.hashing import Digest
from sentenialx.hub.hub import Hub
from sentenialx.hub.store.s3 import MIN_PART_SIZE, S3Store, Transfer

MiB = 1024 * 1024
PART = MIN_PART_SIZE
SIZE = 3 * PART + 12345
"""Four parts: three full ones and a short last one."""


def _file(path: Path, size: int = SIZE, seed: int = 1) -> Path:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = block[:left]
            f.write(chunk)
            left -= len(chunk)
            block = hashlib.sha256(block[:64]).digest() * (MiB // 32)
    return path


def _store(place: Any, *, concurrency: int = 4) -> S3Store:
    from sentenialx_test_services import s3_endpoint  # type: ignore[import-not-found]

    return S3Store(place.url, endpoint_url=s3_endpoint(),
                   transfer=Transfer(part_size=PART, concurrency=concurrency))


def test_transfer_settings_are_bounded_and_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sentenialx.hub.errors import InvalidInput

    with pytest.raises(InvalidInput, match="S3 refuses smaller parts"):
        Transfer(part_size=MiB)
    with pytest.raises(InvalidInput, match="concurrency"):
        Transfer(concurrency=0)
    monkeypatch.setenv("SENTENIALX_S3_PART_SIZE", "16M")
    monkeypatch.setenv("SENTENIALX_S3_CONCURRENCY", "3")
    assert Transfer.from_env() == Transfer(16 * MiB, 3)
    monkeypatch.setenv("SENTENIALX_S3_PART_SIZE", "lots")
    with pytest.raises(InvalidInput, match="SENTENIALX_S3_PART_SIZE"):
        Transfer.from_env()
    # A file of more than 10,000 parts gets larger parts (rounded up to whole MiB).
    assert Transfer(PART, 4).part_for(100_000 * MiB) == 10 * MiB


def _nothing_left(place: Any) -> None:
    assert place.keys() == {}
    assert place.uploads() == []


def test_parallel_multipart_upload_stores_the_object_and_its_digest(s3_store: Any,
                                                                      tmp_path: Path) -> None:
    src = _file(tmp_path / "w.onnx")
    store = _store(s3_store)
    threads: set[str] = set()
    sent: list[int] = []

    def progress(n: int) -> None:
        threads.add(threading.current_thread().name)
        sent.append(n)

    try:
        d = store.put_file("m/w.onnx", src, progress=progress)
    finally:
        store.close()
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    assert d == Digest(SIZE, want)
    got = s3_store.client.get_object(Bucket=s3_store.bucket, Key=s3_store.key("m/w.onnx"))
    assert hashlib.sha256(got["Body"].read()).hexdigest() == want
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=s3_store.key("m/w.onnx"))
    assert head["ETag"].strip('"').endswith("-4")  # RGW's multipart ETag: four parts
    assert sorted(sent) == sorted([PART, PART, PART, 12345])
    assert len(threads) > 1, threads  # parts went out on several uploader threads
    assert s3_store.uploads() == []


def test_a_digest_other_than_the_one_expected_leaves_no_object(s3_store: Any,
                                                                tmp_path: Path) -> None:
    src = _file(tmp_path / "w.onnx")
    store = _store(s3_store)
    try:
        with pytest.raises(IntegrityError, match="nothing was stored"):
            store.put_file("m/w.onnx", src, expected=Digest(SIZE, "0" * 64))
        # One PUT (under a part) is checked before it is sent, too.
        small = _file(tmp_path / "s.bin", size=1000)
        with pytest.raises(IntegrityError):
            store.put_file("m/s.bin", small, expected=Digest(999, "0" * 64))
    finally:
        store.close()
    _nothing_left(s3_store)


def test_a_taken_key_refuses_the_upload_created_beside_its_check(s3_store: Any,
                                                                  tmp_path: Path) -> None:
    """put_file creates the multipart upload while it checks the key: a taken key
    aborts that upload, and a file that shrank below a part goes as one PUT."""
    src = _file(tmp_path / "w.onnx")
    store = _store(s3_store)
    creates: list[str] = []
    store.client.meta.events.register("before-call.s3.CreateMultipartUpload",
                                      lambda **_kw: creates.append("create"))
    try:
        store.put_file("m/w.onnx", _file(tmp_path / "other", seed=2))
        with pytest.raises(AlreadyExists):
            store.put_file("m/w.onnx", src)
        assert creates == ["create", "create"]  # the refused one was created, then aborted
        assert s3_store.uploads() == []
        assert set(s3_store.keys()) == {"m/w.onnx"}

        class Shrinking:
            """A stream that promised more than a part and holds 1000 bytes."""

            def __init__(self) -> None:
                self.data = memoryview(b"x" * 1000)

            def readinto(self, buf: Any) -> int:
                n = min(len(buf), len(self.data))
                buf[:n] = self.data[:n]
                self.data = self.data[n:]
                return n

        upload = store.pool().submit(store._create_upload, "m/s.bin")
        d = store.put_stream("m/s.bin", Shrinking(), size_hint=4 * PART,  # type: ignore[arg-type]
                             upload=upload)
        assert d == Digest(1000, hashlib.sha256(b"x" * 1000).hexdigest())
        assert s3_store.uploads() == []
    finally:
        store.close()
    got = s3_store.client.get_object(Bucket=s3_store.bucket, Key=s3_store.key("m/s.bin"))
    assert got["Body"].read() == b"x" * 1000


def test_a_part_refused_by_rgw_aborts_the_upload(s3_store: Any, tmp_path: Path) -> None:
    """The third part's bytes change on the wire after signing: RGW answers
    XAmzContentSHA256Mismatch, and the whole upload is aborted."""
    src = _file(tmp_path / "w.onnx")
    store = _store(s3_store)
    refused: list[int] = []

    def corrupt(request: Any, **_kw: Any) -> None:
        if "partNumber=3" in request.url:
            body = bytearray(request.body)
            body[100] ^= 0xFF
            request.body = bytes(body)
            refused.append(len(body))

    store.client.meta.events.register("before-send.s3.UploadPart", corrupt)
    try:
        with pytest.raises(StoreUnavailable, match="XAmzContentSHA256Mismatch"):
            store.put_file("m/w.onnx", src)
    finally:
        store.close()
    assert refused  # the fault did happen
    _nothing_left(s3_store)


def test_a_pool_closed_mid_upload_aborts_it(s3_store: Any, tmp_path: Path) -> None:
    src = _file(tmp_path / "w.onnx", size=6 * PART)
    store = _store(s3_store, concurrency=1)

    def close_after_first_part(_n: int) -> None:
        # Another user of the store shuts its transfer threads down mid-upload.
        threading.Thread(target=store.close).start()

    with pytest.raises(RuntimeError, match="shutdown"):
        store.put_file("m/w.onnx", src, progress=close_after_first_part)
    store.close()
    _nothing_left(s3_store)


@pytest.fixture
def s3_hub(tmp_path: Path, s3_store: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    """A SQLite + S3 hub with 5 MiB parts and 4 transfer threads."""
    from sentenialx_test_services import s3_endpoint

    monkeypatch.setenv("SENTENIALX_S3_PART_SIZE", str(PART))
    monkeypatch.setenv("SENTENIALX_S3_CONCURRENCY", "4")
    hub = Hub(tmp_path / "hub", store_url=s3_store.url, s3_endpoint=s3_endpoint())
    yield hub
    hub.close()


def test_cold_load_reads_ranges_in_parallel_and_verifies(s3_hub: Hub, s3_store: Any,
                                                         tmp_path: Path) -> None:
    src = _file(tmp_path / "w.onnx")
    info = s3_hub.register("m", src, version="1.0.0")
    entry = info.files[0]
    ranges: list[str] = []
    s3_hub.store.client.meta.events.register(
        "before-call.s3.GetObject",
        lambda params, **_kw: ranges.append(params.get("headers", {}).get("Range", "")))
    s3_hub.cache.prune(0)
    path = s3_hub.fetch(info, entry)
    assert path.read_bytes() == src.read_bytes()
    assert sorted(ranges) == sorted([f"bytes=0-{PART - 1}", f"bytes={PART}-{2 * PART - 1}",
                                     f"bytes={2 * PART}-{3 * PART - 1}",
                                     f"bytes={3 * PART}-{SIZE - 1}"])
    # Overwritten behind the hub's back with other bytes of the same size: refused, and
    # nothing is admitted to the cache.
    s3_store.client.put_object(Bucket=s3_store.bucket, Key=s3_store.key(f"m/{entry.path}"),
                               Body=b"\0" * SIZE)
    s3_hub.cache.prune(0)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        s3_hub.fetch(info, entry)
    assert s3_hub.cache.get(entry.sha256, entry.size) is None
    assert not [p for p in Path(s3_hub.cache.root).rglob("*") if p.is_file()
                and not p.name.endswith(".lock")]


def test_register_sends_while_it_looks_for_a_copy_and_withdraws_on_a_hit(
        s3_hub: Hub, s3_store: Any, tmp_path: Path) -> None:
    """The upload of a registered file starts before its hash is known; identical bytes
    already stored withdraw it (nothing completes, nothing lingers) for a copy inside
    the store, and other bytes complete it with the digest of what was sent."""
    src = _file(tmp_path / "w.onnx")
    calls: list[str] = []
    for op in ("UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload", "CopyObject"):
        s3_hub.store.client.meta.events.register(
            f"before-call.s3.{op}", lambda op=op, **_kw: calls.append(op))
    v1 = s3_hub.register("m", src, version="1.0.0")
    assert calls.count("CompleteMultipartUpload") == 1 and "CopyObject" not in calls
    calls.clear()
    seen: list[int] = []
    v2 = s3_hub.register("m2", src, version="1.0.0", progress=seen.append)
    assert v2.files[0].sha256 == v1.files[0].sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert "CompleteMultipartUpload" not in calls and calls.count("CopyObject") == 1
    assert calls.count("AbortMultipartUpload") == 1
    assert s3_hub.store.copies == 1
    assert sum(seen) == SIZE  # parts sent before the withdrawal count once, not twice
    assert s3_store.uploads() == []
    assert s3_hub.open_bytes("m2") == src.read_bytes()
    assert s3_hub.verify(deep=True).ok


def test_a_register_failing_before_its_verdict_leaves_nothing(
        s3_hub: Hub, s3_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentenialx.hub import _register

    src = _file(tmp_path / "w.onnx")

    def unreadable(_p: Any, **_kw: Any) -> Digest:
        time.sleep(0.2)  # long enough for parts to be on their way
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_register, "hash_file", unreadable)
    with pytest.raises(OSError, match="Input/output"):
        s3_hub.register("m", src, version="1.0.0")
    assert s3_store.uploads() == []
    assert not [k for k in s3_store.keys() if k.startswith("m/")]
    assert s3_hub.index.pending_versions() == []


def test_chunks_hand_over_the_object_in_order_from_where_reading_stopped(
        s3_store: Any, tmp_path: Path) -> None:
    src = _file(tmp_path / "w.onnx")
    small = _file(tmp_path / "s.bin", size=1000, seed=3)
    store = _store(s3_store)
    try:
        store.put_file("m/w.onnx", src)
        store.put_file("m/s.bin", small)
        with store.open_read("m/w.onnx") as f:
            chunks = [bytes(c) for c in f.chunks()]
        assert b"".join(chunks) == src.read_bytes()
        # One chunk per range, each a whole part but the short last one: no re-slicing.
        assert [len(c) for c in chunks] == [PART, PART, PART, 12345]
        with store.open_read("m/w.onnx") as f:
            head = f.read(1000)
            rest = b"".join(bytes(c) for c in f.chunks())
        assert head + rest == src.read_bytes()
        with store.open_read("m/s.bin") as f:  # one GET: a plain body
            assert b"".join(f.chunks()) == small.read_bytes()
    finally:
        store.close()


def _cache_leftovers(hub: Hub) -> list[Path]:
    return [p for p in Path(hub.cache.root).rglob("*") if p.is_file()
            and not p.name.endswith(".lock")]


def test_a_cold_load_of_a_longer_or_shorter_object_admits_nothing(
        s3_hub: Hub, s3_store: Any, tmp_path: Path) -> None:
    src = _file(tmp_path / "w.onnx")
    info = s3_hub.register("m", src, version="1.0.0")
    entry = info.files[0]
    key = s3_store.key(f"m/{entry.path}")
    data = src.read_bytes()
    # The right bytes followed by one part more, then the right bytes cut short by one.
    for body in (data + b"\1" * PART, data[:-1]):
        s3_store.client.put_object(Bucket=s3_store.bucket, Key=key, Body=body)
        s3_hub.cache.prune(0)
        with pytest.raises(IntegrityError, match="sha256 mismatch"):
            s3_hub.fetch(info, entry)
        assert s3_hub.cache.get(entry.sha256, entry.size) is None
        assert _cache_leftovers(s3_hub) == []


def test_a_cache_write_failing_mid_load_admits_nothing(s3_hub: Hub, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up after the first part of a cold load: the error surfaces, the
    partial file goes, and a later load (disk freed) admits the verified bytes."""
    import errno

    from sentenialx.hub import cache as cache_mod

    src = _file(tmp_path / "w.onnx")
    info = s3_hub.register("m", src, version="1.0.0")
    entry = info.files[0]
    real = cache_mod._Writeback.write
    written: list[int] = []

    def full_disk(self: Any, data: Any) -> int:
        if sum(written) >= PART:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(self, data)
        written.append(n)
        return n

    monkeypatch.setattr(cache_mod._Writeback, "write", full_disk)
    s3_hub.cache.prune(0)
    with pytest.raises(OSError, match="No space left"):
        s3_hub.fetch(info, entry)
    assert written and sum(written) >= PART  # the fault hit mid-load, not before it
    assert s3_hub.cache.get(entry.sha256, entry.size) is None
    assert _cache_leftovers(s3_hub) == []
    monkeypatch.setattr(cache_mod._Writeback, "write", real)
    assert s3_hub.fetch(info, entry).read_bytes() == src.read_bytes()


def test_the_cache_starts_writeback_while_it_writes(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux every few MiB written are handed to the disk at once (sync_file_range),
    covering the file from its first byte, so the fsync before admission has only a
    tail left; the bytes admitted are still exactly the bytes hashed."""
    import sys

    from sentenialx.hub import cache as cache_mod
    from sentenialx.hub import hashing
    from sentenialx.hub.cache import BlobCache

    if sys.platform.startswith("linux"):
        assert hashing._sync_file_range() is not None
    started: list[tuple[int, int]] = []
    real = hashing.start_writeback
    monkeypatch.setattr(hashing, "start_writeback",
                        lambda fd, off, n: (started.append((off, n)), real(fd, off, n))[1])
    data = os.urandom(3 * cache_mod._WRITEBACK + 5)

    class Parts:
        def chunks(self) -> Iterator[bytes]:
            for i in range(0, len(data), MiB):
                yield data[i:i + MiB]

    cache = BlobCache(tmp_path / "cache")
    sha = hashlib.sha256(data).hexdigest()
    p = cache.put(sha, len(data), Parts())  # type: ignore[arg-type]
    assert p.read_bytes() == data
    assert [off for off, _ in started] == [0, cache_mod._WRITEBACK, 2 * cache_mod._WRITEBACK]
    assert all(n == cache_mod._WRITEBACK for _, n in started)
    with open(tmp_path / "src.bin", "wb") as f:  # a plain stream takes the same path
        f.write(data[::-1])
    started.clear()
    with open(tmp_path / "src.bin", "rb") as f:
        p = cache.put(hashlib.sha256(data[::-1]).hexdigest(), len(data), f)
    assert p.read_bytes() == data[::-1] and len(started) == 3


def test_an_object_replaced_mid_read_is_never_spliced(s3_store: Any, tmp_path: Path) -> None:
    src = _file(tmp_path / "w.onnx")
    store = _store(s3_store, concurrency=1)  # one range ahead: the last ones are asked later
    try:
        store.put_file("m/w.onnx", src)
        with store.open_read("m/w.onnx") as f:
            first = f.read(1000)
            # The other ranges are pinned to the first one's ETag: a new object fails them.
            s3_store.client.put_object(Bucket=s3_store.bucket, Key=s3_store.key("m/w.onnx"),
                                       Body=_file(tmp_path / "other", seed=2).read_bytes())
            with pytest.raises(StoreUnavailable, match="412|PreconditionFailed"):
                while f.read(MiB):
                    pass
        assert first == src.read_bytes()[:1000]
    finally:
        store.close()


# -- presigned downloads from a served PostgreSQL + S3 hub --------------------------------
class _Server:
    """uvicorn on a free loopback port in a thread (the app object stays inspectable)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def served_s3(shared_hub: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[_Server, Hub, dict[str, str], Any]]:
    from sentenialx.hub.server import create_app

    monkeypatch.setenv("SENTENIALX_S3_PART_SIZE", str(PART))
    monkeypatch.setenv("SENTENIALX_S3_CONCURRENCY", "4")
    hub = shared_hub.open("server")
    hub.register("m", _file(tmp_path / "w.onnx"), version="1.0.0")
    tokens = {name: hub.tokens.create(name, scope="read")[0] for name in ("reader", "gone")}
    srv = _Server(create_app(hub))
    yield srv, hub, tokens, shared_hub.s3
    srv.stop()


def test_a_served_s3_hub_redirects_downloads_to_presigned_urls(
        served_s3: Any, tmp_path: Path) -> None:
    srv, hub, tokens, place = served_s3
    info = hub.resolve("m@1.0.0")
    entry = info.files[0]
    want = (tmp_path / "w.onnx").read_bytes()
    counters = srv.app.state.transfers

    # The hub's own client follows the redirect and verifies: the bytes never pass
    # through the server.
    remote = Hub.served(srv.url, token=tokens["reader"], cache_dir=tmp_path / "client")
    try:
        assert remote.open("m@1.0.0") == want
    finally:
        remote.close()
    assert counters.redirects == 1 and counters.streamed_bytes == 0

    # A client that does not follow redirects gets the URL and what to check it against.
    path = f"/api/v1/models/m/versions/1.0.0/files/{entry.path}"
    auth = {"Authorization": f"Bearer {tokens['reader']}"}
    r = httpx.get(srv.url + path, headers=auth)
    assert r.status_code == 307 and r.headers["cache-control"] == "no-store"
    assert r.headers["location"] == r.json()["url"]
    assert r.headers["location"].startswith(os.environ["SENTENIALX_TEST_S3_ENDPOINT"])
    assert r.json()["sha256"] == entry.sha256 == r.headers["etag"].strip('"')
    got = httpx.get(r.headers["location"])  # no token: the URL is its own credential
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == entry.sha256
    part = httpx.get(r.headers["location"], headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == want[10:20]
    # HEAD, a matching If-None-Match and ?redirect=false are answered by the server itself.
    assert httpx.head(srv.url + path, headers=auth).status_code == 200
    assert httpx.get(srv.url + path, headers={**auth, "If-None-Match": f'"{entry.sha256}"'}
                     ).status_code == 304
    streamed = httpx.get(srv.url + path, headers=auth, params={"redirect": "false"})
    assert streamed.status_code == 200 and streamed.content == want
    assert counters.streamed_bytes == len(want) and counters.redirects == 2

    # Authorisation comes first: no token, or a revoked one, gets no URL.
    hub.tokens.revoke("gone")
    for headers in ({}, {"Authorization": f"Bearer {tokens['gone']}"}):
        denied = httpx.get(srv.url + path, headers=headers)
        assert denied.status_code == 401 and "location" not in denied.headers
        assert "X-Amz-Signature" not in denied.text
    assert counters.redirects == 2


def test_a_tampered_s3_object_behind_a_presigned_url_is_refused(
        served_s3: Any, tmp_path: Path) -> None:
    srv, hub, tokens, place = served_s3
    entry = hub.resolve("m@1.0.0").files[0]
    place.client.put_object(Bucket=place.bucket, Key=place.key(f"m/{entry.path}"),
                            Body=b"\x01" * entry.size)
    remote = Hub.served(srv.url, token=tokens["reader"], cache_dir=tmp_path / "client")
    try:
        with pytest.raises(IntegrityError, match="sha256 mismatch"):
            remote.open("m@1.0.0")
        assert remote.cache.get(entry.sha256, entry.size) is None
    finally:
        remote.close()
    assert srv.app.state.transfers.redirects >= 1
    assert srv.app.state.transfers.streamed_bytes == 0


def test_the_client_follows_only_http_redirects_with_a_usable_location() -> None:
    from sentenialx.hub.transport.http import _redirect_target

    base = "http://127.0.0.1:8000"
    assert _redirect_target("http://s3.local:7480/b/k?X-Amz-Signature=1", base) == \
        "http://s3.local:7480/b/k?X-Amz-Signature=1"
    assert _redirect_target("/elsewhere", base) == "http://127.0.0.1:8000/elsewhere"
    for bad in ("", "file:///etc/passwd", "ftp://h/x", "http://h/\r\nX: y", "h" * 9000):
        with pytest.raises(StoreUnavailable):
            _redirect_target(bad, base)
