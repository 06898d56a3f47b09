"""Views of the index kept in the hub folder: registry.json, events.jsonl, the signed head.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
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
        self._write_locked()

    def _write_locked(self) -> list[str]:
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
            return self._export_events()

    def export_registry(self, dest: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Rewrite registry.json (or write the view to ``dest``) and return it."""
        if dest is None:
            self.write_registry_json()
            return self.registry_view()
        view = self.registry_view()
        Path(dest).write_text(json.dumps(view, indent=2, sort_keys=True) + "\n")
        return view

    def verify_log(self, *, pubkey: Any = None, torn_ok: bool = False) -> ChainReport:
        """Check the whole event chain in the index, then its export (events.jsonl) against it.

        ``torn_ok`` skips lines that do not parse (fsck reports those as a torn view,
        which a rewrite from the index mends); lines that parse must still match.
        """
        events = self.index.events()
        rep = verify_chain(events)
        if not rep.ok:
            return rep
        # The export is compared first and the signed head last: a rewritten and
        # re-hashed index is then named by its first differing event (the head only knows
        # the newest one), and a missing events.jsonl no longer skips the head check.
        path = self.root / EVENTS_EXPORT
        by_seq = {e.seq: e for e in events}
        hint = "; the next write or `sentenialx models fsck --repair` rewrites it from the index"
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    if torn_ok:
                        continue
                    return ChainReport(False, rep.count, rep.head, n,
                                       f"{EVENTS_EXPORT} line {n} is torn (no newline at its end)"
                                       + hint)
                try:
                    exported = Event.from_dict(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    if torn_ok:
                        continue
                    return ChainReport(False, rep.count, rep.head, n,
                                       f"{EVENTS_EXPORT} line {n} does not parse" + hint)
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

    def rebuild(self) -> list[str]:
        """Rewrite every view from the index (``fsck --repair``); returns what was rebuilt.

        A view is named when what was on disk before did not match the index (missing,
        torn, stale or edited). events.jsonl lines that disagree with the index are kept:
        they are evidence of a rewritten history, as the signed head is.
        """
        before_reg = self._registry_on_disk()
        before_head = _read_json(self.root / HEAD_EXPORT)
        done = self._write_locked()
        if before_reg != self.registry_view():
            why = "missing" if before_reg is _MISSING else "stale or edited"
            done.insert(0, f"{REGISTRY_JSON}: rebuilt from the index (was {why})")
        after_head = _read_json(self.root / HEAD_EXPORT)
        if _head_of(after_head) != _head_of(before_head):
            seq = _head_of(after_head)[0]
            signed = " and signed" if isinstance(after_head, dict) and "sig" in after_head else ""
            done.append(f"{HEAD_EXPORT}: rewritten{signed} at event {seq}")
        return done

    def _registry_on_disk(self) -> Any:
        try:
            return json.loads((self.root / REGISTRY_JSON).read_text())
        except (OSError, ValueError):
            return _MISSING

    def check_export(self, events: list[Event] | None = None) -> list[str]:
        """Why events.jsonl is not a clean copy of the index's chain (torn or behind), or [].

        Lines that parse but differ from the index are left to :meth:`verify_log`: they
        are not damage a rewrite may mend.
        """
        events = self.index.events() if events is None else events
        scan = _scan_export(self.root / EVENTS_EXPORT, events)
        out = [f"{EVENTS_EXPORT} line {n}: {why}" for n, why in scan.bad]
        have = set(scan.matched)
        missing = [e.seq for e in events if e.seq not in have]
        if missing and not scan.differs:
            first = missing[0]
            out.append(f"{EVENTS_EXPORT}: events {first}..{missing[-1]} of the index are missing"
                       f" ({len(missing)} events" + (", the file is absent)" if not scan.exists
                                                     else ")"))
        return out

    def _export_events(self) -> list[str]:
        """Bring events.jsonl up to the index and write registry.head.json (under the registry lock).

        Appends only when the file ends in a newline and its last line is event k at line
        k, identical to the index's event k (an O(tail) check: a torn write only ever hits
        the tail). Otherwise the whole file is rewritten atomically (temp + fsync +
        rename) from the index, keeping every line that matches the index verbatim (so
        their ``hub_sig`` stays) and dropping what does not parse. A well-formed line
        that disagrees with the index is evidence of a rewritten history: the file is
        then never rewritten, only appended to, so `log --verify` keeps naming it.

        Returns what it wrote (an ordinary write appends its own event; ``rebuild`` reports
        this as the repair of a stale view).
        """
        from sentenialx.hub.state import load_hub_key, sign_doc, signed_head_broken, write_signed_head

        path = self.root / EVENTS_EXPORT
        events = self.index.events()
        key: Any = _UNLOADED

        def line(e: Event) -> bytes:
            nonlocal key
            if key is _UNLOADED:
                key = load_hub_key(self.root)
            d = e.to_dict()
            if key is not None:
                # The hub's key vouches for each event: rewriting the chain needs it.
                d["hub_sig"] = sign_doc(key, {"seq": e.seq, "hash": e.hash})["sig"]
            return (json.dumps(d, sort_keys=True) + "\n").encode()

        done: list[str] = []
        last = _clean_tail(path, events)
        if last is not None:
            new = events[last:]
            if new:
                with open(path, "ab") as f:
                    f.write(b"".join(line(e) for e in new))
                    f.flush()
                    os.fsync(f.fileno())
                done.append(f"{EVENTS_EXPORT}: appended events {new[0].seq}..{new[-1].seq}")
        else:
            scan = _scan_export(path, events)
            if scan.differs:
                if scan.ends_clean:
                    top = max(scan.seqs, default=0)
                    new = [e for e in events if e.seq > top]
                    if new:
                        with open(path, "ab") as f:
                            f.write(b"".join(line(e) for e in new))
                            f.flush()
                            os.fsync(f.fileno())
            elif events or scan.exists:
                why = [f"line {n} {w}" for n, w in scan.bad]
                kept = len(scan.matched)
                data = b"".join(scan.matched.get(e.seq) or line(e) for e in events)
                # put_small: temp + fsync + rename, so a crash leaves the old file or the new one.
                self.local.put_small(EVENTS_EXPORT, data)
                os.chmod(path, 0o644)
                done.append(f"{EVENTS_EXPORT}: rewritten from the index ({len(events)} events,"
                            f" {len(events) - kept} restored"
                            + (f"; dropped {', '.join(why[:3])}" if why else "") + ")")
        seq, head = self.index.head()
        state = self.index.state()
        if signed_head_broken(self):
            # Never sign over a rewritten past. If the head the hub signed last no
            # longer fits the chain, keep it as evidence for `log --verify` instead of
            # vouching for the rewrite with the hub's key on the next ordinary write.
            return done
        doc = write_signed_head(self, {"seq": seq, "head": head, "generation": state["generation"],
                                       "hub_id": state["hub_id"]})
        self.local.put_small(HEAD_EXPORT, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        os.chmod(self.root / HEAD_EXPORT, 0o644)
        return done


_UNLOADED: Any = object()
_MISSING: Any = object()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _head_of(doc: Any) -> tuple[Any, Any]:
    return (doc.get("seq"), doc.get("head")) if isinstance(doc, dict) else (None, None)


def _matches(raw: bytes, event: Event) -> bool:
    try:
        exported = Event.from_dict(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return False
    return exported.to_dict() == event.to_dict() and exported.compute_hash() == exported.hash


def _clean_tail(path: Path, events: list[Event]) -> int | None:
    """k when events.jsonl ends in a newline after exactly k lines, the last being event k
    as the index has it (0 for a missing or empty file); None when it needs a full look."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if not data:
        return 0
    if not data.endswith(b"\n"):
        return None
    k = data.count(b"\n")
    if k > len(events) or events[k - 1].seq != k:
        return None
    start = data.rfind(b"\n", 0, len(data) - 1) + 1
    return k if _matches(data[start:], events[k - 1]) else None


@dataclass
class _Scan:
    exists: bool = False
    ends_clean: bool = True
    matched: dict[int, bytes] = field(default_factory=dict)  # seq -> the line, verbatim
    seqs: list[int] = field(default_factory=list)            # every well-formed line's seq
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)
    differs: bool = False


def _scan_export(path: Path, events: list[Event]) -> _Scan:
    """Every line of events.jsonl against the index's events."""
    scan = _Scan()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return scan
    scan.exists = True
    scan.ends_clean = not data or data.endswith(b"\n")
    by_seq = {e.seq: e for e in events}
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, raw in enumerate(lines, 1):
        if n == len(lines) and not scan.ends_clean:
            scan.bad.append((n, "is torn (no newline at its end)"))
            continue
        try:
            exported = Event.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            scan.bad.append((n, "does not parse (a torn write?)"))
            continue
        scan.seqs.append(exported.seq)
        mine = by_seq.get(exported.seq)
        if mine is not None and exported.to_dict() == mine.to_dict() and \
                exported.compute_hash() == exported.hash:
            scan.matched.setdefault(exported.seq, raw + b"\n")
        else:
            scan.differs = True
    return scan


__all__ = ["Views"]
