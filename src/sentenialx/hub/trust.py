"""Trust: which keys are trusted for which models, which versions need a signature,
and the promotion gates.

The policy lives in the hub as ``trust/policy.json`` with the trusted public keys
in ``trust/keys/<key id>.pub``; a user may add keys in
``$XDG_CONFIG_HOME/sentenialx/trust/keys`` (``~/.config/...``). Every change made
through :class:`TrustStore` is recorded as a ``trust`` event whose payload holds
the policy's sha256, so an edit behind the hub's back is detected: the policy
in force must match the last recorded hash.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentenialx.hub._policy import DEFAULT_POLICY, MODES, policy_mode
from sentenialx.hub.errors import InvalidInput, NotFound, SignatureError


def user_trust_dir() -> Path:
    """The per-user trust folder."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sentenialx" / "trust"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key the policy trusts (or once trusted)."""

    key_id: str
    name: str
    models: tuple[str, ...]
    revoked: bool
    pem: bytes
    source: str = "hub"

    def covers(self, model: str) -> bool:
        """True when this key is trusted for ``model``."""
        return not self.revoked and any(fnmatch.fnmatchcase(model, p) for p in self.models)


@dataclass(slots=True)
class GateResult:
    """One promotion gate's verdict."""

    gate: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"gate": self.gate, "ok": self.ok, "detail": self.detail}


@dataclass(slots=True)
class TrustStore:
    """The policy file and key folder of one hub (plus the user's keys)."""

    root: Path
    policy: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, hub_root: Path) -> TrustStore:
        """Read ``trust/policy.json`` (defaults when absent).

        Raises:
            InvalidInput: the policy file is not valid JSON.
        """
        ts = cls(hub_root / "trust")
        p = ts.root / "policy.json"
        if p.exists():
            try:
                ts.policy = json.loads(p.read_text())
            except ValueError as exc:
                raise InvalidInput(f"{p}: not JSON ({exc}); restore it or run"
                                   " `sentenialx keys policy --reset`") from None
        else:
            ts.policy = json.loads(json.dumps(DEFAULT_POLICY))
        return ts

    @property
    def exists(self) -> bool:
        """True when the hub has a policy file."""
        return (self.root / "policy.json").exists()

    def policy_bytes(self) -> bytes:
        """The canonical encoding the trust events hash."""
        return (json.dumps(self.policy, indent=2, sort_keys=True) + "\n").encode()

    def policy_sha256(self) -> str:
        """sha256 of the policy file as it is on disk (or of the defaults)."""
        p = self.root / "policy.json"
        data = p.read_bytes() if p.exists() else self.policy_bytes()
        return hashlib.sha256(data).hexdigest()

    def save(self) -> str:
        """Write the policy atomically; returns its sha256."""
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.policy_bytes()
        tmp = self.root / f".tmp-policy-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / "policy.json")
        return hashlib.sha256(data).hexdigest()

    # -- keys ---------------------------------------------------------------------------
    def keys(self) -> list[TrustedKey]:
        """Keys from the hub's policy, then the user's folder (the hub's revocations win)."""
        out: dict[str, TrustedKey] = {}
        for kid, k in self.policy.get("keys", {}).items():
            pem_path = self.root / "keys" / f"{kid}.pub"
            pem = pem_path.read_bytes() if pem_path.exists() else str(k.get("pem", "")).encode()
            out[kid] = TrustedKey(kid, str(k.get("name", "")), tuple(k.get("models", ["*"])),
                                  bool(k.get("revoked", False)), pem)
        udir = user_trust_dir() / "keys"
        if udir.is_dir():
            from sentenialx.hub.signing import key_id, load_public_key

            for p in sorted(udir.glob("*.pub")):
                try:
                    kid = key_id(load_public_key(p))
                except (SignatureError, InvalidInput, ValueError):
                    continue
                if kid not in out:
                    out[kid] = TrustedKey(kid, p.stem, ("*",), False, p.read_bytes(), "user")
        return list(out.values())

    def trust_key(self, public_key_path: Path, *, name: str, models: tuple[str, ...] = ("*",)) -> str:
        """Add a public key to the hub's trusted keys; returns its id.

        Raises:
            InvalidInput: the file is not a P-256 public key.
        """
        from sentenialx.hub.signing import key_id, load_public_key

        pub = load_public_key(public_key_path)
        kid = key_id(pub)
        (self.root / "keys").mkdir(parents=True, exist_ok=True)
        (self.root / "keys" / f"{kid}.pub").write_bytes(Path(public_key_path).read_bytes())
        self.policy.setdefault("keys", {})[kid] = {"name": name, "models": list(models),
                                                   "revoked": False}
        return kid

    def revoke_key(self, ref: str) -> str:
        """Mark a key (by id, id prefix or name) revoked; returns its id.

        Raises:
            NotFound: no such key.
        """
        kid = self.find_key(ref)
        self.policy["keys"][kid]["revoked"] = True
        return kid

    def find_key(self, ref: str) -> str:
        """A key id from an id, a unique id prefix or a name.

        Raises:
            NotFound: no such key.
        """
        keys = self.policy.get("keys", {})
        hits = [k for k, v in keys.items() if k.startswith(ref) or v.get("name") == ref]
        if len(hits) != 1:
            raise NotFound(f"key {ref!r} {'is ambiguous' if hits else 'not found'} among the"
                           f" hub's trusted keys ({', '.join(k[:12] for k in keys) or 'none'})",
                           what="key")
        return hits[0]

    def trusted_for(self, model: str) -> dict[str, Any]:
        """``{key id: public key}`` trusted for ``model`` now."""
        from sentenialx.hub.signing import load_public_key

        out = {}
        for k in self.keys():
            if k.covers(model) and k.pem:
                out[k.key_id] = load_public_key(k.pem)
        return out

    # -- modes --------------------------------------------------------------------------
    def mode_for(self, model: str, aliases_of_version: list[str]) -> tuple[str, str]:
        """The check mode for a version and why (``enforce``/``warn``/``off``)."""
        return policy_mode(self.policy, model, aliases_of_version)

    def set_mode(self, *, alias: str | None = None, model: str | None = None,
                 default: bool = False, mode: str) -> None:
        """Set the signature mode for an alias, a model pattern or the default.

        Raises:
            InvalidInput: unknown mode or nothing to set it on.
        """
        if mode not in MODES:
            raise InvalidInput(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if alias:
            self.policy.setdefault("aliases", {})[alias] = mode
        elif model:
            self.policy.setdefault("models", {})[model] = mode
        elif default:
            self.policy["default"] = mode
        else:
            raise InvalidInput("say what the mode is for: --alias, --model or --default")

    def gates_for(self, alias: str) -> dict[str, Any]:
        """The promotion gates configured for ``alias`` (empty: none)."""
        gates: dict[str, Any] = self.policy.get("gates", {}).get(alias, {})
        return gates
