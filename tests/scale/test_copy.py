"""``sentenialx models copy``: local hub -> PostgreSQL + S3 -> local hub, resumable.

The source hub has what a real one has: a file version with attachments, a folder
version, lineage, aliases, a revoked version, a signed version, and one file large
enough to go up in several multipart parts.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sentenialx.hub.cli import cli as root_cli
from sentenialx.hub.errors import Conflict
from sentenialx.hub.hub import Hub
from sentenialx.hub.transfer import copy_hub

pytestmark = [pytest.mark.postgres, pytest.mark.s3]
MiB = 1024 * 1024


def _bytes(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def _write(p: Path, data: bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def build_source(root: Path, inputs: Path, *, big: int = 20 * MiB) -> tuple[Hub, Path]:
    """A local hub with every kind of thing a copy must carry; returns it and its signing key."""
    from sentenialx.hub.signing import generate_keypair

    hub = Hub(root)
    hub.register("teacher", _write(inputs / "teacher.onnx", _bytes(300_000, 1)), alias="champion")
    att = [("log", _write(inputs / "train.log", b"epoch 1 loss 0.2\n")),
           ("report", _write(inputs / "report.md", b"# Distillation\n"))]
    hub.register("distill", _write(inputs / "threat_student.onnx", _bytes(120_000, 2)),
                 parents=["teacher=teacher@champion"], attachments=att,
                 data_digest="ab" * 32, metadata={"metrics": {"accuracy": 0.93}})
    hub.register("distill", _write(inputs / "threat_student2.onnx", _bytes(120_000, 3)),
                 name="threat_student", parents=["teacher=teacher@1.0.0"],
                 data_digest="cd" * 32, metadata={"metrics": {"accuracy": 0.95}})
    hub.register("distill", _write(inputs / "threat_student3.onnx", _bytes(1000, 4)),
                 name="threat_student")
    hub.revoke("distill@1.0.2", reason="leaks a canary string")
    # production is gated and 1.0.1 is not yet signed: a forced move, recorded as such.
    hub.set_alias("distill@1.0.1", "production", force=True)
    hub.set_alias("distill@1.0.0", "staging")
    adapter = inputs / "adapter"
    _write(adapter / "adapter_model.bin", _bytes(50_000, 5))
    _write(adapter / "adapter_config.json", b'{"r": 8}')
    _write(adapter / "tokenizer" / "vocab.json", b'{"hello": 1}')
    hub.register("lora", adapter, parents=["base=distill@staging"])  # carried: not gated
    hub.register("encoder", _write(inputs / "encoder.onnx", _bytes(big, 6)))  # multipart
    key = inputs / "release.key"
    generate_keypair(key, inputs / "release.pub")
    hub.sign("distill@1.0.1", key)
    return hub, key


def manifests(h: Any) -> dict[str, Any]:
    """Everything about every version that a faithful copy keeps."""
    out = {}
    for m in h.models():
        for v in h.versions(m["model"]):
            out[v.ref] = {"digest": v.digest, "files": [f.to_dict() for f in v.files],
                          "meta": v.meta, "lineage": v.lineage, "revoked": v.revoked,
                          "layout": v.layout, "stem": v.stem}
    return out


def aliases(h: Any) -> dict[str, str]:
    return {f"{a.model}@{a.alias}": a.version for a in h.aliases()}


def ungated(al: dict[str, str]) -> dict[str, str]:
    """The aliases a copy carries to a hub whose gates the source's production cannot pass."""
    return {k: v for k, v in al.items() if not k.endswith("@production")}


def run_cli(*args: str | Path) -> Any:
    r = CliRunner().invoke(root_cli, ["models", *[str(a) for a in args]],
                           env={"SENTENIALX_PROGRESS": "0", "SENTENIALX_DEBUG": None})
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


