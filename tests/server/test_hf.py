"""The /hf routes with the real clients: huggingface_hub and transformers, over loopback.

``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read when huggingface_hub is imported, so
each client setting runs in a subprocess of its own (``run_client``). One server
serves the module; it cuts the first GET of one file halfway so that the client's
resume (``Range`` → 206) is exercised, and records what it answered.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sentenialx.hub import _hf
from sentenialx.hub.hub import Hub
from sentenialx.hub.values import VersionInfo

from .conftest import LiveServer, free_port

CUT = "resume_v1.0.0.bin"
"""The first GET of this file (model ``big``) is cut after half its bytes."""
WEIGHTS = "threat_student_v1.1.0.onnx"
ODD = "odd--name"
"""A model name Hugging Face rejects as a repo id."""

TINY_BERT = """
import sys, torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=32)
BertModel(cfg).eval().save_pretrained(sys.argv[1])
"""


class Recorder:
    """ASGI wrapper: records (method, path, range, status) and cuts one download halfway."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, str | None, int]] = []
        self.cut_done = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        rng = headers.get("range")
        cut = (scope["method"] == "GET" and scope["path"].endswith(CUT) and rng is None
               and "/resolve/" in scope["path"] and not self.cut_done)
        sent = {"n": 0, "total": None}

        async def recording_send(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], rng, msg["status"]))
                for k, v in msg.get("headers", []):
                    if k.decode().lower() == "content-length":
                        sent["total"] = int(v)
            elif msg["type"] == "http.response.body" and cut and sent["total"]:
                body = msg.get("body", b"")
                half = sent["total"] // 2
                if sent["n"] + len(body) >= half:
                    await send({"type": "http.response.body", "body": body[:half - sent["n"]],
                                "more_body": True})
                    self.cut_done = True
                    raise ConnectionAbortedError("test: download cut halfway")
                sent["n"] += len(body)
            await send(msg)

        await self.app(scope, receive, recording_send)


@dataclass
class HfServed:
    hub: Hub
    server: LiveServer
    recorder: Recorder
    token: str
    odd_token: str
    tmp: Path
    bert_dir: Path

    @property
    def endpoint(self) -> str:
        return f"{self.server.url}/hf"


def _rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def build_hf_hub(root: Path, inputs: Path) -> tuple[Hub, Path]:
    """distill 1.0.0, 1.1.0 (card, alias staging), 2.0.0; tiny-bert (folder); odd--name."""
    inputs.mkdir(parents=True)
    hub = Hub(root)
    for i, (size, extra) in enumerate([(40_000, None), (300_000, "card"), (50_000, None)]):
        d = inputs / f"d{i}"
        d.mkdir()
        w = d / "threat_student.onnx"
        w.write_bytes(_rand(size, i))
        attach = []
        if extra:
            (d / "report.md").write_text("# Threat student\n\nDistilled from the teacher.\n")
            attach = [("report", d / "report.md")]
        hub.register("distill", w, version=["1.0.0", "1.1.0", "2.0.0"][i], attachments=attach)
    hub.set_alias("distill@1.1.0", "staging")
    bert = inputs / "tiny-bert"
    subprocess.run([sys.executable, "-c", TINY_BERT, str(bert)], check=True, timeout=300,
                   capture_output=True)
    (bert / "README.md").write_text("# tiny-bert\n\nOne layer, hidden size 16.\n")
    (bert / "docs").mkdir()
    (bert / "docs" / "notes.txt").write_text("built by the test\n")
    hub.register("tiny-bert", bert, name="tiny-bert", alias="stable")
    (inputs / "w.bin").write_bytes(_rand(1000, 9))
    hub.register(ODD, inputs / "w.bin")
    (inputs / "resume.bin").write_bytes(_rand(600_000, 10))
    hub.register("big", inputs / "resume.bin")
    return hub, bert


