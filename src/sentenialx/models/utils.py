"""Hashing helpers the seed offered, now on the hub's one-pass hashing."""

from __future__ import annotations

import hmac
import os

from sentenialx.hub.hashing import hash_file


def file_hash(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read once in large chunks.

    Raises:
        OSError: the file cannot be read.
    """
    return hash_file(path).sha256


def verify_model_integrity(path: str | os.PathLike[str], expected_hash: str) -> bool:
    """True when the file's sha256 equals ``expected_hash`` (case-insensitive, ``sha256:`` ok).

    A missing or unreadable file is simply not intact: returns False.
    """
    expected = expected_hash.lower().removeprefix("sha256:")
    try:
        actual = file_hash(path)
    except OSError:
        return False
    return hmac.compare_digest(actual, expected)
