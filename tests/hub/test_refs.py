"""Refs: parsing names, refs, semver versions and ranges (resolution: test_resolve.py)."""

from __future__ import annotations

import pytest

from sentenialx.hub.errors import InvalidName, InvalidRef, InvalidVersion
from sentenialx.hub.refs import (
    Ref,
    Version,
    VersionRange,
    parse_ref,
    validate_name,
    validate_relpath,
)

# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("distill", "latest", ""),
    ("distill@latest", "latest", ""),
    ("distill@1.2.0", "version", "1.2.0"),
    ("distill@v1.2.0", "version", "1.2.0"),
    ("distill@1.2.0-rc.1", "version", "1.2.0-rc.1"),
    ("distill@production", "alias", "production"),
    ("distill@^1.2", "range", "^1.2"),
    ("distill@~1.2", "range", "~1.2"),
    ("distill@>=1.0,<2", "range", ">=1.0,<2"),
    ("distill@1.x", "range", "1.x"),
    ("distill@*", "range", "*"),
    ("distill@sha256:ABCDEF12", "digest", "abcdef12"),
    ("  threat-student.v2_x@1.0.0  ", "version", "1.0.0"),
])
def test_parse_ref_kinds(text: str, kind: str, value: str) -> None:
    r = parse_ref(text)
    assert (r.kind, r.value) == (kind, value)
    assert r.name == text.strip().partition("@")[0]


def test_ref_str_round_trips() -> None:
    for text in ("distill", "distill@1.2.0", "distill@prod", "distill@^1.2",
                 "distill@sha256:abcdef"):
        assert str(parse_ref(text)) == text
    assert str(Ref("m", "latest")) == "m"


@pytest.mark.parametrize("text", [
    "", "   ", "distill@", "a/b", "a/b@1.0.0", "../x", "..", "a\\b", "a\x00b", "a\nb",
    "@1.0.0", "-lead", "distill@sha256:", "distill@sha256:abc", "distill@sha256:xyz123",
    "distill@sha256:" + "a" * 65, "distill@^y", "distill@>=1.0,<", "distill@1.2.3.4.5",
    "distill@prod/uction", "distill@..", "distill@con", "registry.json", "latest",
    "x" * 101, "distill@a\tb", "naïve",
])
def test_parse_ref_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidRef):
        parse_ref(text)


@pytest.mark.parametrize("name", [
    "a/b", "..", "a..b", "a\\b", "a\x00b", "a\x7fb", "a\u200bb", "con", "NUL", "latest",
    "registry.json", "registry.db", "x.sha256", "x.tmp", "x.sig", "", ".hidden", "-x",
    "x" * 101, "sp ace",
])
def test_validate_name_refuses(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


@pytest.mark.parametrize("name", ["distill", "lora-7b", "a", "A.b_c-1", "x" * 100])
def test_validate_name_accepts(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("path", ["", "/abs", "a/../b", "./a", "a//b", "a\\b", "a/\x01"])
def test_validate_relpath_refuses(path: str) -> None:
    with pytest.raises(InvalidName):
        validate_relpath(path)


# -- versions and ranges ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "1.2", "01.2.3", "1.2.3-", "1.2.3-01", "a.b.c", "",
                                  "1.2.3+", "1.2.3 4"])
def test_version_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidVersion):
        Version.parse(text)


def test_version_order_follows_semver() -> None:
    ordered = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
               "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0",
               "1.10.0", "2.0.0"]
    parsed = [Version.parse(v) for v in ordered]
    assert sorted(reversed(parsed)) == parsed
    assert [str(v) for v in parsed] == ordered
    assert Version.parse("1.0.0+build.5") >= Version.parse("1.0.0")
    assert str(Version.parse("v1.2.3+b.1")) == "1.2.3+b.1"


def test_bump() -> None:
    v = Version.parse("1.2.3")
    assert str(v.bump("major")) == "2.0.0"
    assert str(v.bump("minor")) == "1.3.0"
    assert str(v.bump("patch")) == "1.2.4"
    assert str(Version.parse("2.0.0-rc.1").bump("patch")) == "2.0.0"
    with pytest.raises(InvalidVersion):
        v.bump("huge")


@pytest.mark.parametrize(("rng", "yes", "no"), [
    ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0", "2.0.0-rc.1", "1.3.0-rc.1"]),
    ("^0.2", ["0.2.0", "0.2.9"], ["0.3.0", "0.1.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4"]),
    ("~1.2", ["1.2.0", "1.2.9"], ["1.3.0", "1.1.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
    (">=1.0,<2", ["1.0.0", "1.99.0"], ["0.9.9", "2.0.0", "2.0.0-rc.1"]),
    (">=1.0.0 <2.0.0", ["1.5.0"], ["2.0.0"]),
    ("1.x", ["1.0.0", "1.5.5"], ["2.0.0", "0.1.0"]),
    ("1.2.*", ["1.2.0", "1.2.7"], ["1.3.0"]),
    ("*", ["0.0.1", "9.9.9"], ["1.0.0-rc.1"]),
    (">=2.0.0-rc.1", ["2.0.0-rc.1", "2.0.0-rc.2", "2.0.0", "3.0.0"], ["2.0.0-beta", "3.0.0-rc.1"]),
    ("=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("!=1.2.3", ["1.2.4"], ["1.2.3"]),
    ("<=1.2", ["1.2.9", "1.0.0"], ["1.3.0"]),
    (">1.2", ["1.3.0"], ["1.2.9"]),
])
def test_range_matching(rng: str, yes: list[str], no: list[str]) -> None:
    r = VersionRange.parse(rng)
    for v in yes:
        assert r.matches(Version.parse(v)), f"{rng} should match {v}"
    for v in no:
        assert not r.matches(Version.parse(v)), f"{rng} should not match {v}"


@pytest.mark.parametrize("rng", ["", "^", ">=", "1.2.3.4", "^a", ">=1.x.y"])
def test_range_parse_rejects(rng: str) -> None:
    with pytest.raises(InvalidVersion):
        VersionRange.parse(rng)
