"""The OCI distribution API (``/v2/``) against real registry clients: oras-py and Debian's skopeo.

One live server for the module, on loopback. Every digest a client reports is
checked against the hub's own manifest, and the tampered-bytes test shows that a
stored file no longer matching its manifest never reaches a client whole.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentenialx.hub.hub import Hub
from sentenialx.hub.layout import file_key

from .conftest import Served, build_sample, serve_hub

pytestmark = pytest.mark.timeout(300)

EDGE = "Edge-Model"
"""A model name OCI refuses (capitals): reached as hex/<name hex-encoded>."""


def _missing(reason: str) -> None:
    """Skip on a developer machine; fail under CI=true, where the client must be installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("oci")
    hub = build_sample(root / "hub", root / "inputs")
    rnd = random.Random(11)
    build = root / "inputs" / "build" / "threat_student.onnx"
    build.parent.mkdir()
    build.write_bytes(rnd.randbytes(4000))
    hub.register("distill", build, version="1.2.0+build.5")
    edge = root / "inputs" / "edge.onnx"
    edge.write_bytes(rnd.randbytes(3000))
    hub.register(EDGE, edge)
    # Larger than one streamed chunk (1 MiB), so a refusal cuts a body already under way.
    tamper = root / "inputs" / "tamper.onnx"
    tamper.write_bytes(rnd.randbytes(1_300_000))
    hub.register("tamper", tamper)
    for i in range(2):  # gone@1.0.0 is revoked: neither listed nor served
        f = root / "inputs" / f"gone{i}.onnx"
        f.write_bytes(rnd.randbytes(2000))
        hub.register("gone", f, version=f"1.{i}.0")
    hub.revoke("gone@1.0.0", reason="bad data")
    s = serve_hub(hub)
    try:
        yield s
    finally:
        s.server.stop()
        hub.close()


def basic(secret: str, user: str = "oci") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def host(s: Served) -> str:
    return s.url.removeprefix("http://")


def get(s: Served, path: str, *, token: str | None = "reader", **kw: Any) -> httpx.Response:
    headers = basic(s.tokens[token]) if token else {}
    headers.update(kw.pop("headers", {}))
    r = httpx.request(kw.pop("method", "GET"), s.url + path, headers=headers, timeout=30, **kw)
    assert r.status_code < 500, (path, r.status_code, r.text)
    return r


def layers_of(hub: Hub, ref: str) -> dict[str, tuple[str, int]]:
    """``{path: (sha256, size)}`` from the hub's own manifest."""
    return {f.path: (f.sha256, f.size) for f in hub.resolve(ref).files}


def error_code(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"errors"} and body["errors"], body
    return str(body["errors"][0]["code"])


# -- the protocol ---------------------------------------------------------------------------
def test_version_check_challenges_and_accepts_basic_and_bearer(reg: Served) -> None:
    r = get(reg, "/v2/", token=None)
    assert r.status_code == 401 and error_code(r) == "UNAUTHORIZED"
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{reg.url}/v2/token",service="{host(reg)}"')
    assert get(reg, "/v2/").status_code == 200
    r = get(reg, "/v2/", token=None, headers={"Authorization": f"Bearer {reg.tokens['reader']}"})
    assert r.status_code == 200 and r.headers["docker-distribution-api-version"] == "registry/2.0"
    wrong = get(reg, "/v2/", token=None, headers=basic("sxt_" + "x" * 43))
    assert wrong.status_code == 401 and "www-authenticate" in wrong.headers
    r = get(reg, "/v2/distill/manifests/latest", token=None)
    assert r.status_code == 401 and 'scope="repository:distill:pull"' in r.headers["www-authenticate"]


def test_token_endpoint_hands_out_the_api_token_only_to_its_holder(reg: Served) -> None:
    r = get(reg, "/v2/token?service=x&scope=repository:distill:pull")
    assert r.status_code == 200 and r.json()["token"] == reg.tokens["reader"]
    bearer = {"Authorization": f"Bearer {r.json()['token']}"}
    assert get(reg, "/v2/distill/tags/list", token=None, headers=bearer).status_code == 200
    assert get(reg, "/v2/token", token=None).status_code == 401
    assert get(reg, "/v2/token", token=None, headers=basic("not-a-token")).status_code == 401
    malformed = {"Authorization": "Basic !!!"}
    assert get(reg, "/v2/token", token=None, headers=malformed).status_code == 401


