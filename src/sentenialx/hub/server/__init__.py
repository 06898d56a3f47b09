"""The hub's HTTP server: REST API, scoped tokens and web pages (``pip install 'sentenialx[server]'``).

``create_app(hub)`` is loaded on first use, so the token commands (which need
only :mod:`.auth`) do not import FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sentenialx.hub.server.app import create_app

        return create_app
    raise AttributeError(f"module 'sentenialx.hub.server' has no attribute {name!r}")
