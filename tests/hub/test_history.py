"""The tamper-evident history and the hub's signed state.

Every change is a hash-chained event; ``models log --verify`` and ``fsck`` name the first
event that does not fit, whether the SQL row or its export (events.jsonl) was edited.
With a hub key, registry.head.json is signed, so even a chain rewritten and fully
re-hashed by someone who can write the database (but has no hub key) is caught, and
readers refuse replayed (rollback) or expired (freeze) states.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import StateError
from sentenialx.hub.events import GENESIS, Event
from sentenialx.hub.hub import Hub
from sentenialx.hub.signing import generate_keypair, load_private_key, load_public_key
from sentenialx.hub.state import HUB_PUB, StateGuard, sign_doc, verify_doc

Cli = Callable[..., Any]


def ok(r: Any) -> Any:
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


@pytest.fixture(autouse=True)
def no_user_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path, str]:
    (tmp_path / "keys").mkdir()
    priv, pub = tmp_path / "keys" / "release.pem", tmp_path / "keys" / "release.pub"
    return priv, pub, generate_keypair(priv, pub)


@pytest.fixture
def busy(hub: Hub, cli: Cli, sample_file: Callable[..., Path],
         keypair: tuple[Path, Path, str]) -> Hub:
    """A hub with six events: register, register, sign, alias, register, revoke."""
    priv, _pub, _kid = keypair
    hub.register("distill", sample_file(3000, seed=1))
    hub.register("lora", sample_file(3000, seed=2))
    hub.sign("distill@1.0.0", priv)
    hub.set_alias("distill@1.0.0", "staging")
    hub.register("distill", sample_file(3000, seed=3))
    hub.revoke("distill@1.0.1", reason="bad eval")
    assert [e.seq for e in hub.events()] == [1, 2, 3, 4, 5, 6]
    return hub


def db(hub: Hub) -> sqlite3.Connection:
    return sqlite3.connect(hub.root / "registry.db")


def log_verify(cli: Cli) -> tuple[Any, dict[str, Any]]:
    text = cli("log", "--verify")
    j = cli("log", "--verify", "--json")
    assert text.exit_code == j.exit_code
    return text, j.json()


def assert_detected(hub: Hub, cli: Cli, n: int, *, first_bad: int | None) -> None:
    """``log --verify`` exits 1 naming event n; fsck reports it as a chain problem."""
    text, j = log_verify(cli)
    assert text.exit_code == 1, text.stdout
    assert text.stdout.startswith("FAILED: ")
    assert f"event {n}" in text.stdout or f"sequence number {n}" in text.stdout, text.stdout
    assert j["ok"] is False and j["first_bad"] == first_bad
    rep = hub.fsck()
    chain = [p for p in rep.problems if p.kind == "chain"]
    assert chain and (f"event {n}" in chain[0].message or f"number {n}" in chain[0].message)
    r = cli("fsck")
    assert r.exit_code == 1 and "CHAIN" in r.stdout


def rewrite_chain(hub: Hub, edit_seq: int, *, actor: str = "mallory@evil",
                  export: bool = False) -> list[Event]:
    """What someone with write access to registry.db (but not the hub key) can do: edit an
    event, then recompute every hash after it so the chain itself is consistent again.
    With ``export``, events.jsonl is rewritten to match (without the hub's signatures)."""
    conn = db(hub)
    rows = conn.execute("SELECT seq, ts, kind, model, version, actor, payload FROM events"
                        " ORDER BY seq").fetchall()
    prev, out = GENESIS, []
    for seq, ts, kind, model, version, who, payload in rows:
        if seq == edit_seq:
            who = actor
        body = Event(seq, ts, kind, model, version, who, json.loads(payload), prev)
        ev = Event(seq, ts, kind, model, version, who, body.payload, prev, body.compute_hash())
        conn.execute("UPDATE events SET actor=?, prev_hash=?, hash=? WHERE seq=?",
                     (who, ev.prev_hash, ev.hash, seq))
        out.append(ev)
        prev = ev.hash
    conn.commit()
    conn.close()
    if export:
        (hub.root / "events.jsonl").write_text(
            "".join(json.dumps(e.to_dict(), sort_keys=True) + "\n" for e in out))
    return out


def head_doc(hub: Hub) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((hub.root / "registry.head.json").read_text())
    return doc


# -- every change is an event -------------------------------------------------------------------
def test_every_change_is_an_event(hub: Hub, cli: Cli, sample_file: Callable[..., Path],
                                  keypair: tuple[Path, Path, str]) -> None:
    priv, pub, kid = keypair
    data = "ab" * 32
    steps = [
        (("keys", "trust", pub, "--name", "release"), False, "trust", "trust-key"),
        (("keys", "mode", "--model", "lora*", "--mode", "warn"), False, "trust", "mode"),
        (("keys", "gate", "production", "--min", "accuracy=0.9", "--max", "latency_p95_ms=50"),
         False, "trust", "gates"),
        (("register", "distill", sample_file(2000, seed=1), "--sign-with", priv, "--data-digest",
          data, "--meta", "metrics.accuracy=0.93", "--meta", "metrics.latency_p95_ms=20"),
         True, "register", None),
        (None, None, "sign", None),  # from --sign-with
        (("register", "distill", sample_file(2000, seed=2)), True, "register", None),
        (("alias", "set", "distill@1.0.0", "staging"), True, "alias", None),
        (("promote", "distill@1.0.0", "--to", "production"), True, "promote", None),
        (("sign", "distill@1.0.1", "--key", priv), True, "sign", None),
        (("revoke", "distill@1.0.1", "--reason", "leaked eval set"), True, "revoke", None),
        (("revoke", "distill@1.0.1", "--reason", "false alarm", "--undo"), True, "unrevoke", None),
        (("alias", "rm", "distill", "staging"), True, "alias-remove", None),
        (("delete", "distill@1.0.1", "--yes"), True, "delete", None),
        (("keys", "revoke", "release"), False, "trust", "revoke-key"),
        (("keys", "hub-key", "--out", hub.root.parent / "secret" / "hub.pem"), False, "trust",
         "hub-key"),
    ]
    for args, models, _kind, _action in steps:
        if args is not None:
            ok(cli(*args, models=models))
    evs = hub.events()
    assert [e.kind for e in evs] == [s[2] for s in steps]
    assert [e.payload.get("action") for e in evs if e.kind == "trust"] == [
        s[3] for s in steps if s[2] == "trust"]
    assert [e.seq for e in evs] == list(range(1, len(steps) + 1))
    assert all(e.actor == "tester@test" for e in evs)
    by_kind = {e.kind: e for e in evs}
    assert by_kind["promote"].payload["alias"] == "production"
    assert by_kind["revoke"].payload.get("reason") == "leaked eval set"
    assert by_kind["delete"].version == "1.0.1" and by_kind["delete"].payload["digest"]
    assert by_kind["sign"].payload["key_id"] == kid
    assert evs[-2].payload["key_id"] == kid  # revoke-key

    text = ok(cli("log")).stdout
    for kind in {s[2] for s in steps}:
        assert f" {kind} " in text
    r = ok(cli("log", "--verify"))
    assert r.stdout == f"OK: {len(steps)} events, head {evs[-1].hash}\n"
    assert hub.fsck().ok, hub.fsck().problems

    # The export mirrors the chain; the head (signed now: the hub has a key) names its tail.
    lines = [json.loads(x) for x in (hub.root / "events.jsonl").read_text().splitlines()]
    assert [d["hash"] for d in lines] == [e.hash for e in evs]
    assert "hub_sig" in lines[-1] and "hub_sig" not in lines[0]
    head = head_doc(hub)
    assert (head["seq"], head["head"]) == (evs[-1].seq, evs[-1].hash)
    verify_doc(load_public_key(hub.root / HUB_PUB), head)


def test_log_verify_on_clean_hubs(hub: Hub, cli: Cli, busy: Hub) -> None:
    _, j = log_verify(cli)
    assert j == {"ok": True, "events": 6, "head": hub.events()[-1].hash, "first_bad": None,
                 "reason": ""}
    assert hub.fsck().ok
    ok(cli("keys", "hub-key", "--out", hub.root.parent / "secret" / "hub.pem", models=False))
    assert log_verify(cli)[1]["ok"] is True
    assert hub.fsck().ok


# -- editing the past ---------------------------------------------------------------------------
EDITS = ["payload", "actor", "ts", "kind"]


@pytest.mark.parametrize("n", [1, 3, 6])
@pytest.mark.parametrize("what", EDITS)
def test_edited_event_row_is_named(what: str, n: int, busy: Hub, cli: Cli) -> None:
    conn = db(busy)
    if what == "payload":
        (payload,) = conn.execute("SELECT payload FROM events WHERE seq=?", (n,)).fetchone()
        doc = json.loads(payload)
        doc["forged"] = True
        conn.execute("UPDATE events SET payload=? WHERE seq=?", (json.dumps(doc, sort_keys=True), n))
    else:
        value = {"actor": "mallory@evil", "ts": "2020-01-01T00:00:00.000000Z", "kind": "gc"}[what]
        conn.execute(f"UPDATE events SET {what}=? WHERE seq=?", (value, n))
    conn.commit()
    conn.close()
    assert_detected(busy, cli, n, first_bad=n)
    text, _ = log_verify(cli)
    assert "content does not match its hash" in text.stdout


@pytest.mark.parametrize("n", [1, 3])
def test_deleted_event_row_is_named(n: int, busy: Hub, cli: Cli) -> None:
    conn = db(busy)
    conn.execute("DELETE FROM events WHERE seq=?", (n,))
    conn.commit()
    conn.close()
    assert_detected(busy, cli, n, first_bad=n + 1)
    text, _ = log_verify(cli)
    assert f"expected sequence number {n}" in text.stdout and "removed" in text.stdout


def test_deleted_newest_event_is_named(busy: Hub, cli: Cli) -> None:
    """Dropping the tail leaves a consistent chain; the export still names the event."""
    conn = db(busy)
    conn.execute("DELETE FROM events WHERE seq=6")
    conn.commit()
    conn.close()
    assert_detected(busy, cli, 6, first_bad=6)


@pytest.mark.parametrize("n", [1, 4, 6])
def test_edited_export_line_is_named(n: int, busy: Hub, cli: Cli) -> None:
    path = busy.root / "events.jsonl"
    lines = path.read_text().splitlines()
    doc = json.loads(lines[n - 1])
    doc["actor"] = "mallory@evil"
    lines[n - 1] = json.dumps(doc, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    assert_detected(busy, cli, n, first_bad=n)
    assert "events.jsonl differs" in log_verify(cli)[0].stdout


def test_rewritten_and_rehashed_index_is_named_by_the_export(busy: Hub, cli: Cli) -> None:
    rewrite_chain(busy, 2)
    assert_detected(busy, cli, 2, first_bad=2)


# -- the hub key: a signed head -----------------------------------------------------------------
@pytest.fixture
def keyed(busy: Hub, cli: Cli) -> Hub:
    secret = busy.root.parent / "secret"
    r = ok(cli("keys", "hub-key", "--out", secret / "hub.pem", models=False))
    assert "hub key " in r.stdout and str(busy.root / HUB_PUB) in r.stdout
    assert not list(busy.root.rglob("*.pem"))  # no private key in the folder
    again = cli("keys", "hub-key", "--out", secret / "again.pem", models=False)
    assert again.exit_code == 4  # a hub keeps its key
    head = head_doc(busy)
    assert head["seq"] == 7 and "sig" in head
    verify_doc(load_public_key(busy.root / HUB_PUB), head)
    return busy


def test_rehashed_chain_and_export_are_caught_by_the_signed_head(keyed: Hub, cli: Cli,
                                                                 sample_file: Callable[..., Path]
                                                                 ) -> None:
    before = head_doc(keyed)
    rewrite_chain(keyed, 2, export=True)
    assert keyed.index.head()[0] == 7 and keyed.index.head()[1] != before["head"]
    text, j = log_verify(cli)
    assert text.exit_code == 1 and "history was rewritten" in text.stdout
    assert "event 7" in text.stdout
    assert any(p.kind == "chain" and "rewritten" in p.message for p in keyed.fsck().problems)
    assert cli("fsck").exit_code == 1
    # The next ordinary write must not vouch for the rewritten chain with the hub's key.
    keyed.register("encoder", sample_file(1000, seed=9))
    assert head_doc(keyed) == before
    text, _ = log_verify(cli)
    assert text.exit_code == 1 and "history was rewritten" in text.stdout


@pytest.mark.parametrize("forgery", ["unsigned", "other-key", "edited", "deleted"])
def test_forging_the_head_does_not_help(forgery: str, keyed: Hub, cli: Cli,
                                        keypair: tuple[Path, Path, str]) -> None:
    rewrite_chain(keyed, 2, export=True)
    seq, head = keyed.index.head()
    doc = {k: v for k, v in head_doc(keyed).items() if k not in ("sig", "key_id")}
    doc.update(seq=seq, head=head)
    path = keyed.root / "registry.head.json"
    if forgery == "unsigned":
        path.write_text(json.dumps(doc))
        want = "not signed although the hub has a key"
    elif forgery == "other-key":
        path.write_text(json.dumps(sign_doc(load_private_key(keypair[0]), doc)))
        want = "does not verify"
    elif forgery == "edited":
        signed = head_doc(keyed)
        signed.update(seq=seq, head=head)
        path.write_text(json.dumps(signed))
        want = "does not verify"
    else:
        path.unlink()
        want = "registry.head.json is missing"
    text, _ = log_verify(cli)
    assert text.exit_code == 1 and want in text.stdout, text.stdout
    assert cli("fsck").exit_code == 1


def test_a_copys_saved_head_detects_a_rewrite(busy: Hub, cli: Cli,
                                              sample_file: Callable[..., Path]) -> None:
    """Without a hub key, someone who rewrites the chain, its export and the head fools the hub
    itself, but not a copy elsewhere that kept the head it saw."""
    saved = head_doc(busy)
    assert (saved["seq"], saved["head"]) == busy.index.head()
    assert busy.check_head(saved["seq"], saved["head"])
    assert busy.check_head(0, GENESIS)
    busy.register("encoder", sample_file(1000, seed=5))  # appending keeps old heads valid
    assert busy.check_head(saved["seq"], saved["head"])
    assert not busy.check_head(saved["seq"] + 10, saved["head"])

    evs = rewrite_chain(busy, 2, export=True)
    (busy.root / "registry.head.json").write_text(json.dumps(
        dict(saved, seq=evs[-1].seq, head=evs[-1].hash)))
    assert log_verify(cli)[0].exit_code == 0  # the hub alone cannot tell
    assert not busy.check_head(saved["seq"], saved["head"])  # the copy can


# -- rollback and freeze ------------------------------------------------------------------------
def test_signed_state_needs_a_hub_key(hub: Hub) -> None:
    with pytest.raises(StateError, match="keys hub-key"):
        hub.signed_state()


def test_state_guard(keyed: Hub, sample_file: Callable[..., Path],
                     keypair: tuple[Path, Path, str], make_hub: Callable[..., Hub],
                     cli: Cli) -> None:
    guard = StateGuard.for_hub(keyed)
    first = keyed.signed_state()
    body = guard.check(keyed)
    assert body["generation"] == keyed.index.state()["generation"]
    assert (body["seq"], body["head"]) == keyed.index.head()
    assert body["hub_id"] == keyed.index.state()["hub_id"] == guard.hub_id
    assert guard.check_doc(first)["generation"] == body["generation"]  # same state again: fine

    keyed.register("encoder", sample_file(1000, seed=7))
    newer = guard.check(keyed)
    assert newer["generation"] > body["generation"] and guard.highest == newer["generation"]

    # Replaying the older, validly signed state: rollback.
    with pytest.raises(StateError, match="rollback") as exc:
        guard.check_doc(first)
    assert str(body["generation"]) in str(exc.value) and str(newer["generation"]) in str(exc.value)
    mirror = StateGuard(guard.public_key, highest=guard.highest, source=lambda _h: first)
    with pytest.raises(StateError, match="rollback"):
        mirror.check(keyed)

    # A state that has expired: a frozen mirror.
    with pytest.raises(StateError, match="expired") as exc:
        guard.check_doc(keyed.signed_state(ttl=timedelta(seconds=-1)))
    assert "freeze" in str(exc.value)

    # Signed by another key, or altered after signing.
    fresh = keyed.signed_state()
    unsigned = {k: v for k, v in fresh.items() if k not in ("sig", "key_id")}
    with pytest.raises(StateError, match="forged or altered"):
        guard.check_doc(sign_doc(load_private_key(keypair[0]), unsigned))
    for field, value in [("generation", fresh["generation"] + 100),
                         ("expires", "2999-01-01T00:00:00+00:00"), ("head", GENESIS)]:
        with pytest.raises(StateError, match="forged or altered"):
            guard.check_doc(dict(fresh, **{field: value}))
    with pytest.raises(StateError):
        guard.check_doc(unsigned)

    # Another hub's state does not verify with this hub's key.
    other = make_hub()
    ok(cli("keys", "hub-key", "--out", other.root.parent / "other-secret" / "hub.pem",
           models=False, hub=other))
    with pytest.raises(StateError):
        guard.check(other)
    # Other documents the hub key signs are not states.
    with pytest.raises(StateError, match="not a hub state"):
        guard.check_doc(head_doc(keyed))
    # None of the refusals moved the guard.
    assert guard.check_doc(fresh)["generation"] == guard.highest


def test_generation_grows_with_every_change(keyed: Hub, cli: Cli,
                                            keypair: tuple[Path, Path, str]) -> None:
    gens = [keyed.index.state()["generation"]]
    for step in (lambda: keyed.set_alias("distill@1.0.0", "stable"),
                 lambda: keyed.sign("lora@1.0.0", keypair[0]),
                 lambda: ok(cli("keys", "mode", "--default", "--mode", "warn", models=False)),
                 lambda: keyed.unrevoke("distill@1.0.1")):
        step()
        gens.append(keyed.index.state()["generation"])
    assert gens == sorted(set(gens))
    assert head_doc(keyed)["generation"] == gens[-1]