def test_manifest_is_modelpack_and_byte_identical(reg: Served) -> None:
    bodies = [get(reg, "/v2/distill/manifests/1.1.0") for _ in range(3)]
    bodies.append(get(reg, "/v2/distill/manifests/production"))
    assert len({b.content for b in bodies}) == 1
    r = bodies[0]
    digest = "sha256:" + hashlib.sha256(r.content).hexdigest()
    assert r.headers["docker-content-digest"] == digest
    assert r.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
    doc = r.json()
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert doc["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    ours = layers_of(reg.hub, "distill@1.1.0")
    got = {la["annotations"]["org.cncf.model.filepath"]: (la["digest"], la["size"])
           for la in doc["layers"]}
    assert got == {p: (f"sha256:{sha}", size) for p, (sha, size) in ours.items()}
    for la in doc["layers"]:
        assert la["annotations"]["org.opencontainers.image.title"] == \
            la["annotations"]["org.cncf.model.filepath"]
        assert la["mediaType"].startswith("application/vnd.cncf.model.")
        assert la["mediaType"].endswith(".v1.raw")
    weights = reg.hub.weights_entry(reg.hub.resolve("distill@1.1.0")).path
    assert {la["mediaType"] for la in doc["layers"]
            if la["annotations"]["org.cncf.model.filepath"] == weights} == {
        "application/vnd.cncf.model.weight.v1.raw"}
    by_digest = get(reg, f"/v2/distill/manifests/{digest}")
    assert by_digest.content == r.content
    head = get(reg, f"/v2/distill/manifests/{digest}", method="HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["docker-content-digest"] == digest
    assert int(head.headers["content-length"]) == len(r.content)

    cfg = get(reg, f"/v2/distill/blobs/{doc['config']['digest']}")
    assert cfg.status_code == 200
    assert "sha256:" + hashlib.sha256(cfg.content).hexdigest() == doc["config"]["digest"]
    assert len(cfg.content) == doc["config"]["size"]
    config = cfg.json()
    assert config["descriptor"]["name"] == "distill"
    assert config["descriptor"]["version"] == "1.1.0"
    assert config["descriptor"]["revision"] == "sha256:" + reg.hub.resolve("distill@1.1.0").digest
    assert config["modelfs"] == {"type": "layers", "diff_ids": [la["digest"] for la in doc["layers"]]}


def test_tags_map_plus_to_underscore_and_never_take_ranges(reg: Served) -> None:
    r = get(reg, "/v2/distill/manifests/1.2.0_build.5")
    assert r.json()["annotations"]["org.opencontainers.image.version"] == "1.2.0+build.5"
    latest = get(reg, "/v2/distill/manifests/latest")
    assert latest.content == r.content
    for tag, status, code in [("1", 404, "MANIFEST_UNKNOWN"), ("9.9.9", 404, "MANIFEST_UNKNOWN"),
                              ("nosuchalias", 404, "MANIFEST_UNKNOWN"),
                              ("^1.0", 400, "MANIFEST_INVALID"),
                              ("sha256:abc", 400, "MANIFEST_INVALID"),
                              ("sha256:" + "0" * 64, 404, "MANIFEST_UNKNOWN")]:
        r = get(reg, f"/v2/distill/manifests/{tag}")
        assert (r.status_code, error_code(r)) == (status, code), tag


def test_revoked_versions_are_neither_listed_nor_served(reg: Served) -> None:
    assert get(reg, "/v2/gone/tags/list").json()["tags"] == ["1.1.0", "latest"]
    assert get(reg, "/v2/gone/manifests/1.0.0").status_code == 404
    revoked = reg.hub.resolve("gone@1.0.0", include_revoked=True)
    r = get(reg, f"/v2/gone/blobs/sha256:{reg.hub.weights_entry(revoked).sha256}")
    assert (r.status_code, error_code(r)) == (404, "BLOB_UNKNOWN")
    live = get(reg, "/v2/gone/manifests/latest").json()
    assert live["annotations"]["org.opencontainers.image.version"] == "1.1.0"
    assert get(reg, f"/v2/gone/blobs/{live['layers'][0]['digest']}").status_code == 200


def test_anonymous_reads_need_no_login(make_served: Any, tmp_path: Path) -> None:
    s = make_served(anonymous_read=True)
    assert get(s, "/v2/", token=None).status_code == 200
    assert get(s, "/v2/token", token=None).status_code == 401  # no token to hand out
    client = _oras_client(s)
    client.pull(target=f"{host(s)}/lora:1.0.0", outdir=str(tmp_path / "anon"))
    assert _sha_of_files(tmp_path / "anon") == {
        p: sha for p, (sha, _) in layers_of(s.hub, "lora@1.0.0").items()}


def test_tags_list_and_catalog_paginate(reg: Served) -> None:
    tags = get(reg, "/v2/distill/tags/list").json()
    assert tags == {"name": "distill", "tags": sorted(
        ["1.0.0", "1.1.0", "1.2.0_build.5", "latest", "production", "staging"])}
    seen: list[str] = []
    url = "/v2/distill/tags/list?n=4"
    while True:
        r = get(reg, url)
        seen += r.json()["tags"]
        link = r.headers.get("link")
        if not link:
            break
        assert link.endswith('>; rel="next"')
        url = link[1:link.index(">")]
    assert seen == tags["tags"]
    assert get(reg, "/v2/distill/tags/list?n=0").json()["tags"] == []
    r = get(reg, "/v2/distill/tags/list?n=-1")
    assert (r.status_code, error_code(r)) == (400, "PAGINATION_NUMBER_INVALID")

    edge = "hex/" + EDGE.encode().hex()
    repos = get(reg, "/v2/_catalog").json()["repositories"]
    assert repos == sorted(["distill", "gone", "lora", "teacher", "tamper", edge])
    first = get(reg, "/v2/_catalog?n=2")
    assert first.json()["repositories"] == repos[:2]
    nxt = first.headers["link"]
    assert get(reg, nxt[1:nxt.index(">")]).json()["repositories"][0] == repos[2]


def test_names_oci_refuses_are_reached_by_hex(reg: Served) -> None:
    edge = "hex/" + EDGE.encode().hex()
    r = get(reg, f"/v2/{edge}/manifests/latest")
    assert r.status_code == 200
    assert [la["digest"] for la in r.json()["layers"]] == [
        f"sha256:{sha}" for sha, _ in layers_of(reg.hub, EDGE).values()]
    assert get(reg, f"/v2/hex/{b'distill'.hex()}/manifests/1.1.0").content == \
        get(reg, "/v2/distill/manifests/1.1.0").content
    for name in (EDGE, "hex/zz", "hex/" + b"../x".hex()):
        r = get(reg, f"/v2/{name}/tags/list")
        assert (r.status_code, error_code(r)) == (400, "NAME_INVALID"), name


def test_model_limits_and_errors(reg: Served) -> None:
    limited = "lora-reader"
    assert get(reg, "/v2/_catalog", token=limited).json()["repositories"] == ["lora"]
    for repo in ("distill", "nosuchmodel"):  # refused alike, whether it exists or not
        r = get(reg, f"/v2/{repo}/manifests/latest", token=limited)
        assert (r.status_code, error_code(r)) == (403, "DENIED"), repo
        assert not any(m in r.text for m in ("teacher", "tamper", EDGE)), r.text
    r = get(reg, "/v2/nosuchmodel/manifests/latest")
    assert (r.status_code, error_code(r)) == (404, "NAME_UNKNOWN")
    r = get(reg, "/v2/distill/blobs/sha256:" + "1" * 64)
    assert (r.status_code, error_code(r)) == (404, "BLOB_UNKNOWN")
    # A file of another model is not a blob of this one.
    lora_sha = next(iter(layers_of(reg.hub, "lora").values()))[0]
    assert get(reg, f"/v2/distill/blobs/sha256:{lora_sha}").status_code == 404
    r = get(reg, "/v2/distill/blobs/md5:abc")
    assert (r.status_code, error_code(r)) == (400, "DIGEST_INVALID")
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        r = get(reg, "/v2/distill/manifests/9.0.0", method=method, content=b"{}")
        assert (r.status_code, error_code(r)) == (405, "UNSUPPORTED"), method
    r = get(reg, "/v2/distill/blobs/uploads/", method="POST")
    assert (r.status_code, error_code(r)) == (405, "UNSUPPORTED")
    assert get(reg, "/v2/distill/nothing/here").status_code == 404


def test_blob_range_and_head(reg: Served) -> None:
    info = reg.hub.resolve("distill@1.1.0")
    entry = reg.hub.weights_entry(info)
    data = reg.hub.read_entry(info, entry)
    path = f"/v2/distill/blobs/sha256:{entry.sha256}"
    full = get(reg, path)
    assert full.status_code == 200 and full.content == data
    assert full.headers["docker-content-digest"] == f"sha256:{entry.sha256}"
    part = get(reg, path, headers={"Range": "bytes=100-4099"})
    assert part.status_code == 206 and part.content == data[100:4100]
    assert part.headers["content-range"] == f"bytes 100-4099/{len(data)}"
    tail = get(reg, path, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    head = get(reg, path, method="HEAD")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == entry.size
    assert get(reg, path, headers={"Range": f"bytes={len(data)}-"}).status_code == 416


# -- oras-py ------------------------------------------------------------------------------
def _oras() -> Any:
    try:
        import oras.client
        import oras.provider
    except ImportError:
        _missing("oras (oras-py) is not installed: pip install 'sentenialx[dev]'")
    return oras


def _oras_client(reg: Served, *, backend: str = "token", secret: str | None = None,
                 retries: bool = True) -> Any:
    oras = _oras()
    if retries:
        registry = oras.provider.Registry(hostname=host(reg), insecure=True, auth_backend=backend)
    else:
        class NoRetry(oras.provider.Registry):  # type: ignore[misc,name-defined]
            # oras-py retries any failed request five times with sleeps of up to 83 s;
            # a refusal is final, so the test calls the real request function once.
            do_request = oras.provider.Registry.do_request.__wrapped__

        registry = NoRetry(hostname=host(reg), insecure=True, auth_backend=backend)
    if secret is not None:
        registry.auth.set_basic_auth("oci", secret)
    return registry


def _sha_of_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("backend", ["token", "basic"])
def test_oras_pulls_by_tag_and_by_digest(reg: Served, tmp_path: Path, backend: str) -> None:
    client = _oras_client(reg, backend=backend, secret=reg.tokens["reader"])
    ours = {p: sha for p, (sha, _) in layers_of(reg.hub, "lora@1.0.0").items()}
    manifest = client.get_manifest(f"{host(reg)}/lora:1.0.0")
    assert {la["annotations"]["org.cncf.model.filepath"]: la["digest"].removeprefix("sha256:")
            for la in manifest["layers"]} == ours
    by_tag = tmp_path / "tag"
    files = client.pull(target=f"{host(reg)}/lora:1.0.0", outdir=str(by_tag))
    assert len(files) == len(ours)
    assert _sha_of_files(by_tag) == ours
    digest = get(reg, "/v2/lora/manifests/1.0.0").headers["docker-content-digest"]
    by_digest = tmp_path / "digest"
    client.pull(target=f"{host(reg)}/lora@{digest}", outdir=str(by_digest))
    assert _sha_of_files(by_digest) == ours


@pytest.mark.parametrize("secret", [None, "sxt_" + "w" * 43])
def test_oras_refused_without_the_right_token(reg: Served, tmp_path: Path,
                                              secret: str | None) -> None:
    client = _oras_client(reg, secret=secret, retries=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="authentication"):
        client.pull(target=f"{host(reg)}/lora:1.0.0", outdir=str(out))
    assert not out.exists() or _sha_of_files(out) == {}


# -- skopeo -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    exe = shutil.which("skopeo")
    if exe is None:
        _missing("skopeo is not installed (scripts/test.sh installs Debian's)")
    home = tmp_path_factory.mktemp("skopeo-home")
    # No stored credentials: each call says what it logs in with, or nothing.
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home),
               REGISTRY_AUTH_FILE=str(home / "auth.json"))

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([exe, *args], env=env, capture_output=True, timeout=120)

    return run


def test_skopeo_inspect_and_copy_to_an_oci_layout(reg: Served, skopeo: Any, tmp_path: Path) -> None:
    creds = f"oci:{reg.tokens['reader']}"
    src = f"docker://{host(reg)}/distill:production"
    served = get(reg, "/v2/distill/manifests/production")
    r = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, src)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == served.content
    config_digest = served.json()["config"]["digest"]
    r = skopeo("inspect", "--config", "--raw", "--tls-verify=false", "--creds", creds, src)
    assert r.returncode == 0, r.stderr.decode()
    assert "sha256:" + hashlib.sha256(r.stdout).hexdigest() == config_digest

    layout = tmp_path / "layout"
    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, src,
               f"oci:{layout}:production")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [desc] = index["manifests"]
    assert desc["digest"] == served.headers["docker-content-digest"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "production"
    blobs = layout / "blobs" / "sha256"
    for p in blobs.iterdir():  # every blob is what its name says
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    assert (blobs / desc["digest"].removeprefix("sha256:")).read_bytes() == served.content
    ours = {sha for sha, _ in layers_of(reg.hub, "distill@production").values()}
    assert {p.name for p in blobs.iterdir()} == ours | {
        config_digest.removeprefix("sha256:"), desc["digest"].removeprefix("sha256:")}


@pytest.mark.parametrize("creds", [None, "oci:sxt_" + "w" * 43])
def test_skopeo_refused_without_the_right_token(reg: Served, skopeo: Any, tmp_path: Path,
                                                creds: str | None) -> None:
    login = ["--creds", creds] if creds else []
    r = skopeo("inspect", "--raw", "--tls-verify=false", *login,
               f"docker://{host(reg)}/distill:production")
    assert r.returncode != 0
    assert b"401" in r.stderr or b"unauthorized" in r.stderr.lower(), r.stderr.decode()
    src_login = ["--src-creds", creds] if creds else []
    r = skopeo("copy", "--src-tls-verify=false", *src_login,
               f"docker://{host(reg)}/distill:production", f"oci:{tmp_path / 'l'}:x")
    assert r.returncode != 0
    assert not (tmp_path / "l" / "index.json").exists() or \
        json.loads((tmp_path / "l" / "index.json").read_text())["manifests"] == []


# -- the read path ------------------------------------------------------------------------
def test_tampered_bytes_are_never_served_whole(reg: Served, skopeo: Any, tmp_path: Path) -> None:
    hub = reg.hub
    info = hub.resolve("tamper")
    entry = hub.weights_entry(info)
    path = Path(hub.store.local_path(file_key("tamper", entry.path)))
    good = path.read_bytes()
    bad = bytearray(good)
    bad[-1] ^= 0xFF  # same size, last byte changed: only a full hash can tell
    path.chmod(0o644)
    path.write_bytes(bytes(bad))
    blob = f"/v2/tamper/blobs/sha256:{entry.sha256}"
    for headers in ({}, {"Range": "bytes=0-99"}, {"Range": "bytes=-100"}):
        got = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("GET", reg.url + blob, headers={**basic(reg.tokens["reader"]),
                                                               **headers}, timeout=30) as r:
                assert r.status_code in (200, 206)
                for chunk in r.iter_bytes():
                    got += chunk
        expected = int(r.headers["content-length"])
        assert len(got) < expected, headers

    client = _oras_client(reg, secret=reg.tokens["reader"])
    out = tmp_path / "oras"
    with pytest.raises(Exception):  # noqa: B017 - requests' or urllib3's incomplete-read error
        client.pull(target=f"{host(reg)}/tamper:latest", outdir=str(out))
    pulled = out / entry.path
    assert not pulled.exists() or pulled.stat().st_size < entry.size

    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", f"oci:{reg.tokens['reader']}",
               f"docker://{host(reg)}/tamper:latest", f"oci:{tmp_path / 'layout'}:x")
    assert r.returncode != 0
    assert not (tmp_path / "layout" / "blobs" / "sha256" / entry.sha256).exists()
