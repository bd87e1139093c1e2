"""Connection limits of the real server over TLS (app.webhook.connections), with limits
small enough to reach in a test: a handshake's and a head's time, a head's size, the time
between requests, and the number of connections."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from email.utils import parsedate_to_datetime

import pytest
from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import Response

from app.core.sources import StaticSource
from app.core.verdict import Policy
from app.webhook import connections
from app.webhook.app import create_app
from app.webhook.connections import Limits
from app.webhook.metrics import Metrics

from .conftest import SERVICE_DNS, Certs, example_eip, example_inventory, review, serving

RESET = (BrokenPipeError, ConnectionResetError, ssl.SSLError)


def post(body: bytes) -> bytes:
    return (
        b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


REVIEW = json.dumps(review(example_eip("good"))).encode()
REQUEST = post(REVIEW)


def closed_count(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "eip_guard_connections_closed_total", {"reason": reason}
    )
    return value or 0.0


@contextmanager
def server(
    certs: Certs, limits: Limits, keep_alive: float | None = None
) -> Iterator[tuple[int, Metrics]]:
    metrics = Metrics()
    app = create_app(StaticSource(example_inventory()), Policy(), metrics=metrics)
    with serving(app, certs, limits, keep_alive) as port:
        yield port, metrics


def connect(port: int, certs: Certs) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(certs.ca))
    tls = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname=SERVICE_DNS
    )
    tls.settimeout(10)
    return tls


def response(tls: ssl.SSLSocket) -> tuple[bytes, bytes]:
    """One response's status line and body (the body by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"the server closed the connection; got {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line[15:]) for line in lines if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += tls.recv(65536)
    return lines[0], body


