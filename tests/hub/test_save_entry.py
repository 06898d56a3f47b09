"""Hub.save_entry: a file streamed to a destination appears only once it matched."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentenialx.hub.errors import IntegrityError
from sentenialx.hub.layout import file_key


def test_saved_file_matches_the_manifest(hub, sample_file, tmp_path) -> None:
    info = hub.register("m", sample_file(3 * 1024 * 1024 + 7, seed=3))
    entry = hub.weights_entry(info)
    out = hub.save_entry(info, entry, tmp_path / "out" / "w.onnx")
    assert out.read_bytes() == hub.read_entry(info, entry)
    assert [p.name for p in out.parent.iterdir()] == ["w.onnx"]  # no temporary left


@pytest.mark.parametrize("damage", ["flip", "grow", "shrink"])
def test_tampered_file_leaves_the_destination_untouched(hub, sample_file, tmp_path,
                                                        damage: str) -> None:
    info = hub.register("m", sample_file(200_000, seed=4))
    entry = hub.weights_entry(info)
    stored = Path(hub.store.local_path(file_key("m", entry.path)))
    data = bytearray(stored.read_bytes())
    if damage == "flip":
        data[-1] ^= 0xFF
    elif damage == "grow":
        data += b"x"
    else:
        del data[-1]
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    dest = tmp_path / "out" / "w.onnx"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    with pytest.raises(IntegrityError, match=entry.path):
        hub.save_entry(info, entry, dest)
    assert dest.read_bytes() == b"previous"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["w.onnx"]
