"""Issue 9, server hygiene, against the real server on loopback: read timeouts, login CSRF,
deep verify scope, what a model-limited token may learn, gated aliases over HTTP."""

from __future__ import annotations

import hashlib
import re
import socket
import sqlite3
import time

import httpx
import pytest

from .conftest import LiveServer

HTML = {"accept": "text/html"}


def _closed_by_server(sock: socket.socket, *, send: bytes, every: float, limit: float) -> bool:
    """Dribble ``send`` one byte at a time; True once the server closes the connection."""
    sock.settimeout(every)
    deadline = time.monotonic() + limit
    i = 0
    while time.monotonic() < deadline:
        try:
            sock.sendall(send[i % len(send):i % len(send) + 1])
            i += 1
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


@pytest.fixture
def slow_guarded(served):
    """The sample hub served again with 2 s header and body timeouts."""
    from sentenialx.hub.server import create_app

    server = LiveServer(create_app(served.hub), header_timeout=2.0, body_timeout=2.0,
                        min_body_rate=1024).start()
    yield server
    server.stop()


def test_a_client_dribbling_its_headers_is_dropped(slow_guarded):
    with socket.create_connection(("127.0.0.1", slow_guarded.port)) as s:
        # Never ends its headers: "X: aaaa..." one byte every 0.5 s.
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert _closed_by_server(s, send=b"a", every=0.5, limit=60)
    # The server itself is fine and answers a client that sends its request at once.
    assert httpx.get(slow_guarded.url + "/healthz", timeout=10).status_code == 200


def test_a_silent_connection_is_dropped(slow_guarded):
    with socket.create_connection(("127.0.0.1", slow_guarded.port)) as s:
        s.settimeout(60)
        assert s.recv(4096) == b""


