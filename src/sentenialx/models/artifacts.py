"""The seed's five functions, with their signatures, over the default hub.

``models/artifacts`` (or ``$SENTENIALX_HUB``) is the hub. The registry these
functions hand out is the index's view in the seed's shape (``registry.json`` is the
same view on disk); :func:`save_registry` asks the hub to adopt changes into it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import HubError, InvalidInput, NotFound


@contextmanager
def _hub() -> Iterator[Any]:
    from sentenialx.hub.hub import Hub

    with Hub.open() as hub:
        yield hub


def _with_metadata(hub: Any, view: dict[str, Any]) -> dict[str, Any]:
    # The seed kept each registration's metadata in its registry entry; the hub keeps
    # it as the version's metadata (with the detected "format" beside it).
    out: dict[str, Any] = {}
    for model, entry in view.items():
        info = hub.resolve(f"{model}@{entry['version']}", include_revoked=True)
        out[model] = {**entry, "metadata": dict(info.meta)}
    return out


def load_registry() -> dict[str, Any]:
    """Load the master registry: ``{model: {"version", "file", "hash", "updated", "metadata", ...}}``.

    The latest version of each model, read from the hub's index (the truth), so it
    never lags a registration; ``file`` is relative to the hub folder, ``hash`` the
    weights' sha256. An empty hub is ``{}``. A missing or unreadable registry.json is
    rewritten on the way, best-effort.
    """
    with _hub() as hub:
        view = dict(hub.registry_view())
        try:
            json.loads((hub.root / "registry.json").read_text())
        except (OSError, ValueError):
            try:
                hub.write_registry_json()
            except (OSError, HubError):
                pass  # registry.json is a view; the index answered already
        return _with_metadata(hub, view)


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
    with _hub() as hub:
        _adopt(hub, data)


def _adopt(hub: Any, data: dict[str, Any]) -> None:
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


def get_artifact_path(model_type: str) -> Path:
    """Get the path to the latest version's weights file (or folder) of ``model_type``.

    The hub checks the bytes against the manifest before it hands the path out.

    Raises:
        ValueError: no artifact entry for ``model_type`` (or a malformed name).
        IntegrityError: the weights no longer match their manifest.
    """
    with _hub() as hub:
        try:
            return Path(hub.path(model_type))
        except (NotFound, InvalidInput) as exc:
            raise ValueError(f"unknown model type {model_type!r}: {exc}") from None


def verify_artifact(model_type: str) -> bool:
    """Verify artifact integrity: True when the latest version's bytes match their hashes.

    Re-hashes every file of the version (deep). A model type with no entry, or whose
    weights are missing or changed, is not verified: False.
    """
    with _hub() as hub:
        try:
            rep = hub.verify(model_type, deep=True)
        except (NotFound, InvalidInput):
            return False
        return bool(rep.ok)


def register_artifact(model_type: str, file_path: str | os.PathLike[str], version: str,
                      metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register a new artifact: ``file_path`` becomes ``model_type@version``.

    The bytes are copied into the hub; ``metadata`` (metrics, params, framework,
    anything JSON) becomes the version's metadata, within the hub's bounds.
    ``metadata`` stays positional as in the seed, whose trainers pass it fourth.

    Returns:
        The registry after the registration, as :func:`load_registry` returns it.

    Raises:
        FileNotFoundError: ``file_path`` does not exist.
        ValueError: a bad name, version or metadata, or the version exists.
    """
    if not Path(file_path).exists():
        raise FileNotFoundError(f"File {file_path} not found.")
    with _hub() as hub:
        try:
            hub.register(model_type, file_path, version=version, metadata=metadata)
        except HubError as exc:
            raise ValueError(str(exc)) from None
        return _with_metadata(hub, dict(hub.registry_view()))
