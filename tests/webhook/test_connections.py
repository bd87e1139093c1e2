"""Connection limits of the real server over TLS (app.webhook.connections), with limits
small enough to reach in a test: a head's time and size, and the number of connections."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from app.core.sources import StaticSource
from app.core.verdict import Policy
from app.webhook.app import create_app
from app.webhook.connections import Limits
from app.webhook.metrics import Metrics

from .conftest import SERVICE_DNS, Certs, example_eip, example_inventory, review, serving


def post(body: bytes) -> bytes:
    return (
        b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


REQUEST = post(json.dumps(review(example_eip("good"))).encode())


def closed_count(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "eip_guard_connections_closed_total", {"reason": reason}
    )
    return value or 0.0


@contextmanager
def server(certs: Certs, limits: Limits) -> Iterator[tuple[int, Metrics]]:
    metrics = Metrics()
    app = create_app(StaticSource(example_inventory()), Policy(), metrics=metrics)
    with serving(app, certs, limits) as port:
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
    except (ConnectionResetError, ssl.SSLEOFError):
        pass
    return data


def test_a_head_trickled_past_its_deadline_is_dropped_unanswered(certs: Certs) -> None:
    # One byte every 50 ms: the head would take 3-4 s and each byte is progress, yet the
    # deadline runs from the connection's start (0.5 s here, 10 s by default).
    with server(certs, Limits(head_seconds=0.5)) as (port, metrics), connect(port, certs) as tls:
        sent = 0
        try:
            for byte in REQUEST[: REQUEST.index(b"\r\n\r\n")]:
                tls.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        assert closes(tls) == b""  # no response: there never was a request
        assert sent < REQUEST.index(b"\r\n\r\n")
        assert closed_count(metrics, "head_timeout") == 1


def test_a_connection_that_never_sends_a_request_is_dropped(certs: Certs) -> None:
    with server(certs, Limits(head_seconds=0.5)) as (port, metrics), connect(port, certs) as tls:
        assert closes(tls) == b""
        assert closed_count(metrics, "head_timeout") == 1


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
        assert closed_count(metrics, "head_timeout") == closed_count(metrics, "head_too_large") == 0


def test_a_head_over_its_limit_gets_431_and_the_connection_closed(certs: Certs) -> None:
    with (
        server(certs, Limits(head_bytes=2048)) as (port, metrics),
        connect(port, certs) as tls,
    ):
        try:
            tls.sendall(b"POST /validate-eip HTTP/1.1\r\nHost: x\r\n")
            for _ in range(100):  # 100 KB of headers, 1 KB at a time, and never an end
                tls.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        status, _, body = closes(tls).partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 431 ")
        assert json.loads(body) == {"code": 431, "reason": "the request head exceeds 2048 bytes"}
        assert closed_count(metrics, "head_too_large") == 1


def test_at_the_connection_limit_the_longest_idle_makes_room(certs: Certs) -> None:
    with server(certs, Limits(connections=3)) as (port, metrics), ExitStack() as stack:
        idle = []
        for _ in range(3):
            tls = stack.enter_context(connect(port, certs))
            tls.sendall(REQUEST)
            assert response(tls)[0] == b"HTTP/1.1 200 OK"
            idle.append(tls)
            time.sleep(0.05)  # keep-alive timers armed in this order
        newest = stack.enter_context(connect(port, certs))
        assert closes(idle[0]) == b""  # the longest idle made room
        newest.sendall(REQUEST)
        assert response(newest)[0] == b"HTTP/1.1 200 OK"
        for tls in idle[1:]:  # the others are still served
            tls.sendall(REQUEST)
            assert response(tls)[0] == b"HTTP/1.1 200 OK"
        assert closed_count(metrics, "idle_evicted") == 1
        assert closed_count(metrics, "over_limit") == 0


def test_at_the_connection_limit_with_none_idle_a_new_one_is_dropped(certs: Certs) -> None:
    with server(certs, Limits(connections=3)) as (port, metrics), ExitStack() as stack:
        busy = [stack.enter_context(connect(port, certs)) for _ in range(3)]  # no request yet
        time.sleep(0.2)  # all three made on the server's side
        extra = stack.enter_context(connect(port, certs))
        assert closes(extra) == b""
        assert closed_count(metrics, "over_limit") == 1
        for tls in busy:  # the three are served
            tls.sendall(REQUEST)
            assert response(tls)[0] == b"HTTP/1.1 200 OK"
