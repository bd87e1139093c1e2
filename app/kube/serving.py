"""Live mode in one call: watches, the inventory, the background audit; and their shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client
from prometheus_client import CollectorRegistry

from app.core.inventory import Options, Resolver
from app.core.verdict import Policy
from app.kube.auditor import Auditor, EventSink, KubeEvents
from app.kube.config import api_client
from app.kube.live import LiveInventory
from app.kube.metrics import AuditMetrics, KubeMetrics
from app.kube.resources import streams
from app.kube.settings import LiveSettings

__all__ = ["Live", "LiveSettings", "connect_and_start", "start_live"]


@dataclass
class Live:
    source: LiveInventory
    auditor: Auditor | None
    metrics: KubeMetrics
    api: client.ApiClient | None = None  # closed by stop() when start_live made it

    def stop(self) -> None:
        if self.auditor is not None:
            self.auditor.stop()
        self.source.stop()
        if self.api is not None:
            self.api.close()  # type: ignore[no-untyped-call]


def start_live(
    api: client.ApiClient,
    registry: CollectorRegistry,
    policy: Policy,
    *,
    options: Options,
    settings: LiveSettings,
    resolve: Resolver | None = None,
    events: EventSink | None = None,
) -> Live:
    """Start every watch and the audit; ``Live.source`` is what the webhook app serves from."""
    metrics = KubeMetrics(registry)
    source = LiveInventory(
        api,
        streams(settings.kube_vip_namespaces, options),
        metrics,
        options=options,
        resolve=resolve,
        settings=settings.watch,
        coalesce=settings.coalesce,
    )
    auditor = None
    if settings.audit:
        sink = events if events is not None else KubeEvents(api)
        audit_metrics = AuditMetrics(registry)
        auditor = Auditor(source, policy, audit_metrics, sink, interval=settings.audit_interval)
    source.start()
    if auditor is not None:
        auditor.start()
    return Live(source, auditor, metrics)


def connect_and_start(
    kubeconfig: str | None,
    context: str | None,
    registry: CollectorRegistry,
    policy: Policy,
    *,
    options: Options,
    settings: LiveSettings,
    resolve: Resolver | None = None,
) -> Live:
    """``start_live`` on a client made kubectl's way (``api_client``); stop() closes it.

    Raises ``KubeError`` when no credentials can be loaded.
    """
    watches = len(streams(settings.kube_vip_namespaces, options))
    api = api_client(kubeconfig, context, pool_size=max(16, watches + 4))  # one per watch
    live = start_live(api, registry, policy, options=options, settings=settings, resolve=resolve)
    live.api = api
    return live
