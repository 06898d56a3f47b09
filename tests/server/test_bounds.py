"""Bounded input (issue 9, item 3): oversized or absurd inputs are 4xx with a JSON error and
store nothing; the one error table round-trips every class with its facts; the front ends
import no storage layer."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx
import pytest

from sentenialx.hub import bounds
from sentenialx.hub import errors as E


def _error(r: httpx.Response, status: int | tuple[int, ...]) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["type"] and err["message"] and "\n" not in err["message"]
    return err


def test_absurd_ranges_and_version_segments_are_4xx(guarded):
    with guarded.client("reader") as c:
        url = "/api/v1/models/distill/versions/1.1.0/files/threat_student_v1.1.0.onnx"
        for rng in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000):
            err = _error(c.get(url, headers={"Range": rng}), 416)
            assert err["type"] == "RangeNotSatisfiable"
        assert c.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
        for v in ("9" * 5000 + ".0.0", "99999999999999999999999.0.0", "1.0.0-" + "x" * 5000):
            err = _error(c.get(f"/api/v1/models/distill/versions/{v}"), 400)
            assert err["type"] == "InvalidVersion"
        _error(c.get("/api/v1/resolve", params={"ref": "distill@" + "9" * 250 + ".0.0"}), 400)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def test_bad_upload_specs_are_4xx_and_store_nothing(guarded, upload):
    data = b"some weights"
    with guarded.client("writer") as c:
        def post(spec, blobs=None, *, model="distill"):
            return upload.post(c, model, spec, upload.blobs(data) if blobs is None else blobs)

        base = upload.spec([("m.onnx", data)])
        raw = json.dumps(base)
        # A spec nested 100k deep, integers too long for str(), non-finite numbers.
        for text in (raw[:-1] + ', "metadata": {"x": ' + _deep(100_000) + "}}",
                     raw[:-1] + ', "metadata": {"metrics": {"a": ' + "9" * 4300 + "}}}",
                     raw[:-1] + ', "metadata": {"metrics": {"a": 1e400}}}',
                     raw[:-1] + ', "metadata": {"metrics": {"a": NaN}}}'):
            err = _error(post(text.encode()), 400)
            assert err["message"].startswith("spec:")
        _error(post(b"{" * 3_000_000 + b"}" * 3_000_000), 413)  # larger than the upload limit
        for extra in ({"version": "99999999999999999999999.0.0"},
                      {"metadata": json.loads('{"x": ' + _deep(900) + "}")},
                      {"metadata": {"metrics": {"accuracy": 2**63}}},
                      {"metadata": {"x": "y" * (bounds.MAX_META_BYTES + 1)}}):
            _error(post(upload.spec([("m.onnx", data)], **extra)), 400)
        # Names the filesystem or the hub's own sidecars cannot take.
        long_name = "a" * 300 + ".onnx"
        _error(post(upload.spec([(long_name, data)])), 400)
        deep_path = "/".join(["d" * 100] * 45) + "/w.bin"
        _error(post(upload.spec([(deep_path, data)], layout="dir", name="tok")), 400)
        _error(post(upload.spec([("a", data), ("a/b", data)], layout="dir", name="tok")), 400)
        for sidecar in ("x.sha256", "x.sig", "x.SHA256"):
            _error(post(upload.spec([(sidecar, data)])), 400)
        err = _error(post(upload.spec([("m.onnx", data)],
                                      attachments=[("other", "meta.json", data)])), 400)
        assert "sidecar" in err["message"]


def test_limits_accept_what_they_should(served, upload):
    data = b"in-bounds weights"
    meta = {"metrics": {"accuracy": 0.97, "n": 2**63 - 1, "m": -(2**63) + 1},
            "nest": json.loads("[" * (bounds.MAX_META_DEPTH - 1) + "]" * (bounds.MAX_META_DEPTH - 1))}
    with served.client("writer") as c:
        r = upload.post(c, "distill", upload.spec([("a" * 90 + ".onnx", data)], metadata=meta,
                                                  version="2147483647.0.0"),
                        upload.blobs(data))
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["metrics"]["n"] == 2**63 - 1


# -- the bounds, unit by unit -------------------------------------------------------------------
def test_check_metadata():
    assert bounds.check_metadata({"a": [1, 2.5, None, True, "x"]}) == {"a": [1, 2.5, None, True, "x"]}
    for bad in ({"a": 2**63}, {"a": -(2**63)}, {"a": float("nan")}, {"a": float("inf")},
                {"a": object()}, {1: "x"}, json.loads("[" * 40 + "]" * 40), [],
                {"a": json.loads("[" * 40 + "]" * 40)}, {"x": "y" * (2 * 1024 * 1024)}):
        with pytest.raises(E.InvalidInput):
            bounds.check_metadata(bad)


def test_parse_json_bounded():
    assert bounds.parse_json_bounded(b'{"a": [1, 2]}', max_bytes=100, max_depth=3) == {"a": [1, 2]}
    with pytest.raises(E.TooLarge):
        bounds.parse_json_bounded(b"[]" * 100, max_bytes=100, max_depth=3)
    for bad in (b"[[[[]]]]", _deep(100_000).encode(), b"[" + b"9" * 5000 + b"]", b"[1e999]",
                b"[NaN]", b"[Infinity]", b"\xff", b"{", b"[1,]"):
        with pytest.raises(E.InvalidInput):
            bounds.parse_json_bounded(bad, max_bytes=10**7, max_depth=3)


def test_check_relpaths_and_sidecars():
    assert bounds.check_relpaths(["a/b", "a/c", "d"]) == ["a/b", "a/c", "d"]
    for bad in (["a", "a/b"], ["a/b/c", "a/b"], ["x" * 256], ["/".join(["d" * 200] * 21)],
                ["a", "a"], ["é" * 128]):
        with pytest.raises(E.InvalidName):
            bounds.check_relpaths(bad)
    with pytest.raises(E.InvalidName):
        bounds.check_relpaths(["x" * 250], margin=10)
    bounds.check_sidecars(["m_v1.0.0.onnx", "m_v1.0.0_log.jsonl"], stem="m_v1.0.0")
    for p in ("m_v1.0.0.sha256", "m_v1.0.0.sig", "m_v1.0.0_meta.json"):
        with pytest.raises(E.InvalidName):
            bounds.check_sidecars([p], stem="m_v1.0.0")
    assert bounds.check_version_text("1.2.3") == "1.2.3"
    for bad in ("1" * 19 + ".0.0", "1.0.0-" + "a" * 300):
        with pytest.raises(E.InvalidVersion):
            bounds.check_version_text(bad)


# -- one error table both ways ----------------------------------------------------------------
def _sample(cls: type[E.HubError]) -> E.HubError:
    facts = {"what": "version", "name": "distill@9.9.9", "path": "w.onnx", "expected": "a" * 64,
             "actual": "b" * 64, "version": "distill@1.0.0", "found_keys": ("k1", "k2"),
             "trusted_keys": ("k3",), "offending": "os.system", "failed": ("metric:accuracy",),
             "where": "s3://bucket/prefix"}
    if cls is E.MissingDependency:
        return E.MissingDependency("onnxruntime", "onnx")
    wanted = {f: facts[f] for f in dict((c, f) for c, _, f in E.HTTP_ERRORS)[cls]}
    return cls(f"{cls.__name__} happened", **wanted)


@pytest.mark.parametrize("cls", [c for c, _, _ in E.HTTP_ERRORS], ids=lambda c: c.__name__)
def test_every_error_round_trips_with_its_facts(cls):
    exc = _sample(cls)
    status, body = E.to_http(exc)
    assert status == E.HTTP_STATUS[cls] and body["error"]["type"] == cls.__name__
    back = E.from_http(status, json.loads(json.dumps(body)))
    assert type(back) is cls and str(back) == str(exc)
    for _c, _s, facts in E.HTTP_ERRORS:
        if _c is cls:
            for f in facts:
                assert getattr(back, f) == getattr(exc, f), f


def test_from_http_treats_the_body_as_untrusted():
    back = E.from_http(404, {"error": {"type": "SystemExit", "message": "x\x1b[2Jy" + "z" * 9000,
                                       "facts": {"name": ["a"] * 1000, "what": 7}}})
    assert type(back) is E.NotFound and "\x1b" not in str(back) and len(str(back)) <= 2000
    assert back.what == "" and back.name == ", ".join(["a"] * 100)
    assert type(E.from_http(503, "not a dict")) is E.StoreUnavailable
    assert type(E.from_http(418, {"error": []})) is E.HubError
    assert type(E.from_http(422, {"error": {"type": "ValidationError", "message": "m"}})) \
        is E.InvalidInput
    g = E.from_http(409, {"error": {"type": "GateFailed", "message": "m",
                                    "facts": {"failed": "metric:accuracy"}}})
    assert isinstance(g, E.GateFailed) and g.failed == ("metric:accuracy",)
    assert E.http_status(E.InvalidName("x")) == 400 and E.http_status(E.Unauthenticated("x")) == 401


def test_the_server_answers_with_the_table_and_the_client_reads_it_back(served):
    from sentenialx.hub.hub import Hub

    remote = Hub.served(served.url, token=served.tokens["reader"])
    try:
        with pytest.raises(E.NotFound) as info:
            remote.resolve("distill@9.9.9")
        assert info.value.what == "version" and info.value.name == "distill@9.9.9"
        with pytest.raises(E.InvalidVersion):
            remote.resolve("distill@" + "9" * 30 + ".0.0")
    finally:
        remote.close()


# -- layering ---------------------------------------------------------------------------------
FORBIDDEN = ("sqlalchemy", "boto3", "botocore", "sentenialx.hub.index", "sentenialx.hub.store")


def test_front_ends_import_no_storage_layer():
    src = Path(__file__).resolve().parents[2] / "src" / "sentenialx" / "hub"
    bad = []
    for folder in ("server", "cli"):
        for py in sorted((src / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(py.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                bad += [f"{py.name}: {n}" for n in names
                        if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
