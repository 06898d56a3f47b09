"""The hub config file, ``hub.toml``: where a hub's index and bytes live.

A team shares a PostgreSQL + S3 hub by copying this one small file; credentials
never go in it (they come from the environment or the AWS config files)::

    [hub]
    index = "postgresql://hub@db.internal/models"
    store = "s3://sentenialx-models/prod"
    s3_endpoint = "https://rgw.internal:7480"   # optional; AWS_ENDPOINT_URL works too
    cache_max_bytes = 10737418240               # optional cap for the local read cache
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import InvalidInput

CONFIG = "hub.toml"
KEYS = ("index", "store", "s3_endpoint", "cache_dir", "cache_max_bytes")
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
        if any(h in str(v).lower() for h in _SECRET_HINTS) and k != "index":
            raise InvalidInput(f"hub.toml {k}: looks like a credential; use the environment")
        lines.append(f"{k} = {int(v)}" if k == "cache_max_bytes" else f'{k} = "{v}"')
    Path(root).mkdir(parents=True, exist_ok=True)
    p = Path(root) / CONFIG
    tmp = p.with_name(f".tmp-{os.getpid()}-{CONFIG}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, p)
    return p
