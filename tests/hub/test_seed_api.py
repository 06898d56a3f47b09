"""The seed's five functions and hashing helpers, on the default hub ($SENTENIALX_HUB)."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from sentenialx.hub.errors import IntegrityError, InvalidInput
from sentenialx.hub.hub import Hub
from sentenialx.models import artifacts
from sentenialx.models.artifacts import (
    get_artifact_path,
    load_registry,
    register_artifact,
    save_registry,
    verify_artifact,
)
from sentenialx.models.utils import file_hash, verify_model_integrity


@pytest.fixture
def default_hub(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "models" / "artifacts"
    monkeypatch.setenv("SENTENIALX_HUB", str(root))
    return root


def snap(root: Path, snapshot) -> dict:
    h = Hub(root)
    try:
        return snapshot(h)
    finally:
        h.close()


def test_signatures_are_the_seeds() -> None:
    params = {n: list(inspect.signature(getattr(artifacts, n)).parameters) for n in (
        "load_registry", "save_registry", "get_artifact_path", "verify_artifact",
        "register_artifact")}
    assert params == {"load_registry": [], "save_registry": ["data"],
                      "get_artifact_path": ["model_type"], "verify_artifact": ["model_type"],
                      "register_artifact": ["model_type", "file_path", "version", "metadata"]}


def test_default_hub_location(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SENTENIALX_HUB", raising=False)
    monkeypatch.chdir(tmp_path)
    with Hub.open() as h:
        assert h.root == (tmp_path / "models" / "artifacts").resolve()
    monkeypatch.setenv("SENTENIALX_HUB", str(tmp_path / "elsewhere"))
    with Hub.open() as h:
        assert h.root == (tmp_path / "elsewhere").resolve()
    assert (tmp_path / "elsewhere" / "registry.db").is_file()


def test_register_get_verify(default_hub, sample_file, registry_ok) -> None:
    src = sample_file(2048, seed=1, name="threat_student.onnx")
    reg = register_artifact("distill", str(src), "1.2.0")
    assert reg["distill"]["version"] == "1.2.0"
    assert reg["distill"]["file"] == "distill/threat_student_v1.2.0.onnx"
    assert reg["distill"]["hash"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert reg == load_registry()
    path = get_artifact_path("distill")
    assert isinstance(path, Path) and path.is_absolute() and path.exists()
    assert path == default_hub / "distill" / "threat_student_v1.2.0.onnx"
    assert path.read_bytes() == src.read_bytes()
    assert verify_artifact("distill") is True
    # A newer version becomes what the seed's readers see; an older one does not.
    register_artifact("distill", sample_file(10, seed=2, name="threat_student.onnx"), "1.3.0")
    register_artifact("distill", sample_file(10, seed=3, name="threat_student.onnx"), "1.0.0")
    assert load_registry()["distill"]["version"] == "1.3.0"
    assert get_artifact_path("distill").name == "threat_student_v1.3.0.onnx"
    with Hub.open() as h:
        registry_ok(h)
        assert h.fsck().ok


def test_register_artifact_errors_are_value_errors(default_hub, sample_file, snapshot) -> None:
    register_artifact("distill", sample_file(10), "1.0.0")
    before = snap(default_hub, snapshot)
    for args in (("distill", sample_file(10, seed=1), "1.0.0"),
                 ("distill", sample_file(10, seed=1), "one"),
                 ("bad/name", sample_file(10, seed=1), "1.0.0")):
        with pytest.raises(ValueError):
            register_artifact(*args)
    with pytest.raises(ValueError, match="metric"):
        register_artifact("distill", sample_file(10, seed=1), "2.0.0",
                          metadata={"metrics": {"accuracy": "high"}})
    with pytest.raises(ValueError):
        register_artifact("distill", sample_file(10, seed=1), "2.0.0",
                          metadata={"accuracy": float("nan")})
    # As the seed: a missing file is FileNotFoundError.
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        register_artifact("distill", default_hub / "missing.onnx", "2.0.0")
    assert snap(default_hub, snapshot) == before


def test_get_artifact_path_unknown(default_hub, sample_file) -> None:
    with pytest.raises(ValueError, match="unknown model type"):
        get_artifact_path("distill")
    register_artifact("distill", sample_file(10), "1.0.0")
    for bad in ("encoder", "a/b", "", "distill@9.9.9"):
        with pytest.raises(ValueError):
            get_artifact_path(bad)


def test_verify_artifact_is_a_bool(default_hub, sample_file) -> None:
    assert verify_artifact("distill") is False
    assert verify_artifact("../etc") is False
    register_artifact("distill", sample_file(100), "1.0.0")
    assert verify_artifact("distill") is True
    p = get_artifact_path("distill")
    st = p.stat()
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.write(b"\xff\xfe")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert verify_artifact("distill") is False


def test_load_registry_regenerates_a_missing_file(default_hub, sample_file) -> None:
    register_artifact("distill", sample_file(10), "1.0.0")
    (default_hub / "registry.json").unlink()
    assert load_registry()["distill"]["version"] == "1.0.0"
    assert json.loads((default_hub / "registry.json").read_text())["distill"]["version"] == "1.0.0"
    assert load_registry.__doc__


def test_save_registry_adopts_a_new_version(default_hub, sample_file, registry_ok) -> None:
    register_artifact("distill", sample_file(10), "1.0.0")
    new = sample_file(500, seed=7, name="student.onnx")
    data = load_registry()
    data["distill"] = {"version": "1.1.0", "file": str(new),
                       "hash": hashlib.sha256(new.read_bytes()).hexdigest(),
                       "updated": "2024-05-01T00:00:00Z"}
    other = sample_file(50, seed=8, name="enc.onnx")
    data["encoder"] = {"version": "0.1.0", "file": str(other)}
    save_registry(data)
    reg = load_registry()
    assert reg["distill"]["version"] == "1.1.0" and reg["encoder"]["version"] == "0.1.0"
    assert Path(get_artifact_path("distill")).read_bytes() == new.read_bytes()
    # Saving what was loaded is a no-op.
    before = load_registry()
    save_registry(load_registry())
    assert load_registry() == before
    with Hub.open() as h:
        registry_ok(h)
        assert h.fsck().ok
        assert [v.version for v in h.versions("distill")] == ["1.0.0", "1.1.0"]


def test_save_registry_refusals_change_nothing(default_hub, sample_file, snapshot) -> None:
    register_artifact("distill", sample_file(10), "1.0.0")
    register_artifact("encoder", sample_file(10, seed=1), "1.0.0")
    before = snap(default_hub, snapshot)
    good = sample_file(20, seed=2)

    def attempt(mutate) -> None:  # type: ignore[no-untyped-def]
        data = load_registry()
        mutate(data)
        with pytest.raises(ValueError):
            save_registry(data)
        assert snap(default_hub, snapshot) == before

    attempt(lambda d: d.pop("encoder"))  # removing a model
    attempt(lambda d: d["distill"].update(hash="0" * 64))  # changing a registered hash
    attempt(lambda d: d["distill"].update(file="distill/elsewhere.onnx"))
    attempt(lambda d: d.update(new={"version": "1.0.0", "file": str(good),
                                    "hash": "1" * 64}))  # the new file does not match
    attempt(lambda d: d.update(new={"version": "1.0.0", "file": str(default_hub / "nope")}))
    attempt(lambda d: d.update(new={"file": str(good)}))  # no version
    attempt(lambda d: d.update(new="not an entry"))
    # A good new entry beside a bad one: nothing is adopted, not even the good one.
    attempt(lambda d: d.update(aaa={"version": "1.0.0", "file": str(good)},
                               zzz={"version": "not-semver", "file": str(good)}))
    attempt(lambda d: d.update(aaa={"version": "1.0.0", "file": str(good)},
                               **{"bad/name": {"version": "1.0.0", "file": str(good)}}))
    with pytest.raises(ValueError):
        save_registry(["not", "a", "dict"])  # type: ignore[arg-type]
    assert snap(default_hub, snapshot) == before


def test_file_hash_and_integrity(tmp_path) -> None:
    p = tmp_path / "w.bin"
    data = os.urandom(5 * 1024 * 1024 + 3)
    p.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert file_hash(p) == digest
    assert file_hash(str(p)) == digest
    assert verify_model_integrity(p, digest) is True
    assert verify_model_integrity(str(p), digest.upper()) is True
    assert verify_model_integrity(p, "sha256:" + digest) is True
    assert verify_model_integrity(p, "0" * 64) is False
    assert verify_model_integrity(tmp_path / "missing", digest) is False
    with pytest.raises(OSError):
        file_hash(tmp_path / "missing")


# -- import-registry: adopting a seed-style store -----------------------------------------


def make_seed_store(root: Path) -> dict[str, bytes]:
    """The seed's layout: registry.json (model -> version, file, hash, updated) and files."""
    files = {"distill": ("distill/threat_student_v1.2.0.onnx", "1.2.0", os.urandom(3000)),
             "encoder": ("encoder/encoder.pt", "0.3.1", os.urandom(1000))}
    reg = {}
    for model, (rel, version, data) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        reg[model] = {"version": version, "file": rel, "hash": hashlib.sha256(data).hexdigest(),
                      "updated": "2024-03-01T12:00:00"}
    (root / "registry.json").write_text(json.dumps(reg, indent=2))
    return {m: d for m, (_r, _v, d) in files.items()}


