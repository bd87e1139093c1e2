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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from app.pki.certs import CertError, KeyPair, san_dns_names

Clock = Callable[[], dt.datetime]


# TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD cipher only, no CBC (padding
# oracles, Lucky13): Mozilla's "intermediate" profile without DHE. Go's client (the API
# server) offers these six first; ECDSA and RSA certificates both work. TLS 1.3 suites are
# set apart in OpenSSL (all AEAD) and stay as they are.
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


def server_context() -> ssl.SSLContext:
    """The webhook's TLS settings, in one place: TLS 1.2 or newer, ECDHE with AEAD ciphers
    only on TLS 1.2, HTTP/1.1 (what the API server speaks to webhooks). No certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_RENEGOTIATION  # TLS 1.2 renegotiation only serves DoS
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, slots=True)
class Loaded:
    digest: str  # sha256 of the certificate and key PEM: tells a new pair from the same one
    fingerprint: str  # of the certificate, as `openssl x509 -noout -fingerprint -sha256`
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]


def validity_problem(loaded: Loaded, now: dt.datetime) -> str:
    """Why ``loaded`` is not valid at ``now`` ("" when it is), in words for logs and /readyz."""
    if now < loaded.not_before:
        return f"it is not valid before {loaded.not_before:%Y-%m-%d %H:%M} UTC"
    if now >= loaded.not_after:
        return f"it expired on {loaded.not_after:%Y-%m-%d %H:%M} UTC"
    return ""


# OpenSSL's reasons, in words that say what to change.
_SSL_REASONS = {
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
    "EE_KEY_TOO_SMALL": "the key is too small for OpenSSL (use ECDSA P-256 or RSA of 2048 bits)",
    "CA_MD_TOO_WEAK": "the certificate is signed with a digest OpenSSL refuses (use SHA-256)",
}


def _is_encrypted(key_pem: bytes) -> bool:
    return b"ENCRYPTED PRIVATE KEY-----" in key_pem or b"Proc-Type: 4,ENCRYPTED" in key_pem


def _no_password() -> bytes:
    # Without a password OpenSSL would prompt on the terminal for an encrypted key (blocking
    # the event loop) or write the prompt into the JSON log: an empty one fails at once.
    return b""


class HotContext:
    """One live server SSLContext and the pair it presents now."""

    def __init__(
        self,
        scratch_dir: Path | None = None,
        clock: Clock = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.context = server_context()
        self.loaded: Loaded | None = None
        # Why the certificate to present (files, the self-managed Secret) could not be
        # loaded last time ("": it could): the one presented stays, and a gauge says so.
        self.source_problem = "no certificate loaded yet"
        self._scratch_dir = scratch_dir
        self._clock = clock

    def load(self, pair: KeyPair) -> bool:
        """Present ``pair`` from the next handshake on; False if it is already presented.

        Raises CertError (and leaves the live context untouched) for a bad pair, and for a
        pair not valid now while the one presented is: a renewal gone wrong (an expired
        backup restored, a wrong issuer's clock) must not take down a working webhook.
        """
        digest = hashlib.sha256(pair.cert_pem + b"\0" + pair.key_pem).hexdigest()
        if self.loaded is not None and self.loaded.digest == digest:
            return False
        if _is_encrypted(pair.key_pem):
            raise CertError(
                "the private key is encrypted (it has a passphrase): give it unencrypted, "
                "e.g. `openssl pkey -in KEY -out tls.key`, and keep it in a Secret"
            )
        try:
            cert = x509.load_pem_x509_certificate(pair.cert_pem)
        except ValueError as exc:
            raise CertError(f"not a PEM certificate: {exc}") from exc
        new = Loaded(
            digest,
            cert.fingerprint(hashes.SHA256()).hex(":").upper(),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            san_dns_names(cert),
        )
        now = self._clock()
        problem = validity_problem(new, now)
        if problem and self.loaded is not None and not validity_problem(self.loaded, now):
            raise CertError(
                f"the new certificate is not valid now ({problem}); keeping the one "
                f"presented, valid until {self.loaded.not_after:%Y-%m-%d %H:%M} UTC"
            )
        # load_cert_chain reads files only: a private directory, removed straight after.
        with tempfile.TemporaryDirectory(prefix="eip-guard-tls-", dir=self._scratch_dir) as tmp:
            cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_file.write_bytes(pair.cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pair.key_pem)
            try:  # the scratch check
                server_context().load_cert_chain(cert_file, key_file, _no_password)
            except (OSError, ssl.SSLError) as exc:
                reason = str(getattr(exc, "reason", None) or exc)
                reason = _SSL_REASONS.get(reason, reason)
                raise CertError(f"the certificate and key do not form a pair: {reason}") from exc
            self.context.load_cert_chain(cert_file, key_file, _no_password)
        self.loaded, self.source_problem = new, ""
        return True

    def note_source(self, problem: str) -> None:
        """What failed in loading the certificate to present ("" for nothing)."""
        self.source_problem = problem

    def valid_at(self, now: dt.datetime) -> bool:
        """A certificate is presented and within its validity (what /readyz waits for)."""
        return self.loaded is not None and not validity_problem(self.loaded, now)

    def fields(self) -> dict[str, str]:
        """What the log says of the pair presented."""
        loaded = self.loaded
        if loaded is None:
            return {}
        return {
            "sha256": loaded.fingerprint,
            "not_after": loaded.not_after.isoformat(),
            "dns_names": ",".join(loaded.dns_names),
        }


class ValidityReport:
    """Logs when the certificate presented stops being valid, or becomes valid again: once
    per change, so an expiry while serving is in the log and not only in /readyz."""

    def __init__(self, log: logging.Logger, clock: Clock = lambda: dt.datetime.now(dt.UTC)):
        self._log, self._clock = log, clock
        self._problem: str | None = None  # None: nothing reported yet

    def __call__(self, hot: HotContext) -> None:
        if hot.loaded is None:
            return
        problem = validity_problem(hot.loaded, self._clock())
        if problem == (self._problem or ""):
            self._problem = problem
            return
        if problem:
            self._log.error(
                "the TLS certificate presented is not valid now: the API server refuses the "
                "handshake and /readyz answers 503 until a valid one is loaded",
                extra={"fields": {"problem": problem, **hot.fields()}},
            )
        elif self._problem:
            self._log.info("the TLS certificate presented is valid", extra={"fields": hot.fields()})
        self._problem = problem


def read_pair(cert_file: Path, key_file: Path) -> KeyPair:
    """The pair on disk now; CertError saying which file is missing, unreadable or empty.

    Callers hand it to :meth:`HotContext.load`, which ignores the pair it already presents
    and refuses a half-written one.
    """
    pems = []
    for path in (cert_file, key_file):
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise CertError(f"{path}: {exc.strerror or exc}") from exc
        if not pem:
            raise CertError(f"{path} is empty")
        pems.append(pem)
    return KeyPair(*pems)


# How long the files may fail to load before it is a warning (and the in-step gauge says
# so): a pair replaced one file at a time (`cp`, `eip-guard certs --force`, a read that
# crosses kubelet's swap of a mounted Secret) is a new certificate beside the old key for a
# moment, which is no problem to report.
SETTLE_SECONDS = 5.0
SETTLING = "TLS certificate files do not load yet (being replaced?); looking again"


class FileWatch:
    """One certificate/key file pair polled by :func:`watch_files`: what each look loads and
    says. A problem is reported (a warning, once, and the in-step gauge) only once the files
    have failed to load for ``settle`` seconds, at a later look than the first failure."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        hot: HotContext,
        log: logging.Logger,
        *,
        settle: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert_file, self.key_file, self.hot, self._log = cert_file, key_file, hot, log
        self._settle, self._clock = settle, clock
        self._failing_since: float | None = None  # first look of the current failures
        self._reported = ""  # the problem last warned of ("" for none)

    def poll(self) -> None:
        """One look: load the pair if it changed; report what fails once it has lasted."""
        before = self.hot.loaded
        try:
            loaded = self.hot.load(read_pair(self.cert_file, self.key_file))
        except CertError as exc:
            self._failed(str(exc))
            return
        self._failing_since, self._reported = None, ""
        self.hot.note_source("")
        if not loaded:
            return
        self._log.info("presenting a renewed TLS certificate", extra={"fields": self.hot.fields()})
        after = self.hot.loaded
        lost = sorted(set(before.dns_names) - set(after.dns_names)) if before and after else []
        if lost:
            self._log.warning(
                "the renewed TLS certificate lacks DNS names the previous one had: clients "
                "calling the webhook by them fail the handshake",
                extra={"fields": {"missing": ",".join(lost)}},
            )

    def _failed(self, problem: str) -> None:
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since < self._settle or now == self._failing_since:
            self._log.debug(
                SETTLING, extra={"fields": {"file": str(self.cert_file), "error": problem}}
            )
            return
        self.hot.note_source(problem)
        if problem != self._reported:
            self._log.warning(
                "TLS certificate files not loaded; still presenting the previous ones",
                extra={
                    "fields": {"file": str(self.cert_file), "error": problem, **self.hot.fields()}
                },
            )
        self._reported = problem


async def watch_files(
    cert_file: Path,
    key_file: Path,
    hot: HotContext,
    interval: float,
    log: logging.Logger,
    *,
    report: ValidityReport | None = None,
) -> None:
    """Poll a certificate/key pair (e.g. a mounted Secret) and present it when it changes.

    Each problem is logged once, when it has lasted :data:`SETTLE_SECONDS`: files gone,
    unreadable or broken (the pair presented stays), and the pair presented expiring.
    """
    watch = FileWatch(cert_file, key_file, hot, log)
    report = report if report is not None else ValidityReport(log)
    while True:
        await asyncio.sleep(interval)
        try:
            watch.poll()
            report(hot)
        except Exception as exc:  # a bug of ours must not end the watch for good
            hot.note_source(repr(exc))
            log.exception("reading the TLS certificate files failed; trying again")