def require_clients() -> None:
    """The real clients (extra ``hf``), or skip; under CI=true a missing one fails."""
    import importlib.util

    missing = [m for m in ("huggingface_hub", "transformers", "torch")
               if importlib.util.find_spec(m) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed: pip install 'sentenialx[hf,torch]'"
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HfServed]:
    from sentenialx.hub.server import create_app

    require_clients()
    tmp = tmp_path_factory.mktemp("hf")
    hub, bert = build_hf_hub(tmp / "hub", tmp / "inputs")
    token, _ = hub.tokens.create("hf-reader", scope="read")
    odd_token, _ = hub.tokens.create("odd-reader", scope="read", models=[ODD])
    app = create_app(hub)
    app.state.hf_tree_page = 2
    rec = Recorder(app)
    server = LiveServer(rec).start()
    try:
        yield HfServed(hub, server, rec, token, odd_token, tmp, bert)
    finally:
        server.stop()
        hub.close()


PRELUDE = """
import json, os, sys
ARGS = json.loads(os.environ["HF_TEST_ARGS"])
def emit(obj):
    print(json.dumps(obj))
"""


def client_env(*, endpoint: str, home: Path, token: str | None = None, offline: bool = False,
               args: Any = None) -> dict[str, str]:
    """The environment of a client process: our endpoint, its own HF_HOME, no xet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_DISABLE_XET="1", HF_TEST_ARGS=json.dumps(args))
    if token is not None:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_client(code: str, *, endpoint: str, home: Path, token: str | None = None,
               offline: bool = False, args: Any = None) -> Any:
    """Run ``code`` in a fresh interpreter with huggingface_hub pointed at ``endpoint``."""
    env = client_env(endpoint=endpoint, home=home, token=token, offline=offline, args=args)
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sha(p: str | Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def assert_snapshot(hub: Hub, info: VersionInfo, folder: str | Path) -> None:
    """The snapshot holds exactly the version's repo files, byte for byte."""
    root = Path(folder)
    files = _hf.repo_files(info)
    got = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert got == sorted(files)
    for path, f in files.items():
        data = (root / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f.entry.sha256
        assert data == hub.read_entry(info, f.entry)


DOWNLOADS = """
from huggingface_hub import hf_hub_download, snapshot_download
out = {}
for rev in ARGS["revisions"]:
    out[rev] = {"snapshot": snapshot_download("distill", revision=rev),
                "file": hf_hub_download("distill", ARGS["file"], revision=rev)}
out["card"] = hf_hub_download("distill", "README.md", revision="staging")
out["odd"] = snapshot_download(ARGS["odd"])
emit(out)
"""


def test_downloads_by_alias_version_range_and_commit_then_offline(hf: HfServed) -> None:
    hub = hf.hub
    info = hub.resolve("distill@1.1.0")
    commit = _hf.commit_of(info)
    assert len(commit) == 40 and info.digest and info.digest.startswith(commit)
    revisions = ["staging", "1.1.0", "^1.0", commit]
    home = hf.tmp / "home-downloads"
    args = {"revisions": revisions, "file": WEIGHTS, "odd": _hf.repo_id_for(ODD)}
    online = run_client(DOWNLOADS, endpoint=hf.endpoint, home=home, token=hf.token, args=args)
    for rev in revisions:
        assert Path(online[rev]["snapshot"]).name == commit, rev
        assert_snapshot(hub, info, online[rev]["snapshot"])
        assert sha(online[rev]["file"]) == hub.weights_entry(info).sha256
    # The model card is the version's Markdown report, served as README.md.
    card = next(f for f in info.files if f.role == "report")
    assert Path(online["card"]).read_bytes() == hub.read_entry(info, card)
    odd = hub.resolve(ODD)
    assert _hf.repo_id_for(ODD) == f"sentenialx/{_hf.hashed_name(ODD)}"
    assert_snapshot(hub, odd, online["odd"])
    # Every file was fetched from its commit's URL (a HEAD by alias is redirected).
    gets = [p for m, p, _r, s in hf.recorder.seen if m == "GET" and p.startswith("/hf/distill/")]
    assert gets and all(p.startswith(f"/hf/distill/resolve/{commit}/") for p in gets)

    # The same reads with the server out of reach (nothing listens on that port).
    dead = f"http://127.0.0.1:{free_port()}/hf"
    for flag in (True, False):  # HF_HUB_OFFLINE=1, and the client finding out by itself
        offline = run_client(DOWNLOADS, endpoint=dead, home=home, offline=flag, args=args)
        for rev in revisions:
            assert_snapshot(hub, info, offline[rev]["snapshot"])
            assert sha(offline[rev]["file"]) == hub.weights_entry(info).sha256
        assert Path(offline["card"]).read_bytes() == hub.read_entry(info, card)


def test_interrupted_download_resumes_with_206(hf: HfServed) -> None:
    info = hf.hub.resolve("big")
    # The client keeps what it received in pieces of DOWNLOAD_CHUNK_SIZE (10 MiB); a
    # smaller piece lets a small file be cut halfway and resumed from what it kept.
    code = """
    from huggingface_hub import constants, hf_hub_download
    constants.DOWNLOAD_CHUNK_SIZE = 64 * 1024
    emit(hf_hub_download("big", ARGS["file"], revision=ARGS["rev"]))
    """
    path = run_client(code, endpoint=hf.endpoint, home=hf.tmp / "home-resume", token=hf.token,
                      args={"file": CUT, "rev": "main"})
    assert Path(path).read_bytes() == hf.hub.read_entry(info, hf.hub.weights_entry(info))
    assert hf.recorder.cut_done
    resumed = [(r, s) for m, p, r, s in hf.recorder.seen
               if m == "GET" and p.endswith(CUT) and r is not None]
    assert resumed, hf.recorder.seen
    rng, status = resumed[-1]
    assert status == 206
    start = int(rng.removeprefix("bytes=").split("-")[0])
    assert 0 < start < hf.hub.weights_entry(info).size


ERRORS = """
from huggingface_hub import hf_hub_download, HfApi
from huggingface_hub import errors as E
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = None
    except E.HfHubHTTPError as exc:
        out[name] = [type(exc).__name__, exc.response.status_code,
                     exc.response.headers.get("X-Error-Code"),
                     exc.response.headers.get("X-Repo-Commit")]
attempt("repo", lambda: hf_hub_download("no-such-model", "x.bin"))
attempt("revision", lambda: hf_hub_download("distill", "x.bin", revision="nightly"))
attempt("bad-revision", lambda: HfApi().model_info("distill", revision="^9"))
attempt("entry", lambda: hf_hub_download("distill", "missing.bin", revision=ARGS["commit"]))
emit(out)
"""


def test_typed_errors(hf: HfServed) -> None:
    commit = _hf.commit_of(hf.hub.resolve("distill@1.1.0"))
    out = run_client(ERRORS, endpoint=hf.endpoint, home=hf.tmp / "home-errors", token=hf.token,
                     args={"commit": commit})
    assert out["repo"] == ["RepositoryNotFoundError", 404, "RepoNotFound", None]
    assert out["revision"] == ["RevisionNotFoundError", 404, "RevisionNotFound", None]
    assert out["bad-revision"] == ["RevisionNotFoundError", 404, "RevisionNotFound", None]
    assert out["entry"] == ["RemoteEntryNotFoundError", 404, "EntryNotFound", commit]


AUTH = """
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import errors as E
out = {}
for name, token in ARGS["tokens"].items():
    try:
        # A cache per token: a refused token must not be answered from another's files.
        hf_hub_download(ARGS["repo"], ARGS["file"], revision=ARGS.get("rev", "main"),
                        token=token if token else False,
                        cache_dir=os.path.join(os.environ["HF_HOME"], "by-token", name))
        out[name] = "ok"
    except E.HfHubHTTPError as exc:
        out[name] = [type(exc).__name__, exc.response.status_code]
emit(out)
"""


def test_missing_or_wrong_token_refused(hf: HfServed) -> None:
    odd_file = next(iter(_hf.repo_files(hf.hub.resolve(ODD))))
    tokens = {"missing": "", "wrong": "sxt_" + "0" * 40, "right": hf.token,
              "other-model": hf.odd_token}
    out = run_client(AUTH, endpoint=hf.endpoint, home=hf.tmp / "home-auth",
                     args={"tokens": tokens, "repo": "distill", "file": WEIGHTS,
                           "rev": "staging"})
    assert out["right"] == "ok"
    assert out["missing"][1] == 401 and out["wrong"][1] == 401
    # A token limited to another model learns nothing: the repo "does not exist".
    assert out["other-model"] == ["RepositoryNotFoundError", 404]
    ok = run_client(AUTH, endpoint=hf.endpoint, home=hf.tmp / "home-auth2",
                    args={"tokens": {"odd": hf.odd_token}, "repo": _hf.repo_id_for(ODD),
                          "file": odd_file})
    assert ok == {"odd": "ok"}


TREE = """
from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoFile
api = HfApi()
info = api.model_info("tiny-bert", revision="stable", files_metadata=True)
tree = [{"path": f.path, "size": f.size, "sha256": f.lfs.sha256 if f.lfs else None}
        for f in api.list_repo_tree("tiny-bert", revision=info.sha, recursive=True)
        if isinstance(f, RepoFile)]
emit({"sha": info.sha, "siblings": sorted(s.rfilename for s in info.siblings), "tree": tree})
"""


def test_repo_info_and_paginated_tree(hf: HfServed) -> None:
    info = hf.hub.resolve("tiny-bert@stable")
    files = _hf.repo_files(info)
    assert len(files) > 2  # the page size is 2, so the client follows a Link header
    out = run_client(TREE, endpoint=hf.endpoint, home=hf.tmp / "home-tree", token=hf.token)
    assert out["sha"] == _hf.commit_of(info)
    assert out["siblings"] == sorted(files)
    assert sorted(out["tree"], key=lambda e: e["path"]) == [
        {"path": p, "size": f.entry.size, "sha256": f.entry.sha256} for p, f in files.items()]
    with httpx.Client(base_url=hf.endpoint, timeout=30,
                      headers={"Authorization": f"Bearer {hf.token}"}) as c:
        first = c.get(f"/api/models/tiny-bert/tree/{out['sha']}", params={"recursive": "true"})
        assert first.status_code == 200 and len(first.json()) == 2
        assert 'rel="next"' in first.headers["link"]
        bad = c.get(f"/api/models/tiny-bert/tree/{out['sha']}", params={"cursor": "x"})
        assert bad.status_code == 404 and bad.headers["x-error-code"] == "EntryNotFound"


TRANSFORMERS = """
import torch
from transformers import AutoConfig, AutoModel
ids = torch.tensor([[1, 5, 7, 3, 2]])
local = AutoModel.from_pretrained(ARGS["local"]).eval()
out = {"local": local(input_ids=ids).last_hidden_state.tolist()}
for rev in ARGS["revisions"]:
    cfg = AutoConfig.from_pretrained("tiny-bert", revision=rev)
    model = AutoModel.from_pretrained("tiny-bert", revision=rev).eval()
    with torch.no_grad():
        out[rev] = {"hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers,
                    "out": model(input_ids=ids).last_hidden_state.tolist()}
emit(out)
"""


def test_transformers_from_pretrained_by_revision(hf: HfServed) -> None:
    info = hf.hub.resolve("tiny-bert@stable")
    revisions = ["stable", "1.0.0", _hf.commit_of(info)]
    out = run_client(TRANSFORMERS, endpoint=hf.endpoint, home=hf.tmp / "home-tf", token=hf.token,
                     args={"local": str(hf.bert_dir), "revisions": revisions})
    for rev in revisions:
        assert out[rev]["hidden"] == 16 and out[rev]["layers"] == 1
        assert out[rev]["out"] == out["local"], rev


def test_verify_repo_checksums_and_cli_import_of_the_cache(hf: HfServed, tmp_path: Path) -> None:
    """``hf cache verify`` agrees with the hub, and the cache imports with identical digests."""
    code = """
    from huggingface_hub import HfApi, snapshot_download
    api = HfApi()
    for rev in ("stable", "main"):
        snapshot_download("tiny-bert", revision=rev)
    snapshot_download("distill", revision="1.1.0")
    v = api.verify_repo_checksums("tiny-bert", revision="stable")
    emit({"checked": v.checked_count, "mismatches": len(v.mismatches),
          "missing": v.missing_paths, "extra": v.extra_paths})
    """
    home = hf.tmp / "home-import"
    out = run_client(code, endpoint=hf.endpoint, home=home, token=hf.token)
    files = _hf.repo_files(hf.hub.resolve("tiny-bert@stable"))
    assert out == {"checked": len(files), "mismatches": 0, "missing": [], "extra": []}

    fresh = tmp_path / "fresh"
    cmd = [sys.executable, "-m", "sentenialx", "models", "import-hf", str(home / "hub"),
           "--hub", str(fresh), "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    rep = json.loads(first.stdout)
    assert {r["status"] for r in rep["results"]} == {"imported"}
    with Hub(fresh) as dst:
        # A folder version comes back as the same manifest, so the same digest.
        src, got = hf.hub.resolve("tiny-bert@1.0.0"), dst.resolve("tiny-bert@1.0.0")
        assert got.digest == src.digest and got.files == src.files
        assert got.meta["hf"] == {"repo": "tiny-bert", "commit": _hf.commit_of(src)}
        # A single-file version comes back as a folder of its repo files, bytes unchanged.
        src, got = hf.hub.resolve("distill@1.1.0"), dst.resolve("distill@1.1.0")
        assert {f.path.split("/", 1)[1]: f.sha256 for f in got.files} == {
            p: f.entry.sha256 for p, f in _hf.repo_files(src).items()}
        assert got.meta["hf"] == {"repo": "distill", "commit": _hf.commit_of(src)}
        assert {a.alias: a.version for a in dst.aliases("tiny-bert")} == {"main": "1.0.0",
                                                                           "stable": "1.0.0"}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in json.loads(again.stdout)["results"]} == {"present"}



def test_corrupted_cache_file_from_the_real_client_is_refused(hf: HfServed, tmp_path: Path) -> None:
    code = """
    from huggingface_hub import snapshot_download
    emit(snapshot_download("tiny-bert", revision="stable"))
    """
    home = tmp_path / "home"
    snap = Path(run_client(code, endpoint=hf.endpoint, home=home, token=hf.token))
    blob = (snap / "config.json").resolve()
    assert blob.parent.name == "blobs" and blob.name == sha(blob)  # named by its sha256
    env = client_env(endpoint=hf.endpoint, home=home, token=hf.token)
    verify = [sys.executable, "-c", "import sys; from huggingface_hub.cli.hf import main;"
              " sys.exit(main())", "cache", "verify", "tiny-bert", "--revision", "stable"]
    ok = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "All checksums match" in ok.stdout, ok.stdout + ok.stderr
    data = bytearray(blob.read_bytes())
    data[0] ^= 0x01
    blob.write_bytes(bytes(data))
    # `hf cache verify` sees it (every file is listed as LFS, so it checks sha256) ...
    bad = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "config.json" in bad.stdout + bad.stderr
    # ... and import-hf refuses it, adopting nothing.
    fresh = tmp_path / "fresh"
    r = subprocess.run([sys.executable, "-m", "sentenialx", "models", "import-hf",
                        str(home / "hub"), "--repo", "tiny-bert", "--hub", str(fresh)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 6, r.stderr
    assert "sha256 mismatch" in r.stderr and blob.name[:12] in r.stderr
    with Hub(fresh) as dst:
        assert dst.models() == []


def test_resolve_headers_redirects_and_bad_input(hf: HfServed) -> None:
    info = hf.hub.resolve("distill@1.1.0")
    commit, entry = _hf.commit_of(info), hf.hub.weights_entry(info)
    with httpx.Client(base_url=hf.endpoint, timeout=30,
                      headers={"Authorization": f"Bearer {hf.token}"}) as c:
        head = c.head(f"/distill/resolve/{commit}/{WEIGHTS}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["x-repo-commit"] == commit
        assert head.headers["etag"] == f'"{entry.sha256}"'
        assert head.headers["content-length"] == str(entry.size)
        assert head.headers["accept-ranges"] == "bytes"
        # By alias: a relative redirect to the commit's URL, which the client follows.
        moved = c.head(f"/distill/resolve/staging/{WEIGHTS}")
        assert moved.status_code == 307
        assert moved.headers["location"] == f"/hf/distill/resolve/{commit}/{WEIGHTS}"
        assert moved.headers["x-repo-commit"] == commit
        part = c.get(f"/distill/resolve/%5E1.0/{WEIGHTS}", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.headers["x-repo-commit"] == commit
        assert part.content == hf.hub.read_entry(info, entry)[10:20]
        card = c.get(f"/sentenialx/distill/resolve/{commit}/README.md")
        assert card.status_code == 200 and card.content.startswith(b"# Threat student")
        for url, code in [(f"/distill/resolve/{commit}/..%2F..%2Fregistry.db", "EntryNotFound"),
                          (f"/distill/resolve/{'v' * 5000}/{WEIGHTS}", "RevisionNotFound"),
                          (f"/distill/resolve/{'f' * 40}/{WEIGHTS}", "RevisionNotFound"),
                          ("/api/models/distill/revision/%00", "RevisionNotFound"),
                          ("/api/models/..%2Fetc/revision/main", "RepoNotFound"),
                          (f"/api/models/sentenialx/{'x' * 300}", "RepoNotFound")]:
            r = c.get(url)
            assert r.status_code == 404 and r.headers.get("x-error-code") == code, (url, r.text)
            assert isinstance(r.json()["error"], str)


def test_tree_folders_cards_and_revoked_versions(hf: HfServed) -> None:
    old = hf.hub.resolve("distill@1.0.0")
    with httpx.Client(base_url=hf.endpoint, timeout=30,
                      headers={"Authorization": f"Bearer {hf.token}"}) as c:
        top = c.get("/api/models/tiny-bert/tree/main", params={"cursor": "0"})
        paths = [e["path"] for e in top.json()]
        rest = c.get(top.links["next"]["url"]).json() if "next" in top.links else []
        listing = {e["path"]: e["type"] for e in top.json() + rest}
        assert listing["docs"] == "directory" and "docs/notes.txt" not in listing
        assert paths == sorted(paths)
        sub = c.get("/api/models/tiny-bert/tree/main/docs").json()
        assert [(e["path"], e["type"]) for e in sub] == [("docs/notes.txt", "file")]
        assert c.get("/api/models/tiny-bert/tree/main/nope").headers["x-error-code"] == \
            "EntryNotFound"
        # A version without a Markdown report has no README.md; one with it does.
        names = [s["rfilename"] for s in c.get("/api/models/distill/revision/1.0.0").json()
                 ["siblings"]]
        assert names == ["threat_student_v1.0.0.onnx"]
        # A revoked version is not served, not even by its commit.
        hf.hub.revoke(old.ref, reason="test")
        try:
            r = c.get(f"/api/models/distill/revision/{_hf.commit_of(old)}")
            assert r.status_code == 404 and r.headers["x-error-code"] == "RevisionNotFound"
        finally:
            hf.hub.unrevoke(old.ref)
        assert c.get(f"/api/models/distill/revision/{_hf.commit_of(old)}").status_code == 200


def test_tampered_bytes_are_never_served_whole(hf: HfServed, tmp_path: Path) -> None:
    # huggingface_hub does not hash what it downloads, so the server must: a stored file
    # that no longer matches its manifest is cut short before its last bytes, whole or
    # ranged, and the real client keeps no copy of it.
    from sentenialx.hub.layout import file_key

    src = tmp_path / "tamper.onnx"
    src.write_bytes(_rand(200_000, 77))
    info = hf.hub.register("hf-tamper", src)
    entry = hf.hub.weights_entry(info)
    path = Path(hf.hub.store.local_path(file_key("hf-tamper", entry.path)))
    bad = bytearray(path.read_bytes())
    bad[-1] ^= 0xFF  # same size: only a full hash can tell
    path.chmod(0o644)
    path.write_bytes(bytes(bad))
    url = f"{hf.server.url}/hf/hf-tamper/resolve/main/{entry.path}"
    auth = {"Authorization": f"Bearer {hf.token}"}
    for headers in ({}, {"Range": "bytes=0-99"}, {"Range": "bytes=-100"}):
        got = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("GET", url, headers={**auth, **headers}, timeout=30,
                              follow_redirects=True) as r:
                assert r.status_code in (200, 206), r.status_code
                for chunk in r.iter_bytes():
                    got += chunk
        assert len(got) < int(r.headers["content-length"]), headers
