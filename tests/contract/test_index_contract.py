"""The :class:`~sentenialx.hub.index.base.Index` contract, one class run against every index.

:class:`IndexContract` holds the behaviour the Hub relies on; each backend subclasses it
and provides the ``index`` fixture (fsspec's abstract test suites, restic's backend
suite). PostgreSQL uses a fresh database from ``pg_database`` (conftest.py): it skips
without the service and fails under ``CI=true``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from sentenialx.hub.events import GENESIS, verify_chain
from sentenialx.hub.index.base import Index
from sentenialx.hub.index.sql import SqlIndex
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.values import VersionInfo


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _entry(path: str, data: bytes, role: str = "weights") -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).hexdigest(), role)


def _reserve(index: Index, model: str, version: str | None = None, *, bump: str | None = None,
             meta: dict[str, Any] | None = None) -> VersionInfo:
    return index.reserve_version(model, version=version, bump=bump, stem_for=lambda v: f"{model}_v{v}",
                                 layout="file", meta=meta or {}, lineage={}, actor="tester")


def _register(index: Index, model: str, version: str | None = None, *, data: bytes = b"w",
              digest: str | None = None, bump: str | None = None, alias: str | None = None
              ) -> VersionInfo:
    info = _reserve(index, model, version, bump=bump)
    files = [_entry(f"{info.stem}.onnx", data)]
    return index.complete_version(
        info.id, files=files, digest=digest or hashlib.sha256(data + info.version.encode()).hexdigest(),
        event_kind="register", event_payload={"files": len(files)}, actor="tester", alias=alias)


class IndexContract:
    """What every index does; subclasses provide the ``index`` fixture."""

    @pytest.fixture
    def index(self) -> Iterator[Index]:
        raise NotImplementedError("a backend subclass provides the index")

    # -- the protocol itself ------------------------------------------------------------
    def test_satisfies_the_protocol(self, index: Index) -> None:
        assert isinstance(index, Index)
        assert isinstance(index.url, str) and index.url

    def test_a_fresh_index_is_empty(self, index: Index) -> None:
        assert index.models() == []
        assert index.events() == []
        assert index.head() == (0, GENESIS)
        assert index.pending_versions() == [] and index.all_ready_versions() == []
        assert index.list_aliases() == []
        state = index.state()
        assert state["generation"] == index.generation()
        assert isinstance(state["hub_id"], str) and state["hub_id"]
        with pytest.raises(NotFound):
            index.latest("distill")
        with pytest.raises(NotFound):
            index.list_versions("distill")

    # -- registering --------------------------------------------------------------------
    def test_reserve_then_complete(self, index: Index) -> None:
        data = b"student weights"
        gen0 = index.generation()
        info = _reserve(index, "distill", meta={"metrics": {"accuracy": 0.97}})
        assert (info.version, info.state, info.stem) == ("1.0.0", "pending", "distill_v1.0.0")
        assert index.generation() > gen0
        # A pending version is invisible to readers until it completes.
        with pytest.raises(NotFound):
            index.get_version("distill", "1.0.0")
        assert index.get_version("distill", "1.0.0", include_pending=True).state == "pending"
        assert [p.id for p in index.pending_versions()] == [info.id]
        entry = _entry("distill_v1.0.0.onnx", data)
        done = index.complete_version(info.id, files=[entry], digest="d" * 64, event_kind="register",
                                      event_payload={"n": 1}, actor="tester", alias="staging")
        assert (done.state, done.digest, done.files, done.size) == ("ready", "d" * 64, (entry,), len(data))
        got = index.get_version("distill", "1.0.0")
        assert got.files == (entry,) and got.meta == {"metrics": {"accuracy": 0.97}}
        assert index.pending_versions() == []
        assert index.get_alias("distill", "staging").version == "1.0.0"
        assert index.find_file_by_sha(entry.sha256, entry.size) == ("distill", entry.path)
        assert index.find_file_by_sha(entry.sha256, entry.size + 1) is None
        assert [v.ref for v in index.all_ready_versions()] == ["distill@1.0.0"]

    def test_versions_are_allocated_by_bump_and_never_reused(self, index: Index) -> None:
        assert _register(index, "distill").version == "1.0.0"
        assert _register(index, "distill").version == "1.0.1"
        assert _register(index, "distill", bump="minor").version == "1.1.0"
        assert _register(index, "distill", bump="major").version == "2.0.0"
        with pytest.raises(AlreadyExists):
            _reserve(index, "distill", "1.1.0")
        pending = _reserve(index, "distill", "3.0.0")
        with pytest.raises(Conflict):
            _reserve(index, "distill", "3.0.0")
        index.abort_version(pending.id)
        assert _register(index, "distill", "3.0.0").version == "3.0.0"

    def test_abort_drops_only_pending_rows(self, index: Index) -> None:
        ready = _register(index, "distill")
        index.abort_version(ready.id)
        assert index.get_version("distill", "1.0.0").state == "ready"
        pending = _reserve(index, "distill")
        index.abort_version(pending.id)
        with pytest.raises(NotFound):
            index.get_version("distill", pending.version, include_pending=True)
        with pytest.raises(NotFound):
            index.complete_version(pending.id, files=[], digest="e" * 64, event_kind="register",
                                   event_payload={}, actor="tester")

    def test_stale_pending_rows_go_only_when_older_than_the_cutoff(self, index: Index) -> None:
        pending = _reserve(index, "distill")
        past = _iso(datetime.now(UTC) - timedelta(days=1))
        assert index.remove_stale_pending(pending.id, created_before=past) is False
        assert [p.id for p in index.pending_versions()] == [pending.id]
        future = _iso(datetime.now(UTC) + timedelta(days=1))
        assert index.remove_stale_pending(pending.id, created_before=future) is True
        assert index.pending_versions() == []

    # -- reading versions ---------------------------------------------------------------
    def test_latest_and_listing_follow_semver_and_skip_revoked(self, index: Index) -> None:
        for v in ("1.9.0", "1.10.0", "1.10.1-rc.1", "1.2.0"):
            _register(index, "distill", v)
        order = [v.version for v in index.list_versions("distill")]
        assert order == ["1.2.0", "1.9.0", "1.10.0", "1.10.1-rc.1"]
        assert index.latest("distill").version == "1.10.1-rc.1"
        index.set_revoked("distill", "1.10.1-rc.1", revoked=True, reason="bad", actor="tester")
        assert index.latest("distill").version == "1.10.0"
        assert index.get_version("distill", "1.10.1-rc.1").revoke_reason == "bad"
        assert [v.version for v in index.list_versions("distill", include_revoked=False)] == [
            "1.2.0", "1.9.0", "1.10.0"]
        index.set_revoked("distill", "1.10.1-rc.1", revoked=False, reason=None, actor="tester")
        assert index.latest("distill").version == "1.10.1-rc.1"
        for v in order:
            index.set_revoked("distill", v, revoked=True, reason="all", actor="tester")
        with pytest.raises(NotFound):
            index.latest("distill")
        with pytest.raises(NotFound):
            index.set_revoked("distill", "9.9.9", revoked=True, reason=None, actor="tester")

    def test_list_versions_with_files(self, index: Index) -> None:
        _register(index, "distill", data=b"abc")
        (bare,) = index.list_versions("distill")
        (full,) = index.list_versions("distill", with_files=True)
        assert bare.files == () and [f.size for f in full.files] == [3]

    def test_by_digest_prefix(self, index: Index) -> None:
        _register(index, "distill", "1.0.0", digest="ab12" + "0" * 60)
        _register(index, "distill", "1.0.1", digest="ab34" + "0" * 60)
        assert index.by_digest("distill", "ab12").version == "1.0.0"
        with pytest.raises(InvalidInput):
            index.by_digest("distill", "ab")
        with pytest.raises(NotFound):
            index.by_digest("distill", "ff")
        with pytest.raises(NotFound):
            index.by_digest("other", "ab12")

    def test_models_summarises_every_model(self, index: Index) -> None:
        _register(index, "distill")
        _register(index, "distill", alias="production")
        _register(index, "encoder")
        by_name = {m["model"]: m for m in index.models()}
        assert set(by_name) == {"distill", "encoder"}
        assert by_name["distill"]["versions"] == 2 and by_name["distill"]["latest"] == "1.0.1"
        assert by_name["distill"]["aliases"] == {"production": "1.0.1"}

    def test_delete_version(self, index: Index) -> None:
        v = _register(index, "distill", data=b"gone")
        _register(index, "distill", data=b"kept")
        removed = index.delete_version("distill", "1.0.0", actor="tester")
        assert removed.id == v.id and removed.files == v.files
        with pytest.raises(NotFound):
            index.get_version("distill", "1.0.0")
        assert index.find_file_by_sha(v.files[0].sha256, v.files[0].size) is None
        assert [x.version for x in index.list_versions("distill")] == ["1.0.1"]
        with pytest.raises(NotFound):
            index.delete_version("distill", "1.0.0", actor="tester")
        assert index.last_event("delete", model="distill") is not None

    # -- aliases ------------------------------------------------------------------------
    def test_alias_compare_and_set(self, index: Index) -> None:
        _register(index, "distill")
        _register(index, "distill")
        assert index.set_alias("distill", "production", "1.0.0", expect="", actor="tester") is None
        with pytest.raises(Conflict):
            index.set_alias("distill", "production", "1.0.1", expect="", actor="tester")
        with pytest.raises(Conflict):
            index.set_alias("distill", "production", "1.0.1", expect="1.0.1", actor="tester")
        assert index.get_alias("distill", "production").version == "1.0.0"
        assert index.set_alias("distill", "production", "1.0.1", expect="1.0.0", actor="tester") == "1.0.0"
        assert index.set_alias("distill", "production", "1.0.0", expect=None, actor="tester") == "1.0.1"
        with pytest.raises(NotFound):
            index.set_alias("distill", "production", "7.0.0", expect=None, actor="tester")
        assert index.get_alias("distill", "production").version == "1.0.0"
        moves = index.alias_history("distill", "production")
        assert [(m.version, m.previous) for m in moves] == [
            ("1.0.0", None), ("1.0.1", "1.0.0"), ("1.0.0", "1.0.1")]

    def test_remove_alias(self, index: Index) -> None:
        _register(index, "distill", alias="staging")
        _register(index, "encoder", alias="staging")
        assert {(a.model, a.alias) for a in index.list_aliases()} == {
            ("distill", "staging"), ("encoder", "staging")}
        assert [a.model for a in index.list_aliases("encoder")] == ["encoder"]
        with pytest.raises(Conflict):
            index.remove_alias("distill", "staging", expect="9.9.9", actor="tester")
        assert index.remove_alias("distill", "staging", expect=None, actor="tester") == "1.0.0"
        with pytest.raises(NotFound):
            index.get_alias("distill", "staging")
        with pytest.raises(NotFound):
            index.remove_alias("distill", "staging", expect=None, actor="tester")
        assert index.get_alias("encoder", "staging").version == "1.0.0"

    # -- events -------------------------------------------------------------------------
    def test_every_change_is_a_chained_event(self, index: Index) -> None:
        _register(index, "distill")
        index.set_alias("distill", "production", "1.0.0", expect=None, actor="tester")
        ev = index.append_event("sign", "distill", "1.0.0", actor="tester", payload={"key": "k1"})
        events = index.events()
        assert [e.kind for e in events][-1] == "sign" and events[-1] == ev
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert verify_chain(events).ok
        assert index.head() == (ev.seq, ev.hash)
        assert index.last_event("sign") == ev
        assert index.last_event("sign", model="encoder") is None
        assert index.events(limit=1) == [ev]
        assert all(e.model == "distill" for e in index.events(model="distill"))

    def test_writes_bump_the_generation_and_reads_do_not(self, index: Index) -> None:
        g0 = index.generation()
        _register(index, "distill")
        g1 = index.generation()
        assert g1 > g0
        index.get_version("distill", "1.0.0")
        index.models()
        index.events()
        assert index.generation() == g1
        index.set_alias("distill", "production", "1.0.0", expect=None, actor="tester")
        assert index.generation() > g1

    # -- the stat cache -----------------------------------------------------------------
    def test_stat_cache_round_trip(self, index: Index) -> None:
        assert index.stat_cache() == {}
        index.stat_cache_put([("distill/a.onnx", 10, 111, 5, 222, "a" * 64),
                              ("distill/b.onnx", 20, 333, 6, 444, "b" * 64)])
        assert index.stat_cache_get(["distill/a.onnx", "distill/missing"]) == {
            "distill/a.onnx": (10, 111, 5, 222, "a" * 64)}
        index.stat_cache_put([("distill/a.onnx", 11, 112, 5, 223, "c" * 64)])
        assert index.stat_cache() == {"distill/a.onnx": (11, 112, 5, 223, "c" * 64),
                                      "distill/b.onnx": (20, 333, 6, 444, "b" * 64)}


class TestSqliteIndex(IndexContract):
    @pytest.fixture
    def index(self, tmp_path: Path) -> Iterator[Index]:
        idx = SqlIndex(f"sqlite:///{tmp_path / 'registry.db'}")
        yield idx
        idx.dispose()


@pytest.mark.postgres
class TestPostgresIndex(IndexContract):
    @pytest.fixture
    def index(self, pg_database: str) -> Iterator[Index]:
        idx = SqlIndex(pg_database)
        yield idx
        idx.dispose()
