"""The LoRA adapter format, and folding an adapter into an exported graph.

An adapter is a folder of two files, laid out as PEFT lays them out:

- ``adapter.safetensors``: for each target layer ``T``, ``T.lora_A.weight``
  ``[r, in]`` and ``T.lora_B.weight`` ``[out, r]``; for each layer ``M`` in
  ``modules_to_save`` (trained in full, as a classifier's output layer is when
  it learns a new class), ``M.weight`` ``[out, in]`` and ``M.bias`` ``[out]``;
- ``adapter_config.json``: ``peft_type``, ``r``, ``lora_alpha``,
  ``target_modules``, ``modules_to_save`` and what the adapter was trained
  against (base model name and sha256, label order, featurizer, the new family
  it teaches).

The adapted weight of layer ``T`` is ``W + (lora_alpha / r) * B @ A``; a saved
module replaces the base's layer.
:func:`merge_adapter_onnx` applies that to a base ONNX graph with numpy and
onnx only, so the inference side can serve the adapted model without torch.
Writing and reading adapter folders is training's side
(:mod:`sentenialx.orchestrator.lora`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sentenialx.hub.errors import InvalidInput, require

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_KEY",
    "ADAPTER_WEIGHTS",
    "AdapterConfig",
    "check_adapter_tensors",
    "merge_adapter_onnx",
]

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_KEY = "sentenialx.adapter"
"""``metadata_props`` key of a merged graph: JSON with the base and adapter sha256."""


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """What ``adapter_config.json`` holds.

    Attributes:
        r: the rank of every update.
        lora_alpha: the scale numerator (updates are scaled by ``lora_alpha / r``).
        target_modules: the adapted layers, e.g. ``("encoder.proj", "head.fc1")``.
        modules_to_save: layers stored whole, e.g. ``("head.out",)``.
        base_model: the base model's name (a hub model name such as ``distill``).
        base_sha256: sha256 of the base model file the adapter was trained on.
        labels: the label order of the outputs.
        featurizer: the featurizer spec (:meth:`FeatureSpec.to_dict`).
        new_family: the attack family the adapter teaches, if any.
    """

    r: int
    lora_alpha: float
    target_modules: tuple[str, ...]
    modules_to_save: tuple[str, ...] = ()
    base_model: str = ""
    base_sha256: str = ""
    labels: tuple[str, ...] = ()
    featurizer: dict[str, Any] = field(default_factory=dict)
    new_family: str | None = None

    @property
    def scaling(self) -> float:
        """``lora_alpha / r``."""
        return self.lora_alpha / self.r

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (PEFT's keys first, ours after)."""
        return {
            "peft_type": "LORA",
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "target_modules": list(self.target_modules),
            "modules_to_save": list(self.modules_to_save),
            "bias": "none",
            "fan_in_fan_out": False,
            "lora_dropout": 0.0,
            "base_model": self.base_model,
            "base_sha256": self.base_sha256,
            "labels": list(self.labels),
            "featurizer": dict(self.featurizer),
            "new_family": self.new_family,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            InvalidInput: not a LoRA config, or a field is missing or malformed.
        """
        if data.get("peft_type", "LORA") != "LORA":
            raise InvalidInput(f"adapter config is {data.get('peft_type')!r}, not LORA")
        try:
            return cls(
                r=int(data["r"]),
                lora_alpha=float(data["lora_alpha"]),
                target_modules=tuple(str(t) for t in data["target_modules"]),
                modules_to_save=tuple(str(t) for t in data.get("modules_to_save") or ()),
                base_model=str(data.get("base_model", "")),
                base_sha256=str(data.get("base_sha256", "")),
                labels=tuple(str(x) for x in data.get("labels", ())),
                featurizer=dict(data.get("featurizer", {})),
                new_family=data.get("new_family"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"adapter config is malformed ({type(exc).__name__}: {exc})") from None


def check_adapter_tensors(tensors: dict[str, npt.NDArray[Any]], config: AdapterConfig) -> None:
    """Check that an adapter's tensors are exactly the ones its config names, at rank ``r``.

    Raises:
        InvalidInput: a tensor is missing or extra, or an A/B pair is not rank ``config.r``.
    """
    expected = {f"{t}.lora_{m}.weight" for t in config.target_modules for m in "AB"}
    expected |= {f"{m}.{p}" for m in config.modules_to_save for p in ("weight", "bias")}
    if set(tensors) != expected:
        raise InvalidInput(
            f"adapter tensors {sorted(tensors)} do not match targets {list(config.target_modules)}"
            f" and modules to save {list(config.modules_to_save)}"
        )
    for t in config.target_modules:
        a, b = tensors[f"{t}.lora_A.weight"], tensors[f"{t}.lora_B.weight"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != config.r or b.shape[1] != config.r:
            raise InvalidInput(f"adapter layer {t!r}: A {a.shape} and B {b.shape} are not rank {config.r}")


def merge_adapter_onnx(
    base: bytes, tensors: dict[str, npt.NDArray[np.float32]], config: AdapterConfig
) -> bytes:
    """Fold an adapter into a base graph exported by :mod:`sentenialx.orchestrator.export`.

    Each target's weight initializer becomes ``W + scaling * B @ A`` (in the
    orientation the ``Gemm`` reads it) and each saved module's weight and bias
    replace the base's; nothing else changes, so the result has the same inputs,
    outputs and metadata, plus ``sentenialx.adapter``.

    Args:
        base: the base model's bytes.
        tensors: the adapter's tensors (:func:`load_adapter`).
        config: the adapter's config.

    Returns:
        The merged model's bytes.

    Raises:
        InvalidInput: the base's sha256 differs from ``config.base_sha256`` (when set),
            or a target is not a Gemm layer of the base with matching shapes.
        MissingDependency: onnx is not installed (extra ``onnx``).
    """
    onnx: Any = require("onnx", "onnx")
    base_sha = hashlib.sha256(base).hexdigest()
    if config.base_sha256 and config.base_sha256 != base_sha:
        raise InvalidInput(
            f"adapter was trained on a base with sha256 {config.base_sha256[:12]}…, "
            f"this base is {base_sha[:12]}…"
        )
    check_adapter_tensors(tensors, config)
    proto = onnx.load_model_from_string(base)
    inits = {t.name: t for t in proto.graph.initializer}
    trans_b = {}
    for node in proto.graph.node:
        if node.op_type == "Gemm" and len(node.input) > 1:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            trans_b[node.input[1]] = bool(attrs.get("transB", 0))
    for target in config.target_modules:
        name = f"{target}.weight"
        if name not in inits or name not in trans_b:
            raise InvalidInput(f"LoRA target {target!r} is not a Gemm layer of the base graph")
        w = onnx.numpy_helper.to_array(inits[name]).astype(np.float32)
        a = tensors[f"{target}.lora_A.weight"].astype(np.float64)
        b = tensors[f"{target}.lora_B.weight"].astype(np.float64)
        delta = config.scaling * (b @ a)
        if not trans_b[name]:
            delta = delta.T
        if delta.shape != w.shape:
            raise InvalidInput(f"LoRA target {target!r}: update {delta.shape} does not fit weight {w.shape}")
        merged = (w.astype(np.float64) + delta).astype(np.float32)
        inits[name].CopyFrom(onnx.numpy_helper.from_array(merged, name))
    for module in config.modules_to_save:
        for part in ("weight", "bias"):
            name = f"{module}.{part}"
            if name not in inits or (part == "weight" and name not in trans_b):
                raise InvalidInput(f"saved module {module!r} is not a Gemm layer of the base graph")
            new = np.asarray(tensors[name], dtype=np.float32)
            if part == "weight" and not trans_b[name]:
                new = new.T
            old_shape = tuple(inits[name].dims)
            if new.shape != old_shape:
                raise InvalidInput(f"saved {name!r} has shape {new.shape}, the base's is {old_shape}")
            inits[name].CopyFrom(onnx.numpy_helper.from_array(np.ascontiguousarray(new), name))
    entry = proto.metadata_props.add()
    entry.key = ADAPTER_KEY
    entry.value = json.dumps({"base_sha256": base_sha, "adapter": config.to_dict()}, sort_keys=True)
    data: bytes = proto.SerializeToString()
    return data
