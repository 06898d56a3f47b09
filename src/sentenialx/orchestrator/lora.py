"""Writing and reading LoRA adapter folders (training's side of :mod:`sentenialx.pipeline.lora`).

The format, :class:`AdapterConfig` and :func:`merge_adapter_onnx` live in the
inference package, which must not import training code; this module adds the
folder I/O the training jobs and tests use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sentenialx.hub.errors import InvalidInput, require
from sentenialx.orchestrator._io import atomic_write_bytes
from sentenialx.pipeline.lora import (
    ADAPTER_CONFIG,
    ADAPTER_KEY,
    ADAPTER_WEIGHTS,
    AdapterConfig,
    check_adapter_tensors,
    merge_adapter_onnx,
)

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_KEY",
    "ADAPTER_WEIGHTS",
    "AdapterConfig",
    "load_adapter",
    "merge_adapter_onnx",
    "save_adapter",
]


def save_adapter(
    folder: Path, tensors: dict[str, npt.NDArray[np.float32]], config: AdapterConfig
) -> tuple[Path, Path]:
    """Write ``adapter.safetensors`` and ``adapter_config.json`` into ``folder``.

    Args:
        folder: created if missing.
        tensors: ``<target>.lora_A.weight`` / ``<target>.lora_B.weight`` arrays, and
            ``<module>.weight`` / ``<module>.bias`` for ``modules_to_save``.
        config: the adapter's config.

    Returns:
        The weights file and the config file.

    Raises:
        InvalidInput: the tensors do not match ``config`` (a target without A and B,
            or a shape that disagrees with ``r``).
        MissingDependency: safetensors is not installed (extra ``torch``).
    """
    check_adapter_tensors(tensors, config)
    st: Any = require("safetensors.numpy", "torch")
    data = st.save(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(tensors.items())},
        # One key only: safetensors keeps metadata in a hash map, so several keys come out
        # in a different order from run to run and the file's bytes would not be reproducible.
        metadata={"format": "pt"},
    )
    weights, cfg = folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG
    atomic_write_bytes(weights, data)
    atomic_write_bytes(cfg, (json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n").encode())
    return weights, cfg


def load_adapter(folder: Path) -> tuple[dict[str, npt.NDArray[np.float32]], AdapterConfig]:
    """Read an adapter folder written by :func:`save_adapter`.

    Raises:
        InvalidInput: a file is missing or the tensors do not match the config.
        MissingDependency: safetensors is not installed (extra ``torch``).
    """
    weights, cfg = folder / ADAPTER_WEIGHTS, folder / ADAPTER_CONFIG
    for p in (weights, cfg):
        if not p.is_file():
            raise InvalidInput(f"adapter folder {str(folder)!r} has no {p.name}")
    st: Any = require("safetensors.numpy", "torch")
    tensors = dict(st.load(weights.read_bytes()))
    config = AdapterConfig.from_dict(json.loads(cfg.read_text()))
    check_adapter_tensors(tensors, config)
    return tensors, config
