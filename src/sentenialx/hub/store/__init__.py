"""Blob stores: the local filesystem (default) and S3-compatible object storage."""

from __future__ import annotations

from typing import Any

from sentenialx.hub.errors import InvalidInput


def open_store(url: str, *, endpoint_url: str | None = None) -> Any:
    """A store for ``s3://bucket/prefix`` (or a local path).

    Raises:
        InvalidInput: unsupported URL scheme.
        MissingDependency: boto3 is not installed.
    """
    if url.startswith("s3://"):
        from sentenialx.hub.store.s3 import S3Store

        return S3Store(url, endpoint_url=endpoint_url)
    if "://" in url and not url.startswith("file://"):
        raise InvalidInput(f"store {url!r}: use a local path or s3://bucket/prefix")
    from sentenialx.hub.store.local import LocalStore

    return LocalStore(url.removeprefix("file://"))