def closes(tls: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts)."""
    data = b""
    try:
        while chunk := tls.recv(65536):
            data += chunk
    except RESET:
        pass
    return data


def served(tls: ssl.SSLSocket) -> bool:
    tls.sendall(REQUEST)
    return response(tls)[0] == b"HTTP/1.1 200 OK"


# --- time ------------------------------------------------------------------------------


def test_a_head_trickled_past_its_deadline_is_dropped_unanswered(certs: Certs) -> None:
    # One byte every 50 ms: the head would take 3-4 s and each byte is progress, yet the
    # deadline runs from the connection's start (0.5 s here, 10 s by default).
    with server(certs, Limits(head_seconds=0.5)) as (port, metrics), connect(port, certs) as tls:
        head = REQUEST[: REQUEST.index(b"\r\n\r\n")]
        sent = 0
        try:
            for byte in head:
                tls.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        except RESET:
            pass
        assert closes(tls) == b""  # no response: there never was a request
        assert sent < len(head)
        assert closed_count(metrics, "head_timeout") == 1


def test_a_connection_that_never_sends_a_request_is_dropped(certs: Certs) -> None:
    with server(certs, Limits(head_seconds=0.5)) as (port, metrics), connect(port, certs) as tls:
        assert closes(tls) == b""
        assert closed_count(metrics, "head_timeout") == 1


def test_a_tls_handshake_has_the_heads_deadline_not_60_s(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before the handshake ends no protocol sees the connection: the loop bounds it.
    monkeypatch.setattr(connections, "HANDSHAKE_SECONDS", 0.5)
    with server(certs, Limits()) as (port, _), socket.create_connection(("127.0.0.1", port)) as raw:
        raw.settimeout(10)  # no ClientHello: the server gives up at 0.5 s, not at 60 s
        with suppress(ConnectionResetError):
            assert raw.recv(1024) == b""


def test_idle_keep_alive_and_bodies_are_not_heads(certs: Certs) -> None:
    # Between requests the keep-alive timeout (120 s) applies, not the head's; a head sent
    # in parts within its deadline, and a large body in one chunk, are served.
    with (
        server(certs, Limits(head_seconds=0.5, head_bytes=2048)) as (port, metrics),
        connect(port, certs) as tls,
    ):
        tls.sendall(REQUEST[:20])
        time.sleep(0.1)
        tls.sendall(REQUEST[20:])
        assert response(tls)[0] == b"HTTP/1.1 200 OK"
        time.sleep(1.2)  # idle: more than twice the head's deadline
        big = json.dumps(review(example_eip("good")) | {"padding": "x" * 100_000}).encode()
        tls.sendall(post(big))
        status, body = response(tls)
        assert status == b"HTTP/1.1 200 OK"
        assert json.loads(body)["response"]["allowed"] is True
        assert sum(closed_count(metrics, reason) for reason in connections.REASONS) == 0


@pytest.mark.parametrize(
    "stray",
    [
        b"\r\n",  # a bare CRLF after a response: the parser skips it, no request begins
        # The rest of a body the app answered without reading (GET /healthz takes none).
        b"x",
    ],
)
def test_bytes_that_begin_no_request_do_not_hold_a_connection(certs: Certs, stray: bytes) -> None:
    # Each cancelled uvicorn's keep-alive timer, which only a finished response re-arms:
    # the connection stayed open forever, out of reach of the connection cap too.
    with (
        server(certs, Limits(head_seconds=0.5), keep_alive=1) as (port, metrics),
        connect(port, certs) as tls,
    ):
        if stray == b"x":
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            assert response(tls)[0] == b"HTTP/1.1 200 OK"
        else:
            assert served(tls)
        tls.sendall(stray)
        started = time.monotonic()
        closes(tls)
        assert time.monotonic() - started < 8  # the keep-alive timeout and a sweep, not 10 s
        assert closed_count(metrics, "stalled") == 1


def test_a_pipelined_head_waiting_behind_a_request_is_not_timed_out(certs: Certs) -> None:
    # uvicorn stops reading while a request is in flight, so a head queued behind it stays
    # unfinished: not late. (A slow route stands in for a slow answer.)
    metrics = Metrics()
    app = create_app(StaticSource(example_inventory()), Policy(), metrics=metrics)

    async def slow(_: Request) -> Response:
        await asyncio.sleep(2.0)
        return Response(b"{}", media_type="application/json")

    app.add_route("/slow", slow, methods=["GET"])
    # The head waits 2.3 s in all, over twice its limit; its own clock starts once the slow
    # answer is out (2 s), so the rest comes 0.3 s into a 1 s limit (the margin, on a loaded
    # machine: sent 2.0 s in against a 0.5 s limit, it raced the answer's 1.5 s and lost).
    with serving(app, certs, Limits(head_seconds=1.0)) as port, connect(port, certs) as tls:
        tls.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + REQUEST + REQUEST[:20])
        time.sleep(2.3)
        tls.sendall(REQUEST[20:])
        assert [response(tls)[0] for _ in range(3)] == [b"HTTP/1.1 200 OK"] * 3
        assert closed_count(metrics, "head_timeout") == 0


# --- size ------------------------------------------------------------------------------


def head_of(size: int) -> bytes:
    """A complete head of exactly ``size`` bytes as the limit counts them (the request line's
    target; each header's name, value, ": " and CRLF)."""
    base = b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nX-Filler: \r\n\r\n"
    counted = len(b"/validate-eip") + len(b"Host: x\r\n") + len(b"X-Filler: \r\n")
    return base.replace(b"X-Filler: ", b"X-Filler: " + b"a" * (size - counted))


@pytest.mark.parametrize("size", [2048, 2049])
def test_the_head_limit_is_exact_whatever_the_reads(certs: Certs, size: int) -> None:
    # The whole head in one write: its size was only counted when a read left it unfinished.
    with (
        server(certs, Limits(head_bytes=2048)) as (port, metrics),
        connect(port, certs) as tls,
    ):
        tls.sendall(head_of(size).replace(b"POST", b"PUT"))  # a head that would get 405
        if size > 2048:
            assert closes(tls).startswith(b"HTTP/1.1 431 ")
        else:
            assert response(tls)[0].startswith(b"HTTP/1.1 405 ")
        assert closed_count(metrics, "head_too_large") == (size > 2048)


def test_a_head_over_its_limit_gets_431_and_the_connection_closed(certs: Certs) -> None:
    with (
        server(certs, Limits(head_bytes=2048)) as (port, metrics),
        connect(port, certs) as tls,
    ):
        try:
            tls.sendall(b"POST /validate-eip HTTP/1.1\r\nHost: x\r\n")
            for _ in range(100):  # 100 KB of headers, 1 KB at a time, and never an end
                tls.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
        except RESET:
            pass
        status, _, body = closes(tls).partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 431 ")
        reason = "the request line, headers and trailers exceed 2048 bytes or 256 headers"
        assert json.loads(body) == {"code": 431, "reason": reason}
        assert closed_count(metrics, "head_too_large") == 1


def test_every_answer_carries_a_date_as_plain_uvicorn_and_go_do(certs: Certs) -> None:
    """RFC 9110 6.6.1: an origin server with a clock sends Date in its 2xx-4xx answers; plain
    uvicorn and Go's net/http do, the probe port did, the webhook port did not. Ours too:
    a review's, uvicorn's 400 for what is not HTTP, our 431."""

    def head(tls: ssl.SSLSocket, request: bytes) -> list[bytes]:
        tls.sendall(request)
        return closes(tls).partition(b"\r\n\r\n")[0].lower().split(b"\r\n")

    with server(certs, Limits(head_bytes=2048)) as (port, _):
        answers = []
        with connect(port, certs) as tls:
            answers.append(head(tls, REQUEST.replace(b"Host: x\r\n", b"Connection: close\r\n")))
        with connect(port, certs) as tls:
            answers.append(head(tls, b"NOT HTTP\r\n\r\n"))
        with connect(port, certs) as tls:
            answers.append(head(tls, b"GET / HTTP/1.1\r\nX: " + b"a" * 4096 + b"\r\n\r\n"))
    assert [lines[0] for lines in answers] == [
        b"http/1.1 200 ok",
        b"http/1.1 400 bad request",
        b"http/1.1 431 request header fields too large",
    ]
    for lines in answers:
        (date,) = [line for line in lines if line.startswith(b"date: ")]
        parsedate_to_datetime(date[6:].decode())  # an HTTP-date (IMF-fixdate)


def test_chunked_trailers_count_with_the_head(certs: Certs) -> None:
    # Trailers after the last chunk reach uvicorn as headers: 300 MB of them were kept. The
    # request is in progress by then, so no 431 can answer it: the connection is dropped.
    with (
        server(certs, Limits(head_bytes=2048)) as (port, metrics),
        connect(port, certs) as tls,
    ):
        tls.sendall(
            b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n" % (len(REVIEW), REVIEW)
        )
        try:
            for _ in range(100):
                tls.sendall(b"X-Trailer: " + b"a" * 1000 + b"\r\n")
        except RESET:
            pass
        assert b"HTTP/1.1 200 " not in closes(tls)
        assert closed_count(metrics, "head_too_large") == 1


def test_a_pipelined_body_is_not_counted_as_the_next_head(certs: Certs) -> None:
    with (
        server(certs, Limits(head_bytes=2048)) as (port, metrics),
        connect(port, certs) as tls,
    ):
        big = json.dumps(review(example_eip("good")) | {"padding": "x" * 100_000}).encode()
        tls.sendall(post(big) + REQUEST[:20])
        time.sleep(0.2)
        tls.sendall(REQUEST[20:])
        assert response(tls)[0] == response(tls)[0] == b"HTTP/1.1 200 OK"
        assert closed_count(metrics, "head_too_large") == 0


@pytest.mark.parametrize(
    "malformed",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        # HTTP/1.1, but both lengths (a smuggling attempt): the log must not say "not HTTP/1.1"
        b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_a_malformed_request_is_counted_and_logged_once_a_minute(
    certs: Certs, caplog: pytest.LogCaptureFixture, malformed: bytes
) -> None:
    # uvicorn logs a line per malformed request; a client could flood the log with them.
    with caplog.at_level(logging.WARNING), server(certs, Limits()) as (port, metrics):
        for _ in range(5):
            with connect(port, certs) as tls:
                tls.sendall(malformed)
                assert closes(tls).startswith(b"HTTP/1.1 400 ")
        assert closed_count(metrics, "bad_request") == 5
        assert closed_count(metrics, "head_timeout") == 0
    lines = [r.getMessage() for r in caplog.records]
    assert "Invalid HTTP request received." not in lines
    assert sum("a request was malformed HTTP (answered 400)" in line for line in lines) == 1


# --- how many ----------------------------------------------------------------------------


def test_at_the_connection_limit_one_between_requests_makes_room(certs: Certs) -> None:
    with server(certs, Limits(connections=3)) as (port, metrics), ExitStack() as stack:
        idle = []
        for _ in range(3):
            tls = stack.enter_context(connect(port, certs))
            assert served(tls)
            idle.append(tls)
            time.sleep(0.05)  # served in this order
        newest = stack.enter_context(connect(port, certs))
        assert closes(idle[0]) == b""  # the one served the longest ago made room
        assert served(newest)
        assert all(served(tls) for tls in idle[1:])  # the others are still served
        # A connection never served goes before any that was: it loses nothing.
        idle[1].close()  # room for one more
        time.sleep(0.2)
        fresh = stack.enter_context(connect(port, certs))
        latest = stack.enter_context(connect(port, certs))
        assert closes(fresh) == b""
        assert served(latest) and served(idle[2]) and served(newest)
        assert closed_count(metrics, "evicted") == 2
        assert closed_count(metrics, "over_limit") == 0


def test_at_the_connection_limit_with_all_in_a_request_a_new_one_is_dropped(
    certs: Certs,
) -> None:
    with server(certs, Limits(connections=3)) as (port, metrics), ExitStack() as stack:
        busy = [stack.enter_context(connect(port, certs)) for _ in range(3)]
        for tls in busy:  # each in a request: its body still arriving
            tls.sendall(REQUEST[:-10])
        time.sleep(0.2)
        extra = stack.enter_context(connect(port, certs))
        assert closes(extra) == b""
        assert closed_count(metrics, "over_limit") == 1
        for tls in busy:  # the three are served
            tls.sendall(REQUEST[-10:])
            assert response(tls)[0] == b"HTTP/1.1 200 OK"


def test_an_evicted_connection_is_freed_at_once(certs: Certs) -> None:
    # Its keep-alive timer was left pending: it held the connection and its TLS buffers for
    # 120 s more (5,000 evictions: 54 -> 412 MB).
    with server(certs, Limits(connections=2)) as (port, metrics), ExitStack() as stack:

        def alive() -> int:  # this server's connections still in memory
            gc.collect()
            found = [o for o in gc.get_objects() if type(o).__name__ == "GuardedHttp"]
            return sum(o.server is not None and o.server[1] == port for o in found)

        for _ in range(12):
            assert served(stack.enter_context(connect(port, certs)))
        assert closed_count(metrics, "evicted") == 10
        deadline = time.monotonic() + 5
        while alive() > 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive() <= 2


def test_too_many_tiny_headers_get_431(certs: Certs) -> None:
    # 65,000 empty headers fit 64 KiB but cost 8 MB kept: the count is capped too.
    with server(certs, Limits()) as (port, metrics), connect(port, certs) as tls:
        many = b"".join(b"a%d:\r\n" % i for i in range(connections.MAX_HEADERS + 1))
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert closes(tls).startswith(b"HTTP/1.1 431 ")
        assert closed_count(metrics, "head_too_large") == 1


def test_a_deep_pipeline_drops_the_connection(certs: Certs) -> None:
    # uvicorn queued every pipelined request it read, and each answer let it read thousands
    # more: one connection grew the server by 2.2 GB.
    with server(certs, Limits()) as (port, metrics), connect(port, certs) as tls:
        deep = connections.MAX_PIPELINED + 10
        with suppress(*RESET):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * deep)
        answers = closes(tls).count(b"HTTP/1.1 200 ")
        assert answers < deep
        assert closed_count(metrics, "pipeline_too_deep") == 1
    with server(certs, Limits()) as (port, metrics), connect(port, certs) as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 5)  # a little is fine
        assert [response(tls)[0] for _ in range(5)] == [b"HTTP/1.1 200 OK"] * 5


