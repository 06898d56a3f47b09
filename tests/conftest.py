"""Shared fixtures: real hubs in ``tmp_path`` (real SQLite, real files), sample inputs, the CLI.

- ``make_hub(path=None) -> Hub``: open (creating) a hub; each call without a path gets a
  fresh folder. Every hub opened here is closed at teardown.
- ``hub``: one fresh hub (``make_hub()``).
- ``sample_file(size=4096, seed=0, *, name="model.onnx", dir=None) -> Path``: a file of
  deterministic pseudo-random bytes (same seed, same bytes).
- ``cli(*args, input=None, hub=None) -> Result``: ``sentenialx models ARGS --hub ROOT``
  through click's ``CliRunner``, with stdout and stderr apart and ``.json()`` to parse.
- ``snapshot(hub) -> dict``: everything a failed call must not change (index rows,
  registry.json, the directory listing), for "bad input changes nothing" checks.
- ``trained_hub`` (session): a hub trained once (encoder, teacher, distill, lora @1.0.0) plus
  a second, unregistered student; ``trained_copy(name="trained") -> Hub`` copies it for a test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sentenialx.hub.hub import Hub

# Keep progress bars out of captured output.
os.environ.setdefault("SENTENIALX_PROGRESS", "0")
os.environ.setdefault("SENTENIALX_ACTOR", "tester@test")


def sample_bytes(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def write_sample(path: str | os.PathLike[str], size: int = 4096, seed: int = 0) -> Path:
    """Write ``size`` deterministic bytes to ``path`` (parents created) and return it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(sample_bytes(size, seed))
    return p


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Factory: ``make_hub(path=None) -> Hub`` on real SQLite and real files."""
    opened: list[Hub] = []

    def factory(path: str | os.PathLike[str] | None = None) -> Hub:
        root = Path(path) if path is not None else tmp_path / (
            "hub" if not opened else f"hub{len(opened)}")
        h = Hub(root)
        opened.append(h)
        return h

    yield factory
    for h in opened:
        h.close()


@pytest.fixture
def hub(make_hub: Callable[..., Hub]) -> Hub:
    """A fresh, empty hub in ``tmp_path/hub``."""
    return make_hub()


@pytest.fixture
def sample_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``sample_file(size=4096, seed=0, *, name="model.onnx", dir=None) -> Path``."""
    inputs = tmp_path / "inputs"

    def make(size: int = 4096, seed: int = 0, *, name: str = "model.onnx",
             dir: str | os.PathLike[str] | None = None) -> Path:  # noqa: A002 - mirrors mkdtemp
        base = Path(dir) if dir is not None else inputs / f"s{seed}-{size}"
        return write_sample(base / name, size, seed)

    return make


@dataclass
class CliResult:
    """What one CLI run produced."""

    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    def json(self) -> Any:
        """Parse stdout as JSON."""
        return json.loads(self.stdout)


@pytest.fixture
def cli(hub: Hub) -> Callable[..., CliResult]:
    """Run ``sentenialx models ARGS --hub ROOT`` in process (CliRunner)."""
    from sentenialx.hub.cli import cli as root_cli

    runner = CliRunner()

    def run(*args: str | os.PathLike[str], input: str | None = None,  # noqa: A002
            hub: Hub | str | os.PathLike[str] | None = None, models: bool = True) -> CliResult:
        target = hub if hub is not None else default_hub
        root = str(target.root if isinstance(target, Hub) else target)
        argv = (["models"] if models else []) + [str(a) for a in args] + ["--hub", root]
        r = runner.invoke(root_cli, argv, input=input, catch_exceptions=True,
                          env={"SENTENIALX_PROGRESS": "0", "SENTENIALX_DEBUG": None})
        exc = r.exception if not isinstance(r.exception, SystemExit) else None
        return CliResult(r.exit_code, r.stdout, r.stderr, exc)

    default_hub = hub
    return run


