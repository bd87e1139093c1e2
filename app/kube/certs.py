"""Self-managed webhook certificates against the Kubernetes API (``certificates.mode=self``).

Each replica, on start and then every few minutes, runs :meth:`SelfManagedCerts.sync`:

1. read its Secret; ``app.pki.rotation`` decides keep / renew the serving certificate /
   new CA (which keeps trusting, as ``previous-ca.crt``, the CA of what replicas present
   now, taken from the caBundle when the Secret lost it);
2. if something must change, write with optimistic concurrency (create, or patch with
   the ``resourceVersion`` it read as a precondition). A 409 means another replica won
   the race: read again and adopt what it wrote. One writes, all adopt; nobody overwrites
   a newer Secret;
3. put the Secret's CA(s) into ``caBundle`` of its own ValidatingWebhookConfiguration,
   but only while the Secret is still the version it read (a slower replica must not
   write back an older bundle);
4. hand the serving pair to the TLS server (:func:`run_rotation`); a pair signed by a new
   CA only once the caBundle carrying that CA has been in place :data:`NEW_CA_SETTLE_SECONDS`
   (the API server may verify with the old caBundle for a moment), the pair presented now
   meanwhile, if still valid and trusted.

The chart creates the (empty) Secret so RBAC can name it; a missing Secret is created here
for installs without the chart.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from app.kube import rest
from app.pki.certs import CertError, KeyPair
from app.pki.rotation import (
    DEFAULT_RENEW_BEFORE,
    TLS_CRT,
    Action,
    Assessment,
    SecretData,
    assess,
    ca_bundle,
    issuers_of,
    must_settle,
    plan,
    serving_pair,
)

log = logging.getLogger("eip_guard.certs")
ATTEMPTS = 4  # lost races in one sync before giving up until the next one
RETRY_SECONDS = 15.0  # after a failed sync (API down, RBAC missing): sooner than the interval
FORBIDDEN, CONFLICT, NOT_FOUND = 403, 409, 404
# Seconds a caBundle carrying a new CA stays in place before a replica presents what that CA
# signed. Each API server reads webhook configurations from its own informer
# (k8s.io/apiserver validating_webhook_manager.go), seeing a patch a moment later: well
# under a second usually, seconds under load. The pair presented meanwhile stays trusted.
NEW_CA_SETTLE_SECONDS = 10.0
Clock = Callable[[], dt.datetime]


# What to do when the Secret holds a CA eip-guard cannot sign with.
CA_FIX = (
    ": remove ca.crt and ca.key from the Secret (eip-guard then makes a new CA and puts "
    "it in the caBundle) or put an ECDSA or RSA CA with its key there"
)


class CertSyncError(Exception):
    """The Secret or the webhook configuration could not be read or written: says why."""


@dataclass(frozen=True, slots=True)
class Stored:
    data: dict[str, bytes]
    resource_version: str


def _api_error(what: str, exc: Exception, server: str) -> CertSyncError:
    """``exc`` in one line, naming ``server`` (the API server's URL) where the exception does
    not: an answer that is not HTTP (a bare ProtocolError) or not JSON named no server."""
    if isinstance(exc, ValueError):
        return CertSyncError(
            f"{what}: the API server at {server} answered something that is not JSON "
            f"({type(exc).__name__}: {str(exc)[:200]}); is it an API server?"
        )
    if isinstance(exc, ApiException):
        hint = {
            401: "the service account token was refused",
            403: "RBAC forbids it: the chart's Role and ClusterRole grant exactly this",
            404: "it does not exist",
        }.get(exc.status or 0, exc.reason or "")
        return CertSyncError(f"{what}: HTTP {exc.status} ({hint})")
    return CertSyncError(f"{what}: {rest.unreachable(exc, server)}")


API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


class Tolerated:
    """What :func:`_call` returns when the API answered the one status the caller expects."""


TOLERATED = Tolerated()


def _call(
    api: client.ApiClient,
    what: str,
    request: Callable[[], urllib3.BaseHTTPResponse],
    tolerate: int | None = None,
) -> Any:
    """One API call through ``api``, its JSON answer; TOLERATED for the status ``tolerate``;
    any other failure is our error."""
    try:
        return rest.read_json(request())
    except ApiException as exc:
        if tolerate is not None and exc.status == tolerate:
            return TOLERATED
        raise _api_error(what, exc, api.configuration.host) from exc
    except API_ERRORS as exc:
        raise _api_error(what, exc, api.configuration.host) from exc


class SecretStore:
    """The one Secret holding the CA and the serving certificate."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self._api = api
        self.namespace, self.name = namespace, name
        self._collection = rest.path("v1", "secrets", namespace)
        self._path = rest.path("v1", "secrets", namespace, name)

    @property
    def ref(self) -> str:
        return f"Secret {self.namespace}/{self.name}"

    def read(self) -> Stored | None:
        secret = _call(
            self._api,
            f"cannot read {self.ref}",
            partial(rest.request, self._api, "GET", self._path),
            NOT_FOUND,
        )
        if isinstance(secret, Tolerated):
            return None
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        meta = secret.get("metadata") or {}
        return Stored(data, str(meta.get("resourceVersion") or ""))

    def _body(self, data: Mapping[str, bytes]) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in sorted(data.items())},
        }

    def create(self, data: Mapping[str, bytes]) -> bool:
        """False when someone else created it first."""
        try:
            created = _call(
                self._api,
                f"cannot create {self.ref}",
                partial(rest.request, self._api, "POST", self._collection, body=self._body(data)),
                CONFLICT,
            )
        except CertSyncError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == FORBIDDEN:
                # The chart grants get and patch on this one Secret, never create (RBAC
                # cannot name an object not made yet): it creates the Secret itself.
                raise CertSyncError(
                    f"{self.ref} does not exist and this service account may not create it "
                    f"(the chart creates it, empty, and grants get and patch only): make it "
                    f"again with `helm upgrade` or `kubectl -n {self.namespace} create secret "
                    f"generic {self.name}`; the certificate presented now stays meanwhile"
                ) from exc.__cause__
            raise
        return not isinstance(created, Tolerated)

    def replace(self, data: Mapping[str, bytes], resource_version: str, old: Iterable[str]) -> bool:
        """False when the Secret changed since ``resource_version`` was read.

        A patch carrying ``metadata.resourceVersion`` is a precondition to the API server
        (409 Conflict when stale); keys of ``old`` that ``data`` lacks are removed (null).
        """
        values: dict[str, str | None] = {k: None for k in old if k not in data}
        values |= {k: base64.b64encode(v).decode("ascii") for k, v in sorted(data.items())}
        body = {"metadata": {"resourceVersion": resource_version}, "data": values}
        patched = _call(
            self._api,
            f"cannot update {self.ref}",
            partial(rest.merge_patch, self._api, self._path, body),
            CONFLICT,
        )
        return not isinstance(patched, Tolerated)