def test_a_request_not_done_in_time_is_dropped(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that never reads its answers held its connection forever, beyond eviction.
    # The same clock drops a request whose body outlives the app's own deadline.
    monkeypatch.setattr(connections, "REQUEST_SECONDS", 1.0)
    with server(certs, Limits()) as (port, metrics), connect(port, certs) as tls:
        tls.sendall(REQUEST[:-10])
        assert closes(tls) == b""
        assert closed_count(metrics, "request_timeout") == 1


def test_a_connection_being_closed_makes_room_first(certs: Certs) -> None:
    # A client that never answers the TLS close kept its slot 30 s: a thousand of them
    # locked everyone out. One being closed goes first, and uncounted.
    with server(certs, Limits(connections=2)) as (port, metrics), ExitStack() as stack:
        closing = stack.enter_context(connect(port, certs))
        closing.sendall(REQUEST.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
        time.sleep(0.3)  # answered, and the server's close waits for ours: never sent
        kept = stack.enter_context(connect(port, certs))
        assert served(kept)
        newest = stack.enter_context(connect(port, certs))
        assert served(newest) and served(kept)
        assert closed_count(metrics, "evicted") == closed_count(metrics, "over_limit") == 0


def test_a_request_arriving_is_evicted_last(certs: Certs) -> None:
    with server(certs, Limits(connections=3)) as (port, metrics), ExitStack() as stack:
        arriving = stack.enter_context(connect(port, certs))
        assert served(arriving)
        idle = []
        for _ in range(2):
            time.sleep(0.05)  # served in this order (the loop's clock counts milliseconds)
            idle.append(stack.enter_context(connect(port, certs)))
            assert served(idle[-1])
        arriving.sendall(REQUEST[:30])  # served the longest ago, but its next request began
        time.sleep(0.2)
        newest = stack.enter_context(connect(port, certs))
        assert closes(idle[0]) == b""
        arriving.sendall(REQUEST[30:])
        assert response(arriving)[0] == b"HTTP/1.1 200 OK"
        assert served(newest) and served(idle[1])
        assert closed_count(metrics, "evicted") == 1


def test_upgrade_requests_are_answered_without_a_log_line(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        server(certs, Limits()) as (port, _),
        connect(port, certs) as tls,
    ):
        for _ in range(3):
            tls.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\n\r\n"
            )
            assert response(tls)[0] == b"HTTP/1.1 200 OK"
    assert not [r for r in caplog.records if r.name.startswith("uvicorn")]


def test_a_review_in_an_upgrade_request_gets_400_saying_so_and_the_connection_closed(
    certs: Certs,
) -> None:
    # httptools ends a request with Upgrade and Connection: upgrade at its head: its body,
    # and a request pipelined behind it in the same read, were dropped unseen. The review
    # was answered "the body is empty" and the connection kept, waiting for nothing.
    upgrade = REQUEST.replace(b"Host: x\r\n", b"Host: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n")
    with server(certs, Limits()) as (port, _), connect(port, certs) as tls:
        tls.sendall(upgrade + REQUEST)
        status, body = response(tls)
        assert status == b"HTTP/1.1 400 Bad Request"
        reason = json.loads(body)["reason"]
        assert reason.startswith("an Upgrade request ('h2c') is not supported"), reason
        assert closes(tls) == b""


@pytest.mark.parametrize("where", ["head", "trailer"])
def test_one_endless_header_line_is_refused(certs: Certs, where: str) -> None:
    # httptools joins a header line across reads and calls back only at its end: 100 MB of
    # one value grew the server and copied it over and over, with no 431.
    with (
        server(certs, Limits(head_bytes=2048)) as (port, metrics),
        connect(port, certs) as tls,
    ):
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: "
        if where == "trailer":
            start = (
                b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\nX-Endless: "
                % (len(REVIEW), REVIEW)
            )
        with suppress(*RESET):
            tls.sendall(start)
            for _ in range(1000):  # 1 MB, a kilobyte at a time, never a line end
                tls.sendall(b"a" * 1000)
        answer = closes(tls)
        assert answer.startswith(b"HTTP/1.1 431 ") if where == "head" else b" 200 " not in answer
        assert closed_count(metrics, "head_too_large") == 1


def test_a_burst_of_connections_stays_under_the_cap(certs: Certs) -> None:
    # Many accepts in one turn of the loop: a connection dropped to make room but not yet
    # gone counted as open, and was picked again, so each newcomer stayed: 7,000 open.
    cap = 5
    with server(certs, Limits(connections=cap)) as (port, _), ThreadPoolExecutor(40) as pool:
        opened = list(pool.map(lambda _: connect(port, certs), range(40)))
        time.sleep(0.5)
        found = [o for o in gc.get_objects() if type(o).__name__ == "GuardedHttp"]
        still = [
            o for o in found if o.server and o.server[1] == port and not getattr(o, "dropped", 0)
        ]
        assert len([o for o in still if not o.transport.is_closing()]) <= cap
        for tls in opened:
            tls.close()


def test_requests_cut_at_shutdown_leave_no_traceback() -> None:
    # After the grace period uvicorn cancels what is left, one error traceback each.
    noise = connections._QUIET
    uvicorn_log = logging.getLogger("uvicorn.error")

    def record(error: BaseException) -> logging.LogRecord:
        return uvicorn_log.makeRecord(
            uvicorn_log.name, logging.ERROR, __file__, 1, "Exception in ASGI application\n",
            (), (type(error), error, None),
        )  # fmt: skip

    assert not noise.filter(record(asyncio.CancelledError()))
    assert noise.filter(record(RuntimeError("a bug of ours")))
    # Any object can be a log message; an unhashable one must pass, not break logging.
    assert noise.filter(uvicorn_log.makeRecord("x", logging.INFO, __file__, 1, {"a": 1}, (), None))


def test_the_metric_names_every_reason() -> None:
    text = generate_latest(Metrics().registry).decode()
    help_line = next(line for line in text.splitlines() if "connections_closed_total " in line)
    assert all(reason in help_line for reason in connections.REASONS)


def test_chunk_framing_is_not_counted_as_head(certs: Certs) -> None:
    # 1-byte chunks carry 5 bytes of framing each: a 300 KB review that way is 1.8 MB on
    # the wire, none of it head or trailer, and must be answered.
    body = json.dumps(review(example_eip("good")) | {"padding": "x" * 300_000}).encode()
    chunked = b"".join(b"1\r\n%s\r\n" % body[i : i + 1] for i in range(len(body)))
    with server(certs, Limits()) as (port, metrics), connect(port, certs) as tls:
        tls.sendall(
            b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"
        )
        status, answer = response(tls)
        assert status == b"HTTP/1.1 200 OK" and json.loads(answer)["response"]["allowed"]
        assert closed_count(metrics, "head_too_large") == 0


# --- Expect: 100-continue ----------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n",  # 400
        b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",  # 404
    ],
)
def test_an_answer_before_a_100_continue_closes_the_connection(certs: Certs, head: bytes) -> None:
    # The client waits for "100 Continue" before sending its body; answered without one, it
    # sends no body (RFC 9110 10.1.1). Kept open, the connection waited for those bytes and
    # took the client's next request as them: unanswered, or its tail read as a request.
    # Go's server closes such a connection, and so do we.
    with server(certs, Limits()) as (port, _), connect(port, certs) as tls:
        tls.sendall(head + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(REVIEW))
        status, _ = response(tls)
        assert status.startswith(b"HTTP/1.1 4")
        assert closes(tls) == b""  # closed after the answer, not waiting for a body


