"""The append-only, hash-chained history of every change to a hub.

Each event's hash covers its content and the previous event's hash, so editing,
removing or reordering any past event breaks every hash after it.
:func:`verify_chain` names the first event that does not fit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sentenialx.hub.manifest import canonical_json

GENESIS = "0" * 64
KINDS = (
    "register", "alias", "alias-remove", "revoke", "unrevoke", "delete", "import", "sign",
    "promote", "trust", "gc",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded change."""

    seq: int
    ts: str
    kind: str
    model: str
    version: str
    actor: str
    payload: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        """Everything the hash covers."""
        return {
            "seq": self.seq, "ts": self.ts, "kind": self.kind, "model": self.model,
            "version": self.version, "actor": self.actor, "payload": self.payload,
            "prev": self.prev_hash,
        }

    def compute_hash(self) -> str:
        """sha256 of the canonical body."""
        return hashlib.sha256(canonical_json(self.body())).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (the export format)."""
        d = self.body()
        d["hash"] = self.hash
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict`."""
        payload = d.get("payload") or {}
        if isinstance(payload, str):
            payload = json.loads(payload)
        return cls(
            int(d["seq"]), str(d["ts"]), str(d["kind"]), str(d.get("model") or ""),
            str(d.get("version") or ""), str(d.get("actor") or ""), payload,
            str(d.get("prev", d.get("prev_hash", GENESIS))), str(d.get("hash", "")),
        )


def chain(prev: Event | None, *, ts: str, kind: str, model: str, version: str, actor: str,
          payload: dict[str, Any]) -> Event:
    """Build the event that follows ``prev`` (or the first one), with its hash set."""
    seq = prev.seq + 1 if prev else 1
    ev = Event(seq, ts, kind, model, version, actor, payload, prev.hash if prev else GENESIS)
    return Event(seq, ts, kind, model, version, actor, payload, ev.prev_hash, ev.compute_hash())


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Result of :func:`verify_chain`."""

    ok: bool
    count: int
    head: str
    first_bad: int | None = None
    reason: str = ""


def verify_chain(events: Iterable[Event]) -> ChainReport:
    """Check every link; stop at the first event that does not fit."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for ev in events:
        if ev.seq != expected_seq:
            return ChainReport(False, count, prev_hash, ev.seq,
                               f"event {ev.seq}: expected sequence number {expected_seq}"
                               " (an event was removed or inserted)")
        if ev.prev_hash != prev_hash:
            return ChainReport(False, count, prev_hash, ev.seq,
                               f"event {ev.seq} ({ev.kind} {ev.model}@{ev.version}): does not follow"
                               " the previous event's hash (the history before it was rewritten)")
        actual = ev.compute_hash()
        if actual != ev.hash:
            return ChainReport(False, count, prev_hash, ev.seq,
                               f"event {ev.seq} ({ev.kind} {ev.model}@{ev.version}): content does not"
                               f" match its hash (expected {ev.hash[:12]}…, got {actual[:12]}…)")
        prev_hash, expected_seq, count = ev.hash, expected_seq + 1, count + 1
    return ChainReport(True, count, prev_hash)
