"""A fuzz pass over the upload spec (issue 9, "Done when"): no 5xx, and a refusal stores nothing.

Hypothesis builds upload requests that keep most of a valid spec's structure and put
hostile values in it: JSON nested thousands deep or megabytes large, names and paths
that no filesystem takes, numbers no reader can hold, wrong types, missing and extra
fields, and blobs that do not match what the spec declares. Each request goes to the
real app over a real hub (in process, through Starlette's TestClient, so an exception
that escapes the app fails the example with its own traceback). For every example:

- the status is below 500;
- an error answers the server's JSON error body, ``{"error": {"type", "message"}}``;
- an error leaves the hub exactly as it was (:func:`conftest.hub_state`) with no
  staging folder behind;
- an accepted version reads back with 200 from the API and the web pages, so no value
  that got in can break a reader later.

Deep and huge values are built as JSON text by string operations, never as nested
Python objects, so neither hypothesis nor ``json.dumps`` recurses. Runs are derandomized
and use no example database: the same examples every time. schemathesis covers the
OpenAPI surface in test_schemathesis.py; this file covers what the schema cannot say
about the ``spec`` part.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from sentenialx.hub.hub import Hub

from .conftest import build_sample, hub_state

# The TestClient nags about httpx vs httpx2 on import; the transport is not under test.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

API = "/api/v1"
MAX_UPLOAD = 8 * 1024 * 1024
"""Above the spec limit (4 MiB), so a huge spec reaches the spec parser, not only the body cap."""
SCALE = int(os.environ.get("SENTENIALX_FUZZ_SCALE", "1"))
"""Set above 1 for a longer hunt with fresh random examples; 1 (the default) is reproducible."""
SETTINGS = settings(
    max_examples=250, deadline=None, derandomize=SCALE == 1, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@dataclass
class Target:
    """The app under test, its hub and a write token."""

    hub: Hub
    client: Any
    headers: dict[str, str]
    statuses: Counter[int]


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    from starlette.testclient import TestClient

    from sentenialx.hub.server import create_app

    hub = build_sample(tmp_path / "hub", tmp_path / "inputs")
    secret, _ = hub.tokens.create("fuzzer", scope="write")
    app = create_app(hub, max_upload_bytes=MAX_UPLOAD)
    statuses: Counter[int] = Counter()
    try:
        with TestClient(app, raise_server_exceptions=True) as client:
            yield Target(hub, client, {"Authorization": f"Bearer {secret}"}, statuses)
        assert hub.fsck().ok
    finally:
        hub.close()
    print(f"\nupload fuzz statuses: {dict(sorted(statuses.items()))}")


@pytest.fixture
def live_target(served: Any) -> Iterator[Target]:
    """The same checks over real HTTP: the conftest's uvicorn on loopback (4 MiB upload cap)."""
    statuses: Counter[int] = Counter()
    with served.client(None) as client:
        yield Target(served.hub, client, served.headers("writer"), statuses)
    assert served.hub.fsck().ok
    print(f"\nloopback upload fuzz statuses: {dict(sorted(statuses.items()))}")


# -- raw JSON text ----------------------------------------------------------------------------
class Raw:
    """A JSON fragment spliced into the spec as text (deep, huge or not valid JSON)."""

    _n = 0

    def __init__(self, text: str) -> None:
        Raw._n += 1
        self.text = text
        self.mark = f"\x00raw{Raw._n}\x00"


def encode(value: Any) -> str:
    """JSON text of ``value``; each :class:`Raw` inside is replaced by its own text."""
    raws: dict[str, str] = {}

    def walk(v: Any) -> Any:
        # Python values here are shallow (the deep ones are Raw), so recursion is safe.
        if isinstance(v, Raw):
            raws[json.dumps(v.mark)] = v.text
            return v.mark
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    text = json.dumps(walk(value))
    if raws:
        text = re.sub("|".join(re.escape(k) for k in raws), lambda m: raws[m.group()], text)
    return text