class WebhookConfigs:
    """The caBundle of our own ValidatingWebhookConfiguration."""

    def __init__(self, api: client.ApiClient, name: str) -> None:
        self._api = api
        self.name = name
        self._path = rest.path(
            "admissionregistration.k8s.io/v1", "validatingwebhookconfigurations", name=name
        )

    @property
    def _what(self) -> str:
        return f"ValidatingWebhookConfiguration {self.name}"

    def _read(self) -> dict[str, Any]:
        vwc = _call(
            self._api,
            f"cannot read {self._what}",
            partial(rest.request, self._api, "GET", self._path),
        )
        assert not isinstance(vwc, Tolerated)  # nothing is tolerated on this read
        return dict(vwc)

    def trusted(self) -> bytes:
        """The CA certificates the webhooks' caBundles hold now (PEM; empty when unset)."""
        pems = []
        for hook in self._read().get("webhooks") or []:
            config = hook.get("clientConfig") if isinstance(hook, dict) else None
            bundle = config.get("caBundle") if isinstance(config, dict) else None
            if isinstance(bundle, str):
                try:
                    pems.append(base64.b64decode(bundle))
                except ValueError:  # not base64: nothing any client trusts
                    continue
        return b"\n".join(pems)

    def ensure_ca_bundle(self, bundle: str, still_current: Callable[[], bool]) -> bool:
        """Set caBundle on every webhook of the configuration; True if anything changed.

        ``still_current`` is asked right before writing: False means a newer Secret exists
        and this bundle must not be written (the next sync writes the newer one).
        """
        for _ in range(ATTEMPTS):
            vwc = self._read()
            hooks = [h for h in vwc.get("webhooks") or [] if isinstance(h, dict)]
            if all((h.get("clientConfig") or {}).get("caBundle") == bundle for h in hooks):
                return False
            if not still_current():
                return False
            for hook in hooks:
                hook.setdefault("clientConfig", {})["caBundle"] = bundle
            # A merge patch replaces the list whole: the entries go back as read (plain JSON,
            # so fields this client has no model for are kept), with the resourceVersion read
            # as a precondition.
            body = {
                "metadata": {"resourceVersion": (vwc.get("metadata") or {}).get("resourceVersion")},
                "webhooks": hooks,
            }
            patched = _call(
                self._api,
                f"cannot update {self._what}",
                partial(rest.merge_patch, self._api, self._path, body),
                CONFLICT,
            )
            if not isinstance(patched, Tolerated):
                return True
            # 409: changed under us (helm, another replica): read again
        raise CertSyncError(f"{self._what} keeps changing under us; retrying later")


