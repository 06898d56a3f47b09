"""Views of the index kept in the hub folder: registry.json, events.jsonl, the signed head.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from sentenialx.hub._core import Core, Part
from sentenialx.hub.events import ChainReport, Event, verify_chain
from sentenialx.hub.layout import (
    EVENTS_EXPORT,
    HEAD_EXPORT,
    REGISTRY_JSON,
    file_key,
    folder_key,
)


class Views(Part):
    """Regenerates the folder's views of the index; the index is the truth."""

    def __init__(self, core: Core) -> None:
        super().__init__(core)


    def registry_view(self) -> dict[str, Any]:
        """registry.json's content: the seed's shape plus extra keys, latest per model."""
        out: dict[str, Any] = {}
        aliases = self.index.list_aliases()
        for m in self.index.models():
            if not m["latest"]:
                continue
            v = self.index.get_version(m["model"], m["latest"])
            if v.layout == "dir":
                file, digest = folder_key(v.model, v.stem), v.digest
            else:
                w = self.weights_entry(v)
                file, digest = file_key(v.model, w.path), w.sha256
            out[v.model] = {
                "version": v.version, "file": file, "hash": digest, "updated": v.created_at,
                "digest": v.digest, "format": v.meta.get("format"),
                "aliases": {a.alias: a.version for a in aliases if a.model == v.model},
                "versions": m["versions"],
            }
        return out

    def write_registry_json(self) -> None:
        """Regenerate registry.json atomically (temp + fsync + rename)."""
        import fcntl

        lock_path = self.root / (REGISTRY_JSON + ".lock")
        with open(lock_path, "a+") as lock:
            # Under the lock we read the index *after* our own commit, so the last writer
            # to get here writes the newest view; without the lock an older view could
            # land last. The rename keeps readers from seeing a half-written file.
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = json.dumps(self.registry_view(), indent=2, sort_keys=True) + "\n"
            self.local.put_small(REGISTRY_JSON, data.encode())
            os.chmod(self.root / REGISTRY_JSON, 0o644)
            self._export_events()

    def export_registry(self, dest: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Rewrite registry.json (or write the view to ``dest``) and return it."""
        if dest is None:
            self.write_registry_json()
            return self.registry_view()
        view = self.registry_view()
        Path(dest).write_text(json.dumps(view, indent=2, sort_keys=True) + "\n")
        return view

    def verify_log(self, *, pubkey: Any = None) -> ChainReport:
        """Check the whole event chain in the index, then its export (events.jsonl) against it."""
        events = self.index.events()
        rep = verify_chain(events)
        if not rep.ok:
            return rep
        # The export is compared first and the signed head last: a rewritten and
        # re-hashed index is then named by its first differing event (the head only knows
        # the newest one), and a missing events.jsonl no longer skips the head check.
        path = self.root / EVENTS_EXPORT
        by_seq = {e.seq: e for e in events}
        with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    exported = Event.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    return ChainReport(False, rep.count, rep.head, n,
                                       f"{EVENTS_EXPORT} line {n} does not parse")
                mine = by_seq.get(exported.seq)
                if mine is None or exported.to_dict() != mine.to_dict() or \
                        exported.compute_hash() != exported.hash:
                    return ChainReport(False, rep.count, rep.head, exported.seq,
                                       f"event {exported.seq}: {EVENTS_EXPORT} differs from the index"
                                       " (one of them was edited)")
        from sentenialx.hub.state import check_signed_head

        why = check_signed_head(self, pubkey=pubkey)
        if why is not None:
            return ChainReport(False, rep.count, rep.head, None, why)
        return rep

    def check_head(self, seq: int, head: str) -> bool:
        """True when event ``seq`` of this hub's chain has hash ``head`` (a copy's saved head)."""
        if seq == 0:
            return True
        for e in self.index.events():
            if e.seq == seq:
                return e.hash == head
        return False

    def _export_events(self) -> None:
        """Append new events to events.jsonl and write registry.head.json (under the registry lock)."""
        path = self.root / EVENTS_EXPORT
        last = 0
        if path.exists():
            with open(path, "rb") as f:
                try:
                    f.seek(-4096, os.SEEK_END)
                except OSError:
                    f.seek(0)
                tail = f.read().splitlines()
            for line in reversed(tail):
                try:
                    last = int(json.loads(line)["seq"])
                    break
                except (ValueError, KeyError):
                    continue
        from sentenialx.hub.state import load_hub_key, sign_doc, write_signed_head

        new = [e for e in self.index.events() if e.seq > last]
        if new:
            key = load_hub_key(self.root)
            with open(path, "a", encoding="utf-8") as f:
                for e in new:
                    d = e.to_dict()
                    if key is not None:
                        # The hub's key vouches for each event: rewriting the chain needs it.
                        d["hub_sig"] = sign_doc(key, {"seq": e.seq, "hash": e.hash})["sig"]
                    f.write(json.dumps(d, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
        seq, head = self.index.head()
        state = self.index.state()
        from sentenialx.hub.state import signed_head_broken

        if signed_head_broken(self):
            # Never sign over a rewritten past. If the head the hub signed last no
            # longer fits the chain, keep it as evidence for `log --verify` instead of
            # vouching for the rewrite with the hub's key on the next ordinary write.
            return
        doc = write_signed_head(self, {"seq": seq, "head": head, "generation": state["generation"],
                                       "hub_id": state["hub_id"]})
        self.local.put_small(HEAD_EXPORT, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        os.chmod(self.root / HEAD_EXPORT, 0o644)


__all__ = ["Views"]
