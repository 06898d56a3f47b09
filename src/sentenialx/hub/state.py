"""The hub's own key: a signed, expiring view of the index state, and a guard for readers.

When a hub has a key (made by ``sentenialx keys hub-key --out PATH``), it signs what it
tells readers: the generation (a counter every change bumps), the event chain's head,
and an expiry. A reader keeps the highest generation it has seen and refuses a lower
one (a replayed, older state: rollback) or an expired one (a frozen mirror), so nobody
can quietly serve it yesterday's ``production``. The same key signs the exported chain
head (``registry.head.json``).

The private key never lives in the hub folder (DESIGN.md: "Private keys never live in
the hub folder"): whoever can write the folder could otherwise rewrite the index, the
chain and the head and re-sign them. The folder holds only the public half
(``trust/hub_key.pub``, also recorded in the ``hub-key`` trust event). Writers find the
private key through ``$SENTENIALX_HUB_KEY`` or ``hub_key`` in ``hub.toml``, decrypted
with ``$SENTENIALX_HUB_KEY_PASSPHRASE``. A writer without it still writes; the signed
head then stays where the last keyed writer left it. Readers who must not trust the
folder pin the public key (``log --verify --hub-pubkey PEM``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import InvalidInput, NotFound, StateError
from sentenialx.hub.manifest import canonical_json

log = logging.getLogger("sentenialx.state")

STATE_TYPE = "application/vnd.sentenialx.state+json"
LEGACY_HUB_KEY = Path("trust") / "hub_key.pem"
HUB_PUB = Path("trust") / "hub_key.pub"
HEAD = "registry.head.json"
KEY_ENV = "SENTENIALX_HUB_KEY"
PASSPHRASE_ENV = "SENTENIALX_HUB_KEY_PASSPHRASE"


_WARNED: set[str] = set()


def _warn_once(fmt: str, *args: object) -> None:
    """Log a key-configuration warning once per process, not on each of a write's reads."""
    msg = fmt % args
    if msg not in _WARNED:
        _WARNED.add(msg)
        log.warning("%s", msg)


def _legacy_message(root: Path) -> str:
    return (f"{root / LEGACY_HUB_KEY}: the hub's private key is inside the hub folder, where"
            " anyone who can write the folder can re-sign a rewritten history; move it out"
            " with `sentenialx keys hub-key --out PATH` (same key, readers' pins stay valid)")


