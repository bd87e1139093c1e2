"""A real uvicorn server over real TLS in a thread, and a verifying keep-alive client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from app.pki.certs import KeyPair
from app.pki.hot_tls import HotContext
from app.pki.rotation import service_dns_names

NAME = "eip-guard.eip-guard.svc"
NAMES = service_dns_names("eip-guard", "eip-guard")


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class Running:
    port: int
    hot: HotContext
    loop: asyncio.AbstractEventLoop

    def load(self, pair: KeyPair) -> bool:
        """Load on the server's own loop thread, as the rotator does."""
        return asyncio.run_coroutine_threadsafe(_call(self.hot.load, pair), self.loop).result(10)


async def _call(fn: Callable[[KeyPair], bool], pair: KeyPair) -> bool:
    return fn(pair)


def client_context(*cas: KeyPair) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata="".join(c.cert_pem.decode() for c in cas))
    context.set_alpn_protocols(["http/1.1"])
    return context


class Connection:
    """One keep-alive HTTP/1.1 connection over verified TLS."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls = context.wrap_socket(raw, server_hostname=NAME)

    def get(self, path: str = "/") -> bytes:
        """One request on this connection; the whole response (Content-Length framed)."""
        self.tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += self._recv()
        return head + b"\r\n\r\n" + body

    def _recv(self) -> bytes:
        chunk = self.tls.recv(4096)
        assert chunk, "the server closed the connection"
        return chunk

    def peer(self) -> str:
        der = self.tls.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()

    def close(self) -> None:
        self.tls.close()


def der_sha(pair: KeyPair) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pair.cert_pem.decode())).hexdigest()


@contextlib.contextmanager
def serving(
    hot: HotContext, also: Callable[[], Coroutine[Any, Any, None]] | None = None
) -> Iterator[Running]:
    """Serve ``hello`` with ``hot``'s context; ``also`` runs on the server's own loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        hello,
        ssl_context_factory=lambda _config, _default: hot.context,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
    )
    srv = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    async def main() -> None:
        side = asyncio.create_task(also()) if also is not None else None
        try:
            await srv.serve([sock])
        finally:
            if side is not None:
                side.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        while not srv.started and thread.is_alive():
            threading.Event().wait(0.01)
        yield Running(sock.getsockname()[1], hot, loop)
    finally:
        srv.should_exit = True
        thread.join(15)
        loop.close()
        sock.close()


def trusting(bundle_pem: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly this PEM bundle (a decoded caBundle)."""
    context = ssl.create_default_context(cadata=bundle_pem.decode())
    context.set_alpn_protocols(["http/1.1"])
    return context
