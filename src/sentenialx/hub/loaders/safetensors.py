"""Load safetensors files from verified bytes.

safetensors is the preferred weight format: a JSON header and raw tensor
data, nothing that can run code. Tensors come back as torch tensors when torch
is installed, else as numpy arrays.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from sentenialx.hub.errors import InvalidInput, require

__all__ = ["load_safetensors"]


def load_safetensors(data: bytes | memoryview, *, name: str) -> dict[str, Any]:
    """Load every tensor of a safetensors file.

    Args:
        data: the file, as verified by the hub.
        name: the artifact's name, used in errors.

    Returns:
        Tensor name to ``torch.Tensor`` (CPU) if torch is installed, else to
        ``numpy.ndarray``.

    Raises:
        InvalidInput: the bytes are not a valid safetensors file (or hold a
            dtype numpy cannot represent, when torch is absent).
        MissingDependency: safetensors (or numpy) is not installed (extra ``torch``).
    """
    if importlib.util.find_spec("torch") is None:
        return _load_numpy(data, name=name)
    st_torch: Any = require("safetensors.torch", "torch")
    try:
        return dict(st_torch.load(bytes(data)))
    except Exception as exc:
        raise InvalidInput(
            f"{name}: not a valid safetensors file ({type(exc).__name__}: {exc})"
        ) from exc


def _load_numpy(data: bytes | memoryview, *, name: str) -> dict[str, Any]:
    """The numpy path of :func:`load_safetensors`, used when torch is absent.

    Raises:
        InvalidInput: the bytes are not a valid safetensors file numpy can hold.
        MissingDependency: safetensors or numpy is not installed (extra ``torch``).
    """
    require("numpy", "torch")
    st_numpy: Any = require("safetensors.numpy", "torch")
    try:
        return dict(st_numpy.load(bytes(data)))
    except Exception as exc:
        raise InvalidInput(
            f"{name}: not a valid safetensors file ({type(exc).__name__}: {exc})"
        ) from exc


def load_safetensors_numpy(data: bytes | memoryview, *, name: str) -> dict[str, Any]:
    """Load safetensors bytes as numpy arrays, whether or not torch is installed.

    Raises:
        InvalidInput: the bytes are not a valid safetensors file numpy can hold.
        MissingDependency: safetensors or numpy is not installed.
    """
    return _load_numpy(data, name=name)