def test_import_registry_from_a_seed_store(make_hub, tmp_path, registry_ok) -> None:
    seed = tmp_path / "seed"
    data = make_seed_store(seed)
    h = make_hub(tmp_path / "hub")
    out = h.import_registry(seed / "registry.json")
    assert sorted(v.ref for v in out) == ["distill@1.2.0", "encoder@0.3.1"]
    for model, b in data.items():
        assert h.open(model) == b
    assert [e.kind for e in h.events()] == ["register", "register"]
    assert h.resolve("distill").meta["seed_updated"] == "2024-03-01T12:00:00"
    registry_ok(h)
    assert h.fsck(deep=True).ok
    # Importing again is a no-op; a folder argument means its registry.json.
    again = h.import_registry(seed)
    assert sorted(v.ref for v in again) == ["distill@1.2.0", "encoder@0.3.1"]
    assert len(h.events()) == 2


def test_import_registry_in_place(make_hub, tmp_path, registry_ok) -> None:
    """The seed's own models/artifacts opened as a hub adopts its files where they are."""
    root = tmp_path / "models" / "artifacts"
    data = make_seed_store(root)
    seed_files = {rel: (root / rel).stat().st_ino
                  for rel in ("distill/threat_student_v1.2.0.onnx", "encoder/encoder.pt")}
    h = make_hub(root)
    out = h.import_registry(root / "registry.json")
    assert sorted(v.ref for v in out) == ["distill@1.2.0", "encoder@0.3.1"]
    for model, b in data.items():
        assert h.open(model) == b
    reg = registry_ok(h)
    # The seed's readers still find the weights under the same name: each seed file is
    # adopted where it lies (same inode), nothing in the hub folder renamed or removed.
    assert reg["distill"]["file"] == "distill/threat_student_v1.2.0.onnx"
    assert reg["encoder"]["file"] == "encoder/encoder.pt"
    assert {rel: (root / rel).stat().st_ino for rel in seed_files} == seed_files
    assert h.fsck(deep=True).ok
    assert h.gc(grace=timedelta(0)).removed == []
    assert h.verify(deep=True).ok


