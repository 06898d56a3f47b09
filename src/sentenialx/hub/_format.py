"""Formatting shared by the CLI and the web pages."""

from __future__ import annotations


def human_size(n: float) -> str:
    """Bytes as ``512 B``, ``1.5 MiB``, ``2.0 GiB`` (binary units, up to TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
