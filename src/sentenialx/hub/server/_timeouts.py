"""Read timeouts uvicorn lacks: a client that dribbles its headers or its body is dropped.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``). A
connection that sends its request headers one byte every few seconds, or a body
at a trickle, would hold a worker's socket forever. :func:`guarded_protocol`
returns uvicorn's h11 protocol with two more rules:

- the request headers must be complete within ``header_timeout`` seconds of the
  connection opening or of the first byte of the next request on a kept-alive
  connection;
- while the client is sending a body, every ``body_timeout`` seconds must bring at
  least ``min_body_rate * body_timeout`` bytes, unless the server itself paused
  reading (the app is slower than the client: not the client's fault).

A connection that breaks a rule is closed; the app sees ``http.disconnect``, so an
upload in progress is discarded (nothing is stored).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 20.0
DEFAULT_BODY_TIMEOUT = 20.0
DEFAULT_MIN_BODY_RATE = 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body read timeouts (see the module doc)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    min_body_rate: int = DEFAULT_MIN_BODY_RATE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._window_bytes = 0

    # -- timers ---------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._drop)

    def _disarm(self) -> None:
        for t in (self._header_timer, self._body_timer):
            if t is not None:
                t.cancel()
        self._header_timer = self._body_timer = None

    def _drop(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def _arm_body_timer(self) -> None:
        self._window_bytes = 0
        self._body_timer = self.loop.call_later(self.body_timeout, self._check_body)

    def _check_body(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        if (self._window_bytes < self.min_body_rate * self.body_timeout
                and not self.flow.read_paused):
            self._drop()
            return
        self._arm_body_timer()

    # -- protocol hooks -------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm_header_timer()
        elif self.conn.their_state is h11.SEND_BODY:
            self._window_bytes += len(data)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
            if self.conn.their_state is h11.SEND_BODY and self._body_timer is None:
                self._arm_body_timer()


def guarded_protocol(*, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                     body_timeout: float = DEFAULT_BODY_TIMEOUT,
                     min_body_rate: int = DEFAULT_MIN_BODY_RATE) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn as ``http=`` (``uvicorn.Config(app, http=...)``).

    Raises:
        ValueError: a timeout or the rate is not positive.
    """
    if header_timeout <= 0 or body_timeout <= 0 or min_body_rate <= 0:
        raise ValueError("header_timeout, body_timeout and min_body_rate must be positive")
    attrs = {"header_timeout": float(header_timeout), "body_timeout": float(body_timeout),
             "min_body_rate": int(min_body_rate)}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attrs)


__all__ = ["GuardedH11Protocol", "guarded_protocol"]
