"""VerifiedRange: a byte range handed out in pieces, the last one only once the whole file verifies."""

from __future__ import annotations

import hashlib
import io
import random

import pytest

from sentenialx.hub._read import VerifiedRange
from sentenialx.hub.errors import IntegrityError
from sentenialx.hub.manifest import FileEntry

DATA = random.Random(3).randbytes(10_000)
ENTRY = FileEntry("w.onnx", len(DATA), hashlib.sha256(DATA).hexdigest())


def pieces(stored: bytes, start: int, end: int, step: int) -> tuple[list[bytes], BaseException | None]:
    """What a streaming server would send, piece by piece, and the error that cut it short."""
    r = VerifiedRange(io.BytesIO(stored), ENTRY, start=start, end=end, where="m@1:w.onnx",
                      hint="run fsck")
    got: list[bytes] = []
    try:
        while chunk := r.read(step):
            got.append(chunk)
    except IntegrityError as exc:
        return got, exc
    finally:
        r.close()
    return got, None


@pytest.mark.parametrize(("start", "end", "step"), [(0, 9_999, 4096), (100, 4_099, 1000),
                                                     (9_990, 9_999, 3), (0, 0, 1)])
def test_good_bytes_pass_exactly_the_range(start: int, end: int, step: int) -> None:
    got, err = pieces(DATA, start, end, step)
    assert err is None
    assert b"".join(got) == DATA[start:end + 1]


@pytest.mark.parametrize("where", [0, 5_000, 9_999])
@pytest.mark.parametrize(("start", "end"), [(0, 9_999), (0, 99), (9_000, 9_999)])
def test_changed_bytes_anywhere_never_complete_the_range(where: int, start: int, end: int) -> None:
    bad = bytearray(DATA)
    bad[where] ^= 1
    got, err = pieces(bytes(bad), start, end, 1000)
    assert isinstance(err, IntegrityError) and err.expected == ENTRY.sha256
    assert len(b"".join(got)) < end - start + 1


@pytest.mark.parametrize("stored", [DATA[:-1], DATA + b"x"])
def test_a_shorter_or_longer_file_is_refused(stored: bytes) -> None:
    got, err = pieces(stored, 0, len(DATA) - 1, 4096)
    assert isinstance(err, IntegrityError)
    assert len(b"".join(got)) < len(DATA)
