"""Item 5 of the issue: every bad request gets the right status and a JSON error, and the
hub (index rows, registry.json, files) is unchanged afterwards."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import httpx


def _check_error(r: httpx.Response, status: int, type_: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) >= {"type", "message"} and err["message"]
    if type_:
        assert err["type"] == type_, err
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_unknown_refs_are_404(guarded):
    with guarded.client("admin") as c:
        for ref in ("nope", "distill@9.9.9", "distill@canary", "distill@^7", "distill@sha256:abcdef"):
            _check_error(c.get("/api/v1/resolve", params={"ref": ref}), 404, "NotFound")
        _check_error(c.get("/api/v1/models/nope/versions"), 404, "NotFound")
        _check_error(c.get("/api/v1/models/distill/versions/3.0.0"), 404, "NotFound")
        _check_error(c.get("/api/v1/models/distill/versions/1.1.0/files/missing.onnx"), 404)
        _check_error(c.get("/api/v1/no/such/endpoint"), 404, "NotFound")
        _check_error(c.post("/api/v1/models/distill/versions/4.0.0/revoke",
                            json={"reason": "x"}), 404)
        _check_error(c.delete("/api/v1/models/distill/versions/4.0.0"), 404)
        _check_error(c.put("/api/v1/models/distill/aliases/qa", json={"ref": "distill@4.0.0"}), 404)
        _check_error(c.delete("/api/v1/models/distill/aliases/nosuch"), 404)


def test_malformed_refs_and_path_tricks_are_400(guarded):
    with guarded.client("admin") as c:
        for ref in ("../../etc/passwd", "distill@", "distill@@x", "distill@sha256:xyz",
                    "dist ill", "distill@../x", "con", "", "a/b"):
            _check_error(c.get("/api/v1/resolve", params={"ref": ref}), 400)
        _check_error(c.get("/api/v1/resolve"), 422, "ValidationError")
        for model in ("..evil", "con", "registry.json", "a..b", "-x", "x" * 101):
            _check_error(c.get(f"/api/v1/models/{model}/versions"), 400)
        _check_error(c.get("/api/v1/models/distill/versions/not-semver"), 400, "InvalidVersion")
        for trick in ("..%2F..%2Fregistry.db", "%2Fetc%2Fpasswd", "threat_student_v1.1.0.onnx%2F..",
                      "a%5Cb", "x%00y"):
            url = f"{guarded.url}/api/v1/models/distill/versions/1.1.0/files/{trick}"
            _check_error(c.get(httpx.URL(url)), 400)
        for alias in ("..x", "latest", "1bad", "a%2Fb"):
            r = c.put(httpx.URL(f"{guarded.url}/api/v1/models/distill/aliases/{alias}"),
                      json={"ref": "distill@1.0.0"})
            assert r.status_code in (400, 404), r.text
            _check_error(r, r.status_code)
        _check_error(c.put("/api/v1/models/distill/aliases/qa", json={"ref": "lora@1.0.0"}), 400)
        _check_error(c.put("/api/v1/models/distill/aliases/qa", json={}), 422, "ValidationError")
        _check_error(c.put("/api/v1/models/distill/aliases/qa", content=b"{not json",
                           headers={"content-type": "application/json"}), 422)
        _check_error(c.post("/api/v1/models/distill/versions/1.0.0/revoke", json={"reason": ""}),
                     422)
        # A moved alias: compare-and-set refuses with 409.
        _check_error(c.put("/api/v1/models/distill/aliases/staging",
                           json={"ref": "distill@1.0.0", "expect": "1.0.0"}), 409, "Conflict")
        # A version an alias still names cannot be deleted.
        _check_error(c.delete("/api/v1/models/distill/versions/1.1.0"), 409, "Conflict")


def test_bad_uploads_are_400_and_store_nothing(guarded, upload):
    data = b"weights " * 1000
    other = b"other bytes" * 100
    sha = hashlib.sha256(data).hexdigest()
    with guarded.client("writer") as c:
        spec = upload.spec([("m.onnx", data)], version="2.0.0")
        # Bytes that do not match the declared sha256 (same size).
        bad = bytes(reversed(data))
        _check_error(upload.post(c, "distill", spec, [(sha, bad)]), 400, "IntegrityError")
        # More bytes than declared.
        _check_error(upload.post(c, "distill", spec, [(sha, data + b"x")]), 400, "IntegrityError")
        # Fewer bytes than declared.
        _check_error(upload.post(c, "distill", spec, [(sha, data[:-1])]), 400, "IntegrityError")
        # A blob no file declares; a declared file neither sent nor stored.
        _check_error(upload.post(c, "distill", spec, upload.blobs(other)), 400, "InvalidInput")
        _check_error(upload.post(c, "distill", spec, []), 400, "InvalidInput")
        # The same blob twice.
        _check_error(upload.post(c, "distill", spec, upload.blobs(data, data)), 400)
        # A declared version digest the files do not make.
        wrong = dict(spec, digest="0" * 64)
        _check_error(upload.post(c, "distill", wrong, upload.blobs(data)), 400, "InvalidInput")
        # Names and paths with tricks.
        for model in ("..evil", "con"):
            _check_error(upload.post(c, model, spec, upload.blobs(data)), 400)
        for path in ("../m.onnx", "/etc/m.onnx", "a/../b.onnx", "a\\b.onnx"):
            s = upload.spec([(path, data)], version="2.0.0")
            _check_error(upload.post(c, "distill", s, upload.blobs(data)), 400)
        s = upload.spec([("m.onnx", data)], attachments=[("report", "../../x.md", other)])
        _check_error(upload.post(c, "distill", s, upload.blobs(data, other)), 400)
        s = upload.spec([("m.onnx", data)], attachments=[("weights", "w.bin", other)])
        _check_error(upload.post(c, "distill", s, upload.blobs(data, other)), 400)
        s = upload.spec([("d/../../x", data)], layout="dir", name="adapter")
        _check_error(upload.post(c, "distill", s, upload.blobs(data)), 400)
        # Malformed specs and bodies.
        _check_error(upload.post(c, "distill", b"{not json", upload.blobs(data)), 400)
        _check_error(upload.post(c, "distill", dict(spec, evil=1), upload.blobs(data)), 400)
        _check_error(upload.post(c, "distill", dict(spec, files=[]), []), 400)
        _check_error(upload.post(c, "distill", dict(spec, version="v.bad"), upload.blobs(data)),
                     400)
        blob_first = [("blob", (sha, data, "application/octet-stream")),
                      ("spec", (None, json.dumps(spec).encode(), "application/json"))]
        _check_error(c.post("/api/v1/models/distill/versions", files=blob_first), 400)
        _check_error(c.post("/api/v1/models/distill/versions", json=spec), 400)
        _check_error(c.post("/api/v1/models/distill/versions", content=b"--x\r\nnonsense",
                            headers={"content-type": "multipart/form-data; boundary=x"}), 400)
        # An existing version: versions are immutable.
        s = upload.spec([("m.onnx", data)], version="1.0.0")
        _check_error(upload.post(c, "distill", s, upload.blobs(data)), 409, "AlreadyExists")
        # A parent that does not resolve.
        s = upload.spec([("m.onnx", data)], version="2.0.0", parents=["teacher=teacher@9.0.0"])
        _check_error(upload.post(c, "distill", s, upload.blobs(data)), 404)


def test_upload_over_the_limit_is_413(guarded, upload):
    big = b"\0" * (5 * 1024 * 1024)  # the served app accepts 4 MiB
    spec = upload.spec([("big.onnx", big)], version="2.0.0")
    with guarded.client("writer") as c:
        _check_error(upload.post(c, "distill", spec, upload.blobs(big)), 413, "TooLarge")

        def chunks():  # no Content-Length: the server counts while it reads
            yield (b'--B\r\nContent-Disposition: form-data; name="spec"\r\n\r\n'
                   + json.dumps(spec).encode() + b"\r\n--B\r\nContent-Disposition: form-data;"
                   b' name="blob"; filename="' + spec["files"][0]["sha256"].encode()
                   + b'"\r\n\r\n')
            for i in range(0, len(big), 256 * 1024):
                yield big[i:i + 256 * 1024]
            yield b"\r\n--B--\r\n"

        try:
            r = c.post("/api/v1/models/distill/versions", content=chunks(),
                       headers={"content-type": "multipart/form-data; boundary=B"})
            _check_error(r, 413, "TooLarge")
        except httpx.TransportError:
            pass  # the server may close while we are still sending; it stored nothing either


def test_client_disconnecting_mid_upload_stores_nothing(guarded, upload):
    data = b"\1" * (3 * 1024 * 1024)
    spec = upload.spec([("m.onnx", data)], version="2.0.0")
    head = (b'--B\r\nContent-Disposition: form-data; name="spec"\r\n\r\n'
            + json.dumps(spec).encode() + b'\r\n--B\r\nContent-Disposition: form-data; name="blob";'
            b' filename="' + spec["files"][0]["sha256"].encode() + b'"\r\n\r\n')
    total = len(head) + len(data) + len(b"\r\n--B--\r\n")
    s = socket.create_connection(("127.0.0.1", guarded.server.port))
    s.sendall(b"POST /api/v1/models/distill/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Authorization: Bearer " + guarded.tokens["writer"].encode() + b"\r\n"
              b"Content-Type: multipart/form-data; boundary=B\r\n"
              b"Content-Length: " + str(total).encode() + b"\r\n\r\n" + head + data[:2_000_000])
    deadline = time.monotonic() + 10
    while not list(guarded.hub.root.glob(".tmp-upload-*/blobs/*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(guarded.hub.root.glob(".tmp-upload-*/blobs/*")), "the upload was in flight"
    s.close()  # the client goes away with a third of the file unsent
    # The guarded fixture waits for the staging folder to go and compares the hub.
    with guarded.client("reader") as c:
        assert c.get("/api/v1/resolve", params={"ref": "distill@2.0.0"}).status_code == 404


def test_auth_failures_leave_the_hub_alone(guarded, upload):
    data = b"w" * 100
    spec = upload.spec([("m.onnx", data)], version="2.0.0")
    with guarded.client(None) as c:
        _check_error(upload.post(c, "distill", spec, upload.blobs(data)), 401, "Unauthenticated")
    with guarded.client("reader") as c:
        _check_error(upload.post(c, "distill", spec, upload.blobs(data)), 403, "PermissionDenied")
    with guarded.client("distill-writer") as c:
        _check_error(upload.post(c, "lora", spec, upload.blobs(data)), 403, "PermissionDenied")
