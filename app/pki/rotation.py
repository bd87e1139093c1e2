"""Self-managed certificates: what a replica should do with the Secret it finds (pure).

The Secret holds ``ca.crt``, ``ca.key``, ``tls.crt``, ``tls.key`` and, for a year after a
CA change, ``previous-ca.crt`` (still trusted in the caBundle so replicas that have not
yet adopted the new certificate keep working). :func:`assess` says whether the data can be
kept, needs a new serving certificate or a new CA; :func:`plan` makes the replacement data.
Nothing here talks to Kubernetes: ``app.kube.certs`` does, and calls these.
"""

from __future__ import annotations

import base64
import datetime as dt
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
) -> dict[str, bytes] | None:
    """The Secret data to write for ``assessment``, or None when the data is kept."""
    if assessment.action is Action.KEEP:
        return None
    if assessment.action is Action.RENEW_SERVING:
        ca = KeyPair(data[CA_CRT], data[CA_KEY])
        out = {k: v for k, v in data.items() if k in (CA_CRT, CA_KEY, PREVIOUS_CA)}
    else:
        ca = make_ca(now=now)
        out = {CA_CRT: ca.cert_pem, CA_KEY: ca.key_pem}
        old = _cert(data.get(CA_CRT))
        if old is not None and old.not_valid_after_utc > now:
            out[PREVIOUS_CA] = data[CA_CRT]  # still trusted while replicas move over
    serving = make_serving(ca, dns_names, now=now)
    out[TLS_CRT], out[TLS_KEY] = serving.cert_pem, serving.key_pem
    return out


def ca_bundle(data: SecretData, now: dt.datetime) -> str:
    """The caBundle for the webhook configuration: the CA, plus the previous one while valid."""
    if CA_CRT not in data:
        raise CertError("the Secret has no ca.crt: nothing to trust")
    pem = data[CA_CRT]
    previous = _cert(data.get(PREVIOUS_CA))
    if previous is not None and previous.not_valid_after_utc > now:
        pem = pem.rstrip(b"\n") + b"\n" + data[PREVIOUS_CA]
    return base64.b64encode(pem).decode("ascii")


def serving_pair(data: SecretData) -> KeyPair:
    return KeyPair(data[TLS_CRT], data[TLS_KEY])