def deep(n: int, kind: str) -> str:
    if kind == "list":
        return "[" * n + "]" * n
    if kind == "dict":
        return '{"a":' * n + "1" + "}" * n
    return '[{"k":' * (n // 2) + "0" + "}]" * (n // 2)


DEPTHS = st.sampled_from([1, 30, 31, 32, 33, 34, 35, 100, 900, 1000, 5000, 100_000])
deep_json = st.builds(lambda n, k: Raw(deep(n, k)), DEPTHS, st.sampled_from(["list", "dict", "mix"]))
huge_json = st.one_of(
    st.builds(lambda n: Raw("{" + ",".join(f'"k{i}":{i}' for i in range(n)) + "}"),
              st.sampled_from([1000, 50_000, 400_000])),
    st.builds(lambda n, c: Raw(json.dumps(c * n)), st.sampled_from([1000, 1 << 20, 3 << 20]),
              st.sampled_from(["x", "é", "\u2028", "\\", '"', "\x00"])),
    st.builds(lambda n: Raw("[" + ",".join(["1e308"] * n) + "]"), st.sampled_from([10, 100_000])),
)
odd_number = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) + 1, 2**64]).map(str),
    st.integers(19, 5000).map(lambda n: "9" * n),
    st.integers(19, 5000).map(lambda n: "-" + "1" * n),
    st.sampled_from(["0", "-0", "1.0", "-1", "1.5", "1e308", "1e309", "-1e400", "1e-400",
                     "1E+2", "0.1e1", "NaN", "-NaN", "Infinity", "-Infinity", "true", "false",
                     "null", '"12"', "[]", "{}", "0x10", "01", "+1", ".5", "1.", "- 1",
                     "1" + "0" * 400 + ".0", "0." + "0" * 5000 + "1"]),
).map(Raw)

plain_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63) + 1, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12)
any_value = st.one_of(plain_json, odd_number, deep_json, st.just(Raw("[1,]")),
                      st.just(Raw("{")), st.just(Raw("'x'")))

metadata = st.one_of(
    st.just({}),
    st.just({"metrics": {"accuracy": 0.91}, "framework": "onnx"}),
    st.dictionaries(st.text(max_size=12), any_value, max_size=5),
    st.builds(lambda v: {"metrics": {"accuracy": v}}, odd_number),
    st.builds(lambda v: {"x": v}, deep_json),
    st.builds(lambda v: {"x": v}, huge_json),
    st.sampled_from([None, [], "meta", 7, True, Raw("[{}]")]),
)


# -- names, paths, versions --------------------------------------------------------------------
HOSTILE_NAMES = [
    "", ".", "..", "../x.onnx", "a/../../etc/passwd", "/etc/passwd", "/abs.onnx", "C:\\w.onnx",
    "a\\b.onnx", "a\x00b.onnx", "a\nb.onnx", "\x1b[2Jx.onnx", "x\u202egnp.onnx", "x\ufeff.onnx",
    "x\ud800.onnx", " ", "a/", "a//b", "./a", "~", "con", "nul.txt", "registry.json", "trust",
    "x.sha256", "x.sig", "x.SHA256", "x.Sig", "x_meta.json", "meta.json", "fuzz_v1.0.0.sha256",
    "fuzz_v1.0.0_meta.json", "m.onnx.tmp", "é" * 128 + ".bin", "\U0001f600" * 64, "m.onnx",
]
valid_name = st.from_regex(r"[a-z][a-z0-9_]{0,10}\.(onnx|bin|pt|json)", fullmatch=True)
long_component = st.builds(lambda n, c: c * n + ".bin", st.integers(200, 5000),
                           st.sampled_from(["a", "é", "\u4e00"]))
long_path = st.builds(lambda k, m: "/".join(["d" * k] * m) + "/w.bin",
                      st.integers(1, 255), st.integers(2, 600))
file_name = st.one_of(valid_name, valid_name, st.sampled_from(HOSTILE_NAMES), long_component,
                      long_path, st.text(min_size=1, max_size=30))

