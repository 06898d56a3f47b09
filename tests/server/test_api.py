"""The read API on the real server: records, manifests, and downloads with ETag and Range."""

from __future__ import annotations

import hashlib

from sentenialx.hub.manifest import Manifest


def test_models_versions_resolve(served):
    with served.client("reader") as c:
        models = c.get("/api/v1/models").json()
        assert [m["model"] for m in models] == ["distill", "lora", "teacher"]
        assert models[0]["aliases"] == {"production": "1.1.0", "staging": "1.1.0"}
        vs = c.get("/api/v1/models/distill/versions").json()
        assert [v["version"] for v in vs] == ["1.0.0", "1.1.0"]
        assert vs[1]["aliases"] == ["production", "staging"]
        for ref, want in [("distill", "1.1.0"), ("distill@production", "1.1.0"),
                          ("distill@^1.0", "1.1.0"), ("distill@~1.0", "1.0.0"),
                          ("distill@1.0.0", "1.0.0")]:
            r = c.get("/api/v1/resolve", params={"ref": ref})
            assert r.status_code == 200, r.text
            assert r.json()["version"] == want
        digest = served.hub.resolve("distill@1.0.0").digest
        r = c.get("/api/v1/resolve", params={"ref": f"distill@sha256:{digest[:10]}"})
        assert r.json()["version"] == "1.0.0"


def test_version_manifest_metadata_events(served):
    hub = served.hub
    info = hub.resolve("distill@1.1.0")
    with served.client("reader") as c:
        v = c.get("/api/v1/models/distill/versions/1.1.0").json()
        assert v["digest"] == info.digest and len(v["files"]) == 4
        m = c.get("/api/v1/models/distill/versions/1.1.0/manifest").json()
        assert m["digest"] == info.digest
        assert Manifest.from_dict({"schema": m["schema"], "files": m["files"]}).digest == info.digest
        meta = c.get("/api/v1/models/distill/versions/1.1.0/metadata").json()
        assert meta["metadata"]["metrics"]["accuracy"] == 0.93
        assert meta["lineage"]["parents"][0]["model"] == "teacher"
        al = c.get("/api/v1/models/distill/aliases").json()
        assert {a["alias"] for a in al} == {"production", "staging"}
        hist = c.get("/api/v1/models/distill/aliases/history", params={"alias": "production"})
        assert [h["version"] for h in hist.json()] == ["1.0.0", "1.1.0"]
        evs = c.get("/api/v1/events").json()
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
        assert c.get("/api/v1/events", params={"model": "lora"}).json()[0]["kind"] == "register"
        who = c.get("/api/v1/whoami").json()
        assert who["name"] == "reader" and who["scope"] == "read"


def test_download_etag_range_conditional(served):
    hub = served.hub
    info = hub.resolve("distill@1.1.0")
    w = hub.weights_entry(info)
    data = (hub.root / "distill" / w.path).read_bytes()
    url = f"/api/v1/models/distill/versions/1.1.0/files/{w.path}"
    etag = f'"{w.sha256}"'
    with served.client("reader") as c:
        r = c.get(url)
        assert r.status_code == 200 and r.content == data
        assert r.headers["etag"] == etag
        assert r.headers["accept-ranges"] == "bytes"
        assert hashlib.sha256(r.content).hexdigest() == w.sha256
        assert c.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert c.get(url, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
        assert c.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        r = c.get(url, headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == data[100:200]
        assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
        r = c.get(url, headers={"Range": "bytes=-50"})
        assert r.status_code == 206 and r.content == data[-50:]
        r = c.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
        assert r.content == data[-10:]
        r = c.get(url, headers={"Range": "bytes=1000-", "If-Range": etag})
        assert r.status_code == 206 and r.content == data[1000:]
        r = c.get(url, headers={"Range": "bytes=1000-", "If-Range": '"stale"'})
        assert r.status_code == 200 and r.content == data
        r = c.get(url, headers={"Range": f"bytes={len(data)}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
        r = c.get(url, headers={"Range": "bytes=0-1,5-6"})  # several ranges: whole file
        assert r.status_code == 200 and r.content == data
        r = c.head(url)
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(len(data)) and r.headers["etag"] == etag
        folder = hub.resolve("lora")
        cfg = next(f for f in folder.files if f.path.endswith("adapter_config.json"))
        r = c.get(f"/api/v1/models/lora/versions/1.0.0/files/{cfg.path}")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == cfg.sha256
        assert r.headers["content-type"] == "application/octet-stream"
        assert "sandbox" in r.headers["content-security-policy"]


def test_openapi_describes_every_endpoint(served):
    with served.client(None) as c:
        spec = c.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/v1/models", "/api/v1/resolve", "/api/v1/models/{model}/versions",
              "/api/v1/models/{model}/versions/{version}/files/{path}",
              "/api/v1/models/{model}/versions/{version}/manifest",
              "/api/v1/models/{model}/aliases/{alias}", "/api/v1/events", "/api/v1/verify"):
        assert p in paths, p
    assert "post" in paths["/api/v1/models/{model}/versions"]
    assert "delete" in paths["/api/v1/models/{model}/versions/{version}"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert not any(p.startswith("/models") for p in paths)  # web pages stay out of the API


def test_verify_endpoint(served):
    with served.client("admin") as c:
        r = c.post("/api/v1/verify", json={"ref": "distill@1.1.0", "deep": True})
        assert r.status_code == 200 and r.json()["ok"] and r.json()["hashed"] == 4
        assert c.post("/api/v1/verify", json={}).json()["versions"] == 4
    with served.client("reader") as c:
        r = c.post("/api/v1/verify", json={"ref": "distill@1.1.0", "deep": False})
        assert r.status_code == 200 and r.json()["ok"]


def test_upload_with_an_idempotency_key_is_safe_to_repeat(served, upload, state) -> None:
    """A repeated upload with the same Idempotency-Key answers 201 with the same version.

    The answer replays the first one (same status, same body) so a client that lost the
    first answer cannot tell, and needs not; the same key with other content is 409.
    """
    data = b"idempotent weights" * 100
    spec = upload.spec([("student.onnx", data)], bump="minor")
    headers = {"Idempotency-Key": "upload-1"}
    with served.client("writer") as c:
        r1 = upload.post(c, "distill", spec, upload.blobs(data), headers=headers)
        assert r1.status_code == 201, r1.text
        after_first = state(served.hub)
        r2 = upload.post(c, "distill", spec, upload.blobs(data), headers=headers)
        assert r2.status_code == 201, r2.text
        assert r2.json() == r1.json() and r2.headers["location"] == r1.headers["location"]
        assert state(served.hub) == after_first
        # The retry may skip blobs the hub now holds; it is still the same request.
        assert upload.post(c, "distill", spec, [], headers=headers).json() == r1.json()
        other = b"other weights" * 100
        r3 = upload.post(c, "distill", upload.spec([("student.onnx", other)], bump="minor"),
                         upload.blobs(other), headers=headers)
        assert r3.status_code == 409, r3.text
        err = r3.json()["error"]
        assert err["type"] == "Conflict" and "'upload-1'" in err["message"]
        assert "\n" not in err["message"]
        assert state(served.hub) == after_first
        r4 = upload.post(c, "distill", spec, upload.blobs(data),
                         headers={"Idempotency-Key": "has space"})
        assert r4.status_code == 400 and state(served.hub) == after_first
