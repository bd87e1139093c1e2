"""A real uvicorn server over real TLS changes its certificate without dropping anyone.

The client verifies every handshake against the CA (as the API server does with caBundle)
and names the webhook by its Service DNS name.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from app.pki.certs import CertError, KeyPair, make_ca, make_serving
from app.pki.hot_tls import SETTLE_SECONDS, FileWatch, HotContext, read_pair
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


def test_read_pair_says_which_file_is_missing_or_empty(tmp_path: Path, ca: KeyPair) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    with pytest.raises(CertError, match=r"tls\.crt: No such file"):
        read_pair(cert_file, key_file)
    pair = make_serving(ca, NAMES)
    cert_file.write_bytes(pair.cert_pem)
    with pytest.raises(CertError, match=r"tls\.key: No such file"):
        read_pair(cert_file, key_file)
    key_file.write_bytes(b"")
    with pytest.raises(CertError, match=r"tls\.key is empty"):
        read_pair(cert_file, key_file)
    key_file.write_bytes(pair.key_pem)
    assert read_pair(cert_file, key_file) == pair


class Clock:
    """A clock a test moves."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_pair_not_valid_now_never_replaces_a_valid_one(ca: KeyPair, tmp_path: Path) -> None:
    clock = Clock()
    hot = HotContext(scratch_dir=tmp_path, clock=clock)
    good = make_serving(ca, NAMES)
    assert hot.load(good)
    presented = hot.loaded
    expired = make_serving(ca, NAMES, now=clock.now - dt.timedelta(days=400))
    with pytest.raises(CertError, match=r"not valid now \(it expired on .*; keeping the one"):
        hot.load(expired)
    early = make_serving(ca, NAMES, now=clock.now + dt.timedelta(days=3))
    with pytest.raises(CertError, match="it is not valid before"):
        hot.load(early)
    assert hot.loaded == presented
    # Once the one presented is not valid either, the newer pair is no worse: taken.
    clock.now += dt.timedelta(days=366)
    assert hot.load(early)
    assert hot.loaded is not None and hot.loaded.not_before > presented.not_before  # type: ignore[union-attr]


def test_the_first_pair_is_taken_even_when_not_valid_now(ca: KeyPair, tmp_path: Path) -> None:
    # Nothing else to present: serve it unready (the log and /readyz say why) rather than exit.
    hot = HotContext(scratch_dir=tmp_path)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    assert hot.load(make_serving(ca, NAMES, now=past))
    assert not hot.valid_at(dt.datetime.now(dt.UTC))


def test_the_same_certificate_with_another_key_is_not_the_same_pair(
    ca: KeyPair, tmp_path: Path
) -> None:
    hot = HotContext(scratch_dir=tmp_path)
    pair = make_serving(ca, NAMES)
    hot.load(pair)
    other_key = make_serving(ca, NAMES).key_pem
    with pytest.raises(CertError, match="the key does not belong to the certificate"):
        hot.load(KeyPair(pair.cert_pem, other_key))


def test_an_encrypted_key_is_refused_without_a_prompt(ca: KeyPair, tmp_path: Path) -> None:
    pair = make_serving(ca, NAMES)
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    traditional = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"secret"),
    )
    for key_pem in (encrypted, traditional):
        hot = HotContext(scratch_dir=tmp_path)
        with pytest.raises(CertError, match="the private key is encrypted"):
            hot.load(KeyPair(pair.cert_pem, key_pem))
        assert hot.loaded is None


def test_the_fingerprint_is_the_certificates_as_openssl_prints_it(
    ca: KeyPair, tmp_path: Path
) -> None:
    hot = HotContext(scratch_dir=tmp_path)
    pair = make_serving(ca, NAMES)
    hot.load(pair)
    openssl = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
        input=pair.cert_pem,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert hot.fields()["sha256"] == openssl.strip().partition("=")[2]
    assert hot.fields()["dns_names"] == ",".join(NAMES)


NOT_LOADED = "TLS certificate files not loaded; still presenting the previous ones"


def test_files_replaced_one_at_a_time_are_reported_only_if_they_stay_broken(
    ca: KeyPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    first, renewed = make_serving(ca, NAMES), make_serving(ca, NAMES)
    cert_file.write_bytes(first.cert_pem)
    key_file.write_bytes(first.key_pem)
    hot = HotContext(scratch_dir=tmp_path)
    hot.load(read_pair(cert_file, key_file))
    hot.note_source("")
    now = [0.0]
    watch = FileWatch(cert_file, key_file, hot, logging.getLogger("t"), clock=lambda: now[0])

    def warned() -> list[str]:
        return [r.fields["error"] for r in caplog.records if r.getMessage() == NOT_LOADED]  # type: ignore[attr-defined]

    with caplog.at_level(logging.DEBUG, logger="t"):
        cert_file.write_bytes(renewed.cert_pem)  # the certificate first: the key is still old
        watch.poll()
        now[0] += 0.1
        watch.poll()  # a moment later: still being replaced, nothing to report
        assert warned() == [] and hot.source_problem == ""
        key_file.write_bytes(renewed.key_pem)
        now[0] += 0.1
        watch.poll()
        assert hot.load(renewed) is False  # the renewed pair is the one presented
        assert warned() == [] and hot.source_problem == ""
        assert [r.getMessage() for r in caplog.records].count(
            "presenting a renewed TLS certificate"
        ) == 1
        # A key that stays wrong is reported once it has lasted, once.
        key_file.write_bytes(first.key_pem)
        for _ in range(3):
            watch.poll()
            now[0] += SETTLE_SECONDS
        assert warned() == [
            "the certificate and key do not form a pair: the key does not belong to the certificate"
        ]
        assert hot.source_problem.endswith("the key does not belong to the certificate")
