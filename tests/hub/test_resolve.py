"""Resolving refs against a real hub: latest, exact, alias, ranges, pre-releases, digests,
revoked versions, and paths."""

from __future__ import annotations

import pytest

from sentenialx.hub.errors import InvalidInput, NotFound
from sentenialx.hub.manifest import FileEntry, Manifest


@pytest.fixture
def populated(hub, sample_file):
    """distill: 1.0.0, 1.2.0, 1.2.5, 2.0.0 registered, then 1.5.0 last; an alias."""
    for i, v in enumerate(["1.0.0", "1.2.0", "1.2.5", "2.0.0", "1.5.0"]):
        hub.register("distill", sample_file(256, seed=i), version=v)
    hub.set_alias("distill@1.2.0", "stable")
    return hub


def test_latest_is_highest_semver_not_newest(populated) -> None:
    newest = max(populated.versions("distill"), key=lambda v: v.created_at)
    assert newest.version == "1.5.0"
    assert populated.resolve("distill").version == "2.0.0"
    assert populated.resolve("distill@latest").version == "2.0.0"


@pytest.mark.parametrize(("ref", "version"), [
    ("distill@1.0.0", "1.0.0"),
    ("distill@v1.2.5", "1.2.5"),
    ("distill@stable", "1.2.0"),
    ("distill@^1.2", "1.5.0"),
    ("distill@~1.2", "1.2.5"),
    ("distill@>=1.0,<2", "1.5.0"),
    ("distill@>=1.0.0 <1.5.0", "1.2.5"),
    ("distill@1.x", "1.5.0"),
    ("distill@1.2", "1.2.5"),
    ("distill@*", "2.0.0"),
    ("distill@^2", "2.0.0"),
    ("distill@<1.2", "1.0.0"),
])
def test_resolve_refs(populated, ref: str, version: str) -> None:
    assert populated.resolve(ref).version == version


def test_resolve_by_digest_and_prefix(populated) -> None:
    v = populated.resolve("distill@1.2.5")
    assert populated.resolve(f"distill@sha256:{v.digest}").version == "1.2.5"
    assert populated.resolve(f"distill@sha256:{v.digest[:12]}").version == "1.2.5"
    assert populated.resolve(f"distill@sha256:{v.digest[:12].upper()}").version == "1.2.5"
    # Another model's digest does not resolve under this name.
    with pytest.raises(NotFound):
        populated.resolve(f"other@sha256:{v.digest}")
    with pytest.raises(NotFound):
        populated.resolve("distill@sha256:" + ("0" * 64 if not v.digest.startswith("0")
                                                else "f" * 64))


def _colliding_contents() -> tuple[bytes, bytes, str]:
    """Two file contents whose one-file manifests (as 1.0.0 and 1.0.1 of ``w.bin``) share
    a 6-hex-digit digest prefix (a birthday search, a few thousand hashes)."""
    import hashlib

    seen: dict[str, bytes] = {}
    for i in range(1_000_000):
        data = i.to_bytes(8, "big")
        sha = hashlib.sha256(data).hexdigest()
        d0 = Manifest((FileEntry("w_v1.0.0.bin", 8, sha),)).digest
        d1 = Manifest((FileEntry("w_v1.0.1.bin", 8, sha),)).digest
        if d1[:6] in seen and seen[d1[:6]] != data:
            return seen[d1[:6]], data, d1[:6]
        seen.setdefault(d0[:6], data)
    raise AssertionError("no collision found")  # pragma: no cover


def test_ambiguous_digest_prefix(hub, tmp_path) -> None:
    a, b, prefix = _colliding_contents()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(a)
    (tmp_path / "b" / "w.bin").write_bytes(b)
    va = hub.register("amb", tmp_path / "a" / "w.bin", version="1.0.0")
    vb = hub.register("amb", tmp_path / "b" / "w.bin", version="1.0.1")
    assert va.digest[:6] == vb.digest[:6] == prefix
    with pytest.raises(InvalidInput, match="ambiguous"):
        hub.resolve(f"amb@sha256:{prefix}")
    # One more digit (where they differ) is unique again.
    i = next(i for i in range(64) if va.digest[i] != vb.digest[i])
    assert hub.resolve(f"amb@sha256:{va.digest[:i + 1]}").version == "1.0.0"
    assert hub.resolve(f"amb@sha256:{vb.digest[:i + 1]}").version == "1.0.1"