def _dump_index(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        out = {}
        for t in tables:
            if t == "stat_cache":  # a cache, not state
                continue
            out[t] = sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
        return out
    finally:
        conn.close()


def _listing(root: Path) -> list[tuple[str, int, int]]:
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("registry.db") or rel.endswith(".lock"):
            continue
        st = p.lstat()
        out.append((rel, st.st_size if p.is_file() else -1, st.st_mode))
    return out


def take_snapshot(h: Hub) -> dict[str, Any]:
    """Index rows (minus the stat cache), registry.json bytes and the directory listing."""
    reg = h.root / "registry.json"
    return {
        "index": _dump_index(h.root / "registry.db"),
        "registry.json": reg.read_bytes() if reg.exists() else None,
        "files": _listing(h.root),
    }


@pytest.fixture
def snapshot() -> Callable[[Hub], dict[str, Any]]:
    """``snapshot(hub)``: compare before/after to prove a failed call changed nothing."""
    return take_snapshot


def check_registry_json(h: Hub) -> dict[str, Any]:
    """Assert registry.json is in the seed's shape and agrees with the index; return it.

    ``{model: {"version", "file", "hash", "updated", ...}}`` with the latest version per
    model, ``file`` relative to the root, ``hash`` the sha256 of that file (a folder
    version's hash is its digest) and ``updated`` ISO-8601 UTC.
    """
    import hashlib
    from datetime import datetime, timedelta

    from sentenialx.hub.errors import NotFound

    data = json.loads((h.root / "registry.json").read_text())
    assert isinstance(data, dict)
    live = {m["model"]: m["latest"] for m in h.models() if m["latest"]}
    assert set(data) == set(live), (set(data), live)
    for model, entry in data.items():
        assert {"version", "file", "hash", "updated"} <= set(entry)
        assert entry["version"] == live[model]
        try:
            v = h.resolve(model)
        except NotFound:  # pragma: no cover - live says there is one
            raise AssertionError(f"{model} has no latest") from None
        assert entry["version"] == v.version
        f = Path(entry["file"])
        assert not f.is_absolute() and ".." not in f.parts
        p = h.root / f
        if p.is_file():
            assert entry["hash"] == hashlib.sha256(p.read_bytes()).hexdigest()
            assert p == h.path(model)
        else:
            assert p.is_dir() and entry["hash"] == v.digest
        ts = datetime.fromisoformat(entry["updated"].replace("Z", "+00:00"))
        assert ts.utcoffset() == timedelta(0)
    return data


@pytest.fixture
def registry_ok() -> Callable[[Hub], dict[str, Any]]:
    """``registry_ok(hub)``: assert registry.json matches the seed's shape and the index."""
    return check_registry_json


# -- a trained hub, built once per session ---------------------------------------------------
# Training is the slow part of the pipeline, demo and hub-job tests (tests/pipeline,
# tests/orchestrator/test_hubjobs.py), so it runs once into a template folder that
# tests copy (``TrainedHub.copy``) before they change anything.


@dataclass(frozen=True)
class TrainedHub:
    """A template hub holding ``encoder``, ``teacher``, ``distill`` and ``lora`` @1.0.0.

    Built by ``orchestrator.hubjobs`` (train_base, distill, adapt). Treat ``root`` as
    read-only: :meth:`copy` gives a test a hub of its own. ``alt`` is a second student
    (another seed) from the same encoder and teacher, trained but not registered, for
    tests that need a new, different, valid release.
    """

    root: Path
    encoder: Any
    teacher: Any
    student: Any
    lora: Any
    alt: Any
    seconds: float

    def copy(self, dest: Path) -> Hub:
        """A copy of the template at ``dest`` (read-only bits kept), opened."""
        shutil.copytree(self.root, dest, symlinks=False, copy_function=shutil.copy2)
        return Hub(dest)

    def register_alt(self, h: Hub, **kw: Any) -> Any:
        """Register the alternative student as a new ``distill`` version of ``h``."""
        args = self.alt.register_kwargs()
        args["parents"] = [f"teacher={self.teacher.ref}", f"encoder={self.encoder.ref}"]
        args.update(kw)
        return h.register("distill", self.alt.files[0], **args)


@pytest.fixture(scope="session")
def trained_hub(tmp_path_factory: pytest.TempPathFactory) -> TrainedHub:
    """Train encoder + teacher, distil, adapt: once per session (about 15 s when idle)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import logging

    from sentenialx.orchestrator import hubjobs, run_distill_job

    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    base = tmp_path_factory.mktemp("trained")
    t0 = time.perf_counter()
    with Hub(base / "template") as h:
        enc, teacher = hubjobs.train_base(h)
        student = hubjobs.distill(h)
        lora = hubjobs.adapt(h, base=student.ref)
        (base / "enc.pt").write_bytes(h.open_bytes(enc.ref))
        (base / "teacher.pt").write_bytes(h.open_bytes(teacher.ref))
    alt = run_distill_job(base / "alt", encoder=base / "enc.pt", teacher=base / "teacher.pt",
                          seed=1, latency_runs=20)
    return TrainedHub(base / "template", enc, teacher, student, lora, alt,
                      time.perf_counter() - t0)


@pytest.fixture
def trained_copy(trained_hub: TrainedHub, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Factory: ``trained_copy(name="trained") -> Hub``, a private copy of the trained hub."""
    opened: list[Hub] = []

    def make(name: str = "trained") -> Hub:
        h = trained_hub.copy(tmp_path / name)
        opened.append(h)
        return h

    yield make
    for h in opened:
        h.close()
