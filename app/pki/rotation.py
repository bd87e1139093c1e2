"""Self-managed certificates: what a replica should do with the Secret it finds (pure).

The Secret holds ``ca.crt``, ``ca.key``, ``tls.crt``, ``tls.key`` and, after a CA change,
``previous-ca.crt`` (the CA certificates replaced, trusted in the caBundle while they are
valid so replicas that have not yet adopted the new certificate keep working).
:func:`assess` says whether the data can be kept, needs a new serving certificate or a new
CA; :func:`plan` makes the replacement data.
Nothing here talks to Kubernetes: ``app.kube.certs`` does, and calls these.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from app.pki.certs import CertError, KeyPair, make_ca, make_serving, san_dns_names

CA_CRT, CA_KEY, TLS_CRT, TLS_KEY, PREVIOUS_CA = (
    "ca.crt",
    "ca.key",
    "tls.crt",
    "tls.key",
    "previous-ca.crt",
)
DEFAULT_RENEW_BEFORE = dt.timedelta(days=60)
# A new CA this long before the old one expires: the serving certificate (1 year) must
# never be cut short by its CA, and the old CA stays in the caBundle meanwhile.
CA_RENEW_BEFORE = dt.timedelta(days=400)

SecretData = Mapping[str, bytes]


class Action(Enum):
    KEEP = "keep"
    RENEW_SERVING = "renew-serving"
    NEW_CA = "new-ca"


@dataclass(frozen=True, slots=True)
class Assessment:
    action: Action
    reason: str  # for the log: why this action
    servable: bool  # the serving pair can be served right now (valid, right names, matching)


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    """The four names a client may use for the webhook Service; the API server uses .svc."""
    base = f"{service}.{namespace}"
    return (service, base, f"{base}.svc", f"{base}.svc.cluster.local")


def _cert(pem: bytes | None) -> x509.Certificate | None:
    if not pem:
        return None
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None


def _key_matches(cert: x509.Certificate, key_pem: bytes | None) -> bool:
    if not key_pem:
        return False
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    return key.public_key() == cert.public_key()


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def assess(
    data: SecretData,
    dns_names: Sequence[str],
    now: dt.datetime,
    renew_before: dt.timedelta = DEFAULT_RENEW_BEFORE,
) -> Assessment:
    """What to do with the Secret's data at ``now``; ``servable`` is judged on its own."""
    ca = _cert(data.get(CA_CRT))
    if ca is None or not _key_matches(ca, data.get(CA_KEY)):
        return Assessment(Action.NEW_CA, "no CA with its key in the Secret", servable=False)
    serving = _cert(data.get(TLS_CRT))
    servable = (
        serving is not None
        and _key_matches(serving, data.get(TLS_KEY))
        and _issued_by(serving, ca)
        and serving.not_valid_before_utc <= now < serving.not_valid_after_utc
        and set(dns_names) <= set(san_dns_names(serving))
    )
    if ca.not_valid_after_utc - now < CA_RENEW_BEFORE:
        return Assessment(
            Action.NEW_CA, f"the CA expires on {ca.not_valid_after_utc:%Y-%m-%d}", servable
        )
    if serving is None or not _key_matches(serving, data.get(TLS_KEY)):
        return Assessment(Action.RENEW_SERVING, "no serving certificate with its key", servable)
    if not _issued_by(serving, ca):
        return Assessment(Action.RENEW_SERVING, "the serving certificate is not the CA's", servable)
    missing = sorted(set(dns_names) - set(san_dns_names(serving)))
    if missing:
        return Assessment(
            Action.RENEW_SERVING, f"the serving certificate lacks DNS names {missing}", servable
        )
    if serving.not_valid_after_utc - now < renew_before:
        return Assessment(
            Action.RENEW_SERVING,
            f"the serving certificate expires on {serving.not_valid_after_utc:%Y-%m-%d}",
            servable,
        )
    return Assessment(Action.KEEP, "valid", servable)