def test_prereleases(hub, sample_file) -> None:
    hub.register("m", sample_file(64, seed=1), version="1.5.0")
    hub.register("m", sample_file(64, seed=2), version="2.0.0-rc.1")
    # Latest is the highest semver; a pre-release of 2.0.0 ranks above 1.5.0.
    assert hub.resolve("m").version == "2.0.0-rc.1"
    # Ranges pick a pre-release only when they name one of the same x.y.z.
    assert hub.resolve("m@^1.0").version == "1.5.0"
    assert hub.resolve("m@>=1.0,<3").version == "1.5.0"
    assert hub.resolve("m@>=2.0.0-rc.0").version == "2.0.0-rc.1"
    assert hub.resolve("m@2.0.0-rc.1").version == "2.0.0-rc.1"
    hub.register("m", sample_file(64, seed=3), version="2.0.0-rc.2")
    hub.register("m", sample_file(64, seed=4), version="2.0.0")
    assert hub.resolve("m").version == "2.0.0"
    assert hub.resolve("m@>=2.0.0-rc.0 <2.0.0").version == "2.0.0-rc.2"


def test_revoked_versions_are_skipped(populated) -> None:
    populated.revoke("distill@2.0.0", reason="leaks training data")
    assert populated.resolve("distill").version == "1.5.0"
    assert populated.resolve("distill@*").version == "1.5.0"
    with pytest.raises(NotFound, match="revoked"):
        populated.resolve("distill@2.0.0")
    assert populated.resolve("distill@2.0.0", include_revoked=True).revoked
    digest = populated.resolve("distill@2.0.0", include_revoked=True).digest
    with pytest.raises(NotFound):
        populated.resolve(f"distill@sha256:{digest}")
    assert populated.resolve(f"distill@sha256:{digest}", include_revoked=True).version == "2.0.0"
    populated.revoke("distill@1.2.0", reason="bad")
    with pytest.raises(NotFound, match="revoked"):
        populated.resolve("distill@stable")
    assert populated.resolve("distill@~1.2").version == "1.2.5"
    for v in ("1.0.0", "1.2.5", "1.5.0"):
        populated.revoke(f"distill@{v}", reason="all gone")
    with pytest.raises(NotFound, match="revoked"):
        populated.resolve("distill")
    with pytest.raises(NotFound):
        populated.resolve("distill@^1")
    populated.unrevoke("distill@1.5.0")
    assert populated.resolve("distill").version == "1.5.0"


@pytest.mark.parametrize("ref", ["nope", "nope@1.0.0", "distill@9.9.9", "distill@staging",
                                 "distill@^7", "nope@production"])
def test_unknown_refs_raise_not_found(populated, ref: str) -> None:
    with pytest.raises(NotFound) as ei:
        populated.resolve(ref)
    assert isinstance(ei.value, LookupError)


def test_not_found_messages_help(populated) -> None:
    with pytest.raises(NotFound, match="known versions: .*2.0.0"):
        populated.resolve("distill@9.9.9")
    with pytest.raises(NotFound, match="known aliases: stable"):
        populated.resolve("distill@staging")
    with pytest.raises(NotFound, match="known models: distill"):
        populated.resolve("nope")


def test_path_follows_refs(populated) -> None:
    for ref in ("distill", "distill@stable", "distill@^1.2", "distill@1.0.0"):
        v = populated.resolve(ref)
        p = populated.path(ref)
        assert p.is_absolute() and p.is_file()
        assert p == populated.root / "distill" / f"model_v{v.version}.onnx"


def test_resolve_sees_changes_made_by_another_hub_object(populated, make_hub, sample_file) -> None:
    assert populated.resolve("distill").version == "2.0.0"
    other = make_hub(populated.root)
    other.register("distill", sample_file(99, seed=42), version="3.0.0")
    other.set_alias("distill@1.0.0", "stable")
    assert populated.resolve("distill").version == "3.0.0"
    assert populated.resolve("distill@stable").version == "1.0.0"
