"""The hub's HTTP server: REST API, scoped tokens and web pages (``pip install 'sentenialx[server]'``).

``create_app(hub)`` is loaded on first use, so importing the package (the token
commands go through ``hub.tokens``) does not import FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sentenialx.hub.server.app import create_app

        return create_app
    raise AttributeError(f"module 'sentenialx.hub.server' has no attribute {name!r}")