def test_a_client_dribbling_its_body_is_dropped(slow_guarded, served, state):
    before = state(served.hub)
    with socket.create_connection(("127.0.0.1", slow_guarded.port)) as s:
        s.sendall(b"POST /api/v1/models/distill/versions HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + served.tokens["writer"].encode() + b"\r\n"
                  b"Content-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000\r\n\r\n--b\r\n")
        assert _closed_by_server(s, send=b"x", every=0.5, limit=60)
    deadline = time.monotonic() + 10
    while list(served.hub.root.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state(served.hub) == before and not list(served.hub.root.glob(".tmp-*"))


def test_a_keep_alive_connection_gets_the_header_timeout_again(slow_guarded):
    with socket.create_connection(("127.0.0.1", slow_guarded.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        assert b"200 OK" in s.recv(4096)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert _closed_by_server(s, send=b"a", every=0.5, limit=60)


# -- login CSRF -------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{"origin": "null"}, {}, {"origin": "https://evil.test"}])
def test_login_without_a_csrf_token_sets_no_cookie(served, headers):
    with httpx.Client(base_url=served.url, headers=HTML, timeout=30) as c:
        r = c.post("/login", data={"token": served.tokens["admin"], "next": "/"},
                   headers=headers)
        assert r.status_code == 403 and "sx_token" not in r.headers.get("set-cookie", "")
        # A token of the attacker's own choosing does not pass either.
        r = c.post("/login", data={"token": served.tokens["admin"], "csrf": "A" * 43},
                   headers=headers)
        assert r.status_code == 403 and "sx_token" not in r.headers.get("set-cookie", "")
        assert "sx_token" not in c.cookies


def test_login_with_the_pages_csrf_token_signs_in(served):
    with httpx.Client(base_url=served.url, headers=HTML, timeout=30) as c:
        page = c.get("/login")
        cookie = page.headers["set-cookie"].lower()
        assert "sx_csrf=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert csrf == c.cookies["sx_csrf"]
        # The cookie alone (a cross-site form cannot read it to copy it) is not enough.
        r = c.post("/login", data={"token": served.tokens["reader"], "next": "/"},
                   headers={"origin": "null"})
        assert r.status_code == 403 and "sx_token" not in c.cookies
        r = c.post("/login", data={"token": served.tokens["reader"], "next": "/", "csrf": csrf})
        assert r.status_code == 303
        session = r.headers["set-cookie"].lower()
        assert "sx_token=" in session and "httponly" in session and "samesite=strict" in session
        assert c.get("/").status_code == 200


# -- deep verify ------------------------------------------------------------------------------
def test_deep_verify_over_http_needs_admin(served, state):
    before = state(served.hub)
    for name in ("reader", "writer", "distill-writer"):
        with served.client(name) as c:
            for body in ({"deep": True}, {"model": "distill", "deep": True},
                         {"ref": "distill@1.1.0", "deep": True}, {}):
                r = c.post("/api/v1/verify", json=body)
                assert r.status_code == 403, (name, body, r.text)
                assert r.json()["error"]["type"] == "PermissionDenied"
    with served.client("admin") as c:
        r = c.post("/api/v1/verify", json={"deep": True})
        assert r.status_code == 200 and r.json()["ok"] and r.json()["hashed"] > 0
    assert state(served.hub)["index"] == before["index"]


# -- a model-limited token learns nothing about other models -----------------------------------
def _limited(served, name, scope, models):
    secret, _ = served.hub.tokens.create(name, scope=scope, models=models)
    return httpx.Client(base_url=served.url, timeout=30,
                        headers={"Authorization": f"Bearer {secret}"})


def _secrets_of(served, model, version):
    info = served.hub.resolve(f"{model}@{version}")
    return (info.digest, f"{model}@{version}")


def test_lineage_to_hidden_models_is_redacted(served):
    digest, ref = _secrets_of(served, "distill", "1.1.0")
    with _limited(served, "lora-only", "read", ["lora"]) as c:
        docs = [c.get("/api/v1/models/lora/versions/1.0.0"),
                c.get("/api/v1/models/lora/versions/1.0.0/metadata"),
                c.get("/api/v1/resolve", params={"ref": "lora"}),
                c.get("/api/v1/models/lora/versions"),
                c.get("/api/v1/events", params={"model": "lora"})]
        for r in docs:
            assert r.status_code == 200, r.text
            assert digest not in r.text and ref not in r.text and '"distill"' not in r.text
        lineage = docs[0].json()["lineage"]
        assert lineage["parents"] == [{"role": "base", "model": "hidden", "hidden": True}]
        page = c.get("/models/lora/versions/1.0.0", headers=HTML)
        assert page.status_code == 200 and "hidden" in page.text
        assert digest not in page.text and "distill" not in page.text
    with served.client("admin") as c:  # an unlimited token still sees the whole lineage
        assert c.get("/api/v1/models/lora/versions/1.0.0").json()["lineage"]["parents"][0][
            "digest"] == digest


def test_a_parent_in_a_hidden_model_is_refused_alike_whether_it_exists(served, upload, state):
    before = state(served.hub)
    data = b"weights with a hidden parent"
    messages = []
    with served.client("distill-writer") as c:
        for parent in ("teacher=teacher@1.0.0", "teacher=teacher@7.7.7", "teacher=ghost@1.0.0"):
            spec = upload.spec([("m.onnx", data)], version="5.0.0", parents=[parent])
            r = upload.post(c, "distill", spec, upload.blobs(data))
            assert r.status_code == 403, r.text
            assert r.json()["error"]["type"] == "PermissionDenied"
            messages.append(r.json()["error"]["message"].replace(parent, "P"))
    assert len(set(messages)) == 1, messages
    assert state(served.hub) == before


def test_not_found_lists_no_other_models(served):
    with _limited(served, "distill-star", "read", ["distill*"]) as c:
        for r in (c.get("/api/v1/models/distill-x/versions"),
                  c.get("/api/v1/resolve", params={"ref": "distill-x"}),
                  c.get("/api/v1/models/distill-x/versions/1.0.0"),
                  c.get("/api/v1/resolve", params={"ref": "distill@9.9.9"})):
            assert r.status_code == 404, r.text
            text = r.text
            assert "teacher" not in text and "lora" not in text and "known" not in text
    with served.client("admin") as c:  # an unlimited token keeps the helpful listing
        assert "teacher" in c.get("/api/v1/models/distill-x/versions").json()["error"]["message"]


def test_listings_show_only_visible_models(served):
    with served.client("lora-reader") as c:
        assert [m["model"] for m in c.get("/api/v1/models").json()] == ["lora"]
        assert c.get("/api/v1/events").status_code == 403
        assert {e["model"] for e in c.get("/api/v1/events", params={"model": "lora"}).json()} \
            == {"lora"}
        for path in ("/api/v1/models/distill/aliases", "/api/v1/models/distill/aliases/history",
                     "/api/v1/models/teacher/versions"):
            r = c.get(path)
            assert r.status_code == 403 and "1.1.0" not in r.text
        for ref in ("distill@production", "teacher", "ghost"):
            r = c.get("/api/v1/resolve", params={"ref": ref})
            assert r.status_code == 403 and "1." not in r.json()["error"]["message"]
        page = c.get("/", headers=HTML)
        assert 'href="/models/lora"' in page.text and "distill" not in page.text
        assert "teacher" not in page.text


# -- gated aliases over HTTP ----------------------------------------------------------------------


def _production(served) -> str:
    return next(a.version for a in served.hub.aliases("distill") if a.alias == "production")


@pytest.mark.parametrize("name", ["writer", "distill-writer"])
def test_a_write_token_cannot_move_production_by_put(served, state, name):
    before = state(served.hub)
    with served.client(name) as c:
        r = c.put("/api/v1/models/distill/aliases/production", json={"ref": "distill@1.0.0"})
    assert r.status_code == 409 and r.json()["error"]["type"] == "GateFailed"
    assert _production(served) == "1.1.0" and state(served.hub) == before


def test_a_write_token_cannot_move_production_by_upload_alias(served, upload, state):
    before = state(served.hub)
    data = b"ungated weights"
    spec = upload.spec([("m.onnx", data)], version="6.0.0", alias="production")
    with served.client("distill-writer") as c:
        r = upload.post(c, "distill", spec, upload.blobs(data))
    assert r.status_code == 409 and r.json()["error"]["type"] == "GateFailed"
    assert _production(served) == "1.1.0" and state(served.hub) == before


def test_a_write_token_cannot_move_production_by_rollback(served, state):
    before = state(served.hub)
    with served.client("distill-writer") as c:
        r = c.post("/api/v1/models/distill/aliases/production/rollback")
    assert r.status_code == 409 and r.json()["error"]["type"] == "GateFailed"
    assert _production(served) == "1.1.0" and state(served.hub) == before


def test_force_needs_admin(served, state):
    before = state(served.hub)
    for name in ("writer", "distill-writer"):
        with served.client(name) as c:
            r = c.put("/api/v1/models/distill/aliases/production", params={"force": "true"},
                      json={"ref": "distill@1.0.0"})
            assert r.status_code == 403, r.text
            r = c.post("/api/v1/models/distill/aliases/production/rollback",
                       params={"force": "true"})
            assert r.status_code == 403, r.text
    assert _production(served) == "1.1.0" and state(served.hub) == before


def test_admin_force_moves_production_and_is_recorded(served):
    with served.client("admin") as c:
        r = c.put("/api/v1/models/distill/aliases/production", params={"force": "true"},
                  json={"ref": "distill@1.0.0", "expect": "1.1.0"})
    assert r.status_code == 200, r.text
    assert _production(served) == "1.0.0"
    last = served.hub.events(model="distill")[-1]
    assert last.actor == "token:admin" and last.payload.get("force") is True


# -- stored values past the bounds ---------------------------------------------------------------
def _poison(served, version: str, meta_json: str) -> None:
    """Write a metadata value straight into the index, past every check."""
    conn = sqlite3.connect(served.hub.root / "registry.db")
    try:
        with conn:
            conn.execute("UPDATE versions SET meta = ? WHERE model = 'distill' AND version = ?",
                         (meta_json, version))
            conn.execute("UPDATE hub_state SET generation = generation + 1")
    finally:
        conn.close()


@pytest.mark.parametrize("meta_json", [
    '{"metrics": {"accuracy": ' + "9" * 4300 + "}}",
    '{"deep": ' + "[" * 900 + "]" * 900 + "}",
    '{"metrics": {"accuracy": ' + "9" * 400 + "}}",
], ids=["int-4300-digits", "nested-900", "int-400-digits"])
def test_a_stored_value_past_the_bounds_never_answers_5xx(served, meta_json):
    _poison(served, "1.1.0", meta_json)
    with served.client("admin") as c:
        for path, params in (("/api/v1/models/distill/versions/1.1.0", None),
                             ("/api/v1/models/distill/versions/1.1.0/metadata", None),
                             ("/api/v1/resolve", {"ref": "distill@1.1.0"}),
                             ("/api/v1/models/distill/versions", None),
                             ("/api/v1/models", None)):
            r = c.get(path, params=params)
            assert r.status_code < 500, (path, r.status_code, r.text[:300])
            if r.status_code >= 400:
                assert r.status_code == 422 and r.json()["error"]["type"] == "UnreadableRecord"
                if "1.1.0" in path or params:
                    assert "distill@1.1.0" in r.json()["error"]["message"]
        for page in ("/models/distill/versions/1.1.0", "/models/distill", "/"):
            r = c.get(page, headers=HTML)
            assert r.status_code < 500, (page, r.status_code, r.text[:300])
        # Other versions still read.
        assert c.get("/api/v1/models/distill/versions/1.0.0").status_code == 200



def test_every_kind_of_answer_carries_the_security_headers(served):
    """JSON, an error, a streamed file, a 304, a page: each has the headers; a page's
    script nonce is its own (a fresh one per response)."""
    with served.client() as c:
        w = served.hub.resolve("distill@1.1.0").files[0]
        url = f"/api/v1/models/distill/versions/1.1.0/files/{w.path}"
        answers = {
            "json": c.get("/api/v1/models"),
            "error": c.get("/api/v1/models/nosuchmodel"),
            "file": c.get(url),
            "not modified": c.get(url, headers={"If-None-Match": f'"{w.sha256}"'}),
            "no token": httpx.get(served.url + "/api/v1/models"),
            "page": c.get("/models/distill", headers=HTML),
            "page again": c.get("/models/distill", headers=HTML),
        }
    assert [r.status_code for r in answers.values()] == [200, 404, 200, 304, 401, 200, 200]
    assert hashlib.sha256(answers["file"].content).hexdigest() == w.sha256
    for kind, r in answers.items():
        assert r.headers["x-content-type-options"] == "nosniff", kind
        assert r.headers["referrer-policy"] == "no-referrer", kind
        assert r.headers["x-frame-options"] == "DENY", kind
        assert r.headers.get_list("x-frame-options") == ["DENY"], kind  # set once
    nonces = []
    for kind in ("page", "page again"):
        csp = answers[kind].headers["content-security-policy"]
        nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
        assert f'<script nonce="{nonce}">' in answers[kind].text
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert "script-src" not in answers["json"].headers.get("content-security-policy", "")
