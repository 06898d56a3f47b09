"""Streaming a stored file over HTTP: ETag = sha256, Range (206), If-None-Match (304), If-Range.

Or, on a store that signs URLs (S3), not streaming it: :func:`redirect_response`
answers ``307`` to a short-lived presigned URL, so the bytes go from the store to
the client without passing through the server. :class:`Transfers` counts both.

The bytes come straight from the blob store in large chunks read in a worker
thread, so a download neither loads the file into memory nor blocks the event
loop. The ETag is the manifest's sha256, so a client that holds verified bytes can
revalidate without a transfer, and a resumed download (``Range`` with ``If-Range``)
can never splice two different files together.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import IO, Any
from urllib.parse import quote

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sentenialx.hub.errors import StoreUnavailable
from sentenialx.hub.manifest import FileEntry

CHUNK = 1024 * 1024
"""Bytes per read and per ASGI message: large enough that per-chunk overhead is small."""

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
MAX_RANGE_DIGITS = 18
"""A range bound with more digits is past the end of any file (and past int64)."""


class Transfers:
    """What one app sent: bytes streamed from the store, and presigned redirects handed out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.streamed_bytes = 0
        self.redirects = 0

    def streamed(self, n: int) -> None:
        """Count ``n`` bytes sent through this server."""
        with self._lock:
            self.streamed_bytes += n

    def redirected(self) -> None:
        """Count one download answered with a presigned URL."""
        with self._lock:
            self.redirects += 1

    def to_dict(self) -> dict[str, int]:
        """Plain-dict form."""
        return {"streamed_bytes": self.streamed_bytes, "redirects": self.redirects}


def etag_for(entry: FileEntry) -> str:
    """The strong ETag of a stored file: its sha256, quoted."""
    return f'"{entry.sha256}"'


def _etag_matches(header: str, etag: str) -> bool:
    for part in header.split(","):
        tag = part.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """One ``bytes=a-b`` range as ``(start, end_inclusive)``.

    Returns None when the header is absent, malformed or asks for several ranges
    (the whole file is then sent, as RFC 9110 allows), and ``"unsatisfiable"``
    when it starts past the end or names a number of more than
    :data:`MAX_RANGE_DIGITS` digits.
    """
    if not header or len(header) > 10000:
        return None
    m = _RANGE_RE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if max(len(m.group(1)), len(m.group(2))) > MAX_RANGE_DIGITS:
        return "unsatisfiable"
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
        if m.group(2) and end < start:
            return None
        if start >= size:
            return "unsatisfiable"
        return start, min(end, size - 1)
    suffix = int(m.group(2))
    if suffix == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


Opener = Callable[[int, int], IO[bytes]]
"""``opener(start, end_inclusive)`` gives a readable object positioned at ``start``."""


