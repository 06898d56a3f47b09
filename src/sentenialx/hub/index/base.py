"""The index protocol; the records it returns live in :mod:`sentenialx.hub.values`."""

from __future__ import annotations

import json
from typing import Any

from sentenialx.hub.values import AliasInfo, AliasMove, VersionInfo


def dumps(obj: Any) -> str:
    """JSON for metadata columns (stable key order, readable)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


__all__ = ["AliasInfo", "AliasMove", "VersionInfo", "dumps"]
