"""Live mode started against the stand-in, with short timeouts, and a polling helper."""

from __future__ import annotations

import attrs
from kubernetes import client
from prometheus_client import CollectorRegistry

from app.core.inventory import Options
from app.core.sources import Readiness
from app.core.verdict import Policy
from app.kube.config import api_client
from app.kube.serving import Live, LiveSettings, start_live
from app.kube.settings import WatchSettings
from tests.kmock_harness import FakeApi, PagedEmulator
from tests.support import eventually

# Short timeouts so failures are noticed quickly here; production defaults are in WatchSettings.
FAST = WatchSettings(
    timeout_seconds=2,
    read_grace=1.0,
    connect_timeout=2.0,
    backoff_base=0.05,
    backoff_cap=0.5,
    absent_retry=0.5,
)
SETTINGS = LiveSettings(watch=FAST, coalesce=0.05, audit_interval=0.1)


class Cluster:
    """The stand-in and the live mode started against it, with short timeouts."""

    def __init__(self, api: FakeApi, settings: LiveSettings = SETTINGS) -> None:
        self.api, self.settings = api, settings
        self.registry = CollectorRegistry()
        self.client: client.ApiClient = api_client(host=api.url)
        self.live: Live = start_live(
            self.client, self.registry, Policy(), options=Options(), settings=settings
        )

    def close(self) -> None:
        self.live.stop()
        self.client.close()  # type: ignore[no-untyped-call]

    def ready(self) -> Readiness:
        return eventually(lambda: self.live.source.readiness().ready, "inventory ready") and (
            self.live.source.readiness()
        )

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@attrs.define(kw_only=True)
class TimedEmulator(PagedEmulator):
    """The harness's emulator, named for what the tests using it rely on: each watch ends at
    its ``timeoutSeconds``, cleanly, as a real API server does (``PagedEmulator`` does so
    itself now; kmock kept a watch open until the client's read timeout ended it)."""
