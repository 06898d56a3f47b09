"""The :class:`~sentenialx.hub.index.base.Index` contract, one class run against every index.

:class:`IndexContract` holds the behaviour the Hub relies on; each backend subclasses it
and provides the ``index`` fixture (fsspec's abstract test suites, restic's backend
suite). PostgreSQL uses a fresh database from ``pg_database`` (conftest.py): it skips
without the service and fails under ``CI=true``.

:class:`ReadIndexContract` holds the read side alone: a :class:`SqlIndex` writer records
state and the reader under test answers about it; besides SQLite and PostgreSQL, the
reader is a served hub's ``HttpIndex``, over a real server on loopback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from sentenialx.hub.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from sentenialx.hub.events import GENESIS, verify_chain
from sentenialx.hub.index.base import Index
from sentenialx.hub.index.sql import SqlIndex
from sentenialx.hub.manifest import FileEntry, Manifest
from sentenialx.hub.values import AliasInfo, VersionInfo


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _entry(path: str, data: bytes, role: str = "weights") -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).hexdigest(), role)


def _reserve(index: Index, model: str, version: str | None = None, *, bump: str | None = None,
             meta: dict[str, Any] | None = None, lineage: dict[str, Any] | None = None
             ) -> VersionInfo:
    return index.reserve_version(model, version=version, bump=bump, stem_for=lambda v: f"{model}_v{v}",
                                 layout="file", meta=meta or {}, lineage=lineage or {},
                                 actor="tester")


def _register(index: Index, model: str, version: str | None = None, *, data: bytes = b"w",
              digest: str | None = None, bump: str | None = None, alias: str | None = None,
              meta: dict[str, Any] | None = None, lineage: dict[str, Any] | None = None
              ) -> VersionInfo:
    """A ready version with one file; its digest is the manifest's unless ``digest`` is given."""
    info = _reserve(index, model, version, bump=bump, meta=meta, lineage=lineage)
    files = [_entry(f"{info.stem}.onnx", data)]
    # A served reader re-hashes the manifest of every version it is sent (_untrusted.py),
    # so only a true digest can be read back over HTTP.
    return index.complete_version(
        info.id, files=files, digest=digest or Manifest(files).digest,
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

    def test_sort_key_order_is_semver_on_every_database(self, index: Index) -> None:
        # Pre-release identifiers compare by ASCII ("Beta" < "alpha", "rc.2" < "rc.10"); a
        # locale collation would order them otherwise, so the key column must compare bytes.
        from sentenialx.hub.refs import parse_ref

        for v in ("1.0.0-alpha", "1.0.0-Beta", "1.0.0-rc.2", "1.0.0-rc.10", "0.9.0", "2.0.0-a.b",
                  "2.0.0-ab", "2.0.0-a"):
            _register(index, "m", v)
        order = [v.version for v in index.list_versions("m")]
        assert order == ["0.9.0", "1.0.0-Beta", "1.0.0-alpha", "1.0.0-rc.2", "1.0.0-rc.10",
                         "2.0.0-a", "2.0.0-a.b", "2.0.0-ab"]
        assert index.latest("m").version == "2.0.0-ab"
        assert index.resolve_ref(parse_ref("m@>=1.0.0-alpha,<1.0.0")).version == "1.0.0-rc.10"
        assert index.resolve_ref(parse_ref("m@>=1.0.0-Beta,<=1.0.0-alpha")).version == "1.0.0-alpha"
        assert index.resolve_ref(parse_ref("m@^0.9")).version == "0.9.0"
        with pytest.raises(NotFound, match="matches"):
            index.resolve_ref(parse_ref("m@^3"))

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

    def test_the_sort_key_compares_bytes_whatever_the_database_locale(self, index: Index) -> None:
        # The test cluster may well run in the C locale, where any collation would pass
        # the order test above; the column itself must say "C".
        assert isinstance(index, SqlIndex)
        with index.read() as c:
            collation = c.first(
                "SELECT collation_name FROM information_schema.columns"
                " WHERE table_name = 'versions' AND column_name = 'sort_key'")[0]
        assert collation == "C"


# -- the read side: an index that only reads, held to what a writer recorded --------------


def _load_live_server() -> Any:
    """``LiveServer`` of tests/server/conftest.py: uvicorn on loopback in a thread."""
    import importlib.util
    import sys

    name = "sentenialx_test_live_server"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "server" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name].LiveServer