def init_shared(shared_hub: Any, name: str) -> Path:
    """``models init`` writes hub.toml for PostgreSQL + S3 into a new folder."""
    root = shared_hub.base / name
    run_cli("init", "--hub", root, "--index", shared_hub.index_url, "--store", shared_hub.s3.url,
            "--s3-endpoint", shared_hub.endpoint)
    assert (root / "hub.toml").is_file()
    return root


def test_copy_local_to_postgres_s3_and_back(shared_hub: Any, tmp_path: Path) -> None:
    src, key = build_source(tmp_path / "local", tmp_path / "inputs")
    want, want_aliases = manifests(src), aliases(src)
    src_id = src.index.state()["hub_id"]
    dst_root = init_shared(shared_hub, "team")

    out = json.loads(run_cli("copy", src.root, dst_root, "--json").stdout)
    assert {r["ref"] for r in out["results"]} == set(want)
    assert {r["status"] for r in out["results"]} == {"copied"}
    assert out["signatures"] == ["distill@1.0.1"]
    assert set(out["provenance"]) == set(want)

    dst = shared_hub.open("team")
    assert manifests(dst) == want
    # production is gated on the destination too, and its key is not trusted there: the
    # version is copied, the alias is held back and reported, never moved unchecked.
    assert aliases(dst) == ungated(want_aliases)
    held = {r["ref"]: r["aliases_held"] for r in out["results"]}
    assert held["distill@1.0.1"] == ["production"]
    assert dst.verify(deep=True).ok
    rep = dst.fsck(deep=True, grace=timedelta(0))
    assert rep.ok, [p.message for p in rep.problems]
    assert dst.verify_log().ok
    # Bytes are in the bucket, the index in PostgreSQL; nothing of them in the folder.
    keys = shared_hub.s3.keys()
    assert any(k.startswith("encoder/encoder_v1.0.0") for k in keys)
    assert not (dst_root / "distill").exists() and not (dst_root / "registry.db").exists()
    # The signature: the same bytes, its sign event replayed with a pointer to the original.
    info = src.resolve("distill@1.0.1")
    assert dst.store.read_bytes(dst.sig_key(info)) == src.store.read_bytes(src.sig_key(info))
    src_sign = [e for e in src.events() if e.kind == "sign"]
    dst_sign = [e for e in dst.events() if e.kind == "sign"]
    assert len(dst_sign) == 1
    assert dst_sign[0].payload["provenance_sig"] == src_sign[0].payload["provenance_sig"]
    assert dst_sign[0].payload["source"]["hash"] == src_sign[0].hash
    # Provenance: one import event per version naming the source hub and its events.
    src_hashes = {e.hash for e in src.events()}
    imports = {e.payload["source"]["hub_id"]: e for e in dst.events() if e.kind == "import"}
    assert set(imports) == {src_id}
    for e in (e for e in dst.events() if e.kind == "import"):
        assert e.payload["digest"] == want[f"{e.model}@{e.version}"]["digest"]
        assert e.payload["source_events"][0]["kind"] == "register"
        assert {s["hash"] for s in e.payload["source_events"]} <= src_hashes
    assert dst.resolve("distill").version == "1.0.1"  # 1.0.2 stays revoked
    assert dst.open("lora", trust="off") == _bytes(50_000, 5)

    # ... and back into a fresh local hub: identical again, and the signature verifies.
    back_root = tmp_path / "back"
    out = json.loads(run_cli("copy", dst_root, back_root, "--json").stdout)
    assert {r["status"] for r in out["results"]} == {"copied"}
    back = Hub.open(back_root)
    shared_hub.opened.append(back)
    assert manifests(back) == want
    assert aliases(back) == ungated(want_aliases)
    assert back.verify(deep=True).ok
    assert back.fsck(deep=True).ok
    for ref in want:
        f = want[ref]["files"][0]["path"]
        assert (back.root / ref.split("@")[0] / f).read_bytes() == \
            (src.root / ref.split("@")[0] / f).read_bytes()
    ts = back.trust_store()
    ts.trust_key(tmp_path / "inputs" / "release.pub", name="release")
    back.save_trust(ts, action="trust-key", detail={})
    assert back.verify_signature(back.resolve("distill@1.0.1"))
    back.set_alias("distill@1.0.1", "production", force=True)  # latency gate has no metric
    assert back.open("distill@production") == _bytes(120_000, 3)  # enforce mode passes
    # The replayed sign event still proves the provenance statement in the new hub.
    gates = {g.gate: g for g in back.check_gates("distill@1.0.1", to="production")}
    assert gates["provenance"].ok, gates["provenance"]
    back_imports = [e for e in back.events() if e.kind == "import"]
    assert {e.payload["source"]["hub_id"] for e in back_imports} == {dst.index.state()["hub_id"]}

    # A round trip home changes nothing: everything is there, nothing new to record.
    before = len(src.events())
    out = json.loads(run_cli("copy", dst_root, src.root, "--json").stdout)
    assert {r["status"] for r in out["results"]} == {"present"}
    assert out["signatures"] == [] and out["provenance"] == []
    assert len(src.events()) == before
    src.close()


