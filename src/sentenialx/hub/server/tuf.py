"""``/tuf/metadata/`` and ``/tuf/targets/``: the hub's TUF repository, for ``tuf.ngclient``.

A plain ``Updater(metadata_base_url=…/tuf/metadata/, target_base_url=…/tuf/targets/,
bootstrap=root_bytes)`` reads a hub through these routes. They are thin adapters over
:meth:`Hub.tuf_metadata` and :meth:`Hub.tuf_target`: what is served is what release
keys signed, the client verifies every byte, and nothing here decides trust.

They need no token: TUF metadata and published releases are meant to be copied by
mirrors and caches to hosts that trust no server (the signatures, not the channel,
protect them). A hub without a TUF repository answers 404.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sentenialx.hub.errors import NotFound
from sentenialx.hub.server._common import hub_of
from sentenialx.hub.server._download import file_response

router = APIRouter(tags=["tuf"])
_HEX64 = re.compile(r"[0-9a-f]{64}")


@router.head("/tuf/metadata/{name}", include_in_schema=False)
@router.get("/tuf/metadata/{name}", summary="TUF metadata (root versions, timestamp, snapshot,"
            " targets, release roles)")
def tuf_metadata(request: Request, name: str) -> Response:
    """One metadata file; ``timestamp.json`` is re-signed first when due."""
    data = hub_of(request).tuf_metadata(name, online_keys=request.app.state.tuf_online_keys)
    # Everything but timestamp.json is written once under its version; caches may keep it.
    cache = "no-cache" if name == "timestamp.json" else "public, max-age=31536000, immutable"
    return Response(data, media_type="application/json", headers={"Cache-Control": cache})


@router.head("/tuf/targets/{path:path}", include_in_schema=False)
@router.get("/tuf/targets/{path:path}", summary="A TUF target by hash-prefixed name"
            " (<dir>/<sha256>.<name>), streamed from where the hub keeps it")
def tuf_target(request: Request, path: str) -> Any:
    """A published target's bytes: Range and ETag as for any download."""
    folder, sep, base = path.rpartition("/")
    sha, dot, name = base.partition(".")
    if not dot or not name or not _HEX64.fullmatch(sha):
        raise NotFound(f"{path[:200]!r} is not <dir>/<sha256>.<name>", what="tuf target",
                       name=path[:200])
    entry, size, opener = hub_of(request).tuf_target(f"{folder}{sep}{name}", sha)
    return file_response(request.headers, entry, size=size, opener=opener, filename=name)
