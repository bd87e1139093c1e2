"""A server SSLContext whose certificate changes without a restart or a failed handshake.

uvicorn asks once for its SSLContext and keeps it. OpenSSL copies the certificate and key
from the context into each new connection at its start, so ``load_cert_chain`` on that live
context changes what *new* handshakes present, while open keep-alive connections keep the
one they negotiated. Two rules keep every handshake whole:

- a pair is first loaded into a scratch context: a broken or mismatched pair never touches
  the live one (OpenSSL drops the live key when a new certificate does not match it);
- loads run on the event loop thread, the thread that performs handshakes, so no handshake
  sees the certificate of one pair and the key of another.

:func:`read_pair` reads a certificate/key file pair (a mounted Secret: kubelet swaps the
whole directory atomically) for a caller that polls it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from app.pki.certs import CertError, KeyPair


def server_context() -> ssl.SSLContext:
    """The webhook's TLS settings: TLS 1.2 or newer, HTTP/1.1 (what the API server speaks)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION  # TLS 1.2 renegotiation only serves DoS
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, slots=True)
class Loaded:
    fingerprint: str  # sha256 of the certificate PEM: tells a new pair from the same one
    not_before: dt.datetime
    not_after: dt.datetime


class HotContext:
    """One live server SSLContext and the pair it presents now."""

    def __init__(self, scratch_dir: Path | None = None) -> None:
        self.context = server_context()
        self.loaded: Loaded | None = None
        self._scratch_dir = scratch_dir

    def load(self, pair: KeyPair) -> bool:
        """Present ``pair`` from the next handshake on; False if it is already presented.

        Raises CertError (and leaves the live context untouched) for a bad pair.
        """
        fingerprint = hashlib.sha256(pair.cert_pem).hexdigest()
        if self.loaded is not None and self.loaded.fingerprint == fingerprint:
            return False
        try:
            cert = x509.load_pem_x509_certificate(pair.cert_pem)
        except ValueError as exc:
            raise CertError(f"not a PEM certificate: {exc}") from exc
        # load_cert_chain reads files only: a private directory, removed straight after.
        with tempfile.TemporaryDirectory(prefix="eip-guard-tls-", dir=self._scratch_dir) as tmp:
            cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_file.write_bytes(pair.cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pair.key_pem)
            try:
                server_context().load_cert_chain(cert_file, key_file)  # the scratch check
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise CertError(f"the certificate and key do not form a pair: {reason}") from exc
            self.context.load_cert_chain(cert_file, key_file)
        self.loaded = Loaded(fingerprint, cert.not_valid_before_utc, cert.not_valid_after_utc)
        return True

    def valid_at(self, now: dt.datetime) -> bool:
        """A certificate is presented and within its validity (what /readyz waits for)."""
        return self.loaded is not None and self.loaded.not_before <= now < self.loaded.not_after


def read_pair(cert_file: Path, key_file: Path) -> KeyPair | None:
    """The pair on disk now, or None while either file is missing, unreadable or empty.

    Callers hand it to :meth:`HotContext.load`, which ignores the pair it already presents
    and refuses a half-written one; cert-manager may not have issued yet at first.
    """
    try:
        cert_pem, key_pem = cert_file.read_bytes(), key_file.read_bytes()
    except OSError:
        return None
    return KeyPair(cert_pem, key_pem) if cert_pem and key_pem else None


async def watch_files(
    cert_file: Path, key_file: Path, hot: HotContext, interval: float, log: logging.Logger
) -> None:
    """Poll a certificate/key pair (e.g. a mounted Secret) and present it when it changes."""
    failed = ""
    while True:
        await asyncio.sleep(interval)
        pair = read_pair(cert_file, key_file)
        if pair is None:
            continue
        try:
            if hot.load(pair):
                log.info("presenting a renewed TLS certificate", extra={"fields": _fields(hot)})
            failed = ""
        except CertError as exc:
            if str(exc) != failed:  # once per broken pair, not every poll
                log.warning(
                    "TLS certificate files not loaded; still presenting the previous ones",
                    extra={"fields": {"file": str(cert_file), "error": str(exc)}},
                )
                failed = str(exc)


def _fields(hot: HotContext) -> dict[str, str]:
    loaded = hot.loaded
    if loaded is None:
        return {}
    return {"sha256": loaded.fingerprint, "not_after": loaded.not_after.isoformat()}
