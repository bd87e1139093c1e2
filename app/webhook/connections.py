"""Limits on HTTP connections that uvicorn does not set, for the webhook and probe ports.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) and our app bounds a
body (7 MiB, 30 s), but nothing bounded the rest, and any client reaching the port could:

- take forever over a request's line and headers (its *head*): one header byte now and
  then, or nothing at all after connecting, held the connection, its buffers and TLS state
  forever. A head must now arrive whole within ``head_seconds`` of its first byte (of the
  connection's start, for a connection's first request), else the connection is dropped;
- send a head of any size: httptools keeps every header, and 100 MB of headers held 100 MB.
  A head over ``head_bytes`` now gets ``431`` and the connection is closed;
- open any number of connections, about 46 KB each over TLS. Beyond ``connections``, a new
  connection now closes the one idle the longest between requests or, with none idle, is
  dropped itself.

The API server sends each review whole over a few keep-alive connections, so none of this
touches it. :func:`protocol` makes the uvicorn protocol class for one server; it reports
each closed connection to ``closed(reason)`` (the webhook's metrics) and logs it, at most
one line per reason a minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_SECONDS = 10.0  # Go servers' usual ReadHeaderTimeout; the API server's default timeout
HEAD_BYTES = 64 * 1024  # an API server's head is well under 1 KiB
MAX_CONNECTIONS = 1000  # about 46 MB of TLS connections
LOG_EVERY_SECONDS = 60.0

# Why a connection was closed: the label values of eip_guard_connections_closed_total.
HEAD_TIMEOUT = "head_timeout"
HEAD_TOO_LARGE = "head_too_large"
IDLE_EVICTED = "idle_evicted"
OVER_LIMIT = "over_limit"
REASONS = (HEAD_TIMEOUT, HEAD_TOO_LARGE, IDLE_EVICTED, OVER_LIMIT)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    head_seconds: float = HEAD_SECONDS
    head_bytes: int = HEAD_BYTES
    connections: int = MAX_CONNECTIONS

    def explain(self, reason: str) -> str:
        """What a closed connection means, for the log."""
        return {
            HEAD_TIMEOUT: f"a request's line and headers did not arrive within "
            f"{self.head_seconds:g} s",
            HEAD_TOO_LARGE: f"a request's line and headers exceeded {self.head_bytes} bytes "
            "(answered 431)",
            IDLE_EVICTED: f"{self.connections} connections were open: the one idle the longest "
            "made room for a new one",
            OVER_LIMIT: f"{self.connections} connections were open and none idle: a new one "
            "was dropped",
        }[reason]


DEFAULT_LIMITS = Limits()


class _Reporter:
    """Counts every closed connection; logs the first of each reason, then at most once
    per ``LOG_EVERY_SECONDS`` with how many there were since (a client can make these as
    fast as it likes: a line each would let it flood the log)."""

    def __init__(self, limits: Limits, closed: Callable[[str], None] | None) -> None:
        self.limits, self.closed = limits, closed
        self.unlogged: dict[str, int] = {}
        self.logged_at: dict[str, float] = {}

    def __call__(self, reason: str, client: Any) -> None:
        if self.closed is not None:
            self.closed(reason)
        count = self.unlogged.get(reason, 0) + 1
        now = time.monotonic()
        last = self.logged_at.get(reason)
        if last is not None and now - last < LOG_EVERY_SECONDS:
            self.unlogged[reason] = count
            return
        self.unlogged[reason] = 0
        self.logged_at[reason] = now
        peer = f"{client[0]}:{client[1]}" if client else "unknown"
        log.warning(
            "closed %d connection(s), the last from %s: %s",
            count,
            peer,
            self.limits.explain(reason),
            extra={"fields": {"reason": reason, "connections": count, "client": peer}},
        )


def _too_large(limit: int) -> bytes:
    reason = f"the request head exceeds {limit} bytes"
    body = json.dumps({"code": 431, "reason": reason}, separators=(",", ":"))
    return (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
        f"{body}"
    ).encode()


def protocol(
    limits: Limits = DEFAULT_LIMITS, closed: Callable[[str], None] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits``: a class per server, for
    ``uvicorn.Config(http=...)``; ``closed`` is called with each closed connection's reason."""
    report = _Reporter(limits, closed)
    answer_too_large = _too_large(limits.head_bytes)
    sweeping: list[asyncio.Task[None]] = []  # this server's sweeper, while it has connections

    class GuardedHttp(HttpToolsProtocol):
        # When the head now being read began (None between requests) and its bytes so far.
        head_since: float | None = None
        head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.head_since = self.loop.time()
            if len(self.connections) > limits.connections and not self._make_room():
                report(OVER_LIMIT, self.client)
                transport.abort()
                return
            if not sweeping or sweeping[0].done() or sweeping[0].get_loop() is not self.loop:
                sweeping[:] = [self.loop.create_task(_sweep(self.connections, self.loop))]

        def _make_room(self) -> bool:
            # Idle between requests is exactly when uvicorn's keep-alive timer is armed; the
            # earliest timer is the connection idle the longest.
            idle = [
                (conn.timeout_keep_alive_task.when(), conn)
                for conn in self.connections
                if isinstance(conn, GuardedHttp) and conn.timeout_keep_alive_task is not None
            ]
            if not idle:
                return False
            _, oldest = min(idle, key=lambda pair: pair[0])
            oldest.timeout_keep_alive_task = None  # uvicorn's timer would close it again
            report(IDLE_EVICTED, oldest.client)
            oldest.transport.close()
            return True

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.head_since is None or self.transport.is_closing():
                return
            # The head is still incomplete after this chunk: all of it was head.
            self.head_bytes += len(data)
            if self.head_bytes > limits.head_bytes:
                self.head_since = None
                report(HEAD_TOO_LARGE, self.client)
                self.transport.write(answer_too_large)
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.head_since is None:  # a connection's first request keeps its start
                self.head_since = self.loop.time()

        def on_headers_complete(self) -> None:
            self.head_since = None
            self.head_bytes = 0
            super().on_headers_complete()

    async def _sweep(connections: set[Any], loop: asyncio.AbstractEventLoop) -> None:
        while connections:
            await asyncio.sleep(min(1.0, limits.head_seconds / 2))
            now = loop.time()
            for conn in list(connections):
                since = getattr(conn, "head_since", None)
                if since is not None and now - since >= limits.head_seconds:
                    conn.head_since = None
                    report(HEAD_TIMEOUT, conn.client)
                    conn.transport.abort()  # close() would wait for a client that never reads

    return GuardedHttp
