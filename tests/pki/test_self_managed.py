"""Self mode against a Kubernetes API emulator over real HTTP (kmock, with resourceVersions).

The Secret and the ValidatingWebhookConfiguration are the ones the chart renders.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

import kmock
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from kubernetes import client

from app.kube.certs import (
    CertSyncError,
    SecretStore,
    SelfManagedCerts,
    Stored,
    SyncResult,
    WebhookConfigs,
    run_rotation,
)
from app.kube.config import api_client
from app.pki.certs import CertError
from app.pki.hot_tls import HotContext
from app.pki.rotation import (
    CA_CRT,
    CA_KEY,
    PREVIOUS_CA,
    TLS_CRT,
    TLS_KEY,
    Action,
    issuers_of,
    service_dns_names,
    serving_pair,
)
from tests.chart.rendering import one
from tests.kmock_harness import rbac_grants
from tests.pki.kube_emulator import running_api
from tests.pki.test_rotation import foreign_ca
from tests.pki.tls_helpers import Connection, serving, trusting
from tests.support import answering

NS, SECRET, VWC = "eip-guard", "eip-guard-tls", "eip-guard"
NAMES = service_dns_names("eip-guard", NS)


def install(api: str, chart_objects: list[dict[str, Any]], *, secret: bool = True) -> None:
    """What `helm install` leaves behind for self mode: the empty Secret and the VWC."""
    kube = api_client(host=api)
    # The client sends plain dicts as they are (typed as models, hence Any).
    vwc: Any = one(chart_objects, "ValidatingWebhookConfiguration")
    client.AdmissionregistrationV1Api(kube).create_validating_webhook_configuration(vwc)
    if secret:
        body: Any = one(chart_objects, "Secret")
        client.CoreV1Api(kube).create_namespaced_secret(NS, body)


def replica(
    api: str,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    store: type[SecretStore] = SecretStore,
    monotonic: Callable[[], float] = time.monotonic,
) -> SelfManagedCerts:
    kube = api_client(host=api)  # each replica its own client, as separate pods have
    return SelfManagedCerts(
        store(kube, NS, SECRET),
        WebhookConfigs(kube, VWC),
        NAMES,
        dt.timedelta(days=60),
        clock,
        monotonic=monotonic,
    )


def state(api: str) -> tuple[Stored, str]:
    """The Secret and the caBundle as the API server holds them now."""
    kube = api_client(host=api)
    stored = SecretStore(kube, NS, SECRET).read()
    assert stored is not None
    vwc = client.AdmissionregistrationV1Api(kube).read_validating_webhook_configuration(VWC)
    # Every entry of the chart's configuration carries the same caBundle.
    (bundle,) = {str(hook.client_config.ca_bundle) for hook in vwc.webhooks or []}
    return stored, bundle


def test_first_start_fills_the_secret_and_patches_the_ca_bundle(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    install(api, chart_objects)
    result = replica(api).sync()
    assert result.wrote and result.ca_bundle_changed
    assert result.assessment.action is Action.NEW_CA
    stored, bundle = state(api)
    assert base64.b64decode(bundle) == stored.data[CA_CRT]
    assert stored.data[TLS_CRT] == result.pair.cert_pem
    cert = x509.load_pem_x509_certificate(result.pair.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == set(NAMES)
    # The rest of the chart's webhook registration survives the caBundle patch.
    admission = client.AdmissionregistrationV1Api(api_client(host=api))
    review, warn_delete = admission.read_validating_webhook_configuration(VWC).webhooks or []
    for hook in (review, warn_delete):
        service = hook.client_config.service
        assert service is not None and service.path == "/validate-eip"
        assert (hook.rules or [])[0].resources == ["eips"]
    assert (review.name, review.failure_policy) == ("validate.eip-guard.io", "Fail")
    assert (warn_delete.name, warn_delete.failure_policy) == ("warn-delete.eip-guard.io", "Ignore")


def test_without_the_chart_the_secret_is_created(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    install(api, chart_objects, secret=False)
    result = replica(api).sync()
    assert result.wrote
    stored, bundle = state(api)
    assert base64.b64decode(bundle) == stored.data[CA_CRT]


def test_a_second_replica_adopts_instead_of_overwriting(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    install(api, chart_objects)
    first = replica(api).sync()
    before = state(api)
    second = replica(api).sync()
    assert not second.wrote and not second.ca_bundle_changed
    assert second.assessment.action is Action.KEEP
    assert second.pair == first.pair
    assert state(api) == before  # same resourceVersion and caBundle: untouched


def test_replicas_racing_on_an_empty_secret_end_up_with_one_certificate(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    install(api, chart_objects)
    winner = replica(api)
    won: list[Any] = []

    class Slow(SecretStore):
        """Reads, then lets the other replica write before it writes itself."""

        reads = 0
        writes: ClassVar[list[bool]] = []

        def replace(self, data: Any, resource_version: str, old: Any) -> bool:
            Slow.writes.append(super().replace(data, resource_version, old))
            return Slow.writes[-1]

        def read(self) -> Stored | None:
            stored = super().read()
            Slow.reads += 1
            if Slow.reads == 1:
                won.append(winner.sync())  # the other replica writes in between
            return stored

    lost = replica(api, store=Slow).sync()
    stored, bundle = state(api)
    assert won[0].wrote and not lost.wrote
    assert Slow.writes == [False]  # its stale write got 409 Conflict; it read again, adopted
    assert lost.pair == won[0].pair
    assert stored.data[TLS_CRT] == won[0].pair.cert_pem
    assert base64.b64decode(bundle) == stored.data[CA_CRT]


def test_renewal_keeps_the_ca_and_the_ca_bundle(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    install(api, chart_objects)
    first = replica(api).sync()
    _, bundle = state(api)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=310)
    renewed = replica(api, clock=lambda: later).sync()
    stored, bundle_after = state(api)
    assert renewed.assessment.action is Action.RENEW_SERVING and renewed.wrote
    assert renewed.pair != first.pair and stored.data[TLS_CRT] == renewed.pair.cert_pem
    assert not renewed.ca_bundle_changed and bundle_after == bundle
    # The replica that has not renewed adopts the new certificate at its next sync.
    adopted = replica(api).sync()
    assert adopted.pair == renewed.pair and not adopted.wrote


def test_a_stale_bundle_is_never_written(api: str, chart_objects: list[dict[str, Any]]) -> None:
    install(api, chart_objects)
    webhooks = WebhookConfigs(api_client(host=api), VWC)
    assert webhooks.ensure_ca_bundle("c3RhbGU=", lambda: False) is False
    assert state(api)[1] == "None"


def test_a_missing_webhook_configuration_is_a_clear_error(api: str) -> None:
    with pytest.raises(CertSyncError, match="ValidatingWebhookConfiguration eip-guard: HTTP 404"):
        replica(api).sync()


def test_an_unreachable_api_is_a_clear_error_and_the_loop_keeps_trying(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    certs = replica(dead)
    with pytest.raises(CertSyncError) as err:
        certs.sync()
    # One short line: where, and the cause, without urllib3's nested reprs.
    assert str(err.value) == (
        f"cannot read Secret eip-guard/eip-guard-tls: cannot reach the API server at "
        f"{dead.removeprefix('http://')} (NewConnectionError: Failed to establish a new "
        "connection: [Errno 111] Connection refused)"
    )
    loaded: list[Any] = []
    with caplog.at_level(logging.ERROR, logger="app.kube.certs"):
        rotate_until(
            lambda: len([r for r in caplog.records if "not in step" in r.getMessage()]) >= 2,
            run_rotation(certs, loaded.append, interval=0.01),
        )
    assert loaded == []  # nothing to serve: /readyz stays false


def rotate_until(done: Callable[[], bool], rotation: Coroutine[Any, Any, None]) -> None:
    """Run ``rotation`` on an event loop until ``done()`` (at most a minute), then cancel it."""

    async def until() -> None:
        task = asyncio.create_task(rotation)
        while not done():
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(until(), 60))


def test_self_mode_uses_exactly_the_rbac_the_chart_grants(
    chart_objects: list[dict[str, Any]],
) -> None:
    """First start, a second replica, a renewal and a new caBundle: every request the code
    made, against the chart's Role (its Secret) and ClusterRole (its webhook configuration)."""
    with running_api() as fake:
        api = fake.direct_url
        install(api, chart_objects)
        mark = fake.served()  # what install() sent is helm's doing, not ours
        replica(api).sync()
        replica(api).sync()
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=310)
        replica(api, clock=lambda: later).sync()
        webhooks = WebhookConfigs(api_client(host=api), VWC)
        assert webhooks.ensure_ca_bundle(base64.b64encode(b"new").decode(), lambda: True)
        used = fake.rbac_used(since=mark)
    own = {SECRET, VWC}
    rules = [
        rule
        for obj in chart_objects
        if obj["kind"] in ("Role", "ClusterRole")
        for rule in obj["rules"]
        if set(rule.get("resourceNames", ())) & own
    ]
    assert used == rbac_grants(rules)