class ReadPair(NamedTuple):
    """``writer`` records state; ``reader`` is the index under test, reading that state."""

    writer: SqlIndex
    reader: Index  # only its read side is asked for (a served index has no other)


def _bare(v: VersionInfo) -> VersionInfo:
    # The row id is the index's own key: a served hub does not send it.
    return replace(v, id=0)


def _sharing_prefix(model: str, a: str, b: str, *, digits: int = 6) -> tuple[bytes, bytes]:
    """File bytes for versions ``a`` and ``b`` of ``model`` (as ``_register`` lays them out)
    whose manifest digests share their first ``digits`` hex digits (6: the shortest digest
    ref). A birthday search: about 3,000 tries each for 6 digits."""
    seen: dict[str, dict[str, bytes]] = {a: {}, b: {}}
    for i in range(1_000_000):
        data = b"w%d" % i
        for mine, other in ((a, b), (b, a)):
            stem = f"{model}_v{mine}"
            key = Manifest([_entry(f"{stem}.onnx", data)]).digest[:digits]
            if key in seen[other]:
                return (data, seen[other][key]) if mine == a else (seen[other][key], data)
            seen[mine][key] = data
    raise AssertionError("no shared prefix found")


READS = ("generation", "state", "get_version", "list_versions", "latest", "by_digest", "models",
         "all_ready_versions", "list_aliases", "get_alias", "alias_history", "events",
         "last_event", "head")


