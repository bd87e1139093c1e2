"""Limits on HTTP connections that uvicorn does not set, for the webhook and probe ports.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) and our app bounds a
body (7 MiB, 30 s), but nothing bounded the rest, and any client reaching the port could:

- take forever over a TLS handshake, a request's line and headers (its *head*), or the
  reading of its answer: one header byte now and then, nothing at all after connecting, or
  never reading, held the connection, its buffers and TLS state forever. A handshake and a
  TLS close now have ``HANDSHAKE_SECONDS`` (the loop's, see :func:`new_event_loop`), a head
  ``head_seconds`` from its first byte (from the connection's start for its first request;
  from the last answer, for one pipelined behind another) and a request
  ``REQUEST_SECONDS`` from its head to its answer sent, else the connection is dropped;
- send a head, or chunked trailers after a body, of any size: httptools hands over every
  header and uvicorn keeps them, and 100 MB of headers held 100 MB. The request's target,
  header names and values with their separators, trailers included, may take
  ``head_bytes`` in at most ``MAX_HEADERS`` headers (65,000 empty ones cost 8 MB), else
  the answer is ``431``;
- pipeline requests without end: uvicorn queues each one it reads (2.4 KB), and each answer
  lets it read thousands more (one connection: +2.2 GB). More than ``MAX_PIPELINED``
  waiting behind the request in progress drops the connection;
- keep a connection between requests forever with bytes that start no request (a bare
  CRLF, the unread rest of a body the app answered without reading): each cancelled
  uvicorn's keep-alive timer, which only a finished response re-arms. Between requests
  with no head begun, a connection is now closed after ``timeout_keep_alive`` whatever
  bytes it sends;
- desynchronise a connection with ``Expect: 100-continue``: a request answered without
  its ``100 Continue`` (a 400, 404 or 413 before the body is read) left the connection
  waiting for a body its client never sends, and the client's next request was read as
  that body. Such an answer now closes the connection, unless the body came whole anyway;
- open any number of connections, about 46 KB each over TLS. Beyond ``connections``, a new
  connection drops another: one being closed (waiting for the client's TLS close), else
  one never served, else the one served the longest ago with no request arriving, else
  one whose request is arriving; with every connection in a request, the new one is
  dropped itself.

The API server sends each review whole over a few keep-alive connections, so only the
connection cap can touch it (see the README). :func:`protocol` makes the uvicorn protocol
class for one server; it reports each closed connection to ``closed(reason)`` (the
webhook's metrics) and logs it, at most one line per reason a minute. uvicorn's own lines
per malformed request (counted as ``bad_request``), per refused upgrade and per request
cut at shutdown are dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_SECONDS = 10.0  # Go servers' usual ReadHeaderTimeout; the API server's default timeout
HANDSHAKE_SECONDS = HEAD_SECONDS  # for a TLS handshake (read when a server starts)
HEAD_BYTES = 64 * 1024  # an API server's head is well under 1 KiB
MAX_HEADERS = 256  # the API server sends about six
# One read of a connection is at most this much: bytes counted per read may overshoot by one.
READ_SLACK = 256 * 1024
MAX_PIPELINED = 16  # Go's HTTP client (the API server's) does not pipeline at all
REQUEST_SECONDS = 60.0  # head to answer sent: the body has 30 s (app.webhook.app), judging ms
MAX_CONNECTIONS = 1000  # about 46 MB of TLS connections
LOG_EVERY_SECONDS = 60.0

# Why a connection was closed: the label values of eip_guard_connections_closed_total.
HEAD_TIMEOUT = "head_timeout"
HEAD_TOO_LARGE = "head_too_large"
REQUEST_TIMEOUT = "request_timeout"
PIPELINE_TOO_DEEP = "pipeline_too_deep"
STALLED = "stalled"
EVICTED = "evicted"
OVER_LIMIT = "over_limit"
BAD_REQUEST = "bad_request"
REASONS = (
    HEAD_TIMEOUT,
    HEAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    PIPELINE_TOO_DEEP,
    STALLED,
    EVICTED,
    OVER_LIMIT,
    BAD_REQUEST,
)

log = logging.getLogger("eip_guard.server")
# uvicorn's lines per request that any client can cause as often as it likes.
_UVICORN_NOISE = frozenset({"Invalid HTTP request received.", "Unsupported upgrade request."})
_UVICORN_NOISE_PREFIX = "No supported WebSocket library detected."
_UVICORN_APP_ERROR = "Exception in ASGI application"
# In the scope's extensions of a request with Upgrade and Connection: upgrade (never upgraded:
# no WebSocket here), whose body the parser never read.
UPGRADE = "eip_guard.unread_upgrade"


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
            HEAD_TOO_LARGE: f"a request's line, headers and trailers exceeded {self.head_bytes} "
            f"bytes or {MAX_HEADERS} headers (answered 431, or dropped in trailers)",
            REQUEST_TIMEOUT: f"a request was not answered within {REQUEST_SECONDS:g} s of its "
            "head (the client did not read the answer)",
            PIPELINE_TOO_DEEP: f"more than {MAX_PIPELINED} requests were pipelined behind one "
            "in progress",
            STALLED: "bytes that began no request kept the connection open past the "
            "keep-alive timeout",
            EVICTED: f"{self.connections} connections were open: one (closing, never served "
            "or least recently used) made room for a new one",
            OVER_LIMIT: f"{self.connections} connections were open, all in a request: a new "
            "one was dropped",
            BAD_REQUEST: "a request was malformed HTTP (answered 400)",
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


class _QuietNoise(logging.Filter):
    """Drops uvicorn's lines per malformed request (:func:`protocol` counts and logs those),
    per refused upgrade (the request is answered as any other, a review with a 400: see
    ``UPGRADE``) and per request cut at shutdown."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if not isinstance(msg, str):  # any object may be a message, unhashable ones too
            return True
        if msg in _UVICORN_NOISE or msg.startswith(_UVICORN_NOISE_PREFIX):
            return False
        # A request cut at shutdown (its client still sending after the grace period) is no
        # error of the app: one traceback each let a client fill the log at every stop.
        error = record.exc_info[1] if record.exc_info else None
        return not (
            msg.startswith(_UVICORN_APP_ERROR) and isinstance(error, asyncio.CancelledError)
        )


