"""API tokens as the server sees them: the rules live in :mod:`sentenialx.hub._tokens`.

The server and the CLI reach tokens through ``hub.tokens`` (a
:class:`~sentenialx.hub._tokens.Tokens` over the hub's index); this module
re-exports the record type and keeps the hub-level helpers older callers use.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sentenialx.hub._tokens import ANONYMOUS, SCOPES, TOKEN_PREFIX, Token, Tokens, token_sha256


def _tokens(hub: Any) -> Tokens:
    tokens: Tokens = hub.tokens
    return tokens


def create_token(hub: Any, name: str, *, scope: str = "read",
                 models: list[str] | tuple[str, ...] | None = None,
                 expires_in: timedelta | None = None, actor: str | None = None
                 ) -> tuple[str, Token]:
    """``hub.tokens.create(...)``: the secret (shown once) and the record.

    Raises:
        InvalidName: the name is not allowed.
        InvalidInput: unknown scope, bad model limits or a non-positive lifetime.
        AlreadyExists: a token (active or revoked) already has this name.
    """
    return _tokens(hub).create(name, scope=scope, models=models, expires_in=expires_in,
                               actor=actor)


def list_tokens(hub: Any, *, include_revoked: bool = True) -> list[Token]:
    """``hub.tokens.list(...)``: every token, oldest first."""
    return _tokens(hub).list(include_revoked=include_revoked)


def revoke_token(hub: Any, name: str) -> Token:
    """``hub.tokens.revoke(name)``.

    Raises:
        NotFound: no token has this name, or it is already revoked.
    """
    return _tokens(hub).revoke(name)


__all__ = ["ANONYMOUS", "SCOPES", "TOKEN_PREFIX", "Token", "Tokens", "create_token",
           "list_tokens", "revoke_token", "token_sha256"]
