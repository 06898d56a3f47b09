"""Parsing names, semver versions, ranges and refs.

This module is imported on the CLI's hot path (``sentenialx models path``), so
it uses the standard library only.

Refs name a version of a model::

    distill                 latest: the highest non-revoked semver
    distill@1.2.0           an exact version
    distill@production      an alias
    distill@^1.2            a semver range (also ~1.2, >=1.0,<2, 1.x, *)
    distill@sha256:3f1a…    a version digest or a unique prefix of it (>= 6 hex digits)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from sentenialx.hub.errors import InvalidName, InvalidRef, InvalidVersion

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Names that mean something to a filesystem or to the hub itself.
_RESERVED = {
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "lpt1", "lpt2", "lpt3",
    "latest", "registry.json", "registry.db", "hub.toml", "trust", "cache", "keys",
}
_SEMVER_RE = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_DIGEST_RE = re.compile(r"^[0-9a-f]{6,64}$")


def validate_name(name: str, *, what: str = "model") -> str:
    """Check a model or alias name and return it.

    Allowed: 1-100 characters from letters, digits, ``.``, ``_``, ``-``, starting
    with a letter or digit. Refused: path separators, ``..``, control characters,
    non-ASCII look-alikes and reserved names.

    Raises:
        InvalidName: the name is not allowed.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what} name is empty; use letters, digits, '.', '_' or '-'")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidName(f"{what} name {name!r} contains control characters")
    if "/" in name or "\\" in name or ".." in name:
        raise InvalidName(f"{what} name {name!r} contains a path separator or '..'")
    if not _NAME_RE.match(name):
        raise InvalidName(
            f"{what} name {name!r} is not allowed; use 1-100 of letters, digits, '.', '_', '-',"
            " starting with a letter or digit"
        )
    if name.lower() in _RESERVED or name.lower().endswith((".sha256", ".sig", ".tmp")):
        raise InvalidName(f"{what} name {name!r} is reserved")
    return name


MAX_REF_LENGTH = 512
"""Longest ref: a model name, '@' and a version, alias, range or digest."""
MAX_VERSION_LENGTH = 200
"""Longest version string: the index's version column holds 200 characters."""
MAX_VERSION_NUMBER = 2**31 - 1
"""Largest MAJOR, MINOR or PATCH: the index keeps them as 32-bit integers to sort by."""


def validate_alias(alias: str) -> str:
    """Check an alias name and return it: a name that starts with a letter and is not ``latest``.

    Raises:
        InvalidName: the alias is not allowed.
    """
    validate_name(alias, what="alias")
    if not alias[0].isalpha() or alias == "latest":
        raise InvalidName(f"alias {alias!r} must start with a letter and not be 'latest'")
    return alias


@dataclass(frozen=True, slots=True, order=False)
class Version:
    """A semantic version (semver 2.0.0). Build metadata is kept but not ordered."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``1.2.3``, ``1.2.3-rc.1`` or ``1.2.3+build`` (a leading ``v`` is accepted).

        Raises:
            InvalidVersion: the text is not semver.
        """
        if isinstance(text, str) and len(text) > MAX_VERSION_LENGTH:
            raise InvalidVersion(f"version {text[:20]!r}… is longer than {MAX_VERSION_LENGTH}"
                                 " characters")
        m = _SEMVER_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise InvalidVersion(f"version {text!r} is not semver; use MAJOR.MINOR.PATCH, e.g. 1.2.0")
        nums = tuple(int(m.group(i)) for i in (1, 2, 3))
        if max(nums) > MAX_VERSION_NUMBER:
            raise InvalidVersion(f"version {text!r}: MAJOR, MINOR and PATCH must each be at most"
                                 f" {MAX_VERSION_NUMBER}")
        pre = tuple(m.group(4).split(".")) if m.group(4) else ()
        return cls(nums[0], nums[1], nums[2], pre, m.group(5) or "")

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            s += "-" + ".".join(self.prerelease)
        if self.build:
            s += "+" + self.build
        return s

    def sort_key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        """A key that orders versions by semver precedence (a release sorts after its pre-releases)."""
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def index_key(self) -> str:
        """:meth:`sort_key` as text whose byte order is semver precedence; the index sorts by it.

        MAJOR, MINOR and PATCH are zero-padded to 10 digits (they are at most 2**31 - 1); a
        release then ends in ``~``, which sorts after the ``-`` that starts a pre-release.
        Each pre-release identifier is ``0`` + its 3-digit length + its digits when numeric
        (so longer numbers sort later), else ``1`` + its text; identifiers are joined by
        ``!``, which sorts below every character an identifier may hold, so ``a`` < ``a.b``
        < ``ab``. Build metadata is left out, as precedence ignores it.
        """
        head = f"{self.major:010d}{self.minor:010d}{self.patch:010d}"
        if not self.prerelease:
            return head + "~"
        parts = []
        for p in self.prerelease:
            if p.isdigit():
                n = str(int(p))
                parts.append(f"0{len(n):03d}{n}")
            else:
                parts.append("1" + p)
        return head + "-" + "!".join(parts)

    def __lt__(self, other: Version) -> bool:
        return self.sort_key() < other.sort_key()

    def __le__(self, other: Version) -> bool:
        return self.sort_key() <= other.sort_key()

    def __gt__(self, other: Version) -> bool:
        return self.sort_key() > other.sort_key()

    def __ge__(self, other: Version) -> bool:
        return self.sort_key() >= other.sort_key()

    def bump(self, part: str) -> Version:
        """Return the next ``major``, ``minor`` or ``patch`` release.

        Raises:
            InvalidInput: ``part`` is not one of the three.
        """
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        if part == "patch":
            if self.prerelease:
                return Version(self.major, self.minor, self.patch)
            return Version(self.major, self.minor, self.patch + 1)
        raise InvalidVersion(f"bump {part!r} is not one of major, minor, patch")


