"""A real uvicorn server over real TLS changes its certificate without dropping anyone.

The client verifies every handshake against the CA (as the API server does with caBundle)
and names the webhook by its Service DNS name.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.pki.certs import CertError, KeyPair, make_ca, make_serving
from app.pki.hot_tls import HotContext, read_pair
from tests.pki.tls_helpers import NAMES, Connection, Running, client_context, der_sha, serving


@pytest.fixture
def ca() -> KeyPair:
    return make_ca()


@pytest.fixture
def server(ca: KeyPair, tmp_path: Path) -> Iterator[Running]:
    hot = HotContext(scratch_dir=tmp_path)
    hot.load(make_serving(ca, NAMES))
    with serving(hot) as running:
        yield running


def test_renewal_reaches_new_connections_and_spares_open_ones(server: Running, ca: KeyPair) -> None:
    context = client_context(ca)
    old = Connection(server.port, context)
    assert old.get().startswith(b"HTTP/1.1 200")
    before = old.peer()

    renewed = make_serving(ca, NAMES)
    assert server.load(renewed) is True
    assert server.load(renewed) is False  # the same pair twice is a no-op

    assert old.get().startswith(b"HTTP/1.1 200")  # same keep-alive connection, still served
    assert old.peer() == before
    new = Connection(server.port, context)
    assert new.get().startswith(b"HTTP/1.1 200")
    assert new.peer() == der_sha(renewed) != before
    old.close()
    new.close()


def test_a_bad_pair_never_reaches_the_live_context(server: Running, ca: KeyPair) -> None:
    good = server.hot.loaded
    mismatched = KeyPair(make_serving(ca, NAMES).cert_pem, make_serving(ca, NAMES).key_pem)
    with pytest.raises(CertError, match="do not form a pair"):
        server.load(mismatched)
    with pytest.raises(CertError, match="not a PEM certificate"):
        server.load(KeyPair(b"nope", b"nope"))
    assert server.hot.loaded == good
    conn = Connection(server.port, client_context(ca))
    assert conn.get().startswith(b"HTTP/1.1 200")
    conn.close()


def test_no_handshake_fails_while_certificates_rotate(server: Running, ca: KeyPair) -> None:
    new_ca = make_ca()  # a CA change too: the client trusts both, as the caBundle does then
    pairs = [make_serving(ca if i % 2 else new_ca, NAMES) for i in range(10)]
    context = client_context(ca, new_ca)
    stop = threading.Event()

    def rotate() -> None:
        for pair in pairs:
            server.load(pair)
        stop.set()

    def handshakes() -> int:
        done = 0
        while not stop.is_set() or done < 5:
            conn = Connection(server.port, context)  # raises on any failed handshake
            conn.get()
            conn.close()
            done += 1
        return done

    with ThreadPoolExecutor(4) as pool:
        clients = [pool.submit(handshakes) for _ in range(3)]
        pool.submit(rotate).result(60)
        assert all(c.result(60) >= 5 for c in clients)


def test_valid_at_follows_the_presented_certificate(ca: KeyPair, tmp_path: Path) -> None:
    hot = HotContext(scratch_dir=tmp_path)
    now = dt.datetime.now(dt.UTC)
    assert not hot.valid_at(now)  # nothing loaded: /readyz must say no
    hot.load(make_serving(ca, NAMES))
    assert hot.valid_at(now)
    assert not hot.valid_at(now + dt.timedelta(days=400))


def test_read_pair_waits_for_both_files(tmp_path: Path, ca: KeyPair) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    assert read_pair(cert_file, key_file) is None
    pair = make_serving(ca, NAMES)
    cert_file.write_bytes(pair.cert_pem)
    assert read_pair(cert_file, key_file) is None
    key_file.write_bytes(b"")
    assert read_pair(cert_file, key_file) is None
    key_file.write_bytes(pair.key_pem)
    assert read_pair(cert_file, key_file) == pair
