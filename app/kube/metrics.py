"""Prometheus metrics of live mode, registered on a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from app.core.rules import RULE_IDS

PROBLEM_KINDS = ("not_checked", "ignored")

disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created series: app.webhook.metrics says why


class AuditMetrics:
    """The background audit's gauge: registered only when the audit runs, so that without it
    a dashboard sees no data rather than "no violating Eip"."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.violations = Gauge(
            "eip_guard_audit_violations",
            "Existing Eips that violate this rule (background audit)",
            ["rule"],
            registry=registry,
        )
        for rule in sorted(RULE_IDS):
            self.violations.labels(rule).set(0)


class KubeMetrics:
    """Per source (``nodes``, ``pods/kube-system``...): objects, sync time, restarts, errors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.objects = Gauge(
            "eip_guard_source_objects",
            "Objects of this source whose extract the inventory holds",
            ["source"],
            registry=registry,
        )
        self.last_sync = Gauge(
            "eip_guard_source_last_sync_timestamp_seconds",
            "Unix time the source was last known in sync (a list, an event or a clean watch end)",
            ["source"],
            registry=registry,
        )
        self.restarts = Counter(
            "eip_guard_source_watch_restarts",
            "Attempts to watch again (resume or list anew) after an error, a dead connection or "
            "410 Gone, whether they work or not",
            ["source"],
            registry=registry,
        )
        self.errors = Counter(
            "eip_guard_source_errors",
            "Failed list or watch requests",
            ["source"],
            registry=registry,
        )
        self.ready = Gauge(
            "eip_guard_inventory_ready",
            "1 once every source completed its first list and the inventory holds it",
            registry=registry,
        )
        self.rebuilds = Counter(
            "eip_guard_inventory_rebuilds",
            "Inventories assembled and swapped in (bursts of events are coalesced)",
            registry=registry,
        )
        self.rebuild_seconds = Counter(
            "eip_guard_inventory_rebuild_cpu_seconds",
            "CPU time spent making inventories, by how: whole (every extract) or changes "
            "(the last inventory patched)",
            ["how"],
            registry=registry,
        )
        self.rebuild_failures = Counter(
            "eip_guard_inventory_rebuild_failures",
            "Inventories that could not be made (a bug), by how: changes (then assembled whole "
            "at once) or whole (the previous one is kept, and it is tried again after a backoff)",
            ["how"],
            registry=registry,
        )
        for how in ("whole", "changes"):
            self.rebuild_seconds.labels(how)
            self.rebuild_failures.labels(how)
        self.problems = Gauge(
            "eip_guard_inventory_problems",
            "What the inventory could not check (kind not_checked: no Node or Service, an "
            "unresolved kube-vip name) or read (kind ignored: a value that is no IP...)",
            ["kind"],
            registry=registry,
        )
        for kind in PROBLEM_KINDS:
            self.problems.labels(kind).set(0)

    def source(self, name: str) -> None:
        """Make a source's series exist at 0 before its first sync (dashboards see it missing)."""
        self.objects.labels(name).set(0)
        self.last_sync.labels(name).set(0)
        self.restarts.labels(name)
        self.errors.labels(name)
