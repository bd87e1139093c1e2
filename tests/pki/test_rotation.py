"""assess/plan: what a replica does with the Secret it finds, at any point in time."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from app.pki.certs import CertError, KeyPair, make_ca, make_serving
from app.pki.rotation import (
    CA_CRT,
    CA_KEY,
    PREVIOUS_CA,
    TLS_CRT,
    TLS_KEY,
    Action,
    assess,
    ca_bundle,
    must_settle,
    plan,
    service_dns_names,
)

NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
NAMES = service_dns_names("eip-guard", "eip-guard")
DAY = dt.timedelta(days=1)


def fresh(now: dt.datetime = NOW) -> dict[str, bytes]:
    first = assess({}, NAMES, now)
    data = plan({}, first, NAMES, now)
    assert data is not None
    return data


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_the_four_service_names() -> None:
    assert NAMES == (
        "eip-guard",
        "eip-guard.eip-guard",
        "eip-guard.eip-guard.svc",
        "eip-guard.eip-guard.svc.cluster.local",
    )


def test_an_empty_secret_gets_a_ca_and_a_serving_certificate() -> None:
    first = assess({}, NAMES, NOW)
    assert (first.action, first.servable) == (Action.NEW_CA, False)
    data = fresh()
    assert set(data) == {CA_CRT, CA_KEY, TLS_CRT, TLS_KEY}
    ca, serving = cert(data[CA_CRT]), cert(data[TLS_CRT])
    assert ca.not_valid_after_utc - NOW >= dt.timedelta(days=3649)
    assert dt.timedelta(days=364) <= serving.not_valid_after_utc - NOW <= dt.timedelta(days=366)
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == set(NAMES)
    assert serving.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    again = assess(data, NAMES, NOW)
    assert (again.action, again.servable) == (Action.KEEP, True)
    assert plan(data, again, NAMES, NOW) is None


def test_renewal_comes_well_before_expiry_and_keeps_the_ca() -> None:
    data = fresh()
    expiry = cert(data[TLS_CRT]).not_valid_after_utc
    assert assess(data, NAMES, expiry - dt.timedelta(days=61)).action is Action.KEEP
    due = assess(data, NAMES, expiry - dt.timedelta(days=59))
    assert (due.action, due.servable) == (Action.RENEW_SERVING, True)
    later = expiry - dt.timedelta(days=59)
    renewed = plan(data, due, NAMES, later)
    assert renewed is not None
    assert renewed[CA_CRT] == data[CA_CRT] and renewed[CA_KEY] == data[CA_KEY]
    assert renewed[TLS_CRT] != data[TLS_CRT]
    assert cert(renewed[TLS_CRT]).not_valid_after_utc > expiry
    assert assess(renewed, NAMES, later).action is Action.KEEP
    assert ca_bundle(renewed, later) == ca_bundle(data, NOW)  # the caBundle does not move


def test_an_expired_serving_certificate_is_not_servable() -> None:
    data = fresh()
    after = cert(data[TLS_CRT]).not_valid_after_utc + DAY
    late = assess(data, NAMES, after)
    assert (late.action, late.servable) == (Action.RENEW_SERVING, False)


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ({TLS_CRT: b""}, "no serving certificate"),
        ({TLS_KEY: b"garbage"}, "no serving certificate"),
        ("other-ca", "not the CA's"),
        ("other-names", "lacks DNS names"),
    ],
)
def test_a_wrong_serving_certificate_is_replaced(broken: object, reason: str) -> None:
    data = fresh()
    if broken == "other-ca":
        other = make_ca(now=NOW)
        pair = make_serving(other, NAMES, now=NOW)
        data |= {TLS_CRT: pair.cert_pem, TLS_KEY: pair.key_pem}
    elif broken == "other-names":
        pair = make_serving(KeyPair(data[CA_CRT], data[CA_KEY]), ["other.default.svc"], now=NOW)
        data |= {TLS_CRT: pair.cert_pem, TLS_KEY: pair.key_pem}
    else:
        assert isinstance(broken, dict)
        data |= broken
    found = assess(data, NAMES, NOW)
    assert found.action is Action.RENEW_SERVING and reason in found.reason
    assert found.servable is False
    fixed = plan(data, found, NAMES, NOW)
    assert fixed is not None and assess(fixed, NAMES, NOW).action is Action.KEEP


def test_a_ca_key_that_does_not_match_means_a_new_ca() -> None:
    data = fresh()
    data[CA_KEY] = make_ca(now=NOW).key_pem
    assert assess(data, NAMES, NOW).action is Action.NEW_CA


def test_a_new_ca_before_the_old_expires_keeps_the_old_one_trusted() -> None:
    data = fresh()
    ca_expiry = cert(data[CA_CRT]).not_valid_after_utc
    late = ca_expiry - dt.timedelta(days=399)
    found = assess(data, NAMES, late)
    assert found.action is Action.NEW_CA and "CA expires" in found.reason
    moved = plan(data, found, NAMES, late)
    assert moved is not None and moved[PREVIOUS_CA] == data[CA_CRT]
    bundle = base64.b64decode(ca_bundle(moved, late))
    trusted = x509.load_pem_x509_certificates(bundle)
    assert [c.subject for c in trusted] == [cert(moved[CA_CRT]).subject, cert(data[CA_CRT]).subject]
    assert cert(moved[CA_CRT]) in trusted and cert(data[CA_CRT]) in trusted
    # Once the old CA has expired it leaves the bundle.
    assert base64.b64decode(ca_bundle(moved, ca_expiry + DAY)) == moved[CA_CRT]


CaKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def foreign_ca(key: CaKey, *, ski: bool = True) -> KeyPair:
    """A CA made elsewhere (an admin's, another tool's): its key type, with or without a
    SubjectKeyIdentifier (RFC 5280 asks for one; not every tool adds it)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corp CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(key, digest)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


