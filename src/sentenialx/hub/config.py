"""The hub config file, ``hub.toml``: where a hub's index and bytes live.

A team shares a PostgreSQL + S3 hub by copying this one small file; credentials
never go in it (they come from the environment or the AWS config files)::

    [hub]
    index = "postgresql://hub@db.internal/models"
    store = "s3://sentenialx-models/prod"
    s3_endpoint = "https://rgw.internal:7480"   # optional; AWS_ENDPOINT_URL works too
    cache_max_bytes = 10737418240               # optional cap for the local read cache
    hub_key = "/etc/sentenialx/hub_key.pem"     # optional: this machine's hub private key,
                                                # outside the hub folder (see state.py)
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import InvalidInput

CONFIG = "hub.toml"
KEYS = ("index", "store", "s3_endpoint", "cache_dir", "cache_max_bytes", "hub_key")
_SECRET_HINTS = ("password", "secret", "token")


def read_config(root: Path) -> dict[str, Any]:
    """The ``[hub]`` table of ``root/hub.toml`` (empty when there is none).

    Raises:
        InvalidInput: the file is not valid TOML or has unknown keys.
    """
    p = Path(root) / CONFIG
    if not p.is_file():
        return {}
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{p}: {exc}") from None
    hub = data.get("hub", {})
    unknown = set(hub) - set(KEYS)
    if unknown:
        raise InvalidInput(f"{p}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(KEYS)})")
    return dict(hub)


def write_config(root: Path, **values: Any) -> Path:
    """Write ``root/hub.toml`` atomically with the given non-empty values.

    Raises:
        InvalidInput: a value carries a password (keep credentials out of the file).
    """
    from sqlalchemy.engine import make_url

    lines = ["# Sentenial-X hub: share this file; credentials come from the environment.", "[hub]"]
    for k in KEYS:
        v = values.get(k)
        if v in (None, ""):
            continue
        if k == "index" and "://" in str(v):
            if make_url(str(v).replace("postgresql://", "postgresql+psycopg://", 1)).password:
                raise InvalidInput("keep the database password out of hub.toml: use PGPASSWORD"
                                   " or ~/.pgpass instead")
        # hub_key is a path: its words are folder names, and the key it names is the one
        # secret that must stay out of the hub folder (and so out of this file's folder).
        if any(h in str(v).lower() for h in _SECRET_HINTS) and k not in ("index", "hub_key"):
            raise InvalidInput(f"hub.toml {k}: looks like a credential; use the environment")
        # A JSON string is a valid TOML basic string (same escapes), so any path round-trips.
        lines.append(f"{k} = {int(v)}" if k == "cache_max_bytes" else f"{k} = {json.dumps(str(v))}")
    Path(root).mkdir(parents=True, exist_ok=True)
    p = Path(root) / CONFIG
    tmp = p.with_name(f".tmp-{os.getpid()}-{CONFIG}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, p)
    return p


def update_config(root: Path, **values: Any) -> Path:
    """Set some keys of ``root/hub.toml``, keeping the others; see :func:`write_config`.

    Raises:
        InvalidInput: the existing file is invalid, or a value carries a credential.
    """
    return write_config(root, **dict(read_config(root), **values))