def plan(
    data: SecretData,
    assessment: Assessment,
    dns_names: Sequence[str],
    now: dt.datetime,
    still_presented: Sequence[bytes] = (),
) -> dict[str, bytes] | None:
    """The Secret data to write for ``assessment``, or None when the data is kept.

    A new CA keeps trusted (``previous-ca.crt``) the old one and the CA certificates
    ``still_presented``: those that signed what replicas present until they adopt the new
    pair, found in the caBundle (:func:`issuers_of`) when the Secret no longer holds them
    (its CA removed by hand, the Secret deleted and made again)."""
    if assessment.action is Action.KEEP:
        return None
    if assessment.action is Action.RENEW_SERVING:
        ca = KeyPair(data[CA_CRT], data[CA_KEY])
        out = {k: v for k, v in data.items() if k in (CA_CRT, CA_KEY, PREVIOUS_CA)}
    else:
        ca = make_ca(now=now)
        out = {CA_CRT: ca.cert_pem, CA_KEY: ca.key_pem}
        kept = _valid_pems([data.get(CA_CRT) or b"", *still_presented], now)
        if kept:
            out[PREVIOUS_CA] = b"".join(kept)  # still trusted while replicas move over
    serving = make_serving(ca, dns_names, now=now)
    out[TLS_CRT], out[TLS_KEY] = serving.cert_pem, serving.key_pem
    return out


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _pem_certs(pem: bytes) -> list[x509.Certificate]:
    """Each certificate of a PEM bundle that parses (one bad block spoils no other)."""
    return [c for c in (_cert(block) for block in _PEM_CERT.findall(pem)) if c is not None]


def _valid_pems(pems: Sequence[bytes], now: dt.datetime) -> list[bytes]:
    """The certificates of ``pems`` valid at ``now``, once each, as PEM."""
    out: list[bytes] = []
    for pem in pems:
        for cert in _pem_certs(pem):
            encoded = cert.public_bytes(serialization.Encoding.PEM)
            if cert.not_valid_after_utc > now and encoded not in out:
                out.append(encoded)
    return out


def issuers_of(serving_pems: Sequence[bytes | None], bundle_pem: bytes) -> list[bytes]:
    """The CA certificates of ``bundle_pem`` (a decoded caBundle) that signed one of
    ``serving_pems``, as PEM: the API server must go on trusting them while replicas
    still present those."""
    servings = [c for c in (_cert(p) for p in serving_pems) if c is not None]
    return [
        ca.public_bytes(serialization.Encoding.PEM)
        for ca in _pem_certs(bundle_pem)
        if any(_issued_by(serving, ca) for serving in servings)
    ]


def must_settle(
    presented_pem: bytes, pending_pem: bytes, bundle_pem: bytes, now: dt.datetime
) -> bool:
    """Whether ``pending`` (signed by a new CA) should wait before it replaces ``presented``.

    The API server reads the caBundle through an informer: for a moment after a patch it may
    still verify with the old one. A certificate signed by a CA the old caBundle lacks fails
    there, so it waits while ``presented`` is valid at ``now`` and still trusted by
    ``bundle_pem`` (the new caBundle, decoded). A renewal under the same CA never waits, and
    neither does a pair replacing one expired, not yet valid or no longer trusted: nothing
    better exists."""
    presented, pending = _cert(presented_pem), _cert(pending_pem)
    if presented is None or pending is None or presented == pending:
        return False
    if not presented.not_valid_before_utc <= now < presented.not_valid_after_utc:
        return False
    issuers = [ca for ca in _pem_certs(bundle_pem) if _issued_by(presented, ca)]
    return bool(issuers) and not any(_issued_by(pending, ca) for ca in issuers)


def ca_bundle(data: SecretData, now: dt.datetime) -> str:
    """The caBundle for the webhook configuration: the CA, plus the previous ones while valid."""
    if CA_CRT not in data:
        raise CertError("the Secret has no ca.crt: nothing to trust")
    pem = data[CA_CRT]
    previous = [p for p in _valid_pems([data.get(PREVIOUS_CA) or b""], now) if p not in pem]
    if previous:
        pem = pem.rstrip(b"\n") + b"\n" + b"".join(previous)
    return base64.b64encode(pem).decode("ascii")


def serving_pair(data: SecretData) -> KeyPair:
    return KeyPair(data[TLS_CRT], data[TLS_KEY])