@pytest.mark.parametrize(
    "ca",
    [
        pytest.param(lambda: foreign_ca(rsa.generate_private_key(65537, 2048)), id="rsa"),
        pytest.param(lambda: foreign_ca(ec.generate_private_key(ec.SECP384R1())), id="p384"),
        pytest.param(
            lambda: foreign_ca(ec.generate_private_key(ec.SECP256R1()), ski=False), id="no-ski"
        ),
    ],
)
def test_a_ca_made_elsewhere_signs_serving_certificates(ca: Callable[[], KeyPair]) -> None:
    authority = ca()
    served = make_serving(authority, NAMES, now=NOW)
    issued = cert(served.cert_pem)
    issued.verify_directly_issued_by(cert(authority.cert_pem))  # raises if not
    aki = issued.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    expected = x509.AuthorityKeyIdentifier.from_issuer_public_key(
        cert(authority.cert_pem).public_key()  # type: ignore[arg-type]
    )
    assert aki.key_identifier == expected.key_identifier
    data = {CA_CRT: authority.cert_pem, CA_KEY: authority.key_pem}
    data |= {TLS_CRT: served.cert_pem, TLS_KEY: served.key_pem}
    assert assess(data, NAMES, NOW).servable


def test_a_ca_key_eip_guard_cannot_sign_with_is_a_clear_error() -> None:
    with pytest.raises(CertError, match="expected an ECDSA or RSA private key, got"):
        make_serving(foreign_ca(ed25519.Ed25519PrivateKey.generate()), NAMES, now=NOW)


def test_a_first_name_too_long_for_a_common_name_is_still_served() -> None:
    long_name = "eip-guard-admission-webhook.openelb-system-production.svc.cluster.local"
    assert len(long_name) > 64
    served = cert(make_serving(make_ca(now=NOW), [long_name, "short.svc"], now=NOW).cert_pem)
    assert served.subject.rfc4514_string() == "CN=short.svc"  # the first name that fits
    only_long = cert(make_serving(make_ca(now=NOW), [long_name], now=NOW).cert_pem)
    assert only_long.subject == x509.Name([])
    san = only_long.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.DNSName) == [long_name]


def test_only_a_pair_of_a_new_ca_waits_and_only_while_the_one_presented_is_worth_keeping() -> None:
    old, new = fresh(), fresh()  # two CAs, each with its serving certificate
    renewed = plan(old, assess(old, NAMES, NOW + 310 * DAY), NAMES, NOW + 310 * DAY)
    assert renewed is not None
    both = base64.b64decode(ca_bundle({CA_CRT: new[CA_CRT], PREVIOUS_CA: old[CA_CRT]}, NOW))
    assert must_settle(old[TLS_CRT], new[TLS_CRT], both, NOW)  # a new CA: it waits
    assert not must_settle(old[TLS_CRT], renewed[TLS_CRT], both, NOW)  # the same CA
    assert not must_settle(new[TLS_CRT], new[TLS_CRT], both, NOW)  # already presented
    # The one presented expired, or not trusted by the new caBundle: nothing to keep.
    assert not must_settle(old[TLS_CRT], new[TLS_CRT], both, NOW + 366 * DAY)
    assert not must_settle(old[TLS_CRT], new[TLS_CRT], new[CA_CRT], NOW)
