"""The trust policy's defaults and its one rule for how strictly a version is checked.

Kept free of everything else in :mod:`sentenialx.hub.trust` so that the cold
``models path`` can apply the same rule without loading the rest.
"""

from __future__ import annotations

import fnmatch
from typing import Any

MODES = ("enforce", "warn", "off")
DEFAULT_POLICY: dict[str, Any] = {
    "schema": "sentenialx.trust/v1",
    "keys": {},
    # Versions an alias in this map points at need a signature, checked in this mode.
    "aliases": {"production": "enforce"},
    # Models every version of which needs a signature (model name pattern -> mode).
    "models": {},
    # Mode for everything else.
    "default": "off",
    "gates": {
        "production": {
            "min": {"accuracy": 0.95},
            "max": {"latency_p95_ms": 50.0},
            "not_above_current": ["false_positive_rate"],
            "signature": True,
            "provenance": True,
        }
    },
}


def policy_mode(policy: dict[str, Any], model: str, aliases_of_version: list[str]) -> tuple[str, str]:
    """The check mode for a version of ``model`` that these aliases point at, and why.

    The strictest of the default, each alias's mode and each matching model pattern's.
    """
    strict = {"enforce": 2, "warn": 1, "off": 0}
    best, why = policy.get("default", "off"), "default"
    for alias in aliases_of_version:
        m = policy.get("aliases", {}).get(alias)
        if m and strict[m] > strict[best]:
            best, why = m, f"alias {alias}"
    for pattern, m in policy.get("models", {}).items():
        if fnmatch.fnmatchcase(model, pattern) and strict[m] > strict[best]:
            best, why = m, f"model {pattern}"
    return best, why


__all__ = ["DEFAULT_POLICY", "MODES", "policy_mode"]