def hub_key_path(root: Path) -> Path | None:
    """Where this process finds the hub's private key: ``$SENTENIALX_HUB_KEY``, else hub.toml."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    from sentenialx.hub.config import read_config

    try:
        configured = read_config(root).get("hub_key")
    except InvalidInput:
        return None
    return Path(str(configured)).expanduser() if configured else None


def inside(path: Path, root: Path) -> bool:
    """True when ``path`` (resolved, symlinks followed) is ``root`` or under it."""
    p, r = Path(path).expanduser().resolve(), Path(root).resolve()
    return p == r or r in p.parents


def hub_public_key(root: Path) -> Any | None:
    """The public key the hub folder names as its own (``trust/hub_key.pub``), or None.

    This is what the folder says; a reader that does not trust the folder pins the key.

    Raises:
        InvalidInput: the file is not a P-256 public key.
    """
    from sentenialx.hub.signing import load_public_key

    p = Path(root) / HUB_PUB
    return load_public_key(p) if p.is_file() else None


def load_hub_key(root: Path) -> Any | None:
    """The hub's private key for this writer, or None when it signs nothing.

    None when the hub has no key, when this process is not given one, when the one it
    is given is not the hub's (its public half differs from ``trust/hub_key.pub``), and
    when the only key is the refused in-folder ``trust/hub_key.pem``. Each of the last
    three logs a warning: writes go on, but the signed head is not refreshed.
    """
    root = Path(root)
    pub = root / HUB_PUB
    if (root / LEGACY_HUB_KEY).exists() and not _configured_outside(root):
        _warn_once("%s", _legacy_message(root))
        return None
    if not pub.is_file():
        return None
    key = writer_key(root)
    if key is None:
        return None
    from sentenialx.hub.signing import key_id

    try:
        mine = hub_public_key(root)
    except InvalidInput as exc:
        _warn_once("hub key not used: %s", exc)
        return None
    if mine is None or key_id(key.public_key()) != key_id(mine):
        _warn_once("the hub key this writer holds is not the key %s names; the signed head is"
                    " not refreshed", pub)
        return None
    return key


def _configured_outside(root: Path) -> bool:
    path = hub_key_path(root)
    return path is not None and not inside(path, root)


def writer_key(root: Path) -> Any | None:
    """The private key this process is given for the hub (outside its folder), or None.

    Unlike :func:`load_hub_key` it is not compared with the folder's public key: it is
    what a writer holding the key checks the folder against.
    """
    root = Path(root)
    path = hub_key_path(root)
    if path is None:
        if (root / HUB_PUB).is_file():
            _warn_once("hub %s has a key but this writer was not given it (set $%s or hub_key"
                        " in hub.toml); the signed head is not refreshed", root, KEY_ENV)
        return None
    if inside(path, root):
        _warn_once("hub key %s is inside the hub folder %s; refusing to use it", path, root)
        return None
    try:
        return read_hub_key(path)
    except (InvalidInput, NotFound) as exc:
        _warn_once("hub key not used: %s; the signed head is not refreshed", exc)
        return None


def read_hub_key(path: Path) -> Any:
    """Read the private key at ``path``, decrypted with ``$SENTENIALX_HUB_KEY_PASSPHRASE``.

    Raises:
        NotFound: no such file.
        InvalidInput: not a P-256 key, or the passphrase is missing or wrong.
    """
    from sentenialx.hub.signing import load_private_key

    passphrase = os.environ.get(PASSPHRASE_ENV)
    secret = passphrase.encode() if passphrase else None
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        raise NotFound(f"hub key {path} does not exist", what="key", name=str(path)) from None
    # Every write reads the key a few times; an encrypted key costs a key derivation
    # each time. The cache is keyed by the file's identity and the passphrase, so an
    # edited or replaced file, or another passphrase, is read again.
    ident = (str(Path(path).resolve()), st.st_ino, st.st_mtime_ns, st.st_size, secret)
    cached = _KEYS.get(ident)
    if cached is None:
        cached = load_private_key(path, passphrase=secret)
        if len(_KEYS) >= 8:
            _KEYS.clear()
        _KEYS[ident] = cached
    return cached


_KEYS: dict[tuple[Any, ...], Any] = {}


def create_hub_key(root: Path, out: str | os.PathLike[str], *,
                   passphrase: bytes | None = None) -> str:
    """Give the hub a key pair: the private key at ``out``, the public half in trust/.

    ``out`` must lie outside the hub folder. A hub that still has the refused
    in-folder ``trust/hub_key.pem`` has it moved to ``out`` instead (same key, so
    readers' pins stay valid), re-encrypted with ``passphrase`` when one is given.
    The path is recorded as ``hub_key`` in ``hub.toml`` so later writers on this
    machine find it; returns the key id.

    Raises:
        InvalidInput: ``out`` is inside the hub folder, or the passphrase is empty.
        AlreadyExists: the hub already has a key, or ``out`` exists.
    """
    from sentenialx.hub.config import read_config, update_config
    from sentenialx.hub.errors import AlreadyExists
    from sentenialx.hub.signing import generate_keypair, write_private_key

    root = Path(root)
    read_config(root)  # a broken hub.toml fails here, before any key file is made
    dest = Path(out).expanduser()
    if inside(dest, root):
        raise InvalidInput(f"--out {dest} is inside the hub folder {root}; keep the hub's private"
                           " key where writing the folder does not reach it")
    if os.path.lexists(dest):
        raise AlreadyExists(f"{dest} exists; choose a new path for the hub key")
    legacy = root / LEGACY_HUB_KEY
    if legacy.exists():
        key = read_hub_key(legacy)
        kid = write_private_key(key, dest, passphrase=passphrase)
        if not (root / HUB_PUB).is_file():
            from sentenialx.hub.signing import write_public_key

            write_public_key(key.public_key(), root / HUB_PUB)
        legacy.unlink()
    else:
        if (root / HUB_PUB).exists():
            raise AlreadyExists(f"{root / HUB_PUB} exists; a hub keeps its key")
        (root / HUB_PUB).parent.mkdir(parents=True, exist_ok=True)
        kid = generate_keypair(dest, root / HUB_PUB, passphrase=passphrase)
    update_config(root, hub_key=str(dest.resolve()))
    return kid


def sign_doc(private_key: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Return ``doc`` with ``key_id`` and ``sig`` over its canonical form."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    # Imported here: signing pulls in cryptography, which a hub without a key never needs.
    from sentenialx.hub.signing import key_id, pae

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

    from sentenialx.hub.signing import pae

    body = {k: v for k, v in doc.items() if k != "sig"}
    try:
        public_key.verify(base64.b64decode(doc["sig"]), pae(STATE_TYPE, canonical_json(body)),
                          ec.ECDSA(hashes.SHA256()))
    except (KeyError, ValueError, TypeError, InvalidSignature):
        raise StateError("hub state signature does not verify with the hub's key;"
                         " the state was forged or altered") from None
    return body


def signed_state(hub: Any, *, ttl: timedelta = timedelta(minutes=10)) -> dict[str, Any]:
    """The hub's current state, signed by its key, valid for ``ttl``.

    Raises:
        StateError: the hub has no key, or this process does not hold it.
    """
    key = load_hub_key(hub.root)
    if key is None:
        if (hub.root / LEGACY_HUB_KEY).exists():
            raise StateError(_legacy_message(hub.root))
        if (hub.root / HUB_PUB).is_file():
            raise StateError(f"hub {hub.root} has a key but this process does not hold it; set"
                             f" ${KEY_ENV} (and ${PASSPHRASE_ENV} if it is encrypted)")
        raise StateError(f"hub {hub.root} has no key; create one with"
                         " `sentenialx keys hub-key --out PATH`")
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
        """A guard trusting the public key the hub folder names now (pin one to trust less).

        Raises:
            NotFound: the hub has no key.
        """
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
        """Like :meth:`check` for a state document in hand.

        Raises:
            StateError: forged, not a state, from another hub, expired, or older than seen.
        """
        body = verify_doc(self.public_key, doc)
        # The hub key also signs registry.head.json and the per-event export signatures
        # under the same DSSE type; only a state document may pass as a state.
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


PubKeyLike = Any  # a public key object, PEM bytes/text, or a path to a PEM file


def load_pinned(pubkey: PubKeyLike) -> Any:
    """A pinned hub public key from a key object, PEM text/bytes or a PEM file path.

    Raises:
        NotFound: the file does not exist.
        InvalidInput: not a P-256 public key.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    from sentenialx.hub.signing import load_public_key

    if isinstance(pubkey, ec.EllipticCurvePublicKey):
        return pubkey
    return load_public_key(pubkey)


def _read_head(hub: Any) -> dict[str, Any] | None:
    try:
        doc = json.loads((hub.root / HEAD).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_signed_head(hub: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """The head document to write: ``doc`` signed by the hub key when this writer holds it.

    A writer without the key on a keyed hub gets back the head the last keyed writer
    signed, unchanged: replacing it with an unsigned one would look like a forgery, and
    the older signed head still fits the chain (appending keeps old heads valid).
    """
    key = load_hub_key(hub.root)
    if key is not None:
        return sign_doc(key, doc)
    keyed = (hub.root / HUB_PUB).is_file() or (hub.root / LEGACY_HUB_KEY).exists()
    current = _read_head(hub)
    if keyed and current is not None and "sig" in current:
        return current
    return doc


def check_signed_head(hub: Any, *, pubkey: PubKeyLike | None = None) -> str | None:
    """None if registry.head.json fits the chain and is signed by the hub's key; else why not.

    The key is ``pubkey`` when the reader pins one; else the public half of the private
    key this writer holds; else the one the folder names (``trust/hub_key.pub``), which
    only helps against someone who can write the index but not the folder. With a pin,
    events after the signed head (appended without the key) fail the check: nothing
    vouches for them.
    """
    from sentenialx.hub.signing import key_id

    root = hub.root
    if (root / LEGACY_HUB_KEY).exists():
        return _legacy_message(root)
    try:
        folder_pub = hub_public_key(root)
    except InvalidInput as exc:
        return f"{HUB_PUB}: {exc}"
    key, source = None, ""
    if pubkey is not None:
        key, source = load_pinned(pubkey), "the pinned hub key"
        if folder_pub is not None and key_id(folder_pub) != key_id(key):
            return (f"{HUB_PUB} is not the pinned hub key ({key_id(folder_pub)[:12]}…, pinned"
                    f" {key_id(key)[:12]}…): it was replaced, so the folder cannot be trusted")
    else:
        priv = writer_key(root) if folder_pub is not None else None
        if priv is not None and folder_pub is not None:
            key, source = priv.public_key(), "the hub key this writer holds"
            if key_id(folder_pub) != key_id(key):
                return (f"{HUB_PUB} is not the public half of the hub key this writer holds"
                        f" ({key_id(folder_pub)[:12]}…, held {key_id(key)[:12]}…): it was"
                        " replaced")
        elif folder_pub is not None:
            key, source = folder_pub, f"{HUB_PUB}"
    p = root / HEAD
    if not p.exists():
        if key is not None:
            return f"{HEAD} is missing although the hub has a key (deleted?)"
        return None
    doc = _read_head(hub)
    if doc is None:
        return f"{HEAD} does not parse"
    if "sig" in doc:
        if key is None:
            return f"{HEAD} is signed but the hub's public key is missing"
        try:
            verify_doc(key, doc)
        except StateError as exc:
            return f"{HEAD}: {exc} ({source})"
    elif key is not None:
        return f"{HEAD} is not signed although the hub has a key"
    try:
        seq, head = int(doc.get("seq", 0)), str(doc.get("head", ""))
    except (TypeError, ValueError):
        return f"{HEAD} does not parse"
    if not hub.check_head(seq, head):
        return (f"the chain's event {seq} no longer has the hash {HEAD} recorded: the history"
                " was rewritten")
    if pubkey is not None:
        last, _ = hub.index.head()
        if last > seq:
            return (f"events {seq + 1}..{last} are not covered by the hub's signed head (written"
                    " without the hub key, or appended behind the hub's back); a writer holding"
                    " the key re-signs the head on its next write")
    return None


def signed_head_broken(hub: Any) -> bool:
    """True when registry.head.json carries a hub signature that fails or a head the chain lost.

    The hub must not re-sign the head over a rewritten chain (see ``Hub._export_events``),
    or the next ordinary write would launder the rewrite. The signature is checked with
    the key this writer holds when it holds one, so a public key swapped in the folder
    does not make a forged head look sound.
    """
    doc = _read_head(hub)
    if doc is None or "sig" not in doc:
        return False
    priv = writer_key(hub.root) if (hub.root / HUB_PUB).is_file() else None
    try:
        pub = priv.public_key() if priv is not None else hub_public_key(hub.root)
    except InvalidInput:
        return True
    if pub is None:
        return False
    try:
        verify_doc(pub, doc)
        seq, head = int(doc.get("seq", 0)), str(doc.get("head", ""))
    except (StateError, TypeError, ValueError):
        return True
    return not hub.check_head(seq, head)
