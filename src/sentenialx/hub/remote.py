"""Deprecated: a served hub is a :class:`~sentenialx.hub.hub.Hub` over HTTP.

``Hub.open("http://host:8000")`` (or :meth:`Hub.served`) returns the same facade as
a local hub, over the transport in :mod:`sentenialx.hub.transport.http`. The name
:func:`RemoteHub` stays for callers that still build one by hand.
"""

from __future__ import annotations

import os
import warnings

from sentenialx.hub.cache import BlobCache, default_cache_dir
from sentenialx.hub.hub import Hub
from sentenialx.hub.transport.http import RETRIES, is_remote


def RemoteHub(url: str, *, token: str | None = None,  # noqa: N802 - the old class's name
              cache_dir: str | os.PathLike[str] | None = None, timeout: float = 60.0,
              retries: int = RETRIES, max_response_bytes: int | None = None) -> Hub:
    """The hub served at ``url``: the same as :meth:`Hub.served` (deprecated spelling).

    Raises:
        InvalidInput: ``url`` is not http(s)://HOST[:PORT].
    """
    warnings.warn("RemoteHub(url) is Hub.open(url) (or Hub.served(url, ...)) now",
                  DeprecationWarning, stacklevel=2)
    return Hub.served(url, token=token, cache_dir=cache_dir, timeout=timeout, retries=retries,
                      max_response_bytes=max_response_bytes)


__all__ = ["BlobCache", "RemoteHub", "default_cache_dir", "is_remote"]