def test_a_100_continue_answered_keeps_the_connection(certs: Certs) -> None:
    with server(certs, Limits()) as (port, _), connect(port, certs) as tls:
        head, _, body = REQUEST.partition(b"\r\n\r\n")
        tls.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        assert tls.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        tls.sendall(body)
        assert response(tls)[0] == b"HTTP/1.1 200 OK"
        assert served(tls)  # the same connection serves the next request
        # Answered unread, but the body came whole without waiting: nothing is left to
        # mistake for the next request, so the connection stays.
        wrong = head.replace(b"application/json", b"text/plain")
        tls.sendall(wrong + b"\r\nExpect: 100-continue\r\n\r\n" + body)
        assert response(tls)[0] == b"HTTP/1.1 400 Bad Request"
        assert served(tls)


# --- transfer codings ----------------------------------------------------------------------


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate,chunked"])
def test_a_transfer_coding_other_than_chunked_gets_501_naming_it(
    certs: Certs, coding: bytes
) -> None:
    # httptools takes the chunks and ignores the gzip under them: a gzipped body was then
    # "not JSON", which hid the cause. A server SHOULD answer 501 (RFC 9112 6.1).
    with server(certs, Limits()) as (port, metrics), connect(port, certs) as tls:
        head = REQUEST[: REQUEST.index(b"Content-Length")]
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(REVIEW), REVIEW)
        tls.sendall(head + b"Transfer-Encoding: " + coding + b"\r\n\r\n" + chunked)
        status, body = response(tls)
        assert status == b"HTTP/1.1 501 Not Implemented"
        reason = json.loads(body)["reason"]
        assert reason.startswith(f"Transfer-Encoding {coding.decode()!r} is not supported")
        assert served(tls)  # the chunks were read past: the connection goes on
        value = metrics.registry.get_sample_value("eip_guard_http_rejected_total", {"code": "501"})
        assert value == 1
        # chunked alone, in any case, is fine
        tls.sendall(head + b"Transfer-Encoding: Chunked\r\n\r\n" + chunked)
        assert response(tls)[0] == b"HTTP/1.1 200 OK"