VERSIONS = ["1.0.0", "3.0.0", "0.0.0", "v2.0.0", "1.0.0-rc.1", "1.0.0+build.7", "1.1.0",
            "99999999999999999999999.0.0", "9223372036854775807.0.0", "2147483647.0.0",
            "999999999999999999.0.0", "1.0", "1", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+",
            " 1.0.0 ", "1.0.0\n", "\u0661.\u0660.\u0660", "1.0.0-\u0661\u0662", "latest", "",
            "1.0.0-" + "x" * 5000, "1.0.0-" + "x" * 200, "9" * 5000 + ".0.0"]
version_value = st.one_of(st.sampled_from(VERSIONS),
                          st.builds(lambda n: "1.0.0-" + "a" * n, st.integers(1, 400)),
                          st.sampled_from([None, 1, 1.0, True, [], {}]), odd_number)
ref_text = st.sampled_from(["teacher=teacher@1.0.0", "teacher@1.0.0", "base=distill@1.1.0",
                            "distill@production", "nope@1.0.0", "teacher@9.9.9", "=teacher@1.0.0",
                            "teacher", "../x", "a=b=c", "teacher@sha256:zz", "x" * 301,
                            "teacher@" + "9" * 300 + ".0.0", "t=teacher@^1"])
parents = st.one_of(st.just([]), st.lists(ref_text, max_size=3),
                    st.lists(st.just("teacher=teacher@1.0.0"), min_size=101, max_size=101),
                    st.sampled_from([None, "teacher@1.0.0", {"a": 1}, [1], [None]]))
alias = st.one_of(st.none(), st.sampled_from(["staging", "qa", "production", "latest", "..", "",
                                              "a" * 200, "Prod uction", "x/y", "1.0.0"]),
                  st.sampled_from([1, [], {}]))
maybe_str = st.one_of(st.none(), st.text(max_size=10), st.sampled_from([1, [], {}, True]))
hex64 = st.one_of(st.binary(max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()),
                  st.sampled_from(["", "0" * 63, "G" * 64, "A" * 64, "0" * 65]))


# -- one upload request ----------------------------------------------------------------------
POOL = [b"fuzz weights " * 50, b"w", bytes(range(256)) * 40, b""]
ASPECTS = ("layout", "paths", "entries", "attachments", "fields", "shape", "encoding", "blobs",
           "model")
"""Where a request may be hostile; each example picks a few (often none) and keeps the rest valid."""


@st.composite
def declared(draw: Any, path: Any, key: str, hostile: bool) -> tuple[dict[str, Any], bytes]:
    """A files[] or attachments[] entry and the bytes it declares."""
    data = draw(st.sampled_from(POOL)) + draw(st.binary(max_size=6))
    entry: dict[str, Any] = {key: path, "size": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()}
    if not hostile:
        return entry, data
    mode = draw(st.sampled_from(["size", "sha", "type", "missing", "extra"]))
    if mode == "size":
        entry["size"] = draw(st.one_of(st.sampled_from([len(data) + 1, len(data) - 1, -1,
                                                        2**64, MAX_UPLOAD * 4]), odd_number))
    elif mode == "sha":
        entry["sha256"] = draw(st.one_of(hex64, st.just(entry["sha256"].upper()),
                                         st.just(entry["sha256"][:-1])))
    elif mode == "type":
        field = draw(st.sampled_from(sorted(entry)))
        entry[field] = draw(st.sampled_from([None, [], {}, True, 1.5, "12", 12]))
    elif mode == "missing":
        del entry[draw(st.sampled_from(sorted(entry)))]
    else:
        entry[draw(st.sampled_from(["mode", "role", "path", "link", "__proto__"]))] = \
            draw(any_value)
    return entry, data


valid_version = st.one_of(
    st.builds("{}.{}.{}".format, st.integers(0, 10**9), st.integers(0, 999), st.integers(0, 999)),
    st.builds("{}.0.0-rc.{}".format, st.integers(4, 10**6), st.integers(0, 99)))
VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "version": valid_version, "bump": st.sampled_from(["patch", "minor", "major"]),
    "metadata": st.one_of(st.dictionaries(st.text(max_size=12), plain_json, max_size=5),
                          st.builds(lambda n: {"x": Raw(deep(n, "list"))}, st.integers(1, 31))),
    "parents": st.sampled_from([[], ["teacher=teacher@1.0.0"], ["base=distill@1.1.0"]]),
    "alias": st.sampled_from([None, "staging", "qa"]), "data_digest": st.text(max_size=20),
}
HOSTILE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(file_name, maybe_str), "version": version_value,
    "bump": st.sampled_from(["x", 1, None, ""]), "metadata": metadata, "parents": parents,
    "alias": alias, "data_digest": maybe_str, "digest": hex64,
}


@st.composite
def upload_request(draw: Any) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """(model, spec part bytes, blob parts): mostly valid, hostile in a few chosen aspects."""
    hostile = set(draw(st.permutations(ASPECTS))[:draw(st.integers(0, 3))])
    if "layout" in hostile:
        layout = draw(st.sampled_from([None, "folder", 1, ["file"], "FILE", ""]))
    else:
        layout = draw(st.sampled_from(["file", "dir"]))
    n_files = draw(st.integers(1, 4)) if layout == "dir" or "layout" in hostile else 1
    if "paths" in hostile:
        folder = st.one_of(file_name, st.sampled_from(["a", "a/b", "a/b/c", "A", "a/B"]))
        paths = [draw(folder if layout == "dir" else file_name) for _ in range(n_files)]
        if draw(st.booleans()):
            paths.append(paths[0])  # listed twice
    else:
        paths = [f"d{i}/{draw(valid_name)}" if layout == "dir" else draw(valid_name)
                 for i in range(n_files)]
    files = [draw(declared(p, "path", "entries" in hostile and draw(st.booleans())))
             for p in paths]
    atts = []
    for i in range(draw(st.integers(0, 2))):
        bad = "attachments" in hostile
        name = draw(st.one_of(st.sampled_from(["meta.json", "x.sig", "x.sha256"]), file_name)
                    if bad else st.sampled_from(["train.log", "report.md", "loss.png"]))
        entry, data = draw(declared(f"{i}{name}" if not bad else name, "name",
                                    bad and draw(st.booleans())))
        entry["role"] = draw(st.sampled_from(["weights", "", "LOG", 1, None, "log"]) if bad
                             else st.sampled_from(["log", "chart", "report", "config", "other"]))
        atts.append((entry, data))
    spec: dict[str, Any] = {"files": [e for e, _ in files]}
    if layout is not None:
        spec["layout"] = layout
    if atts:
        spec["attachments"] = [e for e, _ in atts]
    if layout == "dir":
        spec["name"] = "fuzzdir"
    for key in draw(st.lists(st.sampled_from(sorted(VALID_FIELDS)), unique=True, max_size=4)):
        spec[key] = draw(VALID_FIELDS[key])
    if "version" in spec and "bump" in spec:
        del spec["bump"]
    if "fields" in hostile:
        for key in draw(st.lists(st.sampled_from(sorted(HOSTILE_FIELDS)), unique=True,
                                 min_size=1, max_size=3)):
            spec[key] = draw(HOSTILE_FIELDS[key])
    shape = draw(st.sampled_from(["extra-key", "wrong-type", "files-type", "truncated",
                                  "not-json", "bom", "dupkey"])) if "shape" in hostile else ""
    if shape == "extra-key":
        spec[draw(st.sampled_from(["Files", "token", "model", "x" * 300]))] = draw(any_value)
    elif shape == "files-type":
        spec["files"] = draw(st.sampled_from([None, {}, [], "m.onnx", [[]], [None], 1]))
    text = encode(spec)
    if shape == "wrong-type":
        text = draw(st.sampled_from(["[" + text + "]", "null", "1", '"spec"', "[]", "true"]))
    elif shape == "truncated":
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    elif shape == "not-json":
        text = draw(st.sampled_from(["", "hello", "{'files': []}", "<xml/>", "\x00", "{}}",
                                     "/* */ {}", '{"files": [],}']))
    elif shape == "bom":
        text = "\ufeff" + text
    elif shape == "dupkey":
        text = '{"files": 7, ' + text[1:]
    raw = text.encode("utf-8", "surrogatepass")
    if "encoding" in hostile:
        raw = draw(st.sampled_from([b"\xff\xfe" + raw, raw + b"\xc3", b"\xed\xa0\x80",
                                    raw.decode("utf-8", "replace").encode("utf-16")]))
    # The blobs: as declared, or wrong bytes under a declared name, missing, extra or twice.
    blobs = [(hashlib.sha256(d).hexdigest(), d) for _e, d in files + atts]
    mode = draw(st.sampled_from(["none", "drop", "wrong", "extra", "twice", "upper"])) \
        if "blobs" in hostile else ""
    if mode == "none":
        blobs = []
    elif mode == "drop" and blobs:
        blobs.pop(draw(st.integers(0, len(blobs) - 1)))
    elif mode == "wrong" and blobs:
        i = draw(st.integers(0, len(blobs) - 1))
        blobs[i] = (blobs[i][0], blobs[i][1] + draw(st.binary(min_size=1, max_size=4)))
    elif mode == "extra":
        blobs.append((hashlib.sha256(b"undeclared").hexdigest(), b"undeclared"))
    elif mode == "twice" and blobs:
        blobs.append(blobs[0])
    elif mode == "upper":
        blobs = [(sha.upper(), d) for sha, d in blobs]
    model = draw(st.sampled_from(["distill", "teacher", "lora", "Fuzz-2", "fuzz.x"])
                 if "model" in hostile else st.just("fuzz"))
    return model, raw, blobs