_QUIET = _QuietNoise()


class _Refused(Exception):
    """Raised in a parser callback: httptools stops, uvicorn answers 400 and we take over."""


_STATUS_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"


def _too_large(limit: int) -> bytes:
    """The 431 answer after its status line (and the server's default headers: Date)."""
    reason = f"the request line, headers and trailers exceed {limit} bytes or {MAX_HEADERS} headers"
    body = json.dumps({"code": 431, "reason": reason}, separators=(",", ":"))
    return (
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
        f"{body}"
    ).encode()


def _close_unless_continued(cycle: Any) -> None:
    """A request sent with ``Expect: 100-continue`` and answered without its ``100
    Continue`` while its body is still to come ends its connection (``Connection: close``),
    as Go's server does. Its client sends no body after such an answer (RFC 9110 10.1.1):
    kept open, the connection waited for those bytes and took the client's next request as
    them (unanswered, or its tail read as a request of its own)."""
    send = cycle.send

    async def send_then_close(message: Any) -> None:
        if (
            message["type"] == "http.response.start"
            and cycle.waiting_for_100_continue  # the app never asked for the body
            and cycle.more_body  # and it has not all arrived
        ):
            cycle.keep_alive = False  # uvicorn adds the header and closes after the answer
        await send(message)

    cycle.send = send_then_close


