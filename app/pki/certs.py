"""A CA and a serving certificate for the webhook: ECDSA P-256, PEM in and out.

Pure functions make certificates (``make_ca``, ``make_serving``, ``make_bundle``), read
them back (``describe``) and check that they belong together (``check_bundle``);
``write_bundle`` and ``read_bundle`` are the only functions that touch the disk.
Everything fails with :class:`CertError` whose text says what to fix, so callers (the CLI,
a future Secret-backed rotator) translate one exception at their edge.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.core.addresses import quoted

CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)
CLOCK_SKEW = dt.timedelta(minutes=5)  # not_before in the past: nodes' clocks disagree a little
CA_COMMON_NAME = "eip-guard CA"
CN_LIMIT = 64  # characters of a common name (RFC 5280 ub-common-name)
FILES = ("ca.crt", "ca.key", "tls.crt", "tls.key")
KEY_MODE = 0o600
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class CertError(Exception):
    """Certificates cannot be made, read or written: the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, both PEM (the key unencrypted PKCS#8)."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class Bundle:
    """What the webhook needs: the CA (for caBundle) and the serving pair it signed."""

    ca: KeyPair
    serving: KeyPair

    @property
    def ca_bundle(self) -> str:
        return ca_bundle(self.ca.cert_pem)


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What a certificate says, for tests, rotation decisions and error messages."""

    subject_cn: str
    issuer_cn: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    key_type: str  # e.g. "ECDSA secp256r1"


def ca_bundle(ca_cert_pem: bytes) -> str:
    """The base64 text a ValidatingWebhookConfiguration's ``caBundle`` holds."""
    return base64.b64encode(ca_cert_pem).decode("ascii")


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """A CA's certificate and the key it signs with: ours are ECDSA, an admin's may be RSA."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: an encrypted key
        raise CertError(f"not a PEM certificate and unencrypted private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertError(f"expected an ECDSA or RSA private key, got {type(key).__name__}")
    return cert, key


def check_dns_name(name: str) -> str:
    """A DNS name fit for a SAN (``*.`` allowed as the first label), else CertError."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:  # a client connecting to an IP checks the IP SANs only
        raise CertError(f"{name!r} is an IP address, not a DNS name: give it with --ip")
    labels = name[2:].split(".") if name.startswith("*.") else name.split(".")
    if not name or len(name) > 253 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
        raise CertError(
            f"{quoted(name)} is not a DNS name: use letters, digits, '-' and '.', "
            "e.g. eip-guard.eip-guard.svc"
        )
    return name.lower()


def check_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as exc:
        raise CertError(f"{text!r} is not an IP address, e.g. 127.0.0.1 or ::1") from exc
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise CertError(f"{text!r}: an IP SAN carries no zone; give {text.partition('%')[0]}")
    return ip


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signature (ECDSA TLS) for every certificate; certificate and CRL signing for
    the CA only."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str = CA_COMMON_NAME,
    validity: dt.timedelta = CA_VALIDITY,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A self-signed CA that may sign serving certificates only (path length 0)."""
    start = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_serving(
    ca: KeyPair,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    validity: dt.timedelta = SERVING_VALIDITY,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A TLS server certificate signed by ``ca``; the API server checks only the SANs."""
    if not dns_names:
        raise CertError("a serving certificate needs at least one DNS name (<svc>.<ns>.svc)")
    names = list(dict.fromkeys(check_dns_name(n) for n in dns_names))
    ips = list(dict.fromkeys(check_ip(i) for i in ip_addresses))
    ca_cert, ca_key = _load(ca)
    start = _now(now)
    if start + validity > ca_cert.not_valid_after_utc:
        validity = ca_cert.not_valid_after_utc - start  # never outlive the CA
    if validity <= dt.timedelta(0):
        raise CertError(f"the CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}: make a new one")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ip) for ip in ips]
    try:
        authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:  # a CA made without one (RFC 5280 asks for it, not all do)
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    # The common name is legacy (clients check the SANs) and at most 64 characters long.
    fits = [n for n in names if len(n) <= CN_LIMIT]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(fits[0]) if fits else x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # With no subject, the SANs are the only name: RFC 5280 then makes them critical.
        .add_extension(x509.SubjectAlternativeName(sans), critical=not fits)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(authority, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_bundle(
    dns_names: Sequence[str], ip_addresses: Sequence[str] = (), now: dt.datetime | None = None
) -> Bundle:
    """A fresh CA (10 years) and a serving certificate (1 year) for these SANs."""
    # Check the SANs first: a typo should not cost a CA key generation.
    for name in dns_names:
        check_dns_name(name)
    for ip in ip_addresses:
        check_ip(ip)
    ca = make_ca(now=now)
    return Bundle(ca, make_serving(ca, dns_names, ip_addresses, now=now))


def _san_values(cert: x509.Certificate, kind: type[x509.DNSName | x509.IPAddress]) -> list[Any]:
    """The SAN values of one kind, in the certificate's order (none without the extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(kind))


def san_dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of a certificate's SANs, in its order."""
    return tuple(_san_values(cert, x509.DNSName))


def describe(cert_pem: bytes) -> CertInfo:
    """Read back what matters of a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertError(f"not a PEM certificate: {exc}") from exc

    def cn(name: x509.Name) -> str:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""

    dns = san_dns_names(cert)
    ips = tuple(str(i) for i in _san_values(cert, x509.IPAddress))
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    public = cert.public_key()
    key_type = (
        f"ECDSA {public.curve.name}"
        if isinstance(public, ec.EllipticCurvePublicKey)
        else type(public).__name__
    )
    return CertInfo(
        subject_cn=cn(cert.subject),
        issuer_cn=cn(cert.issuer),
        dns_names=dns,
        ip_addresses=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
        key_type=key_type,
    )


def check_bundle(bundle: Bundle) -> Bundle:
    """The bundle, if each key belongs to its certificate and the CA signed the serving one."""
    ca_cert, ca_key = _load(bundle.ca)
    cert, key = _load(bundle.serving)
    for name, c, k in (("CA", ca_cert, ca_key), ("serving", cert, key)):
        if c.public_key() != k.public_key():
            raise CertError(f"the {name} key does not belong to the {name} certificate")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertError("the serving certificate was not signed by this CA") from exc
    return bundle


def read_bundle(folder: Path) -> Bundle:
    """ca.crt, ca.key, tls.crt, tls.key from ``folder`` (as ``write_bundle`` lays them out)."""
    try:
        data = {name: (folder / name).read_bytes() for name in FILES}
    except OSError as exc:
        raise CertError(f"{folder}: cannot read certificates: {exc}") from exc
    bundle = Bundle(
        KeyPair(data["ca.crt"], data["ca.key"]), KeyPair(data["tls.crt"], data["tls.key"])
    )
    try:
        return check_bundle(bundle)
    except CertError as exc:
        raise CertError(f"{folder}: {exc}") from exc


def bundle_files(bundle: Bundle) -> dict[str, bytes]:
    """File name -> content, as ``write_bundle`` lays them out (and a tls Secret names two)."""
    return {
        "ca.crt": bundle.ca.cert_pem,
        "ca.key": bundle.ca.key_pem,
        "tls.crt": bundle.serving.cert_pem,
        "tls.key": bundle.serving.key_pem,
    }


def _write_all(files: dict[Path, tuple[bytes, int]]) -> None:
    """Write every file next to its place, then rename them all: a failed write (a full
    disk) leaves the old set whole, and a reader (or a reloading server) never sees half of
    one file. Renames within a directory do not fail for want of space; should one fail all
    the same, the files already renamed get their old contents back (a hard link to each
    kept before the first rename), so the set is never half new."""
    temps: list[tuple[str, Path]] = []
    kept: dict[Path, str] = {}
    try:
        for path, (data, mode) in files.items():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            temps.append((tmp, path))
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for _, path in temps:
            if os.path.lexists(path):  # what cannot be linked (a directory) fails here, early
                old = f"{path.parent}/.{path.name}.{secrets.token_hex(6)}.old"
                os.link(path, old, follow_symlinks=False)
                kept[path] = old
        renamed: list[Path] = []
        try:
            for tmp, path in temps:
                os.replace(tmp, path)
                renamed.append(path)
        except OSError:
            for path in reversed(renamed):
                if path in kept:
                    os.replace(kept.pop(path), path)
                else:
                    path.unlink(missing_ok=True)
            raise
    finally:
        for leftover in [tmp for tmp, _ in temps] + list(kept.values()):
            Path(leftover).unlink(missing_ok=True)  # nothing left once renamed


def write_bundle(bundle: Bundle, out: Path, force: bool = False) -> list[Path]:
    """Write ca.crt, ca.key, tls.crt, tls.key into ``out`` (keys 0600); returns the paths.

    Refuses to replace existing files unless ``force``: a CA already trusted by a cluster
    (its caBundle) must not change behind the admin's back.
    """
    return _place(bundle_files(bundle), out, refuse_existing=not force)


def write_serving(bundle: Bundle, out: Path) -> list[Path]:
    """Replace tls.crt and tls.key in ``out`` with ``bundle``'s serving pair (the CA files
    stay as they are: see :func:`renew_serving`); returns the paths."""
    files = bundle_files(bundle)
    return _place(
        {name: files[name] for name in ("tls.crt", "tls.key")}, out, refuse_existing=False
    )


def _place(files: dict[str, bytes], out: Path, *, refuse_existing: bool) -> list[Path]:
    if out.exists() and not out.is_dir():
        raise CertError(f"{out}: a file, not a directory: --out names where the four files go")
    try:
        out.mkdir(parents=True, exist_ok=True)
        existing = [name for name in files if (out / name).exists()]
        odd = [name for name in existing if not (out / name).is_file()]
        if odd:  # a rename would fail on it, naming a temporary file instead
            raise CertError(
                f"{out}: {', '.join(odd)} not a regular file (a directory?): remove it, "
                "or choose another --out"
            )
        if existing and refuse_existing:
            raise CertError(
                f"{out}: {', '.join(existing)} already exist; pass --force to replace them "
                "(the cluster's caBundle must then be updated too), or --renew to replace "
                "only tls.crt and tls.key, signed by the CA there"
            )
        placed = {
            out / name: (data, KEY_MODE if name.endswith(".key") else 0o644)
            for name, data in files.items()
        }
        _write_all(placed)
    except OSError as exc:
        # The reason alone ("[Errno 2] ... '/proc/c'" repeated the path), and the file when
        # it is another than ``out``.
        what = f" ({exc.filename})" if exc.filename not in (None, str(out), out) else ""
        reason = exc.strerror or str(exc)
        raise CertError(
            f"{out}: cannot write certificates (none replaced){what}: {reason}"
        ) from exc
    return list(placed)


def signing_ca(ca: KeyPair) -> KeyPair:
    """The certificate of ``ca.cert_pem`` whose key is ``ca.key_pem``, with that key.

    A ca.crt may hold several CAs: the caBundle during a rotation, the old CA and the new,
    in either order. Only the first was read, so with the old CA first the key "did not
    belong" and --renew was refused; the whole file stays the caBundle."""
    _, key = _load(ca)  # the first certificate: a file that is no PEM is said here
    try:
        certs = x509.load_pem_x509_certificates(ca.cert_pem)
    except ValueError as exc:
        raise CertError(f"not a PEM certificate and unencrypted private key: {exc}") from exc
    for cert in certs:
        if cert.public_key() == key.public_key():
            return KeyPair(cert.public_bytes(serialization.Encoding.PEM), ca.key_pem)
    if len(certs) == 1:
        raise CertError("ca.key does not belong to ca.crt")
    raise CertError(f"ca.key belongs to none of the {len(certs)} certificates in ca.crt")


def renew_serving(
    out: Path,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> Bundle:
    """The CA in ``out`` (``ca.crt``, ``ca.key``, as :func:`write_bundle` left them) and a
    new serving certificate it signed for these SANs: the caBundle stays as it is, so a
    cluster trusting that CA trusts the new certificate at once."""
    for name in dns_names:
        check_dns_name(name)
    for ip in ip_addresses:
        check_ip(ip)
    again = "run without --renew (and with --force) for a new CA, then update the caBundle"
    try:
        ca = KeyPair((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes())
    except OSError as exc:
        raise CertError(
            f"{exc.filename}: {exc.strerror or exc}: --renew signs with the CA in --out; {again}"
        ) from exc
    try:
        signer = signing_ca(ca)
        if not describe(signer.cert_pem).is_ca:
            raise CertError("ca.crt is no CA certificate (basicConstraints CA:FALSE)")
        return Bundle(ca, make_serving(signer, dns_names, ip_addresses, now=now))
    except CertError as exc:
        raise CertError(f"{out}: {exc}; {again}") from exc
