"""Aliases, revoke, delete and the hash-chained history of every change."""

from __future__ import annotations

import json
import sqlite3

import pytest

from sentenialx.hub.errors import Conflict, InvalidInput, InvalidName, NotFound


@pytest.fixture
def three(hub, sample_file):
    """distill 1.0.0, 1.1.0, 1.2.0."""
    for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0"]):
        hub.register("distill", sample_file(128, seed=i), version=v)
    return hub


def kinds(hub) -> list[str]:
    return [e.kind for e in hub.events()]


def test_set_move_remove(three, registry_ok) -> None:
    assert three.set_alias("distill@1.0.0", "stable") is None
    assert three.resolve("distill@stable").version == "1.0.0"
    assert registry_ok(three)["distill"]["aliases"] == {"stable": "1.0.0"}
    assert three.set_alias("distill@1.1.0", "stable") == "1.0.0"
    three.set_alias("distill", "staging")
    assert {a.alias: a.version for a in three.aliases("distill")} == {
        "stable": "1.1.0", "staging": "1.2.0"}
    assert registry_ok(three)["distill"]["aliases"] == {"stable": "1.1.0",
                                                         "staging": "1.2.0"}
    assert three.models()[0]["aliases"] == {"stable": "1.1.0", "staging": "1.2.0"}
    assert three.remove_alias("distill", "staging") == "1.2.0"
    with pytest.raises(NotFound):
        three.resolve("distill@staging")
    with pytest.raises(NotFound):
        three.remove_alias("distill", "staging")
    assert registry_ok(three)["distill"]["aliases"] == {"stable": "1.1.0"}
    assert kinds(three)[-4:] == ["alias", "alias", "alias", "alias-remove"]


def test_alias_names_and_targets_are_checked(three, snapshot) -> None:
    before = snapshot(three)
    for bad in ("latest", "1abc", "a/b", "..", "con", "x\x00"):
        with pytest.raises(InvalidName):
            three.set_alias("distill@1.0.0", bad)
    with pytest.raises(NotFound):
        three.set_alias("distill@9.0.0", "stable")
    with pytest.raises(NotFound):
        three.set_alias("nope", "stable")
    with pytest.raises(InvalidInput):
        three.set_alias("distill@^y", "stable")
    assert snapshot(three) == before


def test_compare_and_set(three, snapshot) -> None:
    three.set_alias("distill@1.0.0", "stable", expect="")  # "" = must not exist yet
    with pytest.raises(Conflict):
        three.set_alias("distill@1.1.0", "stable", expect="")
    three.set_alias("distill@1.1.0", "stable", expect="1.0.0")
    before = snapshot(three)
    with pytest.raises(Conflict, match="another writer moved it first"):
        three.set_alias("distill@1.2.0", "stable", expect="1.0.0")
    with pytest.raises(Conflict):
        three.remove_alias("distill", "stable", expect="1.0.0")
    assert snapshot(three) == before
    assert three.resolve("distill@stable").version == "1.1.0"
    three.set_alias("distill@1.2.0", "stable", expect="v1.1.0")
    assert three.remove_alias("distill", "stable", expect="1.2.0") == "1.2.0"


def test_history_and_rollback(three, registry_ok) -> None:
    three.set_alias("distill@1.0.0", "stable")
    three.set_alias("distill@1.1.0", "stable")
    three.set_alias("distill@1.2.0", "stable")
    three.set_alias("distill@1.0.0", "staging")
    hist = three.alias_history("distill", "stable")
    assert [(m.previous, m.version) for m in hist] == [(None, "1.0.0"), ("1.0.0", "1.1.0"),
                                                       ("1.1.0", "1.2.0")]
    assert len(three.alias_history("distill")) == 4
    # Rollback is one call and is itself recorded.
    assert three.rollback("distill", "stable") == "1.1.0"
    assert three.resolve("distill@stable").version == "1.1.0"
    ev = three.events()[-1]
    assert (ev.kind, ev.version, ev.payload["previous"], ev.payload.get("rollback")) == (
        "alias", "1.1.0", "1.2.0", True)
    assert three.alias_history("distill", "stable")[-1].previous == "1.2.0"
    registry_ok(three)
    with pytest.raises(NotFound, match="no earlier version"):
        three.rollback("distill", "staging")
    with pytest.raises(NotFound):
        three.rollback("distill", "canary")
    three.remove_alias("distill", "staging")
    assert three.alias_history("distill", "staging")[-1].version is None


def test_register_with_alias_is_one_step(hub, sample_file) -> None:
    hub.register("distill", sample_file(10), alias="staging")
    v = hub.register("distill", sample_file(10, seed=1), alias="staging")
    assert hub.resolve("distill@staging").version == v.version == "1.0.1"
    assert kinds(hub) == ["register", "alias", "register", "alias"]


def test_revoke_with_reason(three, registry_ok) -> None:
    three.set_alias("distill@1.2.0", "staging")
    with pytest.raises(InvalidInput, match="reason"):
        three.revoke("distill@1.2.0", reason="  ")
    v = three.revoke("distill@1.2.0", reason="false positives on benign traffic")
    assert v.revoked and v.revoke_reason == "false positives on benign traffic"
    assert three.resolve("distill").version == "1.1.0"
    with pytest.raises(NotFound, match="false positives"):
        three.resolve("distill@staging")
    # Still stored and still verifiable.
    assert (three.root / "distill" / v.files[0].path).is_file()
    assert three.verify("distill@1.2.0", deep=True).ok
    assert three.open("distill@1.2.0", include_revoked=True)
    reg = registry_ok(three)
    assert reg["distill"]["version"] == "1.1.0"
    ev = three.events()[-1]
    assert (ev.kind, ev.version, ev.payload) == ("revoke", "1.2.0",
                                                 {"reason": "false positives on benign traffic"})
    assert [x.revoked for x in three.versions("distill")] == [False, False, True]
    three.unrevoke("distill@1.2.0")
    assert three.resolve("distill").version == "1.2.0"
    assert kinds(three)[-1] == "unrevoke"
    registry_ok(three)


