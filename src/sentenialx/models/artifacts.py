"""The seed's five functions, with their signatures, over the default hub.

``models/artifacts`` (or ``$SENTENIALX_HUB``) is the hub; ``registry.json`` is a
view of its index that these functions read and, through :func:`save_registry`,
ask the hub to adopt changes into.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import HubError, InvalidInput, NotFound


def _hub() -> Any:
    from sentenialx.hub.hub import Hub

    return Hub.open()


def load_registry() -> dict[str, Any]:
    """Read registry.json: ``{model: {"version", "file", "hash", "updated", ...}}``."""
    hub = _hub()
    try:
        data: dict[str, Any] = json.loads((hub.root / "registry.json").read_text())
        return data
    except (OSError, ValueError):
        hub.write_registry_json()
        return dict(hub.registry_view())


def save_registry(data: dict[str, Any]) -> None:
    """Ask the hub to adopt the changes in ``data`` (a whole registry dict).

    A model entry whose version is new and whose ``file`` exists (with a matching
    ``hash`` if given) is registered as that version. Entries already in the hub
    are left alone. Anything that would rewrite history (removing a model,
    changing the hash or file of a registered version) is refused; the index and
    registry.json are never left half-changed.

    Raises:
        ValueError: the change cannot be adopted; the message says why.
    """
    hub = _hub()
    if not isinstance(data, dict):
        raise ValueError("save_registry expects a dict of model -> entry")
    current = hub.registry_view()
    removed = sorted(set(current) - set(data))
    if removed:
        raise ValueError(f"save_registry cannot remove models ({', '.join(removed)}); use"
                         " `sentenialx models delete MODEL@VERSION --yes`")
    plan: list[tuple[str, Path, str, dict[str, Any]]] = []
    for model, entry in data.items():
        if not isinstance(entry, dict) or "file" not in entry or "version" not in entry:
            raise ValueError(f"registry entry {model!r} needs 'version' and 'file'")
        cur = current.get(model)
        if cur and cur["version"] == entry["version"]:
            if entry.get("file") != cur["file"] or (entry.get("hash") and entry["hash"] != cur["hash"]):
                raise ValueError(f"{model}@{entry['version']} is registered with file {cur['file']}"
                                 f" and hash {cur['hash'][:12]}…; versions are immutable")
            continue
        f = Path(entry["file"])
        src = f if f.is_absolute() else hub.root / f
        if not src.exists():
            raise ValueError(f"{model}: file {str(src)!r} does not exist")
        # Names and versions are all checked before anything is registered, so a bad
        # entry after a good one cannot leave a half-applied save.
        from sentenialx.hub.refs import Version, validate_name

        validate_name(model)  # InvalidName is a ValueError
        version = str(Version.parse(str(entry["version"])))
        if hub.exists(model, version):
            raise ValueError(f"{model}@{version} is already registered; versions are immutable")
        plan.append((model, src, version, entry))
    from sentenialx.models.utils import verify_model_integrity

    for model, src, _version, entry in plan:
        if entry.get("hash") and src.is_file() and not verify_model_integrity(src, entry["hash"]):
            raise ValueError(f"{model}: {src} does not match hash {entry['hash']}")
    for model, src, version, _entry in plan:
        try:
            hub.register(model, src, version=version)
        except HubError as exc:
            raise ValueError(f"save_registry: {model}@{version}: {exc}") from None


def get_artifact_path(model_type: str) -> str:
    """Absolute path of the latest version's weights file of ``model_type``.

    Raises:
        ValueError: unknown model type (or a malformed name).
    """
    try:
        return str(_hub().path(model_type))
    except (NotFound, InvalidInput) as exc:
        raise ValueError(f"unknown model type {model_type!r}: {exc}") from None


def verify_artifact(model_type: str) -> bool:
    """True when every file of the latest version of ``model_type`` matches its manifest.

    Re-hashes the bytes (deep). An unknown model type is not verified: False.
    """
    hub = _hub()
    try:
        rep = hub.verify(model_type, deep=True)
    except (NotFound, InvalidInput):
        return False
    return bool(rep.ok)


def register_artifact(model_type: str, file_path: str | os.PathLike[str],
                      version: str) -> dict[str, Any]:
    """Copy ``file_path`` into the hub as ``model_type@version``; return the registry dict.

    Raises:
        ValueError: bad name, version, missing file, or the version exists.
    """
    hub = _hub()
    try:
        hub.register(model_type, file_path, version=version)
    except HubError as exc:
        raise ValueError(str(exc)) from None
    return dict(hub.registry_view())