# -- the checks -------------------------------------------------------------------------------
def post(t: Target, model: str, raw: bytes, blobs: list[tuple[str, bytes]]) -> Any:
    parts: list[tuple[str, Any]] = [("spec", (None, raw, "application/json"))]
    parts += [("blob", (sha, data, "application/octet-stream")) for sha, data in blobs]
    return t.client.post(f"{API}/models/{model}/versions", files=parts, headers=t.headers)


def assert_error_body(r: Any) -> None:
    assert r.headers["content-type"].startswith("application/json"), r.text[:300]
    err = r.json()["error"]
    assert isinstance(err["type"], str) and err["type"]
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in r.text and 'File "' not in r.text


def assert_reads_back(t: Target, doc: dict[str, Any]) -> None:
    """An accepted version is readable everywhere a reader looks: values in are values out."""
    model, version = doc["model"], doc["version"]
    base = f"{API}/models/{model}/versions"
    for url in (base, f"{base}/{version}", f"{base}/{version}/manifest",
                f"{base}/{version}/metadata", f"{API}/models", f"{API}/state",
                f"{API}/models/{model}/aliases"):
        r = t.client.get(url, headers=t.headers)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
    r = t.client.get(f"{API}/resolve", params={"ref": f"{model}@{version}"}, headers=t.headers)
    assert r.status_code == 200, r.text[:300]
    html = {**t.headers, "Accept": "text/html"}
    for url in (f"/models/{model}", f"/models/{model}/versions/{version}"):
        r = t.client.get(url, headers=html)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])


