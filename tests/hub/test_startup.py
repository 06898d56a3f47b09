"""The CLI's cold start and the index's read rules: one set of rules, two ways to run them.

``sentenialx models list|versions|show|path`` on the embedded default are answered by
``sentenialx.hub._fastpath`` with the standard library; everything else (and any doubt)
goes to the full click CLI over the Hub. These tests hold the two to the same answers on
a corpus of refs and hub states (revoked, gated, tampered, missing, policy changes), check
that the cold start imports neither SQLAlchemy nor Alembic, and check the semver sort key
that makes latest and ranges indexed lookups against the plain semver rules.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub._fastpath import fast_cli
from sentenialx.hub.errors import HubError, NotFound
from sentenialx.hub.hub import Hub
from sentenialx.hub.refs import Version, VersionRange, parse_ref

# -- the sort key --------------------------------------------------------------------------


def _random_version(rng: random.Random) -> Version:
    def ident() -> str:
        kind = rng.random()
        if kind < 0.4:
            return str(rng.choice([0, 1, 2, 9, 10, 11, 99, 100, 12345678901234567890]))
        alphabet = "abAZ-09"
        return rng.choice("abAZ-") + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3)))

    pre = tuple(ident() for _ in range(rng.choice([0, 0, 1, 2, 3])))
    nums = [rng.choice([0, 1, 2, 9, 10, 2**31 - 1]) for _ in range(3)]
    return Version(nums[0], nums[1], nums[2], pre, rng.choice(["", "", "b.1"]))


def test_index_key_orders_like_semver_precedence() -> None:
    rng = random.Random(12)
    vs = [_random_version(rng) for _ in range(3000)]
    vs += [Version.parse(t) for t in ("1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                                      "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
                                      "1.0.0-rc.1", "1.0.0", "1.0.0-a", "1.0.0-a.b", "1.0.0-ab",
                                      "1.0.0-a-", "1.0.0-0", "1.0.0-00a")]
    for a, b in zip(vs, vs[1:] + vs[:1], strict=True):
        assert (a.sort_key() < b.sort_key()) == (a.index_key() < b.index_key()), (a, b)
        assert (a.sort_key() == b.sort_key()) == (a.index_key() == b.index_key()), (a, b)
    # The spec's own example chain, in order.
    chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
             "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"]
    keys = [Version.parse(t).index_key() for t in chain]
    assert keys == sorted(keys)


# -- resolve: the indexed lookups against plain semver rules --------------------------------

VERSIONS = ["0.1.0", "0.9.0", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0-beta.2", "1.1.0-beta.11",
            "1.1.0", "1.2.0+build.5", "1.10.0", "2.0.0-rc.1", "2.0.0", "2.1.0", "3.0.0-alpha"]
RANGES = ["^1.0", "^1.0.0-rc.1", "~1.1", ">=1.0,<2", ">1.1.0", "<=1.2.0", "1.x", "1.1.*", "*",
          "^2", "^0.1", "~0.9", ">=1.1.0-beta.2,<1.1.0", "!=2.1.0", "=1.0.1", "^9", "<0.1.0",
          "^3.0.0-alpha", ">=2.0.0-rc.1"]


@pytest.fixture
def semver_hub(hub: Hub, sample_file: Any) -> Hub:
    for i, v in enumerate(VERSIONS):
        hub.register("m", sample_file(64, seed=i, name="w.onnx"), version=v)
    hub.revoke("m@2.1.0", reason="bad")
    hub.revoke("m@1.0.1", reason="bad")
    return hub


def _reference(live: list[Version], text: str) -> str | None:
    rng = VersionRange.parse(text)
    cands = [v for v in live if rng.matches(v)]
    return str(max(cands, key=Version.sort_key)) if cands else None


def test_latest_and_ranges_match_the_plain_semver_rules(semver_hub: Hub) -> None:
    live = [Version.parse(v) for v in VERSIONS if v not in ("2.1.0", "1.0.1")]
    assert semver_hub.resolve("m").version == str(max(live, key=Version.sort_key)) == "3.0.0-alpha"
    for text in RANGES:
        want = _reference(live, text)
        if want is None:
            with pytest.raises(NotFound, match="matches"):
                semver_hub.resolve(f"m@{text}")
        else:
            assert semver_hub.resolve(f"m@{text}").version == want, text


def test_a_range_scan_goes_past_a_batch_of_non_matching_rows(hub: Hub, sample_file: Any) -> None:
    # 70 pre-releases above the one release a range may match: more than one batch.
    hub.register("p", sample_file(64, seed=1, name="w.onnx"), version="1.0.0")
    for i in range(70):
        hub.register("p", sample_file(64, seed=100 + i, name="w.onnx"), version=f"1.5.0-rc.{i}")
    assert hub.resolve("p@^1").version == "1.0.0"
    assert hub.resolve("p").version == "1.5.0-rc.69"
    assert hub.resolve("p@>=1.5.0-rc.3,<1.5.0").version == "1.5.0-rc.69"


def test_migration_0005_backfills_the_sort_key(semver_hub: Hub) -> None:
    from alembic import command
    from alembic.config import Config

    from sentenialx.hub.index import sql

    root = semver_hub.root
    cfg = Config()
    cfg.set_main_option("script_location", os.path.join(os.path.dirname(sql.__file__), "migrations"))
    with semver_hub.index.engine.connect().execution_options(hub_write=True) as conn:
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
    semver_hub.close()
    db = sqlite3.connect(root / "registry.db")
    cols = [r[1] for r in db.execute("PRAGMA table_info(versions)")]
    db.close()
    assert "sort_key" not in cols
    again = Hub(root)  # opening upgrades
    try:
        db = sqlite3.connect(root / "registry.db")
        rows = db.execute("SELECT version, sort_key FROM versions").fetchall()
        db.close()
        assert len(rows) == len(VERSIONS)
        assert all(k == Version.parse(v).index_key() for v, k in rows)
        assert again.resolve("m@^1.0").version == "1.10.0"
    finally:
        again.close()


# -- the cold start and the full CLI agree ------------------------------------------------


@pytest.fixture
def states_hub(hub: Hub, sample_file: Any, tmp_path: Path) -> Hub:
    """One hub holding every state a read can meet."""
    for i, v in enumerate(["1.0.0", "1.2.0", "2.0.0-rc.1", "1.5.0"]):
        hub.register("distill", sample_file(64, seed=i, name="student.onnx"), version=v,
                     metadata={"metrics": {"accuracy": 0.9 + i / 100}})
    hub.set_alias("distill@1.2.0", "stable")
    hub.set_alias("distill@1.5.0", "production", force=True)  # gated: needs a signature
    hub.register("distill", sample_file(64, seed=9, name="student.onnx"), version="1.6.0")
    hub.revoke("distill@1.6.0", reason="leaks")
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "a.bin").write_bytes(b"a")
    (d / "cfg.json").write_text("{}")
    hub.register("lora", d)
    hub.register("lora", d, version="1.1.0")
    hub.register("gone", sample_file(64, seed=20, name="g.onnx"))
    hub.register("gone", sample_file(64, seed=21, name="g.onnx"))
    hub.revoke("gone@1.0.0", reason="old")
    hub.revoke("gone@1.0.1", reason="older")
    hub.register("tampered", sample_file(64, seed=30, name="t.onnx"))
    hub.register("missing", sample_file(64, seed=31, name="x.onnx"))
    p = hub.path("tampered")
    p.chmod(0o644)
    p.write_bytes(b"X" * 64)
    hub.path("missing").unlink()
    return hub


def _refs(h: Hub) -> list[str]:
    digest = h.resolve("distill@1.2.0").digest or ""
    return ["distill", "distill@latest", "distill@stable", "distill@production", "distill@^1.0",
            "distill@~1.2", "distill@>=1.0,<1.5", "distill@1.0.0", "distill@2.0.0-rc.1",
            "distill@1.6.0", "distill@staging", "distill@9.9.9", "distill@^7",
            f"distill@sha256:{digest}", f"distill@sha256:{digest[:10]}", "distill@sha256:abcdef",
            "lora", "lora@1.0.0", "lora@^1", "gone", "gone@1.0.0", "tampered", "missing", "nope",
            "nope@stable", "distill@^y", "a/b"]


def _argvs(h: Hub) -> list[list[str]]:
    out: list[list[str]] = [["list"], ["list", "--json"]]
    for m in ("distill", "lora", "gone", "nope", "a/b"):
        out += [["versions", m], ["versions", m, "--json"]]
    for ref in _refs(h):
        out += [["show", ref], ["show", ref, "--json"], ["show", ref, "--include-revoked"],
                ["path", ref], ["path", ref, "--json"]]
    return out


def _agree(h: Hub, cli: Any) -> dict[str, int]:
    """Every read argv: the cold start answers exactly as the full CLI does, or not at all."""
    answered = {"fast": 0, "full": 0}
    root = str(h.root)
    for argv in _argvs(h):
        fast = fast_cli(["models", *argv, "--hub", root])
        full = cli(*argv)
        if fast is None:
            answered["full"] += 1
            continue
        answered["fast"] += 1
        assert full.exit_code == 0, (argv, full.stderr)
        assert fast + "\n" == full.stdout, argv
    return answered


def test_cold_start_and_full_cli_agree_on_every_state(states_hub: Hub, cli: Any) -> None:
    counts = _agree(states_hub, cli)
    assert counts["fast"] >= 60 and counts["full"] >= 30, counts
    root = str(states_hub.root)
    # The cases the cold start must leave to the full CLI, and what that one says.
    for argv, code in ((["path", "distill@production"], 7), (["path", "tampered"], 6),
                       (["path", "missing"], 6), (["path", "distill@1.6.0"], 3),
                       (["show", "distill@1.6.0"], 3), (["show", "nope"], 3),
                       (["versions", "nope"], 3), (["show", "distill@^y"], 5),
                       (["path", "gone"], 3), (["show", "distill@sha256:abcdef"], 3)):
        assert fast_cli(["models", *argv, "--hub", root]) is None, argv
        assert cli(*argv).exit_code == code, argv
    # Revoked versions are shown when asked for, the same way by both.
    shown = fast_cli(["models", "show", "distill@1.6.0", "--include-revoked", "--hub", root])
    assert shown is not None and "revoked: leaks" in shown


def test_cold_start_follows_policy_changes(states_hub: Hub, cli: Any) -> None:
    root = str(states_hub.root)
    assert fast_cli(["models", "path", "lora", "--hub", root]) is not None
    ts = states_hub.trust_store()
    ts.policy["models"]["lo*"] = "enforce"
    states_hub.save_trust(ts, action="models", detail={"pattern": "lo*"})
    assert fast_cli(["models", "path", "lora", "--hub", root]) is None
    assert cli("path", "lora").exit_code == 7
    # A policy file changed behind the hub's back: neither path trusts it.
    policy = states_hub.root / "trust" / "policy.json"
    policy.write_text(policy.read_text().replace('"enforce"', '"off"'))
    assert fast_cli(["models", "path", "lora", "--hub", root]) is None
    assert cli("path", "lora").exit_code == 7
    _agree(states_hub, cli)


def test_cold_start_declines_what_it_does_not_know(states_hub: Hub, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(states_hub.root)
    assert fast_cli(["models", "list", "--hub", root]) is not None
    for argv in (["list", "--bogus"], ["versions"], ["versions", "a", "b"], ["show"],
                 ["path", "distill", "--include-revoked"], ["verify"], ["list", "extra"]):
        assert fast_cli(["models", *argv, "--hub", root]) is None, argv
    assert fast_cli(["models", "list", "--hub", str(tmp_path / "no-hub")]) is None
    monkeypatch.setenv("SENTENIALX_INDEX", "postgresql://nobody@127.0.0.1:1/x")
    assert fast_cli(["models", "list", "--hub", root]) is None
    monkeypatch.delenv("SENTENIALX_INDEX")
    (states_hub.root / "registry.json").unlink()  # the full Hub rewrites it when opened
    assert fast_cli(["models", "list", "--hub", root]) is None


def test_cold_start_never_writes(states_hub: Hub) -> None:
    root = states_hub.root

    def listing() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in root.rglob("*") if p.is_file()}

    before = listing()
    for argv in _argvs(states_hub):
        fast_cli(["models", *argv, "--hub", str(root)])
    assert listing() == before


# -- what the cold start imports ------------------------------------------------------------


def test_read_commands_import_neither_sqlalchemy_nor_alembic(states_hub: Hub) -> None:
    root = str(states_hub.root)
    for argv in (["list"], ["versions", "distill"], ["show", "distill@stable"],
                 ["path", "distill@stable"], ["list", "--json"]):
        code = ("import sys\nfrom sentenialx.cli import main\n"
                f"main(['models', *{argv!r}, '--hub', {root!r}])\n"
                "heavy = [m for m in ('sqlalchemy', 'alembic', 'click', 'rich') if m in sys.modules]\n"
                "print('HEAVY', heavy)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == "HEAVY []", (argv, r.stdout)


def test_a_hub_at_head_writes_without_sqlalchemy_or_alembic(states_hub: Hub) -> None:
    src = str(states_hub.path("lora@1.0.0") / "a.bin")
    root = str(states_hub.root)
    code = ("import sys\nfrom sentenialx.hub import Hub\n"
            f"h = Hub({root!r})\nh.register('m', {src!r})\nh.verify('m')\nh.fsck()\n"
            "h.promote('m@1.0.0', to='prod')\nh.close()\n"
            "from sentenialx.cli import main\n"
            "try:\n"
            f"    main(['models', 'register', 'm', {src!r}, '--bump', 'patch', '--hub', {root!r}])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('HEAVY', [m for m in ('sqlalchemy', 'alembic') if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "HEAVY []"
    assert Hub(root).resolve("m@prod").version == "1.0.0"


def test_a_hub_behind_head_is_migrated_on_open(tmp_path: Path) -> None:
    # An index without the schema (a new file) is created by Alembic on the first open.
    code = ("import sys\nfrom sentenialx.hub import Hub\n"
            f"h = Hub({str(tmp_path / 'new')!r})\nprint(h.index.generation())\n"
            "print('ALEMBIC', 'alembic' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["0", "ALEMBIC True"]


def test_the_read_rules_are_the_index_s(states_hub: Hub) -> None:
    """lookup.resolve over a raw sqlite3 connection gives the Hub's answers and errors."""
    from sentenialx.hub.index import lookup

    conn = sqlite3.connect(f"file:{states_hub.root / 'registry.db'}?mode=ro", uri=True)

    def q(sql: str, params: Any) -> Any:
        return conn.execute(sql, params).fetchall()

    try:
        for ref in _refs(states_hub):
            for include_revoked in (False, True):
                try:
                    want: Any = states_hub.resolve(ref, include_revoked=include_revoked)
                except HubError as exc:
                    want = (type(exc), str(exc))
                try:
                    got: Any = lookup.resolve(q, parse_ref(ref), include_revoked=include_revoked)
                except HubError as exc:
                    got = (type(exc), str(exc))
                assert got == want, ref
    finally:
        conn.close()