def test_import_registry_refuses_a_hash_mismatch(make_hub, tmp_path, snapshot) -> None:
    seed = tmp_path / "seed"
    make_seed_store(seed)
    reg = json.loads((seed / "registry.json").read_text())
    reg["encoder"]["hash"] = "0" * 64
    (seed / "registry.json").write_text(json.dumps(reg))
    h = make_hub(tmp_path / "hub")
    before = snapshot(h)
    with pytest.raises(IntegrityError) as ei:
        h.import_registry(seed / "registry.json")
    assert ei.value.expected == "0" * 64 and "encoder.pt" in str(ei.value)
    assert "nothing was imported" in str(ei.value)
    assert snapshot(h) == before


@pytest.mark.parametrize("mutate", [
    lambda r: r["distill"].update(file="distill/missing.onnx"),
    lambda r: r.update({"bad/name": dict(r["distill"])}),
    lambda r: r["encoder"].update(version="zero"),
    lambda r: r["encoder"].pop("file"),
])
def test_import_registry_bad_entries_change_nothing(make_hub, tmp_path, snapshot, mutate) -> None:
    seed = tmp_path / "seed"
    make_seed_store(seed)
    reg = json.loads((seed / "registry.json").read_text())
    mutate(reg)
    (seed / "registry.json").write_text(json.dumps(reg))
    h = make_hub(tmp_path / "hub")
    before = snapshot(h)
    with pytest.raises(InvalidInput):
        h.import_registry(seed / "registry.json")
    assert snapshot(h) == before
    (seed / "registry.json").write_text("{not json")
    with pytest.raises(InvalidInput):
        h.import_registry(seed / "registry.json")
    assert snapshot(h) == before