class ReadIndexContract:
    """What every index answers about state a writer recorded; subclasses provide ``pair``.

    The writer is always a :class:`SqlIndex`; the reader is the same index, or another
    view of its database (a served hub over HTTP). Only the read side of
    :class:`~sentenialx.hub.index.base.Index` is asked of the reader.
    """

    @pytest.fixture
    def pair(self) -> Iterator[ReadPair]:
        raise NotImplementedError("a backend subclass provides the writer and the reader")

    def test_offers_the_read_side(self, pair: ReadPair) -> None:
        _, reader = pair
        assert isinstance(reader.url, str) and reader.url
        missing = [m for m in READS if not callable(getattr(reader, m, None))]
        assert missing == []

    def test_an_empty_index_reads_empty(self, pair: ReadPair) -> None:
        writer, reader = pair
        assert reader.models() == [] and reader.list_aliases() == []
        assert reader.all_ready_versions() == []
        assert reader.events() == [] and reader.head() == (0, GENESIS)
        assert reader.state()["generation"] == reader.generation() == writer.generation()
        for read in (lambda: reader.latest("distill"), lambda: reader.list_versions("distill"),
                     lambda: reader.get_version("distill", "1.0.0"),
                     lambda: reader.get_alias("distill", "production")):
            with pytest.raises(NotFound):
                read()

    def test_latest_follows_semver_and_skips_revoked(self, pair: ReadPair) -> None:
        writer, reader = pair
        for v in ("1.9.0", "1.10.0", "1.10.1-rc.1", "1.2.0"):
            _register(writer, "distill", v)
        assert reader.latest("distill").version == "1.10.1-rc.1"
        writer.set_revoked("distill", "1.10.1-rc.1", revoked=True, reason="bad", actor="tester")
        assert reader.latest("distill").version == "1.10.0"
        writer.set_revoked("distill", "1.10.0", revoked=True, reason="worse", actor="tester")
        assert reader.latest("distill").version == "1.9.0"
        writer.set_revoked("distill", "1.10.1-rc.1", revoked=False, reason=None, actor="tester")
        assert reader.latest("distill").version == "1.10.1-rc.1"
        for v in ("1.2.0", "1.9.0", "1.10.1-rc.1"):
            writer.set_revoked("distill", v, revoked=True, reason="all", actor="tester")
        with pytest.raises(NotFound):
            reader.latest("distill")
        with pytest.raises(NotFound):
            reader.latest("encoder")

    def test_list_versions_order_and_content(self, pair: ReadPair) -> None:
        writer, reader = pair
        for i, v in enumerate(("1.10.0", "1.2.0", "2.0.0-rc.1", "1.9.0")):
            _register(writer, "distill", v, data=b"x" * (i + 1),
                      meta={"metrics": {"accuracy": 0.9 + i / 100}},
                      lineage={"parents": [{"role": "teacher", "model": "teacher",
                                            "version": "1.0.0"}]})
        _register(writer, "encoder", "1.0.0")
        writer.set_revoked("distill", "1.9.0", revoked=True, reason="leaked", actor="tester")
        _reserve(writer, "distill", "3.0.0")  # pending: no reader sees it
        full = reader.list_versions("distill", with_files=True)
        assert [v.version for v in full] == ["1.2.0", "1.9.0", "1.10.0", "2.0.0-rc.1"]
        assert [_bare(v) for v in full] == [
            _bare(v) for v in writer.list_versions("distill", with_files=True)]
        assert [f.size for v in full for f in v.files] == [2, 4, 1, 3]
        assert full[1].revoked and full[1].revoke_reason == "leaked"
        assert full[0].meta == {"metrics": {"accuracy": 0.91}}
        assert full[0].lineage["parents"][0]["model"] == "teacher"
        live = reader.list_versions("distill", include_revoked=False)
        assert [v.version for v in live] == ["1.2.0", "1.10.0", "2.0.0-rc.1"]
        assert [v.digest for v in reader.list_versions("distill")] == [v.digest for v in full]
        assert sorted(v.ref for v in reader.all_ready_versions()) == sorted(
            v.ref for v in writer.all_ready_versions())
        with pytest.raises(NotFound):
            reader.list_versions("teacher")

    def test_get_version(self, pair: ReadPair) -> None:
        writer, reader = pair
        done = _register(writer, "distill", "1.0.0", data=b"abc", meta={"framework": "onnx"})
        writer.set_revoked("distill", "1.0.0", revoked=True, reason="bad", actor="tester")
        pending = _reserve(writer, "distill", "1.1.0")
        got = reader.get_version("distill", "1.0.0")
        assert _bare(got) == _bare(writer.get_version("distill", "1.0.0"))
        assert got.files == done.files and got.digest == done.digest
        assert got.revoked and got.revoke_reason == "bad" and got.meta == {"framework": "onnx"}
        with pytest.raises(NotFound):
            reader.get_version("distill", pending.version)  # pending is not a version yet
        with pytest.raises(NotFound):
            reader.get_version("distill", "9.9.9")
        with pytest.raises(NotFound):
            reader.get_version("encoder", "1.0.0")

    def test_by_digest_prefix(self, pair: ReadPair) -> None:
        writer, reader = pair
        data_a, data_b = _sharing_prefix("distill", "1.0.0", "1.0.1")
        a = _register(writer, "distill", "1.0.0", data=data_a)
        b = _register(writer, "distill", "1.0.1", data=data_b)
        assert a.digest and b.digest and a.digest[:6] == b.digest[:6] and a.digest != b.digest
        unique = next(a.digest[:n] for n in range(7, 65) if a.digest[:n] != b.digest[:n])
        assert _bare(reader.by_digest("distill", unique)) == _bare(writer.get_version(
            "distill", "1.0.0"))
        assert reader.by_digest("distill", b.digest).version == "1.0.1"
        writer.set_revoked("distill", "1.0.1", revoked=True, reason="bad", actor="tester")
        assert reader.by_digest("distill", b.digest).revoked  # a digest names even a revoked one
        with pytest.raises(InvalidInput):
            reader.by_digest("distill", a.digest[:6])
        absent = next(p for p in ("000000", "ffffff") if not a.digest.startswith(p)
                      and not b.digest.startswith(p))
        with pytest.raises(NotFound):
            reader.by_digest("distill", absent)
        with pytest.raises(NotFound):
            reader.by_digest("encoder", a.digest)

    def test_models_summarises_every_model(self, pair: ReadPair) -> None:
        writer, reader = pair
        _register(writer, "distill")
        _register(writer, "distill", alias="production")
        _register(writer, "distill", bump="minor", alias="staging")
        writer.set_revoked("distill", "1.1.0", revoked=True, reason="bad", actor="tester")
        _register(writer, "encoder")
        writer.set_revoked("encoder", "1.0.0", revoked=True, reason="bad", actor="tester")
        models = reader.models()
        assert models == writer.models()
        assert models == [
            {"model": "distill", "versions": 3, "latest": "1.0.1",
             "aliases": {"production": "1.0.1", "staging": "1.1.0"}},
            {"model": "encoder", "versions": 1, "latest": None, "aliases": {}}]

    def test_aliases(self, pair: ReadPair) -> None:
        writer, reader = pair
        _register(writer, "distill", alias="staging")
        _register(writer, "distill", alias="production")
        _register(writer, "encoder", alias="staging")
        writer.set_alias("distill", "staging", "1.0.1", expect="1.0.0", actor="mover")

        def key(a: AliasInfo) -> tuple[str, str]:
            return (a.model, a.alias)

        assert sorted(reader.list_aliases(), key=key) == sorted(writer.list_aliases(), key=key)
        assert {(a.model, a.alias, a.version) for a in reader.list_aliases()} == {
            ("distill", "production", "1.0.1"), ("distill", "staging", "1.0.1"),
            ("encoder", "staging", "1.0.0")}
        assert sorted(reader.list_aliases("encoder"), key=key) == writer.list_aliases("encoder")
        got = reader.get_alias("distill", "staging")
        assert got == writer.get_alias("distill", "staging") and got.updated_by == "mover"
        writer.remove_alias("distill", "staging", expect=None, actor="tester")
        with pytest.raises(NotFound):
            reader.get_alias("distill", "staging")
        with pytest.raises(NotFound):
            reader.get_alias("teacher", "staging")
        assert reader.get_alias("encoder", "staging").version == "1.0.0"

    def test_alias_history(self, pair: ReadPair) -> None:
        writer, reader = pair
        _register(writer, "distill", alias="staging")
        _register(writer, "distill")
        writer.set_alias("distill", "production", "1.0.0", expect="", actor="tester")
        writer.set_alias("distill", "production", "1.0.1", expect="1.0.0", actor="tester")
        writer.set_alias("distill", "staging", "1.0.1", expect=None, actor="tester")
        writer.remove_alias("distill", "production", expect=None, actor="tester")
        moves = reader.alias_history("distill")
        assert moves == writer.alias_history("distill")
        assert [m.id for m in moves] == sorted(m.id for m in moves)
        prod = reader.alias_history("distill", "production")
        assert prod == writer.alias_history("distill", "production")
        assert [(m.version, m.previous) for m in prod] == [
            ("1.0.0", None), ("1.0.1", "1.0.0"), (None, "1.0.1")]
        assert reader.alias_history("distill", "canary") == []

    def test_events_are_the_writers_chain(self, pair: ReadPair) -> None:
        writer, reader = pair
        _register(writer, "distill")
        _register(writer, "encoder", alias="staging")
        writer.set_revoked("distill", "1.0.0", revoked=True, reason="bad", actor="tester")
        _register(writer, "distill")
        writer.delete_version("distill", "1.0.0", actor="tester")
        writer.append_event("sign", "encoder", "1.0.0", actor="tester", payload={"key": "k1"})
        events = reader.events()
        assert events == writer.events() and len(events) >= 6
        assert [e.hash for e in events] == [e.hash for e in writer.events()]
        assert verify_chain(events).ok
        assert reader.head() == writer.head() == (events[-1].seq, events[-1].hash)
        assert reader.events(model="encoder") == writer.events(model="encoder")
        assert {e.model for e in reader.events(model="encoder")} == {"encoder"}
        assert reader.events(limit=2) == events[-2:]
        assert reader.last_event("sign") == events[-1]
        assert reader.last_event("delete", model="distill") == writer.last_event(
            "delete", model="distill")
        assert reader.last_event("sign", model="distill") is None

    def test_generation_grows_with_writes_and_not_with_reads(self, pair: ReadPair) -> None:
        writer, reader = pair
        g0 = reader.generation()
        _register(writer, "distill", alias="production")
        g1 = reader.generation()
        assert g1 > g0 and g1 == writer.generation()
        reader.get_version("distill", "1.0.0")
        reader.latest("distill")
        reader.list_versions("distill")
        reader.models()
        reader.list_aliases()
        reader.alias_history("distill")
        reader.events()
        reader.head()
        assert reader.generation() == g1 == reader.state()["generation"]
        writer.set_alias("distill", "staging", "1.0.0", expect=None, actor="tester")
        assert reader.generation() > g1

    def test_deleted_versions_are_gone(self, pair: ReadPair) -> None:
        writer, reader = pair
        _register(writer, "distill", data=b"gone", alias="production")
        kept = _register(writer, "distill", data=b"kept")
        assert reader.latest("distill").version == "1.0.1"
        writer.remove_alias("distill", "production", expect=None, actor="tester")
        writer.delete_version("distill", "1.0.1", actor="tester")
        with pytest.raises(NotFound):
            reader.get_version("distill", "1.0.1")
        assert kept.digest is not None
        with pytest.raises(NotFound):
            reader.by_digest("distill", kept.digest)
        assert [v.version for v in reader.list_versions("distill")] == ["1.0.0"]
        assert reader.latest("distill").version == "1.0.0"
        writer.delete_version("distill", "1.0.0", actor="tester")
        with pytest.raises(NotFound):
            reader.list_versions("distill")
        assert reader.models() == []


