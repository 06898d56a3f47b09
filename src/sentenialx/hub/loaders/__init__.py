"""Turn verified artifact bytes into usable models.

Loaders never read a path: the hub reads a file once, hashes it, matches it to
the manifest and hands the bytes here (see DESIGN.md, order of operations), so
nothing can change between verify and load. Optional dependencies are imported
inside each loader; importing this package stays cheap.

Formats, by canonical name (aliases accepted by :func:`load_bytes` in brackets):

- ``onnx``: an ``onnxruntime.InferenceSession`` (extra ``onnx``).
- ``torch`` (``pt``, ``pth``, ``bin``, ``pytorch``): whatever ``torch.save``
  wrote, after a static allowlist scan and ``weights_only=True`` (extra ``torch``).
- ``safetensors``: ``dict[str, Tensor]`` (numpy arrays without torch).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Final

from sentenialx.hub.errors import InvalidInput
from sentenialx.hub.loaders.onnx import load_onnx
from sentenialx.hub.loaders.pickle_safety import scan_pickle, scan_torch_zip
from sentenialx.hub.loaders.safetensors import load_safetensors
from sentenialx.hub.loaders.torch import load_torch

__all__ = [
    "FORMATS",
    "format_for",
    "load_bytes",
    "load_onnx",
    "load_safetensors",
    "load_torch",
    "scan_pickle",
    "scan_torch_zip",
]

FORMATS: Final = ("onnx", "torch", "safetensors")
"""Canonical format names, as :func:`format_for` returns them."""

_EXTENSIONS: Final = {
    "onnx": "onnx",
    "pt": "torch",
    "pth": "torch",
    "bin": "torch",
    "safetensors": "safetensors",
}
_ALIASES: Final = {**_EXTENSIONS, "torch": "torch", "pytorch": "torch"}


def format_for(filename: str) -> str | None:
    """Name the format of a file from its extension.

    Args:
        filename: a file name or relative path, e.g. ``threat_student_v1.2.0.onnx``.

    Returns:
        ``"onnx"``, ``"torch"`` (``.pt``, ``.pth``, ``.bin``) or ``"safetensors"``;
        ``None`` for any other extension (configs, logs, plain ``.pkl``...).
    """
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower().removeprefix(".")
    return _EXTENSIONS.get(suffix)


def load_bytes(data: bytes | memoryview, *, fmt: str, name: str) -> object:
    """Load verified bytes with the loader for ``fmt``.

    Args:
        data: the artifact's bytes, already hashed and matched to the manifest.
        fmt: a canonical format or alias (case-insensitive, leading dot allowed),
            from :func:`format_for` or the version's metadata.
        name: the artifact's name, used in errors.

    Returns:
        An ``onnxruntime.InferenceSession``, the object ``torch.save`` wrote, or
        a ``dict`` of tensors, per format.

    Raises:
        InvalidInput: no loader for ``fmt``, or the bytes are not a valid file of it.
        UnsafeArtifact: loading would run code or read outside the bytes.
        MissingDependency: the format's optional dependency is not installed.
    """
    canonical = _ALIASES.get(fmt.strip().lower().removeprefix("."))
    if canonical == "onnx":
        return load_onnx(data, name=name)
    if canonical == "torch":
        return load_torch(data, name=name)
    if canonical == "safetensors":
        return load_safetensors(data, name=name)
    raise InvalidInput(
        f"{name}: no loader for format {fmt!r}; supported: {', '.join(sorted(_ALIASES))}"
    )
