"""The Sentenial-X repository's own callers of the seed, run against a real hub.

Each snippet calls :mod:`sentenialx.models.artifacts` exactly as the named file in
github.com/erikg713/Sentenial-X calls the seed: the same argument shapes and the same
use of what comes back. Only training and model classes are replaced by small
stand-ins; the calls into the seed are not changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.hub import Hub
from sentenialx.models.artifacts import (
    get_artifact_path,
    load_registry,
    register_artifact,
    verify_artifact,
)
from sentenialx.models.utils import file_hash, verify_model_integrity

torch = pytest.importorskip("torch")


@pytest.fixture
def hub_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models" / "artifacts"
    monkeypatch.setenv("SENTENIALX_HUB", str(root))
    monkeypatch.chdir(tmp_path)
    return root


# -- ml/models/utils.py: the loaders' helpers -------------------------------------------

def get_device(prefer_gpu: bool = True) -> Any:
    if prefer_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def load_torch_model(path: Path, map_location: Any = None) -> Any:
    device = map_location or get_device()
    return torch.load(path, map_location=device, weights_only=True)


# -- ml/models/base/__init__.py (and distill/, encoder/, lora/: the same three steps) ---

def load_base_model(version: str | None = None, map_location: Any = None) -> Any:
    if not verify_artifact("base"):
        raise FileNotFoundError("Base model missing or corrupted in artifacts registry.")
    model_path = get_artifact_path("base")
    return load_torch_model(model_path, map_location or get_device())


def load_lora_weights(version: str | None = None, map_location: Any = None) -> Any:
    if not verify_artifact("lora"):
        raise FileNotFoundError("LoRA weights missing or corrupted in artifacts registry.")
    weights_path = get_artifact_path("lora")
    return load_torch_model(weights_path, map_location or get_device())


def save_state_dict(path: Path, seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    state = {"encoder.weight": torch.randn(8, 4, generator=g), "head.bias": torch.zeros(3)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def tamper(path: Path) -> None:
    os.chmod(path, 0o644)  # registered files are read-only
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))


def test_base_loader_verifies_then_loads_with_torch(hub_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Base model missing"):
        load_base_model()  # nothing registered yet
    state = save_state_dict(tmp_path / "train" / "threat_model.pt", seed=1)
    register_artifact("base", tmp_path / "train" / "threat_model.pt", "1.0.0")
    loaded = load_base_model()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # A newer version is what the loader gets next.
    newer = save_state_dict(tmp_path / "train" / "threat_model.pt", seed=2)
    register_artifact("base", tmp_path / "train" / "threat_model.pt", "1.1.0")
    assert torch.equal(load_base_model()["encoder.weight"], newer["encoder.weight"])
    # Changed bytes: verify_artifact says so, and the loader refuses before torch.load.
    tamper(hub_root / "base" / "threat_model_v1.1.0.pt")
    with pytest.raises(FileNotFoundError, match="corrupted"):
        load_base_model()


def test_lora_loader_missing_weights_are_refused(hub_root: Path, tmp_path: Path) -> None:
    save_state_dict(tmp_path / "out" / "adapter_model.bin", seed=3)
    register_artifact("lora", tmp_path / "out" / "adapter_model.bin", "1.0.0")
    assert set(load_lora_weights()) == {"encoder.weight", "head.bias"}
    path = get_artifact_path("lora")
    os.chmod(path.parent, 0o755)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="LoRA weights missing"):
        load_lora_weights()


# -- models/orchestrator/orchestrate.py: package_cortex -----------------------------------

def test_orchestrator_package_registers_a_relative_path(hub_root: Path, tmp_path: Path) -> None:
    artifact_path = Path("sentenialx/models/artifacts/distill/threat_student_v1/pytorch_model.bin")
    state = save_state_dict(tmp_path / artifact_path, seed=4)
    registry = register_artifact("distill", artifact_path, "1.0.0")
    assert registry["distill"]["version"] == "1.0.0"
    assert registry["distill"]["metadata"] == {"format": "torch"}
    path = get_artifact_path("distill")
    assert path.exists() and path.is_relative_to(hub_root.resolve())
    assert torch.equal(load_torch_model(path)["encoder.weight"], state["encoder.weight"])


# -- services/cortex/cli.py: train (what the orchestrator runs) and run_stream -----------

def test_cortex_train_registers_metadata(hub_root: Path, tmp_path: Path) -> None:
    class Args:
        data = "sentenialx/data/processed/threat_intents.csv"
        model_type = "distill"

    args = Args()
    artifact_path = Path("sentenialx/models/artifacts/distill/threat_student_v1")
    artifact_path.mkdir(parents=True, exist_ok=True)
    save_state_dict(artifact_path / "pytorch_model.bin", seed=5)  # model.save_pretrained
    metadata = {"training_data": args.data, "accuracy": 0.95}
    register_artifact("distill", artifact_path / "pytorch_model.bin", "1.0.0", metadata)

    # run_stream
    if not verify_artifact(args.model_type):
        raise ValueError("Artifact integrity check failed!")
    model_path = get_artifact_path(args.model_type)
    assert model_path.parent == hub_root.resolve() / "distill" and model_path.parent.is_dir()

    reg = load_registry()
    assert reg["distill"]["metadata"]["accuracy"] == 0.95
    assert reg["distill"]["metadata"]["training_data"] == args.data
    with Hub.open() as hub:
        meta = hub.resolve("distill@1.0.0").meta
    assert meta["accuracy"] == 0.95 and meta["training_data"] == args.data


# -- models/lora/lora_tuner.py and qlora_tuner.py: tune_lora, tune_qlora -------------------

def test_lora_tuners_register_metadata(hub_root: Path, tmp_path: Path) -> None:
    output_dir = "sentenialx/models/artifacts/lora/lora_weights_v1"
    save_state_dict(Path(output_dir) / "adapter_model.bin", seed=6)  # model.save_pretrained
    artifact_path = Path(output_dir) / "adapter_model.bin"
    metadata = {"base_model": "bert-base-uncased", "rank": 8,
                "dataset": "sentenialx/data/processed/threat_intents.csv",
                "eval_accuracy": 0.91}
    registry = register_artifact("lora", artifact_path, "1.0.0", metadata)
    assert {k: registry["lora"]["metadata"][k] for k in metadata} == metadata

    # QLoRA reuses the 'lora' type; the keyword form, metrics and params nested.
    save_state_dict(Path("qlora_weights_v1") / "adapter_model.bin", seed=7)
    qmeta = {"framework": "peft", "params": {"rank": 64, "quant_bits": 4},
             "metrics": {"eval_loss": 0.42}}
    registry = register_artifact("lora", Path("qlora_weights_v1") / "adapter_model.bin", "1.1.0",
                                 metadata=qmeta)
    assert registry["lora"]["version"] == "1.1.0"
    assert {k: registry["lora"]["metadata"][k] for k in qmeta} == qmeta
    # The first version keeps its own metadata.
    with Hub.open() as hub:
        assert hub.resolve("lora@1.0.0").meta["rank"] == 8
        assert hub.resolve("lora@1.1.0").meta["params"] == {"rank": 64, "quant_bits": 4}


# -- models/artifacts.py: the seed's own registry readers ----------------------------------

def test_registry_readers(hub_root: Path, tmp_path: Path) -> None:
    assert load_registry() == {}  # the seed: no registry is an empty one
    assert verify_artifact("distill") is False
    data = os.urandom(4096)
    (tmp_path / "student.onnx").write_bytes(data)
    register_artifact("distill", tmp_path / "student.onnx", "1.2.0", {"accuracy": 0.9})

    reg = load_registry()
    # get_artifact_path: ARTIFACTS_DIR / reg[model_type]["file"]
    assert hub_root.resolve() / reg["distill"]["file"] == get_artifact_path("distill")
    # verify_artifact: reg[model_type]["hash"] against the file's hash
    assert reg["distill"]["hash"] == hashlib.sha256(data).hexdigest()
    assert file_hash(get_artifact_path("distill")) == reg["distill"]["hash"]
    assert verify_model_integrity(get_artifact_path("distill"), reg["distill"]["hash"])
    assert "encoder" not in reg and verify_artifact("encoder") is False
    assert reg["distill"]["version"] == "1.2.0" and reg["distill"]["updated"]
    assert reg["distill"]["metadata"]["accuracy"] == 0.9
    # registry.json on disk, read as the seed's load_registry read it.
    with open(hub_root / "registry.json", encoding="utf-8") as f:
        on_disk = json.load(f)
    assert on_disk["distill"]["file"] == reg["distill"]["file"]
    assert on_disk["distill"]["hash"] == reg["distill"]["hash"]

    # A lost registry.json neither hides the truth nor stays lost.
    (hub_root / "registry.json").unlink()
    assert load_registry() == reg
    assert (hub_root / "registry.json").is_file()
    assert verify_artifact("distill") is True