def test_copy_is_resumable(shared_hub: Any, tmp_path: Path,
                           run_worker: Callable[..., Any]) -> None:
    src, _key = build_source(tmp_path / "local", tmp_path / "inputs", big=40 * MiB)
    want = manifests(src)
    dst_root = init_shared(shared_hub, "team")
    dst = shared_hub.open("team")

    # 1. A subset first (and its lineage), then everything: what is there is skipped.
    first = copy_hub(src, dst, ["lora"])
    assert [r.ref for r in first.results] == ["teacher@1.0.0", "distill@1.0.0", "lora@1.0.0"]
    assert [r.status for r in first.results] == ["copied"] * 3

    # 2. Interrupted (Ctrl-C) in the middle of the big upload: nothing half-made is left.
    seen = 0

    def interrupt(n: int) -> None:
        nonlocal seen
        seen += n
        if seen > 16 * MiB:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_hub(src, dst, progress=interrupt)
    assert dst.index.pending_versions() == []
    assert shared_hub.s3.uploads() == []
    assert dst.fsck(grace=timedelta(0)).ok
    done_before_kill = set(manifests(dst))
    assert "encoder@1.0.0" not in done_before_kill

    # 3. Killed outright (SIGKILL) in the middle of the big upload, from another process.
    marker = tmp_path / "killed-here"
    p = run_worker("copy", src=str(src.root), dst=str(dst_root), after_bytes=16 * MiB,
                   marker=str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert p.poll() is None, p.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert [v.ref for v in dst.index.pending_versions()] == ["encoder@1.0.0"]
    assert not [k for k in shared_hub.s3.keys() if k.startswith("encoder/")]
    # The dead writer's reservation is not taken over blindly (it could be alive on
    # another machine): the copy says so, and gc clears it once it is old enough.
    with pytest.raises(Conflict, match="gc"):
        copy_hub(src, dst)
    gc = dst.gc(grace=timedelta(0))
    assert gc.stale_pending == ["encoder@1.0.0"]
    assert shared_hub.s3.uploads() == []

    # 4. Run again: only what is missing is sent.
    last = json.loads(run_cli("copy", src.root, dst_root, "--json").stdout)
    status = {r["ref"]: r["status"] for r in last["results"]}
    assert status["encoder@1.0.0"] == "copied"
    assert {r for r, s in status.items() if s == "present"} == done_before_kill
    assert manifests(dst) == want
    assert aliases(dst) == ungated(aliases(src))
    assert dst.verify(deep=True).ok
    assert dst.fsck(deep=True, grace=timedelta(0)).ok
    # Every version got its provenance exactly once, whichever run copied it.
    imports = [e.version and f"{e.model}@{e.version}" for e in dst.events() if e.kind == "import"]
    assert sorted(imports) == sorted(want)
    src.close()