def no_staging_left(hub: Hub) -> None:
    # Over loopback the server may still be removing a refused upload's staging folder.
    deadline = time.monotonic() + 10
    while list(hub.root.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(hub.root.glob(".tmp-*")), "a staging folder was left behind"


def check(t: Target, model: str, raw: bytes, blobs: list[tuple[str, bytes]]) -> None:
    note(f"model={model!r} spec[:300]={raw[:300]!r} ({len(raw)} bytes) blobs={len(blobs)}")
    before = hub_state(t.hub)
    r = post(t, model, raw, blobs)
    t.statuses[r.status_code] += 1
    assert r.status_code < 500, (r.status_code, r.text[:500])
    no_staging_left(t.hub)
    if r.status_code == 201:
        assert_reads_back(t, r.json())
        return
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert_error_body(r)
    assert hub_state(t.hub) == before, f"refused with {r.status_code} but the hub changed"


@settings(SETTINGS, max_examples=250 * SCALE)
@given(req=upload_request())
def test_fuzzed_upload_specs_get_no_5xx_and_refusals_store_nothing(target, req):
    check(target, *req)


@settings(SETTINGS, max_examples=40 * SCALE)
@given(req=upload_request())
def test_fuzzed_upload_specs_over_loopback_http(live_target, req):
    check(live_target, *req)


SLOTS = ["metadata", "metric", "size", "version", "parents", "files", "top"]


ISSUE_VALUES = [Raw(deep(900, "dict")), Raw(deep(100_000, "list")), Raw("9" * 4300),
                Raw(json.dumps("99999999999999999999999.0.0")),
                Raw(json.dumps("1.0.0-" + "x" * 5000)), Raw("NaN")]
"""The values issue 9 names: tried in every slot, whatever hypothesis draws besides."""


def _in_every_slot(test: Any) -> Any:
    for where in SLOTS:
        for value in ISSUE_VALUES:
            test = example(value=value, where=where)(test)
    return test


@settings(SETTINGS, max_examples=len(SLOTS) * len(ISSUE_VALUES) + 100 * SCALE)
@given(value=st.one_of(deep_json, huge_json, odd_number,
                       st.sampled_from(VERSIONS).map(lambda v: Raw(json.dumps(v)))),
       where=st.sampled_from(SLOTS))
@_in_every_slot
def test_deep_huge_and_odd_values_in_every_slot(target, value, where):
    """Each hostile value in each slot of an otherwise valid spec."""
    data = b"slot weights"
    sha = hashlib.sha256(data).hexdigest()
    entry: dict[str, Any] = {"path": "slot.onnx", "size": len(data), "sha256": sha}
    spec: dict[str, Any] = {"layout": "file", "files": [entry]}
    if where == "metadata":
        spec["metadata"] = value
    elif where == "metric":
        spec["metadata"] = {"metrics": {"accuracy": value}}
    elif where == "size":
        entry["size"] = value
    elif where == "version":
        spec["version"] = value
    elif where == "parents":
        spec["parents"] = value
    elif where == "files":
        spec["files"] = [entry, value]
    else:
        check(target, "fuzz", encode(value).encode("utf-8", "surrogatepass"), [(sha, data)])
        return
    check(target, "fuzz", encode(spec).encode("utf-8", "surrogatepass"), [(sha, data)])


@settings(SETTINGS, max_examples=100 * SCALE)
@example(comp=256, total=300, char="x", model="m", name="n", pre=0, n=1)
@example(comp=255, total=4097, char="x", model="m", name="n", pre=0, n=2)
@example(comp=191, total=900, char="\u00e9", model="M" * 100, name="N" * 100, pre=250, n=3)
@given(comp=st.sampled_from([1, 100, 150, 190, 191, 192, 200, 254, 255, 256]),
       total=st.sampled_from([50, 300, 850, 899, 900, 901, 1000, 4096, 4097]),
       char=st.sampled_from(["x", "\u00e9", "\u4e00", "\U0001f600"]),
       model=st.sampled_from(["m", "M" * 100]), name=st.sampled_from(["n", "N" * 100]),
       pre=st.sampled_from([0, 40, 200, 250]), n=st.integers(0, 10**9))
def test_names_and_paths_at_the_limits(target, comp, total, char, model, name, pre, n):
    """Folder paths with components and totals either side of the bounds, in bytes of UTF-8,
    beside the longest model, folder name and version: refused, or stored and readable."""
    part = char * max(1, comp // len(char.encode()))
    parts: list[str] = []
    while sum(len(p.encode()) + 1 for p in parts) + len(part.encode()) + 8 <= total:
        parts.append(part)
    data = f"limits {n}".encode()
    version = f"{n}.0.0" + ("-" + "r" * pre if pre else "")
    spec = {"layout": "dir", "name": name, "version": version,
            "files": [{"path": "/".join([*parts, f"w{n}.bin"]), "size": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()}]}
    check(target, model, encode(spec).encode(), [(hashlib.sha256(data).hexdigest(), data)])


CONFLICT_PATHS = ["a", "a/b", "a/b/c", "A", "b", "x.sha256", "x.sig", "x_meta.json",
                  "fuzzdir_v1.0.0.sha256", "fuzzdir_v1.0.0_meta.json", "a/x.sig", "m.onnx",
                  "m.ONNX", "a.b/c"]
SIDECAR_ATTACHMENTS = ["meta.json", "x.sig", "x.sha256", "log.txt", "META.json", "sig"]


@settings(SETTINGS, max_examples=80 * SCALE)
@example(paths=["a", "a/b"], atts=[], layout="dir")
@example(paths=["x.sha256"], atts=[], layout="file")
@example(paths=["m.onnx"], atts=["meta.json"], layout="file")
@given(paths=st.lists(st.sampled_from(CONFLICT_PATHS), min_size=1, max_size=4),
       atts=st.lists(st.sampled_from(SIDECAR_ATTACHMENTS), max_size=2),
       layout=st.sampled_from(["dir", "file"]))
def test_file_folder_conflicts_duplicates_and_sidecar_names(target, paths, atts, layout):
    """Sets of paths that clash with each other or with the hub's own sidecar files."""
    def entry(key: str, value: str, data: bytes) -> dict[str, Any]:
        return {key: value, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    datas = [f"{layout} {i} {p}".encode() for i, p in enumerate(paths + atts)]
    spec: dict[str, Any] = {
        "layout": layout, "version": "1.0.0", "name": "fuzzdir" if layout == "dir" else None,
        "files": [entry("path", p, d) for p, d in zip(paths, datas, strict=False)],
        "attachments": [{**entry("name", a, d), "role": "other"}
                        for a, d in zip(atts, datas[len(paths):], strict=True)]}
    blobs = [(hashlib.sha256(d).hexdigest(), d) for d in datas]
    check(target, draw_model(paths, atts, layout), encode(spec).encode(), blobs)


def draw_model(paths: list[str], atts: list[str], layout: str) -> str:
    """A model per example, so an accepted 1.0.0 never turns the next example into a 409."""
    return "c" + hashlib.sha256(repr((paths, atts, layout)).encode()).hexdigest()[:16]


@settings(SETTINGS, max_examples=80 * SCALE)
@given(cut=st.integers(0, 10_000), junk=st.sampled_from(
    ["", "--", "\r\n", "--x--\r\n", "garbage", "\r\n\r\n", "Content-Disposition: form-data"]),
    ctype=st.sampled_from(["ok", "no-boundary", "other-boundary", "text/plain", "missing",
                           "long-boundary"]))
def test_truncated_and_malformed_multipart_bodies(target, cut, junk, ctype):
    """The envelope around the spec: cut anywhere, wrong or missing boundary, junk after."""
    data = b"envelope weights" * 20
    sha = hashlib.sha256(data).hexdigest()
    spec = json.dumps({"layout": "file", "files": [{"path": "env.onnx", "size": len(data),
                                                    "sha256": sha}]}).encode()
    b = "fuzzboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"spec\"\r\n"
            f"Content-Type: application/json\r\n\r\n").encode() + spec + (
            f"\r\n--{b}\r\nContent-Disposition: form-data; name=\"blob\"; filename=\"{sha}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{b}--\r\n".encode()
    body = body[:cut] + junk.encode() if cut < len(body) else body + junk.encode()
    headers = dict(target.headers)
    headers["Content-Type"] = {
        "ok": f"multipart/form-data; boundary={b}", "no-boundary": "multipart/form-data",
        "other-boundary": "multipart/form-data; boundary=elsewhere", "text/plain": "text/plain",
        "missing": "", "long-boundary": "multipart/form-data; boundary=" + "b" * 5000}[ctype]
    before = hub_state(target.hub)
    r = target.client.post(f"{API}/models/fuzz/versions", content=body, headers=headers)
    target.statuses[r.status_code] += 1
    assert r.status_code < 500, (r.status_code, r.text[:500])
    no_staging_left(target.hub)
    if r.status_code == 201:
        assert_reads_back(target, r.json())
    else:
        assert_error_body(r)
        assert hub_state(target.hub) == before
