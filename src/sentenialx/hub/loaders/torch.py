"""Load torch checkpoints (``.pt``, ``.pth``, ``.bin``) from verified bytes.

Two independent checks stand between a checkpoint and code execution: the
static allowlist scan (:mod:`.pickle_safety`), then torch's own weights-only
unpickler. ``weights_only=False`` is never passed, and torch older than 2.10 is
refused: its weights-only unpickler has a known code-execution bypass (up to
2.5.1, CVE-2025-32434) and a memory-corruption bug (fixed in 2.10.0,
CVE-2026-24747). See /work/shared/notes/pickle-safety.md.
"""

from __future__ import annotations

import io
import pickle
import re
from typing import Any, Final

from sentenialx.hub.errors import InvalidInput, MissingDependency, UnsafeArtifact, require
from sentenialx.hub.loaders.pickle_safety import scan_torch_zip

__all__ = ["MIN_TORCH", "load_torch"]

MIN_TORCH: Final = (2, 10)
"""Oldest torch whose ``weights_only=True`` loader we trust."""


def _check_torch_version(version: str) -> None:
    """Refuse a torch older than :data:`MIN_TORCH` (or one whose version does not parse).

    Raises:
        MissingDependency: torch is too old; the message names the extra that pins a safe one.
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) < MIN_TORCH:
        exc = MissingDependency(f"torch>={MIN_TORCH[0]}.{MIN_TORCH[1]}", "torch")
        exc.message += (
            f" (found torch {version}; older weights_only loaders can run code: "
            "CVE-2025-32434, CVE-2026-24747)"
        )
        exc.args = (exc.message,)
        raise exc


def load_torch(data: bytes | memoryview, *, name: str) -> object:
    """Load a torch checkpoint, normally a state dict, onto the CPU.

    The bytes are scanned first (:func:`~.pickle_safety.scan_torch_zip`), then
    loaded with ``torch.load(weights_only=True, map_location="cpu")`` from
    memory: no path is opened.

    Args:
        data: the checkpoint, as verified by the hub.
        name: the artifact's name, used in errors.

    Returns:
        Whatever was saved, e.g. ``dict[str, torch.Tensor]`` for a state dict.

    Raises:
        UnsafeArtifact: the scan or torch's weights-only unpickler refused it.
        InvalidInput: it passed the scan but is not a checkpoint torch can load.
        MissingDependency: torch is not installed, or is older than 2.10.
    """
    scan_torch_zip(data, name=name)
    torch: Any = require("torch", "torch")
    _check_torch_version(str(torch.__version__))
    try:
        # weights_only=True explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only
        # overrides a call that leaves it unset. mmap=False: a global mmap
        # default would demand a path.
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu", mmap=False)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler reports its refusals this way, among
        # them opcodes it does not support (e.g. FRAME, from protocol 4): what
        # it cannot load safely, we do not load.
        raise UnsafeArtifact(
            f"{name}: torch's weights-only loader refused it ({_weights_only_reason(exc)})",
            path=name,
        ) from exc
    except Exception as exc:
        raise InvalidInput(
            f"{name}: not a torch checkpoint torch can load ({type(exc).__name__}: {exc})"
        ) from exc


def _weights_only_reason(exc: BaseException) -> str:
    """The specific line of torch's long weights-only error message."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
