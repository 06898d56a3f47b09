"""The hub's own key: a signed, expiring view of the index state, and a guard for readers.

When a hub has a key (``trust/hub_key.pem``, made by ``sentenialx keys hub-key``), it
signs what it tells readers: the generation (a counter every change bumps), the
event chain's head, and an expiry. A reader keeps the highest generation it has
seen and refuses a lower one (a replayed, older state: rollback) or an expired
one (a frozen mirror), so nobody can quietly serve it yesterday's ``production``.
The same key signs the exported chain head (``registry.head.json``).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import StateError
from sentenialx.hub.manifest import canonical_json
from sentenialx.hub.signing import pae

STATE_TYPE = "application/vnd.sentenialx.state+json"
HUB_KEY = Path("trust") / "hub_key.pem"
HUB_PUB = Path("trust") / "hub_key.pub"


def load_hub_key(root: Path) -> Any | None:
    """The hub's private key, or None when the hub has none."""
    p = root / HUB_KEY
    if not p.exists():
        return None
    from sentenialx.hub.signing import load_private_key

    passphrase = os.environ.get("SENTENIALX_HUB_KEY_PASSPHRASE")
    return load_private_key(p, passphrase=passphrase.encode() if passphrase else None)


def create_hub_key(root: Path) -> str:
    """Make the hub's key pair under trust/; returns the key id (refuses to replace one)."""
    from sentenialx.hub.errors import AlreadyExists
    from sentenialx.hub.signing import generate_keypair

    if (root / HUB_KEY).exists():
        raise AlreadyExists(f"{root / HUB_KEY} exists; a hub keeps its key")
    (root / HUB_KEY).parent.mkdir(parents=True, exist_ok=True)
    return generate_keypair(root / HUB_KEY, root / HUB_PUB)


def sign_doc(private_key: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Return ``doc`` with ``key_id`` and ``sig`` over its canonical form."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from sentenialx.hub.signing import key_id

    body = dict(doc, key_id=key_id(private_key.public_key()))
    sig = private_key.sign(pae(STATE_TYPE, canonical_json(body)), ec.ECDSA(hashes.SHA256()))
    return dict(body, sig=base64.b64encode(sig).decode())


def verify_doc(public_key: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Check a document signed by :func:`sign_doc`; returns it without the signature.

    Raises:
        StateError: the signature is missing or does not verify.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    body = {k: v for k, v in doc.items() if k != "sig"}
    try:
        public_key.verify(base64.b64decode(doc["sig"]), pae(STATE_TYPE, canonical_json(body)),
                          ec.ECDSA(hashes.SHA256()))
    except (KeyError, ValueError, InvalidSignature):
        raise StateError("hub state signature does not verify with the hub's key;"
                         " the state was forged or altered") from None
    return body


def signed_state(hub: Any, *, ttl: timedelta = timedelta(minutes=10)) -> dict[str, Any]:
    """The hub's current state, signed by its key, valid for ``ttl``.

    Raises:
        StateError: the hub has no key.
    """
    key = load_hub_key(hub.root)
    if key is None:
        raise StateError(f"hub {hub.root} has no key; create one with `sentenialx keys hub-key`")
    st = hub.index.state()
    seq, head = hub.index.head()
    now = datetime.now(UTC)
    doc = {"type": STATE_TYPE, "hub_id": st["hub_id"], "generation": int(st["generation"]),
           "seq": seq, "head": head, "issued": now.isoformat(),
           "expires": (now + ttl).isoformat()}
    return sign_doc(key, doc)


@dataclass
class StateGuard:
    """What a reader remembers: the hub's public key and the highest generation seen.

    ``source`` returns the state to check (default: ``hub.signed_state()``); a remote
    client or a test can hand in what the wire delivered.
    """

    public_key: Any
    hub_id: str | None = None
    highest: int = -1
    source: Callable[[Any], dict[str, Any]] | None = None

    @classmethod
    def for_hub(cls, hub: Any) -> StateGuard:
        """A guard trusting the hub's current public key."""
        from sentenialx.hub.signing import load_public_key

        return cls(load_public_key(hub.root / HUB_PUB))

    def check(self, hub: Any) -> dict[str, Any]:
        """Verify the state the hub shows now; remember its generation.

        Raises:
            StateError: forged, from another hub, expired, or older than one seen before.
        """
        doc = self.source(hub) if self.source else hub.signed_state()
        return self.check_doc(doc)

    def check_doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Like :meth:`check` for a state document in hand."""
        body = verify_doc(self.public_key, doc)
        # Review fix: the hub key also signs registry.head.json and the per-event export
        # signatures under the same DSSE type; only a state document may pass as a state
        # (a signed head used to slip through to a KeyError on "expires").
        if body.get("type") != STATE_TYPE:
            raise StateError(f"the signed document is a {body.get('type') or 'non-state'} document,"
                             " not a hub state; refusing")
        if self.hub_id is not None and body.get("hub_id") != self.hub_id:
            raise StateError(f"hub state is from hub {body.get('hub_id')}, not {self.hub_id}")
        self.hub_id = str(body.get("hub_id"))
        gen = int(body["generation"])
        if gen < self.highest:
            raise StateError(f"hub state generation {gen} is older than generation {self.highest}"
                             " already seen: an old state is being replayed (rollback); refusing")
        expires = datetime.fromisoformat(str(body["expires"]))
        if expires <= datetime.now(UTC):
            raise StateError(f"hub state expired at {body['expires']} (generation {gen}): the"
                             " hub or mirror stopped updating (freeze); refusing")
        self.highest = gen
        return body


def write_signed_head(hub: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Sign the exported chain head with the hub key when there is one."""
    key = load_hub_key(hub.root)
    return sign_doc(key, doc) if key is not None else doc


def check_signed_head(hub: Any) -> str | None:
    """None if registry.head.json fits the chain (and its signature, if any); else why not."""
    p = hub.root / "registry.head.json"
    if not p.exists():
        # Review fix: with a hub key the signed head must exist; deleting it used to hide a
        # rewritten chain (the check was skipped).
        if (hub.root / HUB_KEY).exists():
            return "registry.head.json is missing although the hub has a key (deleted?)"
        return None
    try:
        doc = json.loads(p.read_text())
    except ValueError:
        return "registry.head.json does not parse"
    if "sig" in doc:
        from sentenialx.hub.signing import load_public_key

        pub_path = hub.root / HUB_PUB
        if not pub_path.exists():
            return "registry.head.json is signed but the hub's public key is missing"
        try:
            verify_doc(load_public_key(pub_path), doc)
        except StateError as exc:
            return f"registry.head.json: {exc}"
    elif (hub.root / HUB_KEY).exists():
        return "registry.head.json is not signed although the hub has a key"
    if not hub.check_head(int(doc.get("seq", 0)), str(doc.get("head", ""))):
        return (f"the chain's event {doc.get('seq')} no longer has the hash registry.head.json"
                " recorded: the history was rewritten")
    return None


def signed_head_broken(hub: Any) -> bool:
    """True when registry.head.json carries a hub signature that fails or a head the chain lost.

    Review fix helper: the hub must not re-sign the head over a rewritten chain (see
    ``Hub._export_events``), or the next ordinary write would launder the rewrite.
    """
    p = hub.root / "registry.head.json"
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict) or "sig" not in doc or not (hub.root / HUB_PUB).exists():
        return False
    from sentenialx.hub.signing import load_public_key

    try:
        verify_doc(load_public_key(hub.root / HUB_PUB), doc)
    except StateError:
        return True
    return not hub.check_head(int(doc.get("seq", 0)), str(doc.get("head", "")))
