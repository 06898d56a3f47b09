"""Formatting shared by the CLI and the web pages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentenialx.hub.values import AliasInfo, VersionInfo


def human_size(n: float) -> str:
    """Bytes as ``512 B``, ``1.5 MiB``, ``2.0 GiB`` (binary units, up to TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# The read commands' output, built here once: the click commands and the CLI's cold start
# (_fastpath.py) print exactly these strings, so the two cannot drift apart.


def dumps_json(obj: Any) -> str:
    """``--json`` output: indented, keys sorted."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: a header, a rule, one line per row, columns two spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def models_text(rows: Sequence[dict[str, Any]]) -> str:
    """``models list``: model, latest, version count, aliases."""
    return table(("model", "latest", "versions", "aliases"), [
        (r["model"], r["latest"] or "-", str(r["versions"]),
         ", ".join(f"{k}→{v}" for k, v in sorted(r["aliases"].items()))) for r in rows])


def aliases_by_version(aliases: Sequence[AliasInfo]) -> dict[str, list[str]]:
    """Version -> the aliases pointing at it, in the order given."""
    out: dict[str, list[str]] = {}
    for a in aliases:
        out.setdefault(a.version, []).append(a.alias)
    return out


def versions_view(vs: Sequence[VersionInfo], aliases: Sequence[AliasInfo]) -> list[dict[str, Any]]:
    """``models versions --json``: each version's dict with the aliases pointing at it."""
    al = aliases_by_version(aliases)
    return [dict(v.to_dict(), aliases=al.get(v.version, [])) for v in vs]


def versions_text(vs: Sequence[VersionInfo], aliases: Sequence[AliasInfo]) -> str:
    """``models versions``: one line per version, oldest first."""
    al = aliases_by_version(aliases)
    return table(("version", "digest", "size", "created", "by", "aliases", "status"), [
        (v.version, (v.digest or "")[:12], human_size(v.size), v.created_at[:19], v.created_by,
         ", ".join(al.get(v.version, [])), f"revoked: {v.revoke_reason}" if v.revoked else "ok")
        for v in vs])


def show_view(v: VersionInfo, aliases: Sequence[AliasInfo], root: Path) -> dict[str, Any]:
    """``models show --json``: the version's dict, its aliases and its model folder."""
    d = v.to_dict()
    d["aliases"] = [a.alias for a in aliases if a.model == v.model and a.version == v.version]
    d["path"] = str(root / v.model)
    return d


def show_text(v: VersionInfo, view: dict[str, Any]) -> str:
    """``models show``: header, revocation, aliases, the files, then metadata and lineage."""
    lines = [f"{v.ref}  sha256:{v.digest}"]
    if v.revoked:
        lines.append(f"revoked: {v.revoke_reason}")
    lines.append(f"created {v.created_at} by {v.created_by}; aliases:"
                 f" {', '.join(view['aliases']) or '-'}")
    lines.append(table(("file", "role", "size", "sha256"),
                       [(f.path, f.role, human_size(f.size), f.sha256) for f in v.files]))
    lines.append(json.dumps({"metadata": v.meta, "lineage": v.lineage}, indent=2, sort_keys=True,
                            ensure_ascii=False))
    return "\n".join(lines)
