"""Self mode against a Kubernetes API emulator over real HTTP (kmock, with resourceVersions).

The Secret and the ValidatingWebhookConfiguration are the ones the chart renders.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Callable
from typing import Any, ClassVar

import kmock
import pytest
from cryptography import x509
from helm_python import Chart
from kubernetes import client

from app.kube.certs import (
    CertSyncError,
    SecretStore,
    SelfManagedCerts,
    Stored,
    WebhookConfigs,
)
from app.pki.rotation import CA_CRT, TLS_CRT, Action, service_dns_names
from tests.chart.rendering import CHART, objects, one, render_raw
from tests.pki.kube_emulator import VersionedEmulator, api_client

NS, SECRET, VWC = "eip-guard", "eip-guard-tls", "eip-guard"
NAMES = service_dns_names("eip-guard", NS)
pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=VersionedEmulator)]


@pytest.fixture(scope="module")
def chart_objects() -> list[dict[str, Any]]:
    with Chart.load(CHART) as chart:
        return objects(render_raw(chart, {}))


async def install(emulator: kmock.RawHandler, chart_objects: list[dict[str, Any]]) -> None:
    """What `helm install` leaves behind for self mode: the empty Secret and the VWC."""
    api = api_client(emulator)

    def create() -> None:
        # The client sends plain dicts as they are (typed as models, hence Any).
        secret: Any = one(chart_objects, "Secret")
        vwc: Any = one(chart_objects, "ValidatingWebhookConfiguration")
        client.CoreV1Api(api).create_namespaced_secret(NS, secret)
        client.AdmissionregistrationV1Api(api).create_validating_webhook_configuration(vwc)

    await asyncio.to_thread(create)


def replica(
    emulator: kmock.RawHandler,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    store: type[SecretStore] = SecretStore,
) -> SelfManagedCerts:
    api = api_client(emulator)  # each replica its own client, as separate pods have
    return SelfManagedCerts(
        store(api, NS, SECRET), WebhookConfigs(api, VWC), NAMES, dt.timedelta(days=60), clock
    )


async def state(emulator: kmock.RawHandler) -> tuple[Stored, str]:
    api = api_client(emulator)

    def read() -> tuple[Stored, str]:
        stored = SecretStore(api, NS, SECRET).read()
        assert stored is not None
        vwc = client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(VWC)
        (hook,) = vwc.webhooks or []
        return stored, str(hook.client_config.ca_bundle)

    return await asyncio.to_thread(read)


async def test_first_start_fills_the_secret_and_patches_the_ca_bundle(
    kmock: kmock.RawHandler, chart_objects: list[dict[str, Any]]
) -> None:
    await install(kmock, chart_objects)
    result = await asyncio.to_thread(replica(kmock).sync)
    assert result.wrote and result.ca_bundle_changed
    assert result.assessment.action is Action.NEW_CA
    stored, bundle = await state(kmock)
    assert base64.b64decode(bundle) == stored.data[CA_CRT]
    assert stored.data[TLS_CRT] == result.pair.cert_pem
    cert = x509.load_pem_x509_certificate(result.pair.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == set(NAMES)
    # The rest of the chart's webhook registration survives the caBundle patch.
    vwc = await asyncio.to_thread(
        client.AdmissionregistrationV1Api(api_client(kmock)).read_validating_webhook_configuration,
        VWC,
    )
    (hook,) = vwc.webhooks or []
    service = hook.client_config.service
    assert hook.name == "validate.eip-guard.io"
    assert service is not None and service.path == "/validate-eip"
    assert hook.failure_policy == "Fail" and (hook.rules or [])[0].resources == ["eips"]


async def test_without_the_chart_the_secret_is_created(
    kmock: kmock.RawHandler, chart_objects: list[dict[str, Any]]
) -> None:
    api = api_client(kmock)
    vwc: Any = one(chart_objects, "ValidatingWebhookConfiguration")
    await asyncio.to_thread(
        client.AdmissionregistrationV1Api(api).create_validating_webhook_configuration, vwc
    )
    result = await asyncio.to_thread(replica(kmock).sync)
    assert result.wrote
    stored, bundle = await state(kmock)
    assert base64.b64decode(bundle) == stored.data[CA_CRT]


async def test_a_second_replica_adopts_instead_of_overwriting(
    kmock: kmock.RawHandler, chart_objects: list[dict[str, Any]]
) -> None:
    await install(kmock, chart_objects)
    first = await asyncio.to_thread(replica(kmock).sync)
    before, bundle = await state(kmock)
    second = await asyncio.to_thread(replica(kmock).sync)
    after, bundle_after = await state(kmock)
    assert not second.wrote and not second.ca_bundle_changed
    assert second.assessment.action is Action.KEEP
    assert second.pair == first.pair
    assert after == before and bundle_after == bundle  # same resourceVersion: untouched


async def test_replicas_racing_on_an_empty_secret_end_up_with_one_certificate(
    kmock: kmock.RawHandler, chart_objects: list[dict[str, Any]]
) -> None:
    await install(kmock, chart_objects)
    winner = replica(kmock)
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

    loser = replica(kmock, store=Slow)
    lost = await asyncio.to_thread(loser.sync)
    stored, bundle = await state(kmock)
    assert won[0].wrote and not lost.wrote
    assert Slow.writes == [False]  # its stale write got 409 Conflict; it read again, adopted
    assert lost.pair == won[0].pair  # it adopted the winner's certificate
    assert stored.data[TLS_CRT] == won[0].pair.cert_pem
    assert base64.b64decode(bundle) == stored.data[CA_CRT]


async def test_renewal_keeps_the_ca_and_the_ca_bundle(
    kmock: kmock.RawHandler, chart_objects: list[dict[str, Any]]
) -> None:
    await install(kmock, chart_objects)
    first = await asyncio.to_thread(replica(kmock).sync)
    _, bundle = await state(kmock)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=310)
    renewed = await asyncio.to_thread(replica(kmock, clock=lambda: later).sync)
    stored, bundle_after = await state(kmock)
    assert renewed.assessment.action is Action.RENEW_SERVING and renewed.wrote
    assert renewed.pair != first.pair and stored.data[TLS_CRT] == renewed.pair.cert_pem
    assert not renewed.ca_bundle_changed and bundle_after == bundle
    # The replica that has not renewed adopts the new certificate at its next sync.
    adopted = await asyncio.to_thread(replica(kmock).sync)
    assert adopted.pair == renewed.pair and not adopted.wrote


async def test_a_stale_bundle_is_never_written(
    kmock: kmock.RawHandler, chart_objects: list[dict[str, Any]]
) -> None:
    await install(kmock, chart_objects)
    webhooks = WebhookConfigs(api_client(kmock), VWC)
    wrote = await asyncio.to_thread(webhooks.ensure_ca_bundle, "c3RhbGU=", lambda: False)
    _, bundle = await state(kmock)
    assert wrote is False and bundle == "None"


async def test_a_missing_webhook_configuration_is_a_clear_error(kmock: kmock.RawHandler) -> None:
    with pytest.raises(CertSyncError, match="ValidatingWebhookConfiguration eip-guard: HTTP 404"):
        await asyncio.to_thread(replica(kmock).sync)
