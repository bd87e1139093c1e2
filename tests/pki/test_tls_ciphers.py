"""The webhook's TLS 1.2 offers ECDHE with AEAD ciphers only; TLS 1.3 is OpenSSL's own.

A real uvicorn server over real TLS, with each of the two context builders: the one
``eip-guard serve`` presents (:class:`app.pki.hot_tls.HotContext`) and the one built from
files (:func:`app.webhook.server.ssl_context`, what the bench's servers present). Clients
restricted to one suite show what the server accepts. The test certificates are ECDSA
P-256, so the suites named here are the ECDSA ones.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.pki.certs import KeyPair, make_ca, make_serving
from app.pki.hot_tls import HotContext, server_context
from app.webhook.server import ssl_context
from tests.pki.tls_helpers import NAMES, Connection, client_context, serving

# What Go's crypto/tls (the API server) offers first on TLS 1.2, ECDSA and RSA alike.
ECDHE_AEAD = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
}


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return make_ca()


@pytest.fixture(scope="module")
def pair_files(ca: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("tls")
    pair = make_serving(ca, NAMES)
    cert, key = out / "tls.crt", out / "tls.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    key.chmod(0o600)
    return cert, key


@pytest.fixture(params=["HotContext", "ssl_context"], scope="module")
def port(
    request: pytest.FixtureRequest,
    ca: KeyPair,
    pair_files: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    """A server presenting a certificate of ``ca`` with the context of either builder."""
    hot = HotContext(scratch_dir=tmp_path_factory.mktemp("scratch"))
    cert, key = pair_files
    if request.param == "HotContext":
        hot.load(KeyPair(cert.read_bytes(), key.read_bytes()))
    else:
        hot.context = ssl_context(cert, key)  # serve the context the files builder makes
    with serving(hot) as running:
        yield running.port


def tls12_client(ca: KeyPair, suite: str) -> ssl.SSLContext:
    """A verifying TLS 1.2 client that offers ``suite`` and nothing else."""
    context = client_context(ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(suite)
    return context


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE-ECDSA-AES128-SHA256",  # CBC that OpenSSL's (Python's) default list offered
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-SHA",  # CBC with SHA-1 (Python's default list drops it already)
    ],
)
def test_a_tls_1_2_client_offering_only_cbc_fails_the_handshake(
    port: int, ca: KeyPair, suite: str
) -> None:
    # OpenSSL's "no shared cipher" on the server side; the client reads the alert, or the
    # EOF when asyncio's TLS closes before the alert is out. The same client with a GCM or
    # ChaCha20 suite is served (below), so the suite is what fails.
    with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|UNEXPECTED_EOF"):
        Connection(port, tls12_client(ca, suite)).close()


@pytest.mark.parametrize(
    "suite",
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ],
)
def test_a_tls_1_2_client_offering_ecdhe_with_aead_is_served(
    port: int, ca: KeyPair, suite: str
) -> None:
    conn = Connection(port, tls12_client(ca, suite))
    try:
        assert conn.tls.version() == "TLSv1.2"
        cipher = conn.tls.cipher()
        assert cipher is not None
        assert cipher[0] == suite
        assert conn.get().startswith(b"HTTP/1.1 200")
    finally:
        conn.close()


def test_a_default_client_gets_tls_1_3(port: int, ca: KeyPair) -> None:
    conn = Connection(port, client_context(ca))
    try:
        assert conn.tls.version() == "TLSv1.3"
        assert conn.get().startswith(b"HTTP/1.1 200")
    finally:
        conn.close()


def test_both_builders_offer_ecdhe_with_aead_only_on_tls_1_2(
    pair_files: tuple[Path, Path],
) -> None:
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls13 = [c["name"] for c in plain.get_ciphers() if c["protocol"] == "TLSv1.3"]
    offered = {"server_context": server_context(), "ssl_context": ssl_context(*pair_files)}
    for builder, context in offered.items():
        ciphers = context.get_ciphers()
        below_13 = [c for c in ciphers if c["protocol"] != "TLSv1.3"]
        for c in below_13:
            assert c["aead"], (builder, c["name"])
            assert c["kea"] == "kx-ecdhe", (builder, c["name"])
        assert {c["name"] for c in below_13} == ECDHE_AEAD, builder
        # TLS 1.3 suites untouched: OpenSSL's own, all AEAD.
        assert [c["name"] for c in ciphers if c["protocol"] == "TLSv1.3"] == tls13, builder
    assert offered["server_context"].get_ciphers() == offered["ssl_context"].get_ciphers()