@dataclass(frozen=True, slots=True)
class SyncResult:
    pair: KeyPair  # what to serve
    assessment: Assessment  # what this replica found
    wrote: bool  # this replica wrote the Secret
    ca_bundle_changed: bool
    # Seconds until the Secret's pair, signed by a new CA, replaces ``pair`` (0: it is ``pair``)
    settling: float = 0.0


class SelfManagedCerts:
    def __init__(
        self,
        secrets: SecretStore,
        webhooks: WebhookConfigs,
        dns_names: Sequence[str],
        renew_before: dt.timedelta = DEFAULT_RENEW_BEFORE,
        clock: Clock = lambda: dt.datetime.now(dt.UTC),
        *,
        settle: float = NEW_CA_SETTLE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.secrets, self.webhooks = secrets, webhooks
        self.dns_names, self.renew_before, self.clock = tuple(dns_names), renew_before, clock
        self.settle, self._monotonic = settle, monotonic
        self._adopted: bytes | None = None  # the Secret's serving certificate at the last sync
        self._serving: KeyPair | None = None  # the pair the last sync said to present
        self._bundle = ""  # the caBundle last found in place, of this replica's Secret data
        self._bundle_since = 0.0  # when (monotonic) it was written or first found in place

    def sync(self) -> SyncResult:
        """One round: make the Secret right (or adopt it), then the caBundle. Blocking I/O."""
        for _ in range(ATTEMPTS):
            stored = self.secrets.read()
            data: SecretData = stored.data if stored else {}
            now = self.clock()
            found = assess(data, self.dns_names, now, self.renew_before)
            issuers: list[bytes] = []
            if found.action is Action.NEW_CA:
                # Replicas present the Secret's serving certificate (or, the Secret emptied,
                # the one this replica adopted last, or presents while a new CA settles)
                # until their next sync: the caBundle must go on trusting its CA, even when
                # the Secret no longer holds it.
                presenting = self._serving.cert_pem if self._serving else None
                serving = [data.get(TLS_CRT), self._adopted, presenting]
                issuers = issuers_of(serving, self.webhooks.trusted())
            try:
                new = plan(data, found, self.dns_names, now, issuers)
            except CertError as exc:
                if not found.servable:
                    raise CertError(f"{self.secrets.ref}: cannot renew ({exc}){CA_FIX}") from exc
                # Renewal can wait; serving the pair that is still valid cannot.
                log.error(
                    "cannot renew the webhook certificate; serving the one in the Secret",
                    extra={"fields": {"secret": self.secrets.ref, "error": f"{exc}{CA_FIX}"}},
                )
                new = None
            if new is None:
                adopted, wrote, version = (
                    dict(data),
                    False,
                    stored.resource_version if stored else "",
                )
                break
            if stored is None:
                won = self.secrets.create(new)
            else:
                won = self.secrets.replace(new, stored.resource_version, stored.data)
            if won:
                # Our own write's version: read back so the caBundle check below compares
                # with what the API server now holds.
                after = self.secrets.read()
                adopted, wrote = new, True
                version = after.resource_version if after else ""
                log.info(
                    "wrote the webhook certificate",
                    extra={"fields": {"secret": self.secrets.ref, "reason": found.reason}},
                )
                break
            log.info("another replica wrote the certificate first; adopting it")
        else:
            raise CertSyncError(f"{self.secrets.ref} keeps changing under us; retrying later")

        stale = False  # a newer Secret exists: the caBundle in place is not this one

        def still_current() -> bool:
            nonlocal stale
            latest = self.secrets.read()
            stale = latest is None or latest.resource_version != version
            return not stale

        bundle = ca_bundle(adopted, now)
        changed = self.webhooks.ensure_ca_bundle(bundle, still_current)
        if stale:
            self._bundle = ""
        elif changed or bundle != self._bundle:
            self._bundle, self._bundle_since = bundle, self._monotonic()
        self._adopted = adopted.get(TLS_CRT)
        pending = serving_pair(adopted)
        # What is presented now; at first start the Secret's own pair when it was servable
        # (a CA renewed 400 days early leaves it valid): better than one the API server may
        # not trust yet.
        presented = self._serving or (serving_pair(data) if found.servable else None)
        settling = 0.0
        if presented is not None and must_settle(
            presented.cert_pem, pending.cert_pem, base64.b64decode(bundle), now
        ):
            waited = 0.0 if stale else self._monotonic() - self._bundle_since
            settling = max(0.0, self.settle - waited)
        self._serving = presented if presented is not None and settling > 0 else pending
        return SyncResult(self._serving, found, wrote, changed, settling)


async def run_rotation(
    certs: SelfManagedCerts,
    load: Callable[[KeyPair], object],
    interval: float,
    ready: asyncio.Event | None = None,
    *,
    report: Callable[[], object] = lambda: None,
    problem: Callable[[str], object] = lambda _: None,
) -> None:
    """Sync forever: every ``interval`` seconds, sooner after a failure, whatever fails.

    ``load`` runs on the event loop (the TLS server's thread); the API calls run in a
    worker thread so the webhook keeps answering meanwhile. ``ready`` is set after the
    first successful load; ``report`` runs after every round (it logs the certificate
    presented turning invalid), and ``problem`` gets what failed in it ("" for nothing).
    While a pair signed by a new CA waits for its caBundle to settle, the next round comes
    when it may be presented.
    """
    settling = False  # a new CA's pair waits
    while True:
        delay, failed = interval, ""
        try:
            result = await asyncio.to_thread(certs.sync)
            load(result.pair)
            if ready is not None:
                ready.set()
            if result.settling > 0:
                delay = min(interval, result.settling)
                if not settling:
                    log.info(
                        "a new CA is in the caBundle: presenting the certificate it signed "
                        "once API servers have had time to read it; the current one, still "
                        "trusted, until then",
                        extra={"fields": {"settle_seconds": certs.settle}},
                    )
            elif settling:
                log.info("presenting the certificate signed by the new CA")
            settling = result.settling > 0
            if result.assessment.action is not Action.KEEP or result.ca_bundle_changed:
                log.info(
                    "webhook certificate in step",
                    extra={
                        "fields": {
                            "found": result.assessment.reason,
                            "wrote_secret": result.wrote,
                            "ca_bundle_changed": result.ca_bundle_changed,
                        }
                    },
                )
        except (CertSyncError, CertError) as exc:
            log.error(
                "webhook certificate not in step; retrying", extra={"fields": {"error": str(exc)}}
            )
            delay, failed = min(interval, RETRY_SECONDS), str(exc)
        except Exception as exc:  # a bug of ours must not end rotation for good, silently
            log.exception("webhook certificate not in step (a bug); retrying")
            delay, failed = min(interval, RETRY_SECONDS), repr(exc)
        problem(failed)
        report()
        await asyncio.sleep(delay)
