"""Releases distributed over TUF, against a real served hub on loopback.

A plain python-tuf client (no project code) bootstraps from ``tuf root``, resolves
``production`` through ``aliases.json`` and downloads the registered weights. The
hub's own clients (``Hub.open(url, tuf_root=…)`` and ``models pull --tuf-root``)
refuse, naming the attack, and keep what they had, when: the bytes change on the
server's disk; an unsigned version is promoted with --force on the server; old
metadata is replayed (rollback) or mixed with new (mix-and-match); the clock is past
the timestamp's expiry (faketime: freeze); a release role is signed by a key TUF
did not delegate; a root is signed below its threshold. Root rotation: two
rotations, an old client follows both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sentenialx.hub.cli import cli
from sentenialx.hub.errors import NotFound, SignatureError, UpdateRefused
from sentenialx.hub.hub import Hub

from ._tuf import Edge, sha256

try:
    import tuf  # noqa: F401 - the `tuf` extra
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("python-tuf is not installed: pip install 'sentenialx[tuf]'",
                allow_module_level=True)

PLAIN_CLIENT = r"""
import hashlib, json, sys, tempfile
from tuf.ngclient import Updater

url, root = sys.argv[1], sys.argv[2]
d = tempfile.mkdtemp()
u = Updater(metadata_dir=d, metadata_base_url=url + "/tuf/metadata/", target_dir=d,
            target_base_url=url + "/tuf/targets/", bootstrap=open(root, "rb").read())
u.refresh()
def get(path):
    info = u.get_targetinfo(path)
    return open(u.download_target(info), "rb").read()
aliases = json.loads(get("distill/aliases.json"))
version = aliases["aliases"]["production"]
record = json.loads(get(f"distill/{version}.json"))
weights = [f for f in record["files"] if f["role"] == "weights"][0]
data = get(f"distill/{version}/{weights['path']}")
print(json.dumps({"version": version, "sha256": hashlib.sha256(data).hexdigest(),
                  "project_code": [m for m in sys.modules if m.startswith("sentenialx")]}))