def protocol(
    limits: Limits = DEFAULT_LIMITS, closed: Callable[[str], None] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with ``limits``: a class per server, for
    ``uvicorn.Config(http=...)``; ``closed`` is called with each closed connection's reason."""
    report = _Reporter(limits, closed)
    answer_too_large = _too_large(limits.head_bytes)
    sweeping: list[asyncio.Task[None]] = []  # this server's sweeper, while it has connections
    max_bytes = limits.head_bytes
    # The parser's callbacks run several times per request: the base class's functions are
    # called directly (super() and attribute lookups cost about a microsecond a request).
    base = HttpToolsProtocol
    base_message_begin, base_url, base_header = base.on_message_begin, base.on_url, base.on_header
    base_headers_complete, base_response_complete = (
        base.on_headers_complete,
        base.on_response_complete,
    )
    base_data_received, base_body = base.data_received, base.on_body
    dropping = [0]  # connections dropped whose connection_lost has not come yet
    uvicorn_log = logging.getLogger("uvicorn.error")
    if _QUIET not in uvicorn_log.filters:
        uvicorn_log.addFilter(_QUIET)

    class GuardedHttp(HttpToolsProtocol):
        # The head being read: when it began (None when none is), whether a byte of it has
        # arrived, its bytes and headers so far (trailers count with it).
        head_since: float | None = None
        head_begun = False
        head_bytes = 0
        headers_seen = 0
        busy_since = 0.0  # when the latest head was complete
        waiting_since = 0.0  # when the connection was last between requests
        served = False  # whether a response was ever completed on it
        refused: str | None = None  # why a parser callback stopped the parsing
        # Bytes read while a head, or a chunk's size line and what follows it, has brought no
        # callback: one header line httptools is still joining (the head's or a trailer after
        # the last chunk) is in none until its line ends (100 MB in one value: no 431, and
        # O(n²) copying). Chunk framing is not counted: 1-byte chunks are 5 bytes of it each.
        raw_bytes = 0
        in_chunk_head = False  # a chunk's size line parsed, none of its data yet
        dropped = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.head_since = self.waiting_since = self.loop.time()
            open_now = len(self.connections) - dropping[0]
            if open_now > limits.connections and not self._make_room():
                report(OVER_LIMIT, self.client)
                self.drop()
                return
            if not sweeping or sweeping[0].done() or sweeping[0].get_loop() is not self.loop:
                sweeping[:] = [self.loop.create_task(_sweep(self.connections, self.loop))]

        def between_requests(self) -> bool:
            cycle = self.cycle
            return cycle is None or cycle.response_complete

        def eviction_rank(self) -> tuple[int, float] | None:
            """Lower goes first when the cap needs room; None (in a request): never."""
            if self.dropped:
                return None  # already made room
            if self.transport.is_closing():
                return (0, 0.0)  # going anyway: only the client's TLS close is awaited
            if not self.between_requests():
                return None
            if not self.served:
                return (1, self.waiting_since)
            return (3 if self.head_begun else 2, self.waiting_since)

        def _make_room(self) -> bool:
            ranked = [
                (rank, conn)
                for conn in self.connections
                if isinstance(conn, GuardedHttp)
                and conn is not self
                and (rank := conn.eviction_rank()) is not None
            ]
            if not ranked:
                return False
            rank, victim = min(ranked, key=lambda entry: entry[0])
            if rank[0] > 0:  # one being closed is not counted: it was going anyway
                report(EVICTED, victim.client)
            victim.drop()
            return True

        def drop(self) -> None:
            if self.dropped:
                return
            self.dropped = True
            dropping[0] += 1  # its slot is free now, though connection_lost comes later
            self._unset_keepalive_if_required()  # its pending timer would hold us 120 s more
            self.head_since = None
            # abort, not close: a TLS close waits for a client that may never answer, and
            # the connection holds its slot and buffers meanwhile.
            self.transport.abort()

        def on_message_begin(self) -> None:
            base_message_begin(self)
            self.head_bytes = self.headers_seen = self.raw_bytes = 0
            self.head_begun = True
            if self.head_since is None:  # a connection's first request keeps its start
                self.head_since = self.loop.time()

        def on_url(self, url: bytes) -> None:
            self.head_bytes += len(url)
            if self.head_bytes > max_bytes:
                self.refused = HEAD_TOO_LARGE
                raise _Refused
            base_url(self, url)

        def on_header(self, name: bytes, value: bytes) -> None:
            # Also called for chunked trailers, after the head: they count with it. A
            # header costs its wire bytes here (": " and CRLF too), and 200 bytes kept.
            self.head_bytes += len(name) + len(value) + 4
            self.headers_seen += 1
            if self.head_bytes > max_bytes or self.headers_seen > MAX_HEADERS:
                self.refused = HEAD_TOO_LARGE
                raise _Refused
            base_header(self, name, value)

        def on_headers_complete(self) -> None:
            if len(self.pipeline) >= MAX_PIPELINED and not self.between_requests():
                self.refused = PIPELINE_TOO_DEEP
                raise _Refused
            self.head_since = None
            self.head_begun = False
            self.busy_since = self.loop.time()
            base_headers_complete(self)
            if self.expect_100_continue:
                _close_unless_continued(self.cycle)
            if self.parser.should_upgrade():
                # httptools ends such a request at its head and uvicorn drops the rest of
                # the read (its body, any request behind it): the app must not take the
                # request for one without a body.
                self.scope["extensions"] = {**self.scope.get("extensions", {}), UPGRADE: {}}

        def on_chunk_header(self) -> None:  # httptools calls it for chunked bodies only
            self.in_chunk_head = True
            self.raw_bytes = 0

        def on_chunk_complete(self) -> None:
            self.in_chunk_head = False

        def on_body(self, body: bytes) -> None:
            self.in_chunk_head = False
            base_body(self, body)

        def data_received(self, data: bytes) -> None:
            base_data_received(self, data)
            if not (self.head_begun or self.in_chunk_head):
                return
            # All of this read was head or trailers (but what preceded their start).
            self.raw_bytes += len(data)
            if self.raw_bytes > max_bytes + READ_SLACK and not self.transport.is_closing():
                self.refused = HEAD_TOO_LARGE
                self.refuse()

        def connection_lost(self, exc: Exception | None) -> None:
            if self.dropped:
                dropping[0] -= 1
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            self.served = True
            self.waiting_since = now = self.loop.time()
            if self.head_since is not None:  # a pipelined head: unread while we were busy
                self.head_since = now
            base_response_complete(self)

        def send_400_response(self, msg: str) -> None:
            if self.refused is None:  # uvicorn's own: not HTTP
                report(BAD_REQUEST, self.client)
                super().send_400_response(msg)
            else:
                self.refuse()

        def refuse(self) -> None:
            refused = self.refused or HEAD_TOO_LARGE
            if refused == HEAD_TOO_LARGE and self.between_requests():
                report(HEAD_TOO_LARGE, self.client)
                self.head_since = None
                defaults = b"".join(
                    b"%s: %s\r\n" % header for header in self.server_state.default_headers
                )
                self.transport.write(_STATUS_431 + defaults + answer_too_large)
                self.transport.close()  # closed, not dropped: the 431 must reach the client
            else:  # an answer to an earlier request may be under way: no 4xx can follow it
                report(refused, self.client)
                self.drop()

    async def _sweep(connections: set[Any], loop: asyncio.AbstractEventLoop) -> None:
        while connections:
            await asyncio.sleep(min(1.0, limits.head_seconds / 2))
            now = loop.time()
            for conn in list(connections):
                if not isinstance(conn, GuardedHttp) or conn.transport.is_closing():
                    continue  # closing: the loop's TLS close timeout bounds it
                if not conn.between_requests():
                    if now - conn.busy_since >= REQUEST_SECONDS:  # an answer nobody reads
                        report(REQUEST_TIMEOUT, conn.client)
                        conn.drop()
                    continue
                since = conn.head_since
                if since is not None:
                    if now - since >= limits.head_seconds:
                        report(HEAD_TIMEOUT, conn.client)
                        conn.drop()
                elif now - conn.waiting_since >= conn.timeout_keep_alive + 1:
                    # uvicorn's own timer closes an idle connection first; bytes that began
                    # no request cancelled it. (+1 s: never race that timer.)
                    report(STALLED, conn.client)
                    conn.drop()

    return GuardedHttp


class _Loop(uvloop.Loop):
    """uvloop's loop whose TLS servers give a handshake and a close ``HANDSHAKE_SECONDS``,
    not 60 and 30 s: uvicorn passes neither timeout, and no protocol sees a connection
    before its handshake or after its close began."""

    async def create_server(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", HANDSHAKE_SECONDS)
            kwargs.setdefault("ssl_shutdown_timeout", HANDSHAKE_SECONDS)
        return await super().create_server(*args, **kwargs)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """For ``uvicorn.Config(loop="app.webhook.connections:new_event_loop")``: a custom
    ``loop`` string names the loop factory itself."""
    return _Loop()
