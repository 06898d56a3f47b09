"""The remote client, the cache, resumable downloads, pull and push, and the CLI over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from sentenialx.hub.cli import exit_code_for
from sentenialx.hub.errors import (
    Conflict,
    IntegrityError,
    InvalidInput,
    PermissionDenied,
    SignatureError,
    StoreUnavailable,
)
from sentenialx.hub.hub import Hub
from sentenialx.hub.transfer import copy_versions


class Proxy:
    """A TCP proxy in front of the server that records requests and can cut responses.

    The first ``cuts`` connections are closed once ``after`` response bytes went through.
    """

    def __init__(self, port: int, *, after: int = 0, cuts: int = 0) -> None:
        self.upstream = port
        self.after, self.cuts = after, cuts
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream))
        with self._lock:
            cut = self.cuts > 0
            if cut:
                self.cuts -= 1

        def forward_requests() -> None:
            try:
                while data := client.recv(65536):
                    with self._lock:
                        self.requests.append(data[:4096])
                    up.sendall(data)
            except OSError:
                pass
            finally:
                with_suppress(up.shutdown, socket.SHUT_WR)

        threading.Thread(target=forward_requests, daemon=True).start()
        sent = 0
        try:
            while data := up.recv(65536):
                if cut and sent + len(data) >= self.after:
                    client.sendall(data[: max(0, self.after - sent)])
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, up):
                with_suppress(s.shutdown, socket.SHUT_RDWR)
                s.close()

    def range_requests(self) -> list[bytes]:
        return [r for r in self.requests if b"range: bytes=" in r.lower()]

    def close(self) -> None:
        self.sock.close()


def with_suppress(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:
        pass


def _same_bytes(a: Hub, b: Hub, ref: str) -> None:
    va, vb = a.resolve(ref, include_revoked=True), b.resolve(ref, include_revoked=True)
    assert va.digest == vb.digest and va.files == vb.files
    assert va.meta == vb.meta and va.lineage == vb.lineage and va.stem == vb.stem
    for f in va.files:
        da = (a.root / va.model / f.path).read_bytes()
        db = (b.root / vb.model / f.path).read_bytes()
        assert da == db and hashlib.sha256(da).hexdigest() == f.sha256


def test_remote_reads_open_path_and_cache(served, cache_dir, monkeypatch):
    monkeypatch.setenv("SENTENIALX_TOKEN", served.tokens["reader"])
    remote = Hub.open(served.url)
    assert isinstance(remote, Hub) and remote.is_served
    with remote:
        assert remote.whoami()["name"] == "reader"
        assert [m["model"] for m in remote.models()] == ["distill", "lora", "teacher"]
        info = remote.resolve("distill@production")
        local_info = served.hub.resolve("distill@production")
        assert info.files == local_info.files and info.digest == local_info.digest
        data = remote.open("distill@production")
        w = served.hub.weights_entry(local_info)
        assert data == (served.hub.root / "distill" / w.path).read_bytes()
        assert remote.open("distill@1.1.0", file="report.md").startswith(b"# Distillation")
        p = remote.path("distill@production")
        assert p.name == w.path and p.read_bytes() == data
        blob = cache_dir / "blobs" / "sha256" / w.sha256[:2] / w.sha256
        assert blob.exists() and os.path.samefile(blob, p)
        assert not os.access(blob, os.W_OK) or os.getuid() == 0
        assert oct(blob.stat().st_mode & 0o777) == "0o444"
        folder = remote.path("lora")
        assert folder.is_dir() and sorted(x.name for x in folder.iterdir()) == [
            "adapter_config.json", "adapter_model.bin"]
        assert [v.version for v in remote.versions("distill")] == ["1.0.0", "1.1.0"]
        assert {a.alias for a in remote.aliases("distill")} == {"production", "staging"}
        assert remote.verify("distill@1.1.0").ok
        with pytest.raises(PermissionDenied, match="needs 'admin'"):
            remote.verify("distill@1.1.0", deep=True)  # re-hashing needs admin scope
        assert remote.verify_log().ok
        assert remote.diff("distill@1.0.0", "distill@1.1.0")["metrics"]["accuracy"]["b"] == 0.93


def test_offline_uses_what_was_verified_last(make_served, cache_dir):
    s = make_served()
    remote = Hub.served(s.url, token=s.tokens["reader"])
    data = remote.open("distill@production")
    p = remote.path("distill@production")
    s.server.stop()
    offline = Hub.served(s.url, token=s.tokens["reader"], retries=0)
    assert offline.resolve("distill@production").version == "1.1.0"
    assert offline.open("distill@production") == data
    assert offline.path("distill@production") == p
    with pytest.raises(StoreUnavailable):
        offline.resolve("lora")  # never resolved while online
    # A cached copy that changed is never used: it is dropped, and offline that is an error.
    w = s.hub.weights_entry(s.hub.resolve("distill@production"))
    blob = cache_dir / "blobs" / "sha256" / w.sha256[:2] / w.sha256
    os.chmod(blob, 0o644)
    raw = bytearray(blob.read_bytes())
    raw[10] ^= 0xFF
    blob.write_bytes(bytes(raw))
    with pytest.raises(StoreUnavailable):
        offline.open("distill@production")
    assert not blob.exists()


def test_download_resumes_after_an_interruption(served, cache_dir, monkeypatch):
    import sentenialx.hub.transport.http as http_mod

    monkeypatch.setattr(http_mod, "CHUNK", 16 * 1024)  # 64 KiB reads: stop mid-file
    info = served.hub.resolve("teacher")
    w = served.hub.weights_entry(info)
    want = (served.hub.root / "teacher" / w.path).read_bytes()
    # 1. The caller stops half way: the partial file stays and the next call resumes it.
    proxy = Proxy(served.server.port)
    remote = Hub.served(proxy.url, token=served.tokens["reader"])

    class Stop(Exception):
        pass

    seen = 0

    def stop_half_way(n: int) -> None:
        nonlocal seen
        seen += n
        if seen > 100_000:
            raise Stop

    rinfo = remote.resolve("teacher")
    with pytest.raises(Stop):
        remote.fetch(rinfo, w, progress=stop_half_way)
    partial = cache_dir / "blobs" / "sha256" / w.sha256[:2] / (w.sha256 + ".partial")
    kept = partial.stat().st_size
    assert 100_000 < kept < len(want)
    assert not proxy.range_requests()
    got = 0

    def count(n: int) -> None:
        nonlocal got
        got += n

    path = remote.fetch(rinfo, w, progress=count)
    assert path.read_bytes() == want and not partial.exists()
    assert got == len(want) - kept  # only the rest travelled
    ranges = proxy.range_requests()
    assert len(ranges) == 1 and f"bytes={kept}-".encode() in ranges[0]
    assert f'if-range: "{w.sha256}"'.encode() in ranges[0].lower()
    proxy.close()


def test_download_survives_a_cut_connection(served, cache_dir):
    info = served.hub.resolve("teacher")
    w = served.hub.weights_entry(info)
    want = (served.hub.root / "teacher" / w.path).read_bytes()
    proxy = Proxy(served.server.port, after=150_000, cuts=2)
    remote = Hub.served(proxy.url, token=served.tokens["reader"])
    rinfo = remote.resolve("teacher@1.0.0")
    path = remote.fetch(rinfo, w)
    assert path.read_bytes() == want
    assert len(proxy.range_requests()) >= 1  # resumed, not restarted
    proxy.close()


def test_pull_from_served_to_local_byte_for_byte(served, tmp_path, cache_dir, monkeypatch):
    from sentenialx.hub.cli import cli

    monkeypatch.setenv("SENTENIALX_TOKEN", served.tokens["reader"])
    dest = tmp_path / "edge"
    r = CliRunner().invoke(cli, ["models", "pull", served.url, "distill@production", "lora",
                                 "--to", str(dest), "--aliases", "--json"])
    assert r.exit_code == 0, r.output
    out = {x["ref"]: x for x in json.loads(r.stdout)}
    assert set(out) == {"teacher@1.0.0", "distill@1.1.0", "lora@1.0.0"}
    assert all(x["status"] == "copied" for x in out.values())
    # The unsigned production version is copied, but production itself moves only through
    # the destination's gates: it is held back and reported, staging is carried.
    assert out["distill@1.1.0"]["aliases"] == ["staging"]
    assert out["distill@1.1.0"]["aliases_held"] == ["production"]
    local = Hub(dest)
    for ref in out:
        _same_bytes(served.hub, local, ref)
    assert local.resolve("distill@staging").version == "1.1.0"
    assert [a.alias for a in local.aliases("distill")] == ["staging"]
    assert local.fsck().ok
    # Again: nothing to send.
    r = CliRunner().invoke(cli, ["models", "pull", served.url, "lora", "--to", str(dest), "--json"])
    assert {x["status"] for x in json.loads(r.stdout)} == {"present"}
    # The same version number with other bytes: refused, nothing changes.
    other = Hub(tmp_path / "other")
    (tmp_path / "t.onnx").write_bytes(b"not the teacher")
    other.register("teacher", tmp_path / "t.onnx", version="1.0.0")
    with pytest.raises(Conflict):
        copy_versions(Hub.served(served.url), other, ["lora"])
    assert [m["model"] for m in other.models()] == ["teacher"]
    local.close()
    other.close()


def test_push_from_local_to_served_with_dedup(served, tmp_path, cache_dir, monkeypatch, state):
    from sentenialx.hub.cli import cli

    # A local hub that holds what the server has, plus a new version sharing files with 1.1.0.
    local = Hub(tmp_path / "workstation")
    copy_versions(Hub.served(served.url, token=served.tokens["reader"]), local, ["distill@1.1.0"])
    v11 = local.resolve("distill@1.1.0")
    stage = tmp_path / "v12"
    stage.mkdir()
    (stage / "threat_student.onnx").write_bytes(os.urandom(64_000))
    atts = []
    for f in v11.files:
        if f.role in ("report", "log"):
            name = f.path[len(v11.stem) + 1:]
            (stage / name).write_bytes((local.root / "distill" / f.path).read_bytes())
            atts.append((f.role, stage / name))
    new = local.register("distill", stage / "threat_student.onnx", bump="minor",
                         metadata={"metrics": {"accuracy": 0.96}},
                         parents=["teacher=teacher@1.0.0"], data_digest="ab" * 32,
                         attachments=atts)
    # A read token may not push; the server is unchanged.
    before = state(served.hub)
    monkeypatch.setenv("SENTENIALX_TOKEN", served.tokens["reader"])
    r = CliRunner().invoke(cli, ["models", "push", served.url, "distill@1.2.0",
                                 "--hub", str(local.root)])
    assert r.exit_code == exit_code_for(PermissionDenied("x")) == 14, r.output
    assert state(served.hub) == before
    monkeypatch.setenv("SENTENIALX_TOKEN", served.tokens["writer"])
    r = CliRunner().invoke(cli, ["models", "push", served.url, "distill@1.2.0",
                                 "--hub", str(local.root), "--json"])
    assert r.exit_code == 0, r.output
    res = {x["ref"]: x for x in json.loads(r.stdout)}
    assert res["teacher@1.0.0"]["status"] == "present"
    got = res["distill@1.2.0"]
    assert got["status"] == "copied" and got["files"] == 3
    assert got["files_sent"] == 1 and got["files_deduped"] == 2 and got["bytes_sent"] == 64_000
    _same_bytes(local, served.hub, "distill@1.2.0")
    pushed = served.hub.resolve("distill@1.2.0")
    assert pushed.digest == new.digest and pushed.lineage == new.lineage
    assert pushed.created_by == "token:writer"
    assert served.hub.events()[-1].actor == "token:writer"
    assert served.hub.fsck().ok
    r = CliRunner().invoke(cli, ["models", "push", served.url, "distill@1.2.0",
                                 "--hub", str(local.root), "--json"])
    assert {x["status"] for x in json.loads(r.stdout)} == {"present"}
    local.close()


def test_cli_commands_over_http(served, cache_dir, monkeypatch):
    from sentenialx.hub.cli import cli

    monkeypatch.setenv("SENTENIALX_TOKEN", served.tokens["writer"])
    run = CliRunner().invoke

    def ok(*args: str) -> str:
        r = run(cli, ["models", *args, "--hub", served.url])
        assert r.exit_code == 0, (args, r.output)
        return r.stdout

    assert [m["model"] for m in json.loads(ok("list", "--json"))] == ["distill", "lora", "teacher"]
    assert [v["version"] for v in json.loads(ok("versions", "distill", "--json"))] == [
        "1.0.0", "1.1.0"]
    assert json.loads(ok("show", "distill@production", "--json"))["version"] == "1.1.0"
    p = Path(ok("path", "distill@production").strip())
    assert p.is_file() and str(cache_dir) in str(p)
    assert "OK" in ok("verify", "distill@1.1.0")
    assert "lora@1.0.0 -> 1.0.0" not in ok("alias", "set", "lora@1.0.0", "canary")
    assert served.hub.resolve("lora@canary").version == "1.0.0"
    assert served.hub.events()[-1].actor == "token:writer"
    assert "OK" in ok("log", "--verify")
    src = served.hub.root.parent / "new.onnx"
    src.write_bytes(b"registered over http" * 50)
    out = json.loads(ok("register", "teacher", str(src), "--bump", "minor", "--meta",
                        "metrics.accuracy=0.5", "--json"))
    assert out["version"] == "1.1.0" and out["created_by"] == "token:writer"
    r = run(cli, ["models", "fsck", "--hub", served.url])
    assert r.exit_code == 5 and "server host" in r.stderr
    r = run(cli, ["models", "show", "nope", "--hub", served.url])
    assert r.exit_code == 3 and r.stderr.startswith("error: model 'nope' not found")


def test_serve_command_runs_the_real_server(tmp_path):

    hub = Hub(tmp_path / "hub")
    (tmp_path / "m.onnx").write_bytes(b"x" * 1000)
    hub.register("distill", tmp_path / "m.onnx")
    secret, _ = hub.tokens.create("ops", scope="read")
    hub.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentenialx", "models", "serve", "--port", str(port),
         "--hub", str(tmp_path / "hub"), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(url + "/api/v1/models").status_code == 401
        r = httpx.get(url + "/api/v1/models", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200 and r.json()[0]["model"] == "distill"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert f"on http://127.0.0.1:{port}" in err


def test_a_damaged_server_copy_is_refused(served, cache_dir):
    info = served.hub.resolve("teacher")
    w = served.hub.weights_entry(info)
    p = served.hub.root / "teacher" / w.path
    os.chmod(p, 0o644)
    raw = bytearray(p.read_bytes())
    raw[1000] ^= 1
    p.write_bytes(bytes(raw))
    remote = Hub.served(served.url, token=served.tokens["reader"])
    with pytest.raises(IntegrityError):
        remote.open("teacher")
    kept = [p.name for p in cache_dir.rglob(w.sha256 + "*") if not p.name.endswith(".lock")]
    assert kept == []  # nothing unverified is kept, not even a partial file



def test_copy_between_two_served_hubs_and_two_local_hubs(make_served, tmp_path, cache_dir):

    from .conftest import LiveServer  # the same helper the fixtures use

    a = make_served("a")
    a.hub.revoke("distill@1.0.0", reason="leaked test data")
    empty = Hub(tmp_path / "b")
    secret, _ = empty.tokens.create("pusher", scope="write")
    from sentenialx.hub.server import create_app

    b = LiveServer(create_app(empty)).start()
    try:
        src = Hub.served(a.url, token=a.tokens["reader"])
        dst = Hub.served(b.url, token=secret)
        res = copy_versions(src, dst, ["lora", "distill@1.0.0"], include_revoked=True)
        assert [r.ref for r in res] == ["teacher@1.0.0", "distill@1.1.0", "lora@1.0.0",
                                        "distill@1.0.0"]
        for r in res:
            _same_bytes(a.hub, empty, r.ref)
        assert empty.resolve("distill@1.0.0", include_revoked=True).revoked
        assert {e.actor for e in empty.events()} == {"token:pusher"}
        assert empty.fsck().ok
    finally:
        b.stop()
    # Local to local: the destination stores its own copies (no shared inodes).
    c = Hub(tmp_path / "c")
    copy_versions(empty, c, ["lora"])
    _same_bytes(empty, c, "lora@1.0.0")
    for f in c.resolve("lora").files:
        assert not os.path.samefile(c.root / "lora" / f.path, empty.root / "lora" / f.path)
    assert c.fsck().ok
    c.close()
    empty.close()


def test_a_served_hub_is_a_hub_whose_reads_apply_the_trust_part(served, cache_dir):
    with Hub.served(served.url, token=served.tokens["reader"]) as remote:
        # The same read path as a local hub: trust first, for every way bytes leave.
        for read in (remote.path, remote.open_bytes, remote.load):
            with pytest.raises(SignatureError, match="not supported over HTTP"):
                read("distill@production", trust="enforce")
        assert not list((cache_dir / "blobs").rglob("*.partial"))
        assert remote.check_trust(remote.resolve("distill@production")) == "server"
        # What only the hub's own host can do is refused in one line, nothing changed.
        for verb in (remote.fsck, remote.gc, remote.export_registry, remote.trust_store):
            with pytest.raises(InvalidInput, match="run it on the server host") as exc:
                verb()
            assert "\n" not in str(exc.value)


def test_remotehub_is_a_deprecated_spelling_of_hub_served(served, cache_dir):
    from sentenialx.hub.remote import RemoteHub

    with pytest.warns(DeprecationWarning, match="Hub.open"):
        remote = RemoteHub(served.url, token=served.tokens["reader"])
    with remote:
        assert isinstance(remote, Hub) and remote.is_served
        assert remote.resolve("distill@1.0.0").version == "1.0.0"


def test_remote_register_retries_a_lost_answer_with_the_same_key(served, tmp_path, cache_dir,
                                                                  monkeypatch, state):
    from sentenialx.hub.transport.http import HttpClient

    remote = Hub.served(served.url, token=served.tokens["writer"])
    real_send = HttpClient.send
    keys: list[str] = []
    lost = {"n": 1}

    def lossy(self, method, path, **kw):  # type: ignore[no-untyped-def]
        if path.endswith("/versions") and method == "POST":
            keys.append(kw["headers"]["Idempotency-Key"])
            answer = real_send(self, method, path, **kw)
            if lost["n"]:
                # The server committed, then the answer was lost on the way back.
                lost["n"] -= 1
                raise StoreUnavailable(f"hub {served.url} is unreachable (connection reset)")
            return answer
        return real_send(self, method, path, **kw)

    monkeypatch.setattr(HttpClient, "send", lossy)
    src = tmp_path / "student.onnx"
    src.write_bytes(os.urandom(10_000))
    before = served.hub.index.count_versions()
    info = remote.register("distill", src, bump="minor")
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) >= 32
    assert served.hub.index.count_versions() == before + 1
    assert served.hub.resolve("distill").digest == info.digest
    # A new call gets a fresh key: it is a new registration.
    after = state(served.hub)
    info2 = remote.register("distill", src, bump="minor")
    assert keys[2] != keys[0] and info2.version != info.version
    assert state(served.hub) != after
    # A caller's own key crosses the wire; reused with other content it is a Conflict.
    remote.register("distill", src, bump="patch", idempotency_key="mine")
    assert keys[-1] == "mine"
    src.write_bytes(os.urandom(10_000))
    with pytest.raises(Conflict, match="'mine'"):
        remote.register("distill", src, bump="patch", idempotency_key="mine")
    remote.close()