"""


@pytest.fixture
def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Edge]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SENTENIALX_CACHE", str(tmp_path / "client-cache"))
    e = Edge(tmp_path)
    e.v1 = e.release()
    try:
        yield e
    finally:
        e.stop()


def run_cli(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def pull(edge: Edge, ref: str, dest: Path) -> Any:
    return run_cli("models", "pull", edge.url, ref, "--to", dest, "--tuf-root", edge.root_json)


def dest_versions(dest: Path) -> list[str]:
    if not dest.exists():
        return []
    with Hub(dest) as h:
        return [v.ref for m in h.models() for v in h.versions(m["model"])]


# -- a plain python-tuf client ------------------------------------------------------------------
def test_plain_python_tuf_client_bootstraps_resolves_and_downloads(edge: Edge, tmp_path: Path):
    r = run_cli("tuf", "root", "--hub", edge.hub.root)
    assert r.exit_code == 0
    root = tmp_path / "from-cli-root.json"
    root.write_text(r.output)
    assert json.loads(r.output)["signed"]["_type"] == "root"
    # -I: isolated mode, no PYTHONPATH: nothing of the project can be on the client side.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-I", "-c", PLAIN_CLIENT, edge.server.url, str(root)],
                         capture_output=True, text=True, timeout=120, env=env, check=True)
    got = json.loads(out.stdout)
    assert got["version"] == "1.0.0" and got["project_code"] == []
    assert got["sha256"] == edge.v1.files[0].sha256 == sha256(edge.weights(edge.v1).read_bytes())


def test_routes_serve_only_published_targets(edge: Edge):
    import httpx

    base = edge.server.url
    assert httpx.get(f"{base}/tuf/metadata/timestamp.json").status_code == 200
    assert httpx.get(f"{base}/tuf/metadata/1.root.json").json()["signed"]["_type"] == "root"
    for bad in ("../registry.db", "2.timestamp.json", "root.json", "1.policy.json"):
        assert httpx.get(f"{base}/tuf/metadata/{bad}").status_code == 404, bad
    w = edge.v1.files[0]
    ok = f"{base}/tuf/targets/distill/1.0.0/{w.sha256}.{w.path}"
    assert httpx.get(ok).content == edge.weights(edge.v1).read_bytes()
    # Another hash, an unpublished version, a path outside the targets: 404, never a file.
    for bad in (f"distill/1.0.0/{'0' * 64}.{w.path}", f"distill/9.9.9/{w.sha256}.{w.path}",
                f"{w.sha256}.registry.db", "distill/1.0.0/x"):
        assert httpx.get(f"{base}/tuf/targets/{bad}").status_code == 404, bad


# -- the hub's own clients refuse and keep the old model ----------------------------------------
def test_bytes_changed_on_the_server_disk(edge: Edge, tmp_path: Path):
    client = Hub.open(edge.url, tuf_root=edge.root_json)
    old = client.open_bytes("distill@production")
    v2 = edge.release()
    edge.tamper(v2)
    client.generation()
    with pytest.raises(UpdateRefused, match="tampered bytes") as exc:
        client.open_bytes("distill@production")
    assert exc.value.attack == "tampered bytes"
    assert client.open_bytes("distill@1.0.0") == old
    dest = tmp_path / "dest"
    assert pull(edge, "distill@1.0.0", dest).exit_code == 0
    r = pull(edge, "distill@production", dest)
    assert r.exit_code == 13 and "tampered bytes" in r.output
    assert dest_versions(dest) == ["distill@1.0.0"]


def test_unsigned_version_promoted_with_force_changes_nothing_a_client_sees(edge: Edge,
                                                                           tmp_path: Path):
    client = Hub.open(edge.url, tuf_root=edge.root_json)
    assert client.resolve("distill@production").version == "1.0.0"
    v2 = edge.release(key=None)
    edge.hub.promote(v2.ref, to="production", force=True)
    assert edge.hub.resolve("distill@production").version == v2.version  # the server moved
    # Publishing that move needs the release key and a signed release: refused, no move.
    with pytest.raises(SignatureError, match="not a release published"):
        edge.hub.promote(v2.ref, to="staging", key=edge.key("release"))
    assert [a.alias for a in edge.hub.aliases("distill") if a.version == v2.version] == \
        ["production"]
    client.generation()
    assert client.resolve("distill@production").version == "1.0.0"
    with pytest.raises(UpdateRefused, match="arbitrary release"):
        client.open_bytes(v2.ref)
    dest = tmp_path / "dest"
    assert pull(edge, "distill@production", dest).exit_code == 0
    r = pull(edge, v2.ref, dest)
    assert r.exit_code == 13 and "arbitrary release" in r.output
    assert dest_versions(dest) == ["distill@1.0.0"]


def test_replayed_metadata_is_a_rollback(edge: Edge, tmp_path: Path):
    client = Hub.open(edge.url, tuf_root=edge.root_json)
    old = client.open_bytes("distill@production")
    captured = edge.metadata("timestamp.json")
    edge.refresh_online()
    client.generation()  # the client now trusts the newer timestamp
    dest = tmp_path / "dest"
    assert pull(edge, "distill@production", dest).exit_code == 0
    edge.release()  # a new production the replay hides
    edge.replay("timestamp.json", captured)
    with pytest.raises(UpdateRefused, match="rollback") as exc:
        client.generation()
    assert exc.value.attack == "rollback"
    assert client.open_bytes("distill@production") == old
    r = pull(edge, "distill@production", dest)
    assert r.exit_code == 13 and "rollback" in r.output
    assert dest_versions(dest) == ["distill@1.0.0"]


def test_mixed_metadata_is_refused(edge: Edge, tmp_path: Path):
    client = Hub.open(edge.url, tuf_root=edge.root_json)
    old = client.open_bytes("distill@production")
    snap = edge.repo.latest_version("snapshot")
    captured = edge.metadata(f"{snap}.snapshot.json")
    edge.release()
    edge.refresh_online()
    # The new timestamp names snapshot N+k; the mirror hands the old snapshot under that name.
    edge.replay(f"{edge.repo.latest_version('snapshot')}.snapshot.json", captured)
    with pytest.raises(UpdateRefused, match="mix-and-match") as exc:
        client.generation()
    assert exc.value.attack == "mix-and-match"
    assert client.open_bytes("distill@1.0.0") == old
    dest = tmp_path / "dest"
    r = pull(edge, "distill@production", dest)
    assert r.exit_code == 13 and "mix-and-match" in r.output
    assert dest_versions(dest) == []


def test_release_role_signed_by_an_untrusted_key(edge: Edge, tmp_path: Path):
    client = Hub.open(edge.url, tuf_root=edge.root_json)
    old = client.open_bytes("distill@production")
    v2 = edge.release(key=None)
    # The hub's own `models sign` with a key TUF does not delegate publishes nothing...
    out = edge.hub.sign(v2.ref, edge.key("rogue"))
    assert out["tuf"].startswith("not published")
    client.generation()
    assert client.resolve("distill@production").version == "1.0.0"
    # ...and a server that re-signs the release role itself is refused by every client.
    edge.forge_role("release-all")
    with pytest.raises(UpdateRefused, match="untrusted key") as exc:
        client.generation()
        client.resolve("distill@production")
    assert exc.value.attack == "untrusted key"
    assert client.open_bytes("distill@1.0.0") == old
    r = pull(edge, "distill@production", tmp_path / "dest")
    assert r.exit_code == 13 and "untrusted key" in r.output
    assert dest_versions(tmp_path / "dest") == []
    # The release team's next publication never re-signs the forged file into trust.
    v3 = edge.release(key=None)
    with pytest.raises(SignatureError, match="not signed by the keys that delegate"):
        edge.hub.promote(v3.ref, to="staging", key=edge.key("release"))
    assert "not signed by the keys" in edge.hub.sign(v3.ref, edge.key("release"))["tuf"]


def _faketime() -> str:
    path = shutil.which("faketime")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("faketime is missing; scripts/test.sh installs it")
        pytest.skip("faketime is not installed (apt-get install faketime)")
    return path


def test_clock_past_the_timestamp_expiry_is_a_freeze(edge: Edge, tmp_path: Path):
    faketime = _faketime()
    dest = tmp_path / "dest"
    args = ["-m", "sentenialx", "models", "pull", edge.url, "distill@production", "--to",
            str(dest), "--tuf-root", str(edge.root_json)]
    ok = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    edge.release()
    # The server keeps the timestamp fresh for its own clock (1 h validity); this client
    # lives 2 h ahead, so what it is served has expired: a frozen repository, refused.
    frozen = subprocess.run([faketime, "-f", "+2h", sys.executable, *args], capture_output=True,
                            text=True, timeout=120)
    assert frozen.returncode == 13, frozen.stderr
    assert "freeze" in frozen.stderr and len(frozen.stderr.strip().splitlines()) == 1
    assert dest_versions(dest) == ["distill@1.0.0"]


# -- keys ---------------------------------------------------------------------------------------
def test_root_rotation_twice_an_old_client_follows_both(edge: Edge, tmp_path: Path):
    client = Hub.open(edge.url, tuf_root=edge.root_json)  # knows root v1 only
    assert client.resolve("distill@production").version == "1.0.0"
    r = run_cli("tuf", "rotate", "--hub", edge.hub.root, "--root-key", edge.key("root1"),
                "--new-root-key", edge.key("root2"), "--new-root-key", edge.key("root3"),
                "--threshold", "2")
    assert r.exit_code == 0, r.output
    # Below the new threshold: root3 alone cannot sign the next root; nothing is written.
    r = run_cli("tuf", "rotate", "--hub", edge.hub.root, "--root-key", edge.key("root3"),
                "--new-root-key", edge.key("root4"))
    assert r.exit_code == 7 and "below threshold" in r.output
    assert edge.repo.latest_version("root") == 2
    assert run_cli("tuf", "rotate", "--hub", edge.hub.root, "--root-key", edge.key("root2"),
                   "--root-key", edge.key("root3"), "--new-root-key", edge.key("root4")
                   ).exit_code == 0
    v2 = edge.release()
    client.generation()
    assert client.resolve("distill@production").version == v2.version
    trusted = json.loads((client._tuf.metadata_dir / "root.json").read_bytes())  # type: ignore[union-attr]
    assert trusted["signed"]["version"] == 3
    # A fresh client given the old root v1 walks both rotations as well.
    fresh = Hub.tuf(edge.url, root=edge.root_json, cache_dir=tmp_path / "fresh")
    assert fresh.open_bytes("distill@production") == edge.weights(v2).read_bytes()


def test_a_root_below_its_threshold_is_refused(edge: Edge, tmp_path: Path):
    from sentenialx.hub.signing import load_private_key
    from sentenialx.hub.tuf_repo import signer_for

    client = Hub.open(edge.url, tuf_root=edge.root_json)
    old = client.open_bytes("distill@production")
    # A server forging root v2 with a key of its own (not the offline root1).
    md = edge.repo.load("root")
    md.signed.version = 2
    md.signatures.clear()
    md.sign(signer_for(load_private_key(edge.key("rogue"))))
    edge.replay("2.root.json", md.to_bytes())
    with pytest.raises(UpdateRefused, match="below threshold") as exc:
        client.generation()
    assert exc.value.attack == "below threshold"
    assert client.open_bytes("distill@1.0.0") == old


def test_status_init_twice_and_promote_key_without_a_repository(edge: Edge, tmp_path: Path):
    r = run_cli("tuf", "status", "--hub", edge.hub.root, "--json")
    rows = {x["role"]: x for x in json.loads(r.output)}
    assert set(rows) == {"root", "targets", "snapshot", "timestamp", "release-all"}
    assert rows["release-all"]["version"] >= 1 and rows["root"]["threshold"] == 1
    again = run_cli("tuf", "init", "--hub", edge.hub.root, "--root-key", edge.key("root1"),
                    "--targets-key", edge.key("targets"), "--online-keys", tmp_path / "o2")
    assert again.exit_code == 4 and "already holds a TUF repository" in again.output
    inside = run_cli("tuf", "init", "--hub", tmp_path / "h2", "--root-key", edge.key("root1"),
                     "--targets-key", edge.key("targets"), "--online-keys", tmp_path / "h2/k")
    assert inside.exit_code == 5 and "inside the hub folder" in inside.output
    plain = Hub(tmp_path / "plain")
    plain.register("distill", edge.weights(edge.v1), metadata={"metrics": {"accuracy": 0.97}})
    with pytest.raises(NotFound, match="no TUF repository"):
        plain.promote("distill@1.0.0", key=edge.key("release"))


def test_delegate_maps_the_trust_policy_to_release_roles(edge: Edge, tmp_path: Path):
    from sentenialx.hub.signing import generate_keypair

    generate_keypair(tmp_path / "enc.pem", tmp_path / "enc.pub")
    assert run_cli("keys", "trust", tmp_path / "enc.pub", "--model", "encoder", "--hub",
                   edge.hub.root).exit_code == 0
    v = edge.release("encoder", key=None, name="encoder.onnx")
    # Trusted locally, but not yet delegated over TUF: signing publishes nothing.
    assert edge.hub.sign(v.ref, tmp_path / "enc.pem")["tuf"].startswith("not published")
    wrong = run_cli("tuf", "delegate", "--hub", edge.hub.root, "--targets-key", edge.key("root1"))
    assert wrong.exit_code == 7 and "not the targets key" in wrong.output
    r = run_cli("tuf", "delegate", "--hub", edge.hub.root, "--targets-key", edge.key("targets"))
    assert r.exit_code == 0 and "release-encoder" in r.output
    assert edge.hub.sign(v.ref, tmp_path / "enc.pem")["tuf"] == "published in release-encoder"
    client = Hub.open(edge.url, tuf_root=edge.root_json)
    assert client.open_bytes("encoder") == edge.weights(v).read_bytes()
    # The encoder key was delegated encoder only: it cannot publish distill releases.
    with pytest.raises(SignatureError, match="not one TUF delegates 'distill'"):
        edge.hub.promote(edge.v1.ref, to="staging", key=tmp_path / "enc.pem")


def test_cli_sign_and_promote_key_publish(edge: Edge, tmp_path: Path):
    v = edge.release(key=None)
    r = run_cli("models", "sign", v.ref, "--key", edge.key("release"), "--hub", edge.hub.root)
    assert r.exit_code == 0 and "TUF: published in release-all" in r.output
    client = Hub.open(edge.url, tuf_root=edge.root_json)
    assert client.resolve("distill@production").version == "1.0.0"
    assert client.resolve("distill").version == v.version  # latest published release
    r = run_cli("models", "promote", v.ref, "--to", "production", "--key", edge.key("release"),
                "--hub", edge.hub.root)
    assert r.exit_code == 0, r.output
    client.generation()
    assert client.resolve("distill@production").version == v.version
    r = run_cli("tuf", "status", "--hub", edge.hub.root)
    assert r.exit_code == 0 and "release-all" in r.output and "timestamp" in r.output


def test_rotating_the_online_keys_locks_out_stolen_ones(edge: Edge, tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    from tuf.api.metadata import Metadata, MetaFile, Timestamp

    from sentenialx.hub.tuf_repo import signer_for

    client = Hub.open(edge.url, tuf_root=edge.root_json)
    old = client.open_bytes("distill@production")
    stolen = edge.online
    assert stolen is not None
    r = run_cli("tuf", "rotate", "--hub", edge.hub.root, "--root-key", edge.key("root1"),
                "--new-root-key", edge.key("root1"), "--new-online-keys", tmp_path / "online2")
    assert r.exit_code == 0 and "--tuf-online-keys" in r.output
    edge.server.server.config.app.state.tuf_online_keys = tmp_path / "online2"
    client.generation()
    assert client.open_bytes("distill@production") == old
    # A mirror holding the stolen timestamp key signs a "newer" timestamp: refused.
    ts = Metadata(Timestamp(version=10_000, expires=datetime.now(UTC) + timedelta(days=1),
                            snapshot_meta=MetaFile(edge.repo.latest_version("snapshot"))))
    ts.sign(signer_for(stolen["timestamp"]))
    edge.replay("timestamp.json", ts.to_bytes())
    with pytest.raises(UpdateRefused, match="below threshold"):
        client.generation()
    assert client.open_bytes("distill@1.0.0") == old
