"""A following pipeline over TUF keeps serving its model when a refresh is refused.

The trained hub's encoder and student are published (signed with the release key,
``production`` promoted with it) and served on loopback; the pipeline follows
``distill@production`` through the replaying proxy. Each attack leaves it on the
student it had, with the refusal in ``last_error``; a proper release is picked up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from glob import glob
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.hub import Hub
from sentenialx.pipeline import build_inference_pipeline

from ._tuf import Edge

try:
    import tuf  # noqa: F401 - the `tuf` extra
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("python-tuf is not installed: pip install 'sentenialx[tuf]'",
                allow_module_level=True)
pytest.importorskip("onnxruntime")

TEXTS = ["GET /index.html HTTP/1.1", "'; DROP TABLE users; --", "rm -rf / --no-preserve-root"]


@pytest.fixture
def edge(trained_copy: Callable[..., Hub], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Edge]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SENTENIALX_CACHE", str(tmp_path / "client-cache"))
    e = Edge(tmp_path, hub=trained_copy())
    e.hub.sign("encoder@1.0.0", e.key("release"))
    e.hub.sign("distill@1.0.0", e.key("release"))
    e.hub.promote("distill@1.0.0", to="production", force=True, key=e.key("release"))
    try:
        yield e
    finally:
        e.stop()


def _pipeline(edge: Edge) -> Any:
    pipe = build_inference_pipeline(edge.url, tuf_root=edge.root_json, encoder="encoder",
                                    classifier="distill@production", follow=True)
    assert pipe.versions["classifier"] == "distill@1.0.0"
    return pipe


def _release_alt(edge: Edge, trained_hub: Any, *, sign: bool = True) -> Any:
    alt = trained_hub.register_alt(edge.hub)
    if sign:
        edge.hub.sign(alt.ref, edge.key("release"))
        edge.hub.promote(alt.ref, to="production", force=True, key=edge.key("release"))
    else:
        edge.hub.promote(alt.ref, to="production", force=True)
    return alt


def test_a_signed_promotion_is_followed(edge: Edge, trained_hub: Any):
    pipe = _pipeline(edge)
    before = pipe.predict(TEXTS)
    alt = _release_alt(edge, trained_hub)
    after = pipe.predict(TEXTS)
    assert pipe.swaps == 1 and pipe.last_error is None
    assert pipe.versions["classifier"] == alt.ref and len(after) == len(before)


@pytest.mark.parametrize("attack", ["tampered bytes", "forced unsigned", "rollback",
                                    "untrusted key"])
def test_a_refused_refresh_keeps_the_current_model(edge: Edge, trained_hub: Any, attack: str):
    pipe = _pipeline(edge)
    before = pipe.predict(TEXTS)
    session = pipe._state.session
    if attack == "tampered bytes":
        alt = _release_alt(edge, trained_hub)
        edge.tamper(alt)
    elif attack == "forced unsigned":
        alt = _release_alt(edge, trained_hub, sign=False)
        assert edge.hub.resolve("distill@production").ref == alt.ref  # moved on the server
    elif attack == "rollback":
        captured = edge.metadata("timestamp.json")
        edge.refresh_online()
        pipe.predict(TEXTS)  # trusts the newer timestamp now
        _release_alt(edge, trained_hub)
        edge.replay("timestamp.json", captured)
    else:
        edge.forge_role("release-all")
    after = pipe.predict(TEXTS)
    assert after == before and pipe._state.session is session and pipe.swaps == 0
    assert pipe.versions["classifier"] == "distill@1.0.0"
    if attack == "forced unsigned":
        assert pipe.last_error is None  # nothing new was published: nothing to refuse
    else:
        assert pipe.last_error is not None and attack in pipe.last_error


FROZEN_CLIENT = r"""
import json, sys
from sentenialx.pipeline import build_inference_pipeline

url, root, spec = sys.argv[1:4]
texts = ["GET /index.html HTTP/1.1", "rm -rf /"]
pipe = build_inference_pipeline(url, tuf_root=root, classifier="distill@production", follow=True)
before = [p.to_dict() for p in pipe.predict(texts)]
with open(spec, "w") as f:
    f.write("+2h\n")  # this host's clock jumps past the timestamp's expiry
after = [p.to_dict() for p in pipe.predict(texts)]
print(json.dumps({"same": before == after, "versions": pipe.versions,
                  "last_error": pipe.last_error}))
"""


def test_a_clock_past_the_timestamp_expiry_keeps_the_current_model(edge: Edge, tmp_path: Path):
    libs = glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not libs:
        if os.environ.get("CI") == "true":
            pytest.fail("libfaketime is missing; scripts/test.sh installs it")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    spec = tmp_path / "faketime.spec"
    spec.write_text("+0\n")
    env = dict(os.environ, LD_PRELOAD=libs[0], FAKETIME_TIMESTAMP_FILE=str(spec),
               FAKETIME_NO_CACHE="1")
    out = subprocess.run([sys.executable, "-c", FROZEN_CLIENT, edge.url, str(edge.root_json),
                          str(spec)], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["same"] and got["versions"]["classifier"] == "distill@1.0.0"
    assert got["last_error"] is not None and "freeze" in got["last_error"]