def seeded(api: str, chart_objects: list[dict[str, Any]], data: dict[str, bytes]) -> None:
    """The chart's objects, with a Secret someone filled by hand."""
    install(api, chart_objects, secret=False)
    assert SecretStore(api_client(host=api), NS, SECRET).create(data)


def ed25519_ca_data(serving_days: int) -> dict[str, bytes]:
    """A Secret holding a CA whose key eip-guard cannot sign with, and its serving pair."""
    ca = foreign_ca(ed25519.Ed25519PrivateKey.generate())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    serving = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=serving_days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in NAMES]), critical=True)
        .sign(serialization.load_pem_private_key(ca.key_pem, None), None)  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        CA_CRT: ca.cert_pem,
        CA_KEY: ca.key_pem,
        TLS_CRT: serving.public_bytes(serialization.Encoding.PEM),
        TLS_KEY: key_pem,
    }


def test_a_valid_certificate_is_served_when_renewal_cannot_be(
    api: str, chart_objects: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    data = ed25519_ca_data(serving_days=30)  # inside the 60-day renewal window
    seeded(api, chart_objects, data)
    with caplog.at_level(logging.ERROR, logger="app.kube.certs"):
        result = replica(api).sync()
    assert result.pair.cert_pem == data[TLS_CRT] and not result.wrote
    (record,) = [r for r in caplog.records if r.getMessage().startswith("cannot renew")]
    error = record.fields["error"]  # type: ignore[attr-defined]
    assert "expected an ECDSA or RSA private key" in error
    assert "remove ca.crt and ca.key from the Secret" in error
    stored, bundle = state(api)
    assert base64.b64decode(bundle) == data[CA_CRT] and stored.data == data  # nothing lost


def test_a_secret_that_can_be_neither_served_nor_renewed_says_what_to_do(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    seeded(api, chart_objects, ed25519_ca_data(serving_days=-1))
    with pytest.raises(CertError, match=r"eip-guard-tls: cannot renew .*remove ca"):
        replica(api).sync()


def test_rotation_survives_a_bug_and_keeps_trying(
    api: str, chart_objects: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    install(api, chart_objects)
    certs = replica(api)
    real = certs.sync
    calls = 0

    def flaky() -> SyncResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return real()

    certs.sync = flaky  # type: ignore[method-assign]
    loaded: list[Any] = []
    reports: list[int] = []

    problems: list[str] = []
    with caplog.at_level(logging.ERROR, logger="app.kube.certs"):
        rotate_until(
            lambda: bool(loaded),
            run_rotation(
                certs,
                loaded.append,
                0.01,
                report=lambda: reports.append(calls),
                problem=problems.append,
            ),
        )
    assert problems[0] == "RuntimeError('a bug')"  # the in-step gauge reads 0, then 1:
    assert problems[1] == ""
    (bug,) = [r for r in caplog.records if "(a bug)" in r.getMessage()]
    assert bug.exc_info is not None and "a bug" in str(bug.exc_info[1])
    assert reports[:1] == [1]  # reported after the failed round too


@pytest.mark.parametrize("edit", ["ca-removed", "secret-made-again"])
def test_a_new_ca_after_a_hand_edit_keeps_trusting_what_other_replicas_present(
    api: str, chart_objects: list[dict[str, Any]], tmp_path: Path, edit: str
) -> None:
    install(api, chart_objects)
    writer, other = replica(api), replica(api)
    writer.sync()
    presented = other.sync().pair  # the other replica serves this until its next sync
    kube = api_client(host=api)
    store = SecretStore(kube, NS, SECRET)
    stored = store.read()
    assert stored is not None
    if edit == "ca-removed":  # what the log says to do with a CA eip-guard cannot sign with
        kept = {k: v for k, v in stored.data.items() if k in (TLS_CRT, TLS_KEY)}
        assert store.replace(kept, stored.resource_version, stored.data)
    else:  # `kubectl delete secret`, then `helm upgrade` makes it again, empty
        client.CoreV1Api(kube).delete_namespaced_secret(SECRET, NS)
        body: Any = one(chart_objects, "Secret")
        client.CoreV1Api(kube).create_namespaced_secret(NS, body)
    moved = writer.sync()
    assert moved.assessment.action is Action.NEW_CA and moved.wrote
    _, bundle = state(api)
    api_server = trusting(base64.b64decode(bundle))  # as the API server now verifies
    for pair in (presented, moved.pair):  # the replica not yet moved over, and the writer
        hot = HotContext(scratch_dir=tmp_path)
        hot.load(pair)
        with serving(hot) as server:
            conn = Connection(server.port, api_server)  # raises on a failed verification
            assert conn.get().startswith(b"HTTP/1.1 200")
            conn.close()
    # The CA kept is in the Secret, beside the new one, for all to see (and to remove).
    stored_after, _ = state(api)
    (kept_ca,) = x509.load_pem_x509_certificates(stored_after.data[PREVIOUS_CA])
    x509.load_pem_x509_certificate(presented.cert_pem).verify_directly_issued_by(kept_ca)


def test_a_deleted_secret_the_service_account_may_not_create_says_how_to_make_it_again(
    chart_objects: list[dict[str, Any]],
) -> None:
    with running_api() as fake:
        install(fake.direct_url, chart_objects, secret=False)
        # The chart's Role grants get and patch on the Secret, not create: a 403.
        forbidden = kmock.KubernetesError(403, "Forbidden", 'secrets is forbidden: User "..."')
        fake.call(lambda: fake.km[kmock.action.CREATE, kmock.resource("v1/secrets")] << forbidden)
        with pytest.raises(CertSyncError) as err:
            replica(fake.direct_url).sync()
    assert str(err.value) == (
        "Secret eip-guard/eip-guard-tls does not exist and this service account may not "
        "create it (the chart creates it, empty, and grants get and patch only): make it "
        "again with `helm upgrade` or `kubectl -n eip-guard create secret generic "
        "eip-guard-tls`; the certificate presented now stays meanwhile"
    )


CA_DUE = dt.timedelta(days=3650 - 399)  # a CA of 10 years, 399 days from its end: replaced
RENEWED = dt.timedelta(days=3000)  # before CA_DUE: a serving certificate valid until past it


@pytest.mark.parametrize("who", ["same replica", "first start", "another replica"])
def test_a_new_ca_is_presented_once_its_ca_bundle_has_settled(
    api: str, chart_objects: list[dict[str, Any]], who: str
) -> None:
    install(api, chart_objects)
    today = dt.datetime.now(dt.UTC)
    now, elapsed = [today], [0.0]
    presenting = replica(api, clock=lambda: now[0], monotonic=lambda: elapsed[0])
    first = presenting.sync()
    now[0] = today + RENEWED
    renewed = presenting.sync()  # the same CA: presented at once
    assert renewed.assessment.action is Action.RENEW_SERVING
    assert renewed.pair != first.pair and renewed.settling == 0
    now[0] = today + CA_DUE
    if who == "first start":  # a replica (re)started now: the Secret's pair is still valid
        presenting = replica(api, clock=lambda: now[0], monotonic=lambda: elapsed[0])
    if who == "another replica":
        writer = replica(api, clock=lambda: now[0]).sync()
    else:
        writer = presenting.sync()
    assert writer.assessment.action is Action.NEW_CA and writer.wrote
    result = writer if who != "another replica" else presenting.sync()
    stored, bundle = state(api)
    assert result.pair == renewed.pair and result.settling == presenting.settle
    # Meanwhile the caBundle trusts both: the pair presented and the one to come.
    for pair in (renewed.pair, serving_pair(stored.data)):
        assert issuers_of([pair.cert_pem], base64.b64decode(bundle))
    elapsed[0] += presenting.settle - 1
    waiting = presenting.sync()
    assert waiting.pair == renewed.pair and waiting.settling == 1
    elapsed[0] += 1
    settled = presenting.sync()
    assert settled.pair == serving_pair(stored.data) and settled.settling == 0


def test_a_new_ca_is_presented_at_once_when_the_pair_presented_has_expired(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    install(api, chart_objects)
    today = dt.datetime.now(dt.UTC)
    now = [today]
    certs = replica(api, clock=lambda: now[0], monotonic=lambda: 0.0)
    first = certs.sync()  # the first start: nothing presented yet, no waiting
    assert first.assessment.action is Action.NEW_CA and first.settling == 0
    now[0] = today + CA_DUE  # the replica slept through renewal: its pair has expired
    moved = certs.sync()
    assert moved.assessment.action is Action.NEW_CA and moved.settling == 0
    stored, _ = state(api)
    assert moved.pair == serving_pair(stored.data) != first.pair


@pytest.mark.parametrize(
    ("scheme", "reply", "said"),
    [
        # Not HTTP (an SSH port): "cannot reach the API server (ProtocolError: ...)", no server.
        ("http", b"SSH-2.0-OpenSSH_9.6\r\n", "cannot reach the API server at {url} ("),
        # HTTP, not JSON (a web server on the port): "answered something that is not JSON".
        (
            "http",
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\n<html>",
            "the API server at {url} answered something that is not JSON",
        ),
        # TLS to a plain-HTTP port.
        (
            "https",
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
            "does not speak TLS",
        ),
    ],
)
def test_a_server_that_is_no_api_server_is_named(scheme: str, reply: bytes, said: str) -> None:
    with answering(reply) as where:
        url = f"{scheme}://{where}"
        api = api_client(host=url)
        api.configuration.verify_ssl = False
        for call in (SecretStore(api, NS, SECRET).read, WebhookConfigs(api, VWC).trusted):
            with pytest.raises(CertSyncError) as raised:
                call()
            message = str(raised.value)
            assert said.format(url=url) in message and where in message, message
            assert "\n" not in message