_CMP_RE = re.compile(r"^(>=|<=|>|<|=|==|!=)?\s*(.+)$")


def _partial(text: str) -> tuple[int | None, int | None, int | None, tuple[str, ...]]:
    """Parse ``1``, ``1.2``, ``1.2.3``, ``1.x``, ``1.2.*`` into parts (None = wildcard)."""
    text = text.strip().lstrip("v")
    pre: tuple[str, ...] = ()
    if "-" in text:
        text, p = text.split("-", 1)
        pre = tuple(p.split("."))
    parts = text.split(".")
    if not 1 <= len(parts) <= 3:
        raise InvalidVersion(f"{text!r} is not a version")
    out: list[int | None] = []
    for p in parts:
        if p in ("x", "X", "*"):
            out.append(None)
        elif p.isdigit() and len(p) <= len(str(MAX_VERSION_NUMBER)):
            out.append(int(p))
        else:
            raise InvalidVersion(f"{text[:40]!r} is not a version")
    while len(out) < 3:
        out.append(None)
    return out[0], out[1], out[2], pre


@dataclass(frozen=True, slots=True)
class VersionRange:
    """A set of semver comparators; a version matches when it satisfies every one.

    Pre-releases match only when a comparator names a pre-release of the same
    ``major.minor.patch`` (npm's rule), so ``^1.2`` never picks ``2.0.0-rc.1``.
    """

    text: str
    comparators: tuple[tuple[str, Version], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """Parse ``^1.2``, ``~1.2``, ``>=1.0,<2``, ``1.x``, ``1.2.*`` or ``*``.

        Raises:
            InvalidVersion: the range does not parse.
        """
        comps: list[tuple[str, Version]] = []
        raw = text.strip()
        if not raw:
            raise InvalidVersion("empty version range")
        for part in re.split(r"[,\s]+", raw):
            if not part:
                continue
            comps.extend(_expand(part))
        return cls(raw, tuple(comps))

    def matches(self, v: Version) -> bool:
        """True when ``v`` satisfies the range."""
        if v.prerelease and not any(
            c.prerelease and (c.major, c.minor, c.patch) == (v.major, v.minor, v.patch)
            for _, c in self.comparators
        ):
            return False
        for op, c in self.comparators:
            k, ck = v.sort_key(), c.sort_key()
            ok = {
                ">=": k >= ck, ">": k > ck, "<=": k <= ck, "<": k < ck, "=": k == ck,
                "!=": k != ck,
            }[op]
            if not ok:
                return False
        return True


def _expand(part: str) -> list[tuple[str, Version]]:
    if part in ("*", "x", "X"):
        return [(">=", Version(0, 0, 0))]
    if part[0] in "^~":
        major, minor, patch, pre = _partial(part[1:])
        if major is None:
            return [(">=", Version(0, 0, 0))]
        lo = Version(major, minor or 0, patch or 0, pre)
        if part[0] == "~":
            hi = Version(major + 1, 0, 0) if minor is None else Version(major, minor + 1, 0)
        elif major > 0 or minor is None:
            hi = Version(major + 1, 0, 0)
        elif minor > 0 or patch is None:
            hi = Version(0, minor + 1, 0)
        else:
            hi = Version(0, 0, (patch or 0) + 1)
        return [(">=", lo), ("<", _floor(hi))]
    m = _CMP_RE.match(part)
    if not m:
        raise InvalidVersion(f"version range part {part!r} does not parse")
    op, rest = m.group(1) or "=", m.group(2)
    op = "=" if op == "==" else op
    major, minor, patch, pre = _partial(rest)
    if major is None:
        return [(">=", Version(0, 0, 0))]
    if minor is None or patch is None:
        # A partial version is a range: 1.2 means >=1.2.0 <1.3.0.
        lo = Version(major, minor or 0, 0)
        hi = Version(major + 1, 0, 0) if minor is None else Version(major, minor + 1, 0)
        if op == "=":
            return [(">=", lo), ("<", _floor(hi))]
        if op in (">=",):
            return [(">=", lo)]
        if op == "<":
            return [("<", _floor(lo))]
        if op == ">":
            return [(">=", hi)]
        if op == "<=":
            return [("<", _floor(hi))]
        raise InvalidVersion(f"version range part {part!r} does not parse")
    return [(op, Version(major, minor, patch, pre))]


def _floor(v: Version) -> Version:
    # "<2.0.0" must also exclude 2.0.0-rc.1: compare against the lowest pre-release.
    return Version(v.major, v.minor, v.patch, ("0",))


RefKind = Literal["latest", "version", "alias", "range", "digest"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed ref: the model name and how the version is selected."""

    name: str
    kind: RefKind
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "latest":
            return self.name
        if self.kind == "digest":
            return f"{self.name}@sha256:{self.value}"
        return f"{self.name}@{self.value}"


def parse_ref(text: str) -> Ref:
    """Parse a ref string.

    Raises:
        InvalidRef: the ref is malformed.
        InvalidName: the model or alias name is not allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRef("empty ref; use MODEL, MODEL@VERSION, MODEL@ALIAS, MODEL@RANGE"
                         " or MODEL@sha256:DIGEST")
    text = text.strip()
    if len(text) > MAX_REF_LENGTH:
        raise InvalidRef(f"ref {text[:40]!r}… is longer than {MAX_REF_LENGTH} characters")
    name, sep, sel = text.partition("@")
    try:
        validate_name(name)
    except InvalidName as exc:
        raise InvalidRef(f"ref {text!r}: {exc}") from None
    if not sep:
        return Ref(name, "latest")
    if not sel:
        raise InvalidRef(f"ref {text!r} has nothing after '@'")
    if sel == "latest":
        return Ref(name, "latest")
    if sel.startswith("sha256:"):
        digest = sel[7:].lower()
        if not _DIGEST_RE.match(digest):
            raise InvalidRef(f"ref {text!r}: a digest is 6 to 64 hex digits after 'sha256:'")
        return Ref(name, "digest", digest)
    if _SEMVER_RE.match(sel):
        return Ref(name, "version", str(Version.parse(sel)))
    if sel[0] in "^~<>=*!" or sel[0].isdigit() or "," in sel:
        try:
            VersionRange.parse(sel)
        except InvalidVersion as exc:
            raise InvalidRef(f"ref {text!r}: {exc}") from None
        return Ref(name, "range", sel)
    try:
        validate_name(sel, what="alias")
    except InvalidName as exc:
        raise InvalidRef(f"ref {text!r}: {exc}") from None
    return Ref(name, "alias", sel)


def validate_relpath(path: str) -> str:
    """Check a relative path inside a version (posix separators) and return it.

    Raises:
        InvalidName: absolute, empty, ``..`` or control characters.
    """
    if not path or path.startswith("/") or "\\" in path:
        raise InvalidName(f"file path {path!r} must be relative and use '/'")
    parts = path.split("/")
    for p in parts:
        if p in ("", ".", ".."):
            raise InvalidName(f"file path {path!r} has an empty, '.' or '..' component")
        # isprintable() is False for every control/format character: the slow check
        # only runs for the rare names that need it.
        if not p.isprintable() and any(unicodedata.category(c).startswith("C") for c in p):
            raise InvalidName(f"file path {path!r} contains control characters")
    return path