class TestSqliteReadIndex(ReadIndexContract):
    @pytest.fixture
    def pair(self, tmp_path: Path) -> Iterator[ReadPair]:
        idx = SqlIndex(f"sqlite:///{tmp_path / 'registry.db'}")
        yield ReadPair(idx, idx)
        idx.dispose()


@pytest.mark.postgres
class TestPostgresReadIndex(ReadIndexContract):
    @pytest.fixture
    def pair(self, pg_database: str) -> Iterator[ReadPair]:
        idx = SqlIndex(pg_database)
        yield ReadPair(idx, idx)
        idx.dispose()


class TestServedReadIndex(ReadIndexContract):
    """The reader is the :class:`~sentenialx.hub.transport.http.HttpIndex` of a real server.

    uvicorn serves, on loopback, a Hub whose index is the writer's SQLite file. Freshness:
    an online HttpIndex sends a request for every read and remembers the answer only for
    when the server is unreachable; generation and state are never remembered. The
    server's Hub caches resolved refs per generation, which every write bumps. So one
    reader per test sees each write.
    """

    @pytest.fixture
    def pair(self, tmp_path: Path) -> Iterator[ReadPair]:
        from sentenialx.hub.hub import Hub
        from sentenialx.hub.server import create_app

        root = tmp_path / "hub"
        root.mkdir()
        writer = SqlIndex(f"sqlite:///{root / 'registry.db'}")
        hub = Hub(root)
        secret, _ = hub.tokens.create("reader", scope="read")
        server = _load_live_server()(create_app(hub)).start()
        served = Hub.served(server.url, token=secret, cache_dir=tmp_path / "cache")
        try:
            yield ReadPair(writer, served.core.index)
        finally:
            served.close()
            server.stop()
            hub.close()
            writer.dispose()