def test_delete_needs_confirmation_and_no_alias(three, snapshot, registry_ok) -> None:
    three.set_alias("distill@1.2.0", "stable")
    before = snapshot(three)
    with pytest.raises(InvalidInput, match="--yes"):
        three.delete("distill@1.1.0")
    with pytest.raises(Conflict, match="stable"):
        three.delete("distill@1.2.0", confirm=True)
    with pytest.raises(NotFound):
        three.delete("distill@9.9.9", confirm=True)
    assert snapshot(three) == before
    v = three.delete("distill@1.1.0", confirm=True)
    assert v.version == "1.1.0"
    assert not list((three.root / "distill").glob("*v1.1.0*"))
    with pytest.raises(NotFound):
        three.resolve("distill@1.1.0", include_revoked=True)
    assert [x.version for x in three.versions("distill")] == ["1.0.0", "1.2.0"]
    assert kinds(three)[-1] == "delete"
    registry_ok(three)
    assert three.fsck(deep=True).ok
    # The latest version can go too once its alias is moved; registry.json follows.
    three.set_alias("distill@1.0.0", "stable", expect="1.2.0")
    three.delete("distill@1.2.0", confirm=True)
    assert registry_ok(three)["distill"]["version"] == "1.0.0"
    three.remove_alias("distill", "stable")
    three.delete("distill@1.0.0", confirm=True)
    assert registry_ok(three) == {}
    assert three.fsck().ok


def test_every_change_appends_a_chained_event(three, sample_file) -> None:
    n0 = len(three.events())
    three.set_alias("distill@1.0.0", "stable")
    three.set_alias("distill@1.1.0", "stable", expect="1.0.0")
    three.rollback("distill", "stable")
    three.remove_alias("distill", "stable")
    three.revoke("distill@1.1.0", reason="r")
    three.unrevoke("distill@1.1.0")
    three.delete("distill@1.1.0", confirm=True)
    three.register("distill", sample_file(5, seed=77))
    evs = three.events()
    assert [e.kind for e in evs[n0:]] == ["alias", "alias", "alias", "alias-remove", "revoke",
                                         "unrevoke", "delete", "register"]
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
    assert all(b.prev_hash == a.hash for a, b in zip(evs, evs[1:], strict=False))
    assert all(e.actor == "tester@test" for e in evs)
    rep = three.verify_log()
    assert rep.ok and rep.count == len(evs) and rep.head == evs[-1].hash
    assert [e.seq for e in three.events(model="distill", limit=2)] == [evs[-2].seq, evs[-1].seq]
    # Failed calls append nothing.
    with pytest.raises(Conflict):
        three.set_alias("distill@1.0.0", "x", expect="1.2.0")
    assert len(three.events()) == len(evs)


def test_actor_recorded(three) -> None:
    three.set_alias("distill@1.0.0", "stable", actor="ci@build-7")
    assert three.events()[-1].actor == "ci@build-7"
    assert three.aliases("distill")[0].updated_by == "ci@build-7"
    assert three.alias_history("distill")[-1].actor == "ci@build-7"


@pytest.mark.parametrize("sql", [
    "UPDATE events SET version='6.6.6' WHERE seq=2",
    "UPDATE events SET payload='{\"digest\": \"00\"}' WHERE seq=2",
    "UPDATE events SET actor='mallory' WHERE seq=2",
    "UPDATE events SET ts='2000-01-01T00:00:00Z' WHERE seq=2",
    "DELETE FROM events WHERE seq=2",
])
def test_editing_the_event_table_is_detected(three, sql: str) -> None:
    three.set_alias("distill@1.0.0", "stable")
    assert three.verify_log().ok
    ev2 = three.events()[1]
    conn = sqlite3.connect(three.root / "registry.db")
    conn.execute(sql)
    conn.commit()
    conn.close()
    rep = three.verify_log()
    assert not rep.ok
    if sql.startswith("DELETE"):
        assert rep.first_bad == 3 and "event 3" in rep.reason
    else:
        assert rep.first_bad == 2 and "event 2" in rep.reason
        assert "register distill@" in rep.reason and (ev2.version in rep.reason or
                                                     "6.6.6" in rep.reason)
    fs = three.fsck()
    assert not fs.ok
    assert any(p.kind == "chain" and "event" in p.message for p in fs.problems)


def test_rewriting_a_digest_everywhere_in_the_index_is_still_caught(three) -> None:
    """An attacker who edits both the version row and re-chains nothing is seen by fsck."""
    conn = sqlite3.connect(three.root / "registry.db")
    conn.execute("UPDATE versions SET digest=? WHERE version='1.1.0'", ("ab" * 32,))
    conn.commit()
    conn.close()
    problems = three.fsck().problems
    assert any(p.kind == "chain" and p.version == "1.1.0" for p in problems)
    assert any(p.kind == "sidecar" and p.version == "1.1.0" for p in problems)
    assert json.loads((three.root / "registry.json").read_text())  # still readable
