"""Serving the app over TLS with uvicorn, in one place.

- :func:`ssl_context` builds the server's ``SSLContext`` from a certificate/key pair, on
  the settings of :func:`app.pki.hot_tls.server_context` (TLS >= 1.2, TLS 1.2 with ECDHE
  and AEAD ciphers only, ALPN http/1.1).
- :func:`config` is the one place a ``uvicorn.Config`` for the webhook is made. It takes a
  *factory* of SSL contexts: certificate hot-reload can hand in a factory whose context it
  updates (``SSLContext.load_cert_chain`` on the live context affects new handshakes). Its
  connections have the limits of :mod:`app.webhook.connections`.
- :func:`listen` binds the socket up front, so "address in use" is an input error with a
  clear message, and tests can bind port 0 and learn the port before serving.
- :class:`Server` shuts down gracefully on SIGTERM/SIGINT and then returns (exit code 0)
  instead of re-raising the signal as uvicorn does. With a drain time, SIGTERM first drains
  (:class:`app.webhook.app.Drain`): not ready, still answering, then the graceful stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from app.pki.hot_tls import server_context
from app.webhook import connections
from app.webhook.app import Drain

log = logging.getLogger("eip_guard.server")

SslFactory = Callable[[], ssl.SSLContext]
GRACEFUL_SHUTDOWN_SECONDS = 10  # the API server's default webhook timeout
KEEP_ALIVE_SECONDS = 120


def ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The server context (:func:`app.pki.hot_tls.server_context`) presenting this pair;
    raises OSError / ssl.SSLError for unreadable or mismatched files."""
    context = server_context()
    context.load_cert_chain(cert_file, key_file)
    return context


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6); raises OSError."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def config(
    app: Any,
    make_ssl: SslFactory,
    closed: Callable[[str], None] | None = None,
    limits: connections.Limits = connections.DEFAULT_LIMITS,
) -> uvicorn.Config:
    """uvicorn settings for the webhook: HTTPS, HTTP/1.1, our logging, no access log, and
    connection ``limits`` (:mod:`app.webhook.connections`; each connection they close is
    reported to ``closed``)."""
    return uvicorn.Config(
        app,
        ssl_context_factory=lambda _config, _default: make_ssl(),
        http=connections.protocol(limits, closed),  # httptools (uvicorn[standard]), limited
        loop="app.webhook.connections:new_event_loop",  # uvloop, TLS handshakes limited too
        ws="none",
        lifespan="off",
        log_config=None,  # records go to the root logger: app.webhook.logs makes them JSON
        access_log=False,  # one decision line per review is the log; no second line per request
        server_header=False,
        # Date stays (RFC 9110 6.6.1; Go's servers and plain uvicorn send it): uvicorn makes
        # it once a second, and the 400 and 431 it and app.webhook.connections write carry it.
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # Longer than the API server's idle timeout for webhook connections (Go's 90 s), so
        # the client closes idle connections first: a server-side close racing a new POST
        # would fail that admission call, and Go does not retry a POST.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


class Server(uvicorn.Server):
    """uvicorn's server, ending cleanly on SIGTERM (a pod being stopped) or SIGINT.

    With ``drain`` and ``drain_seconds``, a first SIGTERM drains: the Endpoints of a
    terminating pod go on receiving for a moment (the API server's keep-alive connections
    and kube-proxy's rules only learn of it later), and a replica that stopped accepting at
    once failed those calls, a refused Eip change under failurePolicy Fail. Draining, it
    answers /readyz 503 and every review, and every request it refuses but a 413, with
    ``Connection: close`` (its clients reconnect, to a replica that stays), then stops as
    without drain. SIGINT, or a second SIGTERM, stops at once.
    """

    def __init__(
        self, config: uvicorn.Config, drain: Drain | None = None, drain_seconds: float = 0.0
    ) -> None:
        super().__init__(config)
        self.drain, self.drain_seconds = drain, drain_seconds
        self._drain_until: float | None = None
        self._drain_said = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain = self.drain
        first = self._drain_until is None
        if drain is not None:
            drain.active = True  # stopping, whatever the signal: /readyz says so at once
        if sig == signal.SIGTERM and drain is not None and self.drain_seconds > 0 and first:
            self._drain_until = time.monotonic() + self.drain_seconds
            return  # said by the next tick: no logging inside a signal handler
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None:
            if not self._drain_said:
                self._drain_said = True
                log.info(
                    "SIGTERM: not ready, still answering for %g s, then stopping",
                    self.drain_seconds,
                )
            if time.monotonic() >= self._drain_until:
                self.should_exit = True  # as a signal sets it: one Ctrl-C then forces the stop
                return True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # tests run the server in a thread and stop it with should_exit
            return
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        # Unlike uvicorn we do not re-raise the signal afterwards: the shutdown was clean.


def serve(app: Any, sock: socket.socket, make_ssl: SslFactory) -> None:
    """Serve until SIGTERM/SIGINT; returns after in-flight requests finish."""
    Server(config(app, make_ssl)).run(sockets=[sock])
