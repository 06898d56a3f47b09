"""Tokens: stored as hashes, scopes and model limits enforced on every write endpoint."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta

import httpx
import pytest

from sentenialx.hub.errors import AlreadyExists, InvalidInput, NotFound


def _write_calls(model: str, upload) -> list[tuple[str, str, str, dict]]:
    """(scope needed, method, path, request kwargs) for every write endpoint."""
    new = b"new weights for " + model.encode()
    spec = upload.spec([("m.onnx", new)], version="9.0.0")
    files = [("spec", (None, __import__("json").dumps(spec).encode(), "application/json")),
             ("blob", (hashlib.sha256(new).hexdigest(), new, "application/octet-stream"))]
    base = f"/api/v1/models/{model}"
    return [
        ("write", "POST", f"{base}/versions", {"files": files}),
        ("write", "POST", f"{base}/blobs/check", {"json": {"files": []}}),
        ("write", "PUT", f"{base}/aliases/qa", {"json": {"ref": f"{model}@1.0.0"}}),
        ("write", "DELETE", f"{base}/aliases/staging", {}),
        ("write", "POST", f"{base}/aliases/production/rollback", {}),
        ("write", "POST", f"{base}/versions/1.0.0/revoke", {"json": {"reason": "bad"}}),
        ("write", "POST", f"{base}/versions/1.0.0/unrevoke", {}),
        ("admin", "DELETE", f"{base}/versions/1.0.0", {}),
    ]


def test_tokens_are_stored_only_as_hashes(served):
    db = served.hub.root / "registry.db"
    raw = db.read_bytes() + b"".join(p.read_bytes() for p in served.hub.root.glob("registry.db*"))
    conn = sqlite3.connect(db)
    rows = {r[0]: r[1] for r in conn.execute("SELECT name, token_sha256 FROM tokens")}
    conn.close()
    for name, secret in served.tokens.items():
        assert secret.startswith("sxt_") and len(secret) > 40
        assert secret.encode() not in raw
        assert rows[name] == hashlib.sha256(secret.encode()).hexdigest()


def test_every_write_endpoint_enforces_scope(served, upload, state):
    hub = served.hub
    before = state(hub)
    for model in ("distill",):
        for need, method, path, kw in _write_calls(model, upload):
            # 401: no token, a malformed header, an unknown token.
            for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"},
                            {"Authorization": "Bearer sxt_unknown"}):
                r = httpx.request(method, served.url + path, headers=headers, **kw)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["error"]["type"] == "Unauthenticated"
                assert r.headers["www-authenticate"].startswith("Bearer")
            # 403: too little scope, or a token limited to another model.
            low = ["reader", "lora-reader"] + (["writer", "distill-writer"] if need == "admin"
                                               else [])
            for name in low:
                r = httpx.request(method, served.url + path, headers=served.headers(name), **kw)
                assert r.status_code == 403, (method, path, name, r.text)
                assert r.json()["error"]["type"] == "PermissionDenied"
    for need, method, path, kw in _write_calls("lora", upload):
        if need == "write":  # distill-writer has write, but not on lora
            r = httpx.request(method, served.url + path, headers=served.headers("distill-writer"),
                              **kw)
            assert r.status_code == 403, (method, path, r.text)
            assert "limited to models distill" in r.json()["error"]["message"]
    assert state(hub) == before


def test_writes_succeed_with_scope_and_are_attributed(served, upload):
    hub = served.hub
    start = len(hub.events())
    new = b"fresh weights" * 100
    spec = upload.spec([("threat_student.onnx", new)], version="1.2.0",
                       metadata={"metrics": {"accuracy": 0.95}})
    with served.client("distill-writer") as c:
        r = upload.post(c, "distill", spec, upload.blobs(new))
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/api/v1/models/distill/versions/1.2.0"
        assert r.json()["created_by"] == "token:distill-writer"
        r = c.put("/api/v1/models/distill/aliases/qa", json={"ref": "distill@1.2.0"})
        assert r.status_code == 200 and r.json()["previous"] is None
        r = c.put("/api/v1/models/distill/aliases/qa", json={"ref": "distill@1.1.0",
                                                              "expect": "1.2.0"})
        assert r.json() == {"model": "distill", "alias": "qa", "version": "1.1.0",
                            "previous": "1.2.0"}
        assert c.post("/api/v1/models/distill/aliases/qa/rollback").json()["version"] == "1.2.0"
        assert c.delete("/api/v1/models/distill/aliases/qa").json()["version"] == "1.2.0"
        r = c.post("/api/v1/models/distill/versions/1.0.0/revoke", json={"reason": "leaky"})
        assert r.status_code == 200 and r.json()["revoked"] is True
        assert c.post("/api/v1/models/distill/versions/1.0.0/unrevoke").json()["revoked"] is False
        assert c.post("/api/v1/models/distill/blobs/check", json={"files": [
            {"sha256": hashlib.sha256(new).hexdigest(), "size": len(new)}]}).json()["present"]
        assert c.delete("/api/v1/models/distill/versions/1.2.0").status_code == 403
    with served.client("admin") as c:
        assert c.delete("/api/v1/models/distill/versions/1.2.0").json()["deleted"] == \
            "distill@1.2.0"
    mine = hub.events()[start:]
    assert [e.kind for e in mine] == ["register", "alias", "alias", "alias", "alias-remove",
                                      "revoke", "unrevoke", "delete"]
    assert {e.actor for e in mine[:-1]} == {"token:distill-writer"}
    assert mine[-1].actor == "token:admin"
    assert hub.verify_log().ok and hub.fsck().ok


def test_anonymous_read_is_off_unless_enabled(make_served):
    closed = make_served("closed")
    assert httpx.get(closed.url + "/api/v1/models").status_code == 401
    r = httpx.get(closed.url + "/", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    opened = make_served("open", anonymous_read=True)
    r = httpx.get(opened.url + "/api/v1/models")
    assert r.status_code == 200 and len(r.json()) == 3
    assert httpx.get(opened.url + "/api/v1/whoami").json()["anonymous"] is True
    r = httpx.post(opened.url + "/api/v1/models/distill/versions/1.0.0/revoke",
                   json={"reason": "x"})
    assert r.status_code == 401  # anonymous never writes
    # A bad token is refused even where anonymous reads are allowed.
    r = httpx.get(opened.url + "/api/v1/models", headers={"Authorization": "Bearer sxt_nope"})
    assert r.status_code == 401


def test_model_limited_token_sees_only_its_models(served):
    with served.client("lora-reader") as c:
        assert [m["model"] for m in c.get("/api/v1/models").json()] == ["lora"]
        assert c.get("/api/v1/models/distill/versions").status_code == 403
        assert c.get("/api/v1/resolve", params={"ref": "distill"}).status_code == 403
        assert c.get("/api/v1/events").status_code == 403  # the whole chain: unlimited only
        assert {e["model"] for e in c.get("/api/v1/events",
                                          params={"model": "lora"}).json()} == {"lora"}
        f = served.hub.resolve("distill").files[0].path
        assert c.get(f"/api/v1/models/distill/versions/1.1.0/files/{f}").status_code == 403
        assert c.get("/api/v1/models/lora/versions").status_code == 200


def test_revoked_and_expired_tokens_are_refused_at_once(served):
    with served.client("reader") as c:
        assert c.get("/api/v1/models").status_code == 200
        served.hub.tokens.revoke("reader")
        r = c.get("/api/v1/models")
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    secret, _ = served.hub.tokens.create("short", scope="read",
                             expires_in=timedelta(milliseconds=1))
    import time

    time.sleep(0.01)
    r = httpx.get(served.url + "/api/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_token_rules(hub):
    secret, tok = hub.tokens.create("ci", scope="write", models=["distill*", "lora"])
    assert tok.models == ("distill*", "lora") and tok.may_see("distill-small")
    assert not tok.may_see("teacher")
    with pytest.raises(AlreadyExists):
        hub.tokens.create("ci")
    hub.tokens.revoke("ci")
    with pytest.raises(AlreadyExists):  # names of revoked tokens are not reused
        hub.tokens.create("ci")
    with pytest.raises(NotFound):
        hub.tokens.revoke("ci")
    for bad in ({"scope": "root"}, {"models": ["../x"]}, {"models": []},
                {"expires_in": timedelta(seconds=-1)}):
        with pytest.raises(InvalidInput):
            hub.tokens.create("other", **bad)
    assert [t.name for t in hub.tokens.list()] == ["ci"]
    assert hub.tokens.list(include_revoked=False) == []
    assert secret not in str(tok.to_dict())


def test_token_cli(cli, hub):
    r = cli("token", "create", "edge", "--scope", "read", "--model", "distill", "--expires", "30d")
    assert r.exit_code == 0, r.stderr
    secret = r.stdout.strip()
    assert secret.startswith("sxt_") and "shown only now" in r.stderr
    r = cli("token", "create", "deploy", "--scope", "admin", "--json")
    assert r.json()["scope"] == "admin" and r.json()["token"].startswith("sxt_")
    rows = cli("token", "list", "--json").json()
    assert [(t["name"], t["scope"], t["models"]) for t in rows] == [
        ("edge", "read", ["distill"]), ("deploy", "admin", None)]
    assert all("token" not in t for t in rows)
    assert cli("token", "revoke", "edge").exit_code == 0
    assert [t["name"] for t in cli("token", "list", "--json").json()] == ["deploy"]
    assert len(cli("token", "list", "--all", "--json").json()) == 2
    r = cli("token", "revoke", "edge")
    assert r.exit_code == 3 and "already revoked" in r.stderr
    r = cli("token", "create", "x", "--scope", "read", "--model", "../etc")
    assert r.exit_code == 5
