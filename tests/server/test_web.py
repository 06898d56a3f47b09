"""The web pages over HTTP (no browser): sign-in, content, sanitising, headers, verify."""

from __future__ import annotations

import os
import re

import httpx
import pytest

HTML = {"accept": "text/html"}


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token a rendered page put in its forms."""
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, page.text[:500]
    return m.group(1)


@pytest.fixture
def browser_client(served):
    """A client signed in through the login form (cookie), like a browser."""
    c = httpx.Client(base_url=served.url, headers=HTML, timeout=30)
    r = c.get("/models/distill")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fmodels%2Fdistill"
    csrf = csrf_of(c.get("/login?next=/models/distill"))
    r = c.post("/login", data={"token": "sxt_wrong", "next": "/models/distill", "csrf": csrf})
    assert r.status_code == 401 and "unknown token" in r.text
    r = c.post("/login", data={"token": served.tokens["reader"], "next": "/models/distill",
                               "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/models/distill"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    yield c
    c.close()


def test_pages_render(served, browser_client):
    c = browser_client
    r = c.get("/")
    assert r.status_code == 200
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in r.text
    for m in ("distill", "lora", "teacher"):
        assert f'href="/models/{m}"' in r.text
    assert "production → 1.1.0" in r.text
    r = c.get("/models/distill")
    assert 'class="chart metric-chart"' in r.text and 'data-points="2"' in r.text
    assert r.text.count('class="version-link"') == 2 and "Alias history" in r.text
    r2 = c.get("/models/distill", params={"metric": "f1"})
    assert 'aria-label="f1 across versions of distill"' in r2.text
    r = c.get("/models/distill/versions/1.1.0")
    assert r.status_code == 200
    page = r.text
    curves = re.findall(r'<svg class="chart curve"[^>]*data-points="(\d+)"', page)
    assert len(curves) == 2 and all(int(n) > 50 for n in curves)  # loss and accuracy
    assert 'data-name="loss"' in page and 'data-name="val_loss"' in page
    assert 'src="/models/distill/versions/1.1.0/view/threat_student_v1.1.0_loss.png"' in page
    assert 'id="verify-now"' in page and "Distillation report" in page
    assert 'class="lineage"' in page and 'data-nodes="3"' in page  # teacher -> distill -> lora
    assert 'href="/models/lora/versions/1.0.0"' in page
    for f in served.hub.resolve("distill@1.1.0").files:
        assert f.sha256 in page
    img = c.get("/models/distill/versions/1.1.0/view/threat_student_v1.1.0_loss.png")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content.startswith(b"\x89PNG")
    r = c.get("/models/lora/versions/1.0.0")
    assert 'data-nodes="3"' in r.text  # its ancestors: distill, then teacher


def test_report_is_sanitised(served, browser_client):
    page = browser_client.get("/models/distill/versions/1.1.0").text
    report = page.split('<article class="report">', 1)[1].split("</article>", 1)[0]
    assert "<table>" in report and "<strong>97%</strong>" in report
    for bad in ("<script", "onerror", "onclick", "javascript:", "<iframe", "style=", "__pwned"):
        assert bad not in report.lower(), bad
    # The page's own script carries this response's nonce; nothing else may run.
    r = browser_client.get("/models/distill")
    csp = r.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in r.text
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp.split("script-src")[1]


def test_verify_now_shows_the_result(served, browser_client):
    c = browser_client
    csrf = c.cookies["sx_csrf"]
    r = c.post("/models/distill/versions/1.1.0/verify", data={"csrf": csrf})
    assert r.status_code == 200
    assert 'id="verify-result" class="result ok"' in r.text and "4 files" in r.text
    w = served.hub.weights_entry(served.hub.resolve("distill@1.1.0"))
    p = served.hub.root / "distill" / w.path
    os.chmod(p, 0o644)
    data = bytearray(p.read_bytes())
    data[0] ^= 0xFF
    p.write_bytes(bytes(data))
    r = c.post("/models/distill/versions/1.1.0/verify", data={"csrf": csrf})
    assert 'class="result bad"' in r.text and "sha256 mismatch" in r.text
    # A form posted from another site, or without the page's CSRF token, is refused.
    r = c.post("/models/distill/versions/1.1.0/verify", data={"csrf": csrf},
               headers={"origin": "https://evil.test"})
    assert r.status_code == 403
    r = c.post("/models/distill/versions/1.1.0/verify")
    assert r.status_code == 403 and "CSRF" in r.text


def test_html_errors_and_sign_out(served, browser_client):
    c = browser_client
    r = c.get("/models/nope")
    assert r.status_code == 404 and "<h1>404 · NotFound</h1>" in r.text
    r = c.get("/models/distill/versions/9.9.9")
    assert r.status_code == 404
    r = c.get("/models/..x")
    assert r.status_code == 400
    r = c.post("/logout", data={"csrf": c.cookies["sx_csrf"]})
    assert r.status_code == 303
    c.cookies.clear()
    assert c.get("/").status_code == 303
    # A limited token sees only its models, in the pages too.
    csrf = csrf_of(c.get("/login"))
    c.post("/login", data={"token": served.tokens["lora-reader"], "next": "/", "csrf": csrf})
    r = c.get("/")
    assert 'href="/models/lora"' in r.text and 'href="/models/distill"' not in r.text
    assert c.get("/models/distill").status_code == 403


def test_anonymous_pages_when_enabled(make_served):
    s = make_served(anonymous_read=True)
    r = httpx.get(s.url + "/models/distill/versions/1.1.0", headers=HTML)
    assert r.status_code == 200 and "anonymous · read" in r.text
