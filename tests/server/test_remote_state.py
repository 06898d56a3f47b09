"""Rollback and freeze protection for hubs read over HTTP (issue 4, item 6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import StateError
from sentenialx.hub.hub import Hub
from sentenialx.hub.state import HUB_PUB, create_hub_key


def _remote(served: Any, cache_dir: Path) -> Hub:
    return Hub.served(served.url, token=served.tokens["reader"], cache_dir=cache_dir)


def test_state_endpoint_gives_the_generation_and_follows_changes(served: Any, cache_dir: Path) -> None:
    remote = _remote(served, cache_dir)
    g0 = remote.generation()
    assert g0 == served.hub.generation()
    v = served.hub.versions("distill")[0]
    served.hub.revoke(v.ref, reason="test")
    assert remote.generation() > g0
    with pytest.raises(StateError, match="no key"):
        remote.signed_state()


def test_pull_client_refuses_a_replayed_older_state(served: Any, cache_dir: Path,
                                                   tmp_path: Path) -> None:
    create_hub_key(served.hub.root, tmp_path / "secret" / "hub.pem")
    pub = served.hub.root / HUB_PUB
    remote = _remote(served, cache_dir)
    first = remote.guard_state(pub)
    served.hub.revoke(served.hub.versions("distill")[0].ref, reason="bump generation")
    second = remote.guard_state(pub)
    assert second["generation"] > first["generation"]
    # The client remembered the newer generation on disk; an old state replayed to a
    # new client process (same cache) is refused.
    remembered = json.loads((remote.hub_dir / "state.json").read_text())
    assert remembered["generation"] == second["generation"]
    old_signed = served.hub.signed_state()
    old_signed_gen = old_signed["generation"]
    served.hub.unrevoke(served.hub.versions("distill")[0].ref)
    remote.guard_state(pub)
    replay = Hub.served(served.url, token=served.tokens["reader"], cache_dir=cache_dir)
    replay.signed_state = lambda: old_signed  # type: ignore[method-assign]
    with pytest.raises(StateError, match="rollback"):
        replay.guard_state(pub)
    assert old_signed_gen < json.loads((remote.hub_dir / "state.json").read_text())["generation"]


def test_pull_cli_with_hub_key_refuses_an_expired_state(served: Any, cache_dir: Path,
                                                       tmp_path: Path) -> None:
    from datetime import timedelta

    create_hub_key(served.hub.root, tmp_path / "secret" / "hub.pem")
    remote = _remote(served, cache_dir)
    expired = served.hub.signed_state(ttl=timedelta(seconds=-1))
    remote.signed_state = lambda: expired  # type: ignore[method-assign]
    with pytest.raises(StateError, match="freeze"):
        remote.guard_state(served.hub.root / HUB_PUB)
