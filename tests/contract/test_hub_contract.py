"""The hub's contract, run unchanged against SQLite/PostgreSQL x local/S3.

One class, one ``backend`` fixture (see conftest.py): the same calls must give the
same answers whichever index and blob store sit under the Hub. Where the backends
differ by design (a remote store reads through the verified cache), the test says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidInput,
    InvalidRef,
    NotFound,
    StoreUnavailable,
)
from sentenialx.hub.hub import Hub

BOGUS_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing answers


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _folder(base: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return base


class TestHubContract:
    """Everything a caller relies on, whatever the index and the store."""

    # -- register -----------------------------------------------------------------------
    def test_register_file_and_folder(self, backend: Any, sample_file: Callable[..., Path],
                                      tmp_path: Path) -> None:
        hub = backend.hub()
        src = sample_file(200_000, seed=1, name="threat_student.onnx")
        log = tmp_path / "train.log"
        log.write_text("epoch 1 loss 0.1\n")
        v = hub.register("distill", src, metadata={"metrics": {"accuracy": 0.97}},
                         attachments=[("log", log)])
        assert (v.ref, v.state, v.layout) == ("distill@1.0.0", "ready", "file")
        assert {f.path for f in v.files} == {"threat_student_v1.0.0.onnx",
                                              "threat_student_v1.0.0_train.log"}
        assert hub.open("distill") == src.read_bytes()
        assert hub.open("distill", file="train.log") == log.read_bytes()

        folder = _folder(tmp_path / "adapter", {"adapter.bin": b"\x01" * 5000,
                                                "tok/vocab.json": b'{"a": 1}',
                                                "config.json": b'{"r": 8}'})
        f = hub.register("lora", folder)
        assert f.layout == "dir"
        files = hub.read_files("lora", roles=("weights", "config"))
        assert files == {f"{f.stem}/adapter.bin": b"\x01" * 5000,
                         f"{f.stem}/config.json": b'{"r": 8}',
                         f"{f.stem}/tok/vocab.json": b'{"a": 1}'}
        # Bytes, sidecars and metadata are in the store, under the version's stem.
        keys = backend.keys()
        for want in ("distill/threat_student_v1.0.0.onnx", "distill/threat_student_v1.0.0.sha256",
                     "distill/threat_student_v1.0.0_meta.json", f"lora/{f.stem}/tok/vocab.json",
                     f"lora/{f.stem}.sha256"):
            assert want in keys, (want, sorted(keys))
        meta = json.loads(backend.read_raw("distill/threat_student_v1.0.0_meta.json"))
        assert meta["digest"] == v.digest and meta["metadata"]["metrics"] == {"accuracy": 0.97}
        sidecar = backend.read_raw("distill/threat_student_v1.0.0.sha256").decode()
        assert f"{_sha(src.read_bytes())}  threat_student_v1.0.0.onnx" in sidecar
        # The seed's view (registry.json) and the listing agree with the index.
        reg = json.loads((hub.root / "registry.json").read_text())
        assert reg["distill"]["version"] == "1.0.0"
        assert reg["distill"]["hash"] == _sha(src.read_bytes())
        assert {m["model"]: m["latest"] for m in hub.models()} == {"distill": "1.0.0",
                                                                    "lora": "1.0.0"}
        assert hub.fsck().ok

    def test_identical_bytes_are_stored_once(self, backend: Any,
                                             sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        src = sample_file(300_000, seed=7, name="threat_student.onnx")
        v1 = hub.register("distill", src)
        v2 = hub.register("distill-copy", src)
        assert v1.files[0].sha256 == v2.files[0].sha256
        key1, key2 = f"distill/{v1.files[0].path}", f"distill-copy/{v2.files[0].path}"
        if backend.remote:
            # No hardlinks in S3: the second copy was made inside the store, not sent again.
            assert hub.store.copies == 1
        else:
            assert hub.store.stat(key1).ino == hub.store.stat(key2).ino  # one inode
        assert hub.open("distill-copy") == src.read_bytes()
        assert hub.verify(deep=True).ok and hub.fsck().ok

    def test_bump_allocation(self, backend: Any, sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        got = [hub.register("enc", sample_file(100, seed=i), **kw).version
               for i, kw in enumerate([{}, {}, {"bump": "minor"}, {"bump": "patch"},
                                       {"bump": "major"}, {"version": "2.5.0"},
                                       {"version": "2.1.0-rc.1"}])]
        assert got == ["1.0.0", "1.0.1", "1.1.0", "1.1.1", "2.0.0", "2.5.0", "2.1.0-rc.1"]
        with pytest.raises(AlreadyExists):
            hub.register("enc", sample_file(100, seed=99), version="2.5.0")
        with pytest.raises(InvalidInput):
            hub.register("enc", sample_file(100, seed=98), version="3.0.0", bump="major")
        assert hub.register("enc", sample_file(100, seed=97)).version == "2.5.1"
        assert [v.version for v in hub.versions("enc")] == [
            "1.0.0", "1.0.1", "1.1.0", "1.1.1", "2.0.0", "2.1.0-rc.1", "2.5.0", "2.5.1"]
        # A failed registration left nothing behind: no pending row, no stray object.
        assert hub.index.pending_versions() == []
        assert hub.fsck().ok

    # -- resolve ------------------------------------------------------------------------
    def test_resolve_every_ref_kind(self, backend: Any, sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        v1 = hub.register("distill", sample_file(300, seed=1))
        v2 = hub.register("distill", sample_file(300, seed=2), bump="minor")
        v3 = hub.register("distill", sample_file(300, seed=3), bump="major")
        hub.set_alias("distill@1.1.0", "stable")
        assert hub.resolve("distill").version == "2.0.0"
        assert hub.resolve("distill@latest").version == "2.0.0"
        assert hub.resolve("distill@1.0.0").digest == v1.digest
        assert hub.resolve("distill@stable").version == "1.1.0"
        assert hub.resolve("distill@^1.0").version == "1.1.0"
        assert hub.resolve("distill@~1.0").version == "1.0.0"
        assert hub.resolve(f"distill@sha256:{v3.digest}").version == "2.0.0"
        assert hub.resolve(f"distill@sha256:{str(v2.digest)[:16]}").version == "1.1.0"
        hub.revoke("distill@2.0.0", reason="regression")
        assert hub.resolve("distill").version == "1.1.0"
        with pytest.raises(NotFound):
            hub.resolve("distill@2.0.0")
        assert hub.resolve("distill@2.0.0", include_revoked=True).revoked
        with pytest.raises(NotFound):
            hub.resolve("distill@9.9.9")
        with pytest.raises(NotFound):
            hub.resolve("nosuch")
        with pytest.raises(NotFound):
            hub.resolve("distill@staging")
        with pytest.raises(InvalidRef):
            hub.resolve("distill@@x")
        # A second hub on the same index sees the same answers (its resolve cache is
        # keyed by the index's generation, so it follows changes made elsewhere).
        other = backend.hub()
        assert other.resolve("distill@stable").version == "1.1.0"
        hub.set_alias("distill@1.0.0", "stable", expect="1.1.0")
        assert other.resolve("distill@stable").version == "1.0.0"

    # -- aliases ------------------------------------------------------------------------
    def test_aliases_with_expect_and_conflict(self, backend: Any,
                                              sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        for i in range(3):
            hub.register("distill", sample_file(100, seed=i))
        assert hub.set_alias("distill@1.0.0", "stable", expect="") is None
        with pytest.raises(Conflict):
            hub.set_alias("distill@1.0.1", "stable", expect="")  # it exists now
        with pytest.raises(Conflict):
            hub.set_alias("distill@1.0.1", "stable", expect="1.0.2")  # wrong belief
        assert hub.resolve("distill@stable").version == "1.0.0"
        assert hub.set_alias("distill@1.0.1", "stable", expect="1.0.0") == "1.0.0"
        assert hub.set_alias("distill@1.0.2", "stable") == "1.0.1"  # no expect: unconditional
        assert hub.rollback("distill", "stable") == "1.0.1"
        hub.set_alias("distill@1.0.2", "staging")
        assert {a.alias: a.version for a in hub.aliases("distill")} == {"stable": "1.0.1",
                                                                       "staging": "1.0.2"}
        with pytest.raises(Conflict):
            hub.remove_alias("distill", "staging", expect="1.0.0")
        assert hub.remove_alias("distill", "staging", expect="1.0.2") == "1.0.2"
        with pytest.raises(NotFound):
            hub.resolve("distill@staging")
        moves = [(m.alias, m.version, m.previous) for m in hub.alias_history("distill")]
        assert moves == [("stable", "1.0.0", None), ("stable", "1.0.1", "1.0.0"),
                         ("stable", "1.0.2", "1.0.1"), ("stable", "1.0.1", "1.0.2"),
                         ("staging", "1.0.2", None), ("staging", None, "1.0.2")]
        # An alias given at registration is set in the same transaction.
        v = hub.register("distill", sample_file(100, seed=9), alias="canary")
        assert hub.resolve("distill@canary").version == v.version == "1.0.3"
        with pytest.raises(NotFound):
            hub.set_alias("distill@7.0.0", "stable")
        assert hub.fsck().ok

    # -- revoke, delete -----------------------------------------------------------------
    def test_revoke_and_unrevoke(self, backend: Any, sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        hub.register("distill", sample_file(100, seed=1))
        hub.register("distill", sample_file(100, seed=2))
        with pytest.raises(InvalidInput):
            hub.revoke("distill@1.0.1", reason=" ")
        r = hub.revoke("distill@1.0.1", reason="leaks training data")
        assert r.revoked and r.revoke_reason == "leaks training data"
        assert hub.resolve("distill").version == "1.0.0"
        with pytest.raises(NotFound):
            hub.open("distill@1.0.1")
        assert hub.open("distill@1.0.1", include_revoked=True) == sample_file(100, seed=2).read_bytes()
        hub.unrevoke("distill@1.0.1")
        assert hub.resolve("distill").version == "1.0.1"
        kinds = [(e.kind, e.version) for e in hub.events(model="distill")]
        assert kinds[-2:] == [("revoke", "1.0.1"), ("unrevoke", "1.0.1")]

    def test_delete(self, backend: Any, sample_file: Callable[..., Path], tmp_path: Path) -> None:
        hub = backend.hub()
        hub.register("distill", sample_file(100, seed=1))
        log = tmp_path / "run.log"
        log.write_text("x")
        v = hub.register("distill", sample_file(100, seed=2), alias="stable",
                         attachments=[("log", log)])
        lora = hub.register("lora", _folder(tmp_path / "ad", {"a.bin": b"a", "b/c.json": b"{}"}))
        before = backend.keys()
        assert f"distill/{v.stem}.onnx" in before
        with pytest.raises(InvalidInput):
            hub.delete("distill@1.0.1")  # not confirmed
        with pytest.raises(Conflict):
            hub.delete("distill@1.0.1", confirm=True)  # an alias names it
        hub.remove_alias("distill", "stable")
        gone = hub.delete("distill@1.0.1", confirm=True)
        assert gone.version == "1.0.1"
        with pytest.raises(NotFound):
            hub.resolve("distill@1.0.1", include_revoked=True)
        hub.delete(lora.ref, confirm=True)
        with pytest.raises(NotFound):
            hub.resolve("lora")
        left = backend.keys()
        assert not [k for k in left if k.startswith(f"distill/{v.stem}")], sorted(left)
        assert not [k for k in left if k.startswith("lora/")], sorted(left)
        assert "distill/" + hub.resolve("distill").files[0].path in left
        # The next registration does not reuse the deleted number's bytes or name.
        assert hub.register("distill", sample_file(100, seed=3)).version == "1.0.1"
        assert hub.fsck().ok
        assert [e.kind for e in hub.events() if e.kind == "delete"] == ["delete", "delete"]

    # -- verify, corruption ---------------------------------------------------------------
    def test_verify_fast_and_deep(self, backend: Any, sample_file: Callable[..., Path],
                                  tmp_path: Path) -> None:
        hub = backend.hub()
        hub.register("distill", sample_file(50_000, seed=1))
        hub.register("lora", _folder(tmp_path / "ad", {"a.bin": b"a" * 100, "c.json": b"{}"}))
        deep = hub.verify(deep=True)
        assert deep.ok and deep.versions == 2 and deep.files == 3 and deep.hashed == 3
        assert deep.bytes_hashed == 50_000 + 102
        fast = hub.verify()
        assert fast.ok and fast.files == 3
        assert fast.hashed == 0  # every stat matches its last verification
        assert hub.verify("lora").ok and hub.verify(model="distill").ok

    def test_corrupted_object_is_found_named_and_refused(self, backend: Any,
                                                         sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        src = sample_file(40_000, seed=5)
        v = hub.register("distill", src, alias="champion")
        hub.register("distill", sample_file(100, seed=6))  # an innocent neighbour
        key = f"distill/{v.files[0].path}"
        good = backend.read_raw(key)
        bad = bytearray(good)
        bad[1234] ^= 0xFF  # same size, one byte flipped: only hashing can tell
        backend.write_raw(key, bytes(bad))  # behind the hub's back

        # Even the fast check (stat cache) notices: same size, same second, other bytes.
        fast = hub.verify()
        assert [(p.kind, p.path) for p in fast.problems] == [("changed", key)]
        deep = hub.verify(deep=True)
        assert [(p.kind, p.path) for p in deep.problems] == [("changed", key)]
        assert deep.problems[0].expected == v.files[0].sha256
        assert deep.problems[0].actual == _sha(bytes(bad))
        fsck = hub.fsck(deep=True)
        assert not fsck.ok
        assert key in {p.path for p in fsck.problems}
        assert any(key in p.message for p in fsck.problems)
        with pytest.raises(IntegrityError) as err:
            hub.open("distill@champion")
        assert err.value.path == v.files[0].path
        assert err.value.expected == v.files[0].sha256
        assert err.value.actual == _sha(bytes(bad))
        with pytest.raises(IntegrityError):
            hub.load("distill@champion")
        if backend.remote:
            # Nothing unverified reached the cache; path() refuses too.
            with pytest.raises(IntegrityError):
                hub.path("distill@champion")
            assert hub.cache.get(v.files[0].sha256, v.files[0].size) is None
        assert hub.open("distill@1.0.1") == sample_file(100, seed=6).read_bytes()
        # Restored, everything is clean again.
        backend.write_raw(key, good)
        assert hub.open("distill@champion") == src.read_bytes()
        assert hub.fsck(deep=True).ok

    # -- fsck and gc ----------------------------------------------------------------------
    def test_fsck_and_gc_of_orphans_and_crashed_registrations(
            self, backend: Any, sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        v = hub.register("distill", sample_file(1000, seed=1), alias="champion")
        backend.write_raw("distill/stray_v9.9.9.onnx", b"nobody names me")
        # A writer that died after reserving its version and storing its bytes, before
        # the index named them: a pending row and an object only gc may remove.
        crashed = hub.index.reserve_version(
            "distill", version=None, bump=None, stem_for=lambda x: f"crashed_v{x}", layout="file",
            meta={}, lineage={}, actor="ghost")
        hub.store.put_file(f"distill/{crashed.stem}.onnx", sample_file(2000, seed=2))
        with pytest.raises(NotFound):
            hub.resolve(f"distill@{crashed.version}")
        assert hub.resolve("distill").version == v.version

        rep = hub.fsck(grace=timedelta(0))
        kinds = {(p.kind, p.path) for p in rep.problems}
        assert ("orphan", "distill/stray_v9.9.9.onnx") in kinds
        assert ("pending", f"distill/{crashed.stem}") in kinds
        dry = hub.gc(grace=timedelta(0), dry_run=True)
        assert "distill/stray_v9.9.9.onnx" in dry.removed
        assert f"distill/{crashed.stem}.onnx" in dry.removed
        assert "distill/stray_v9.9.9.onnx" in backend.keys()  # dry run removed nothing
        young = hub.gc()  # default grace: everything is too young to be sure
        assert young.removed == [] and young.kept_young >= 1
        done = hub.gc(grace=timedelta(0))
        assert set(done.removed) >= {"distill/stray_v9.9.9.onnx", f"distill/{crashed.stem}.onnx"}
        assert done.stale_pending == [f"distill@{crashed.version}"]
        left = backend.keys()
        assert "distill/stray_v9.9.9.onnx" not in left
        assert not [k for k in left if "crashed" in k]
        # Nothing a ready version names was touched.
        assert hub.open("distill@champion") == sample_file(1000, seed=1).read_bytes()
        assert hub.fsck(deep=True, grace=timedelta(0)).ok
        assert hub.verify(deep=True).ok

    # -- history ---------------------------------------------------------------------------
    def test_event_chain_verifies(self, backend: Any, sample_file: Callable[..., Path]) -> None:
        hub = backend.hub()
        hub.register("distill", sample_file(100, seed=1))
        hub.register("distill", sample_file(100, seed=2), alias="stable")
        hub.set_alias("distill@1.0.0", "stable", expect="1.0.1")
        hub.revoke("distill@1.0.1", reason="bad")
        hub.delete("distill@1.0.1", confirm=True)
        evs = hub.events()
        assert [e.kind for e in evs] == ["register", "register", "alias", "alias", "revoke",
                                         "delete"]
        assert [e.seq for e in evs] == list(range(1, 7))
        assert all(b.prev_hash == a.hash for a, b in zip(evs, evs[1:], strict=False))
        rep = hub.verify_log()
        assert rep.ok and rep.count == 6 and rep.head == evs[-1].hash
        assert hub.index.head() == (6, evs[-1].hash)
        exported = [json.loads(line) for line in
                    (hub.root / "events.jsonl").read_text().splitlines()]
        assert [e["hash"] for e in exported] == [e.hash for e in evs]
        assert hub.fsck().ok

    # -- local paths and the read-through cache ---------------------------------------------
    def test_path_and_offline_reads(self, backend: Any, sample_file: Callable[..., Path],
                                    tmp_path: Path) -> None:
        hub = backend.hub()
        src = sample_file(70_000, seed=3)
        v = hub.register("distill", src, alias="champion")
        lora = hub.register("lora", _folder(tmp_path / "ad", {"w.bin": b"w" * 999, "c.json": b"{}"}))
        hub.register("enc", sample_file(500, seed=4))  # never read: not cached
        p = hub.path("distill@champion")
        assert p.is_file() and p.read_bytes() == src.read_bytes()
        d = hub.path("lora")
        assert d.is_dir() and (d / "w.bin").read_bytes() == b"w" * 999
        assert sorted(x.name for x in d.iterdir()) == ["c.json", "w.bin"]
        if not backend.remote:
            # The local store's own files, no copy.
            assert p == hub.root / "distill" / v.files[0].path
            assert d == hub.root / "lora" / lora.stem
            assert hub.cache is None
            return
        # A remote store materialises a verified copy in the cache (by sha256).
        assert p.is_relative_to(hub.cache.root) and p.name == v.files[0].sha256
        assert _sha(p.read_bytes()) == v.files[0].sha256
        assert d.is_relative_to(hub.cache.root)
        # The S3 endpoint unreachable: a hub on the same index and cache keeps working
        # on what was verified last, and says clearly what it cannot reach.
        offline = backend.hub(endpoint=BOGUS_ENDPOINT)
        assert offline.path("distill@champion") == p
        assert offline.open("distill@champion") == src.read_bytes()
        assert offline.path("lora") == d
        assert offline.resolve("enc").version == "1.0.0"
        with pytest.raises(StoreUnavailable):
            offline.open("enc")

    def test_cache_size_cap_and_prune(self, backend: Any, sample_file: Callable[..., Path]) -> None:
        hub = backend.hub(cache_max_bytes=250_000)
        srcs = [sample_file(100_000, seed=i) for i in range(4)]
        for s in srcs:
            hub.register("distill", s)
        if not backend.remote:
            assert hub.cache is None  # local bytes are read in place: nothing to cap
            return
        for i, s in enumerate(srcs):
            assert hub.open(f"distill@1.0.{i}") == s.read_bytes()
            assert hub.cache.size() <= 250_000
        assert len(hub.cache.entries()) == 2  # the two most recently used
        assert hub.cache.get(_sha(srcs[3].read_bytes()), 100_000) is not None
        assert hub.cache.get(_sha(srcs[0].read_bytes()), 100_000) is None
        assert hub.cache.prune(0) == 200_000
        assert hub.cache.size() == 0 and hub.cache.entries() == []
        # Pruned blobs are fetched and verified again on the next read.
        assert hub.path("distill@1.0.0").read_bytes() == srcs[0].read_bytes()
        # A blob larger than the whole cap is still handed out verified (and dropped
        # from the cache on a later prune), never as a path that does not exist.
        small = backend.hub(cache_max_bytes=1000, cache_dir=hub.root / "small-cache")
        big = small.path("distill@1.0.1")
        assert big.is_file() and big.read_bytes() == srcs[1].read_bytes()
        assert small.open("distill@1.0.2") == srcs[2].read_bytes()

    # -- configuration ----------------------------------------------------------------------
    def test_hub_toml_opens_the_same_hub(self, backend: Any, sample_file: Callable[..., Path]) -> None:
        from sentenialx.hub.config import write_config

        hub = backend.hub()
        v = hub.register("distill", sample_file(100, seed=1))
        write_config(backend.root, index=backend.index_url, store=backend.store_url,
                     s3_endpoint=hub.store.endpoint_url if backend.remote else None)
        again = Hub.open(backend.root)
        backend.opened.append(again)
        assert again.index.url == hub.index.url
        assert again.store.url == hub.store.url
        assert again.resolve("distill").digest == v.digest
        assert again.open("distill") == sample_file(100, seed=1).read_bytes()