class FileStream(Response):
    """An ASGI response that streams ``length`` bytes from ``start`` of a stored object."""

    def __init__(self, opener: Opener, *, start: int, length: int, status_code: int,
                 headers: Mapping[str, str], counter: Transfers | None = None) -> None:
        super().__init__(status_code=status_code, headers=dict(headers))
        self._opener = opener
        self._start = start
        self._length = length
        self._counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        if scope.get("method") == "HEAD" or self._length == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        f = await anyio.to_thread.run_sync(self._opener, self._start,
                                           self._start + self._length - 1)
        try:
            async with anyio.create_task_group() as tg:
                async def watch_disconnect() -> None:
                    # Stop reading as soon as the client goes away.
                    while True:
                        msg = await receive()
                        if msg["type"] == "http.disconnect":
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch_disconnect)
                await self._pump(f, send)
                tg.cancel_scope.cancel()
        finally:
            f.close()

    async def _pump(self, f: IO[bytes], send: Send) -> None:
        remaining = self._length
        while remaining > 0:
            chunk = await anyio.to_thread.run_sync(f.read, min(CHUNK, remaining))
            if not chunk:
                # The object shrank under us; the client sees a short body and its
                # sha256 check fails, which is the right outcome.
                break
            remaining -= len(chunk)
            if self._counter is not None:
                self._counter.streamed(len(chunk))
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        if remaining > 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def redirect_response(headers_in: Mapping[str, str], entry: FileEntry, *, url: str,
                      expires: int) -> Response:
    """``307`` to a presigned URL of the file's stored bytes (or ``304`` if the client has them).

    A client that follows redirects (``curl -L``, browsers, the hub's own client) gets
    the bytes from the store; one that does not gets the URL in ``Location`` and in a
    JSON body, with the sha256 to check them against. The URL is a credential for
    one object until it expires, so nothing may cache this answer.
    """
    etag = etag_for(entry)
    inm = headers_in.get("if-none-match")
    if inm is not None and _etag_matches(inm, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "private, no-cache"})
    body = json.dumps({"url": url, "expires_in": expires, "sha256": entry.sha256,
                       "size": entry.size, "path": entry.path,
                       "note": "GET the url (e.g. curl -L) and check the sha256"})
    return Response(body, status_code=307, media_type="application/json", headers={
        "Location": url, "ETag": etag, "X-Sentenialx-Sha256": entry.sha256,
        "X-Sentenialx-Size": str(entry.size), "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})


def file_response(headers_in: Mapping[str, str], entry: FileEntry, *, size: int, opener: Opener,
                  filename: str, content_type: str = "application/octet-stream",
                  inline: bool = False, counter: Transfers | None = None) -> Response:
    """The response for a GET or HEAD of a stored file.

    HEAD gets the same headers and no body (:class:`FileStream` looks at the method).

    Raises:
        StoreUnavailable: the stored object's size differs from the manifest's.
    """
    if size != entry.size:
        raise StoreUnavailable(f"{entry.path}: stored size {size} differs from the manifest's"
                               f" {entry.size}; the store needs `sentenialx models fsck`")
    etag = etag_for(entry)
    base: dict[str, Any] = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        # Revalidate every time (cheap with If-None-Match): a version can be deleted
        # and its number reused, and access depends on the token.
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        "X-Sentenialx-Sha256": entry.sha256,
        # A stored SVG or HTML file opened directly must never run script in our origin.
        "Content-Security-Policy": "default-src 'none'; img-src 'self' data:;"
                                   " style-src 'unsafe-inline'; sandbox",
        "Content-Disposition": ("inline" if inline else "attachment")
                               + f"; filename*=UTF-8''{quote(filename)}",
    }
    inm = headers_in.get("if-none-match")
    if inm is not None and _etag_matches(inm, etag):
        return Response(status_code=304, headers={k: v for k, v in base.items()
                                                  if k in ("ETag", "Cache-Control")})
    rng = parse_range(headers_in.get("range"), size)
    if_range = headers_in.get("if-range")
    if rng is not None and if_range is not None and if_range.strip() != etag:
        rng = None  # the client's partial copy is of other bytes: send the whole file
    if rng == "unsatisfiable":
        body = json.dumps({"error": {"type": "RangeNotSatisfiable", "message": (
            f"the Range header asks for bytes outside {entry.path} ({size} bytes)"),
            "facts": {}}})
        return Response(body, status_code=416, media_type="application/json",
                        headers={"Content-Range": f"bytes */{size}", "ETag": etag,
                                 "Accept-Ranges": "bytes"})
    base["Content-Type"] = content_type
    if isinstance(rng, tuple):
        start, end = rng
        base["Content-Range"] = f"bytes {start}-{end}/{size}"
        base["Content-Length"] = str(end - start + 1)
        return FileStream(opener, start=start, length=end - start + 1, status_code=206,
                          headers=base, counter=counter)
    base["Content-Length"] = str(size)
    return FileStream(opener, start=0, length=size, status_code=200, headers=base,
                      counter=counter)
