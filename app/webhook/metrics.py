"""Prometheus metrics of one webhook app, in a registry of its own (no process globals).

A registry per app lets tests (and several apps in one process) count independently.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from app.webhook.connections import REASONS
from app.webhook.reviews import OperationName

# No `<counter>_created` gauge beside each counter series: prometheus_client adds one to the
# text format (Go's client, which Kubernetes components use, does not), a series per label
# set that the README's metrics tables never name. Process-wide, read when scraped.
disable_created_metrics()  # type: ignore[no-untyped-call]  # (unannotated upstream)

# Judging an Eip takes well under a millisecond; the upper buckets catch a stalled loop.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The label values a decision can have, listed for the README and the tests.
VERDICTS = ("allowed", "warned", "denied", "unavailable", "errored", "skipped")
OPERATIONS = get_args(OperationName)


class Decisions:
    """What every answered review counts: by operation and verdict, rule hits, latency.

    Plain ints, made into metric families when scraped. prometheus_client's Counter and
    Histogram lock and run Python per update: 220 of the 3,600 bytecodes of a review. No
    lock is needed here: reviews and scrapes all run on the server's event loop thread.
    """

    def __init__(self) -> None:
        # Every (operation, verdict) from 0: a series born at 1 has no increase() to
        # Prometheus, and a pod's first errored review would never alert.
        self.reviews: dict[tuple[str, str], int] = {
            (operation, verdict): 0 for operation in OPERATIONS for verdict in VERDICTS
        }
        self.rules: dict[tuple[str, str], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: above every bound
        self.seconds = 0.0

    def record(
        self,
        operation: str,
        verdict: str,
        seconds: float,
        denied: Sequence[str],
        warned: Sequence[str],
    ) -> None:
        key = (operation, verdict)
        self.reviews[key] = self.reviews.get(key, 0) + 1
        for rule in denied:
            self.rules[rule, "deny"] = self.rules.get((rule, "deny"), 0) + 1
        for rule in warned:
            self.rules[rule, "warn"] = self.rules.get((rule, "warn"), 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le: bound included
        self.seconds += seconds

    def collect(self) -> Iterator[Metric]:
        reviews = CounterMetricFamily(
            "eip_guard_admission_reviews",
            "AdmissionReviews answered, by operation and verdict "
            "(allowed, warned, denied, unavailable, errored, skipped).",
            labels=("operation", "verdict"),
        )
        for labels, count in sorted(self.reviews.items()):
            reviews.add_metric(labels, count)
        rules = CounterMetricFamily(
            "eip_guard_rule_violations",
            "Violations found in AdmissionReviews, by rule id and the action taken (deny, warn).",
            labels=("rule", "action"),
        )
        for labels, count in sorted(self.rules.items()):
            rules.add_metric(labels, count)
        bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
        latency = HistogramMetricFamily(
            "eip_guard_admission_duration_seconds",
            "Time from receiving an AdmissionReview to having its answer ready.",
            buckets=list(zip(bounds, accumulate(self.buckets), strict=True)),
            sum_value=self.seconds,
        )
        yield from (reviews, rules, latency)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.decisions = Decisions()
        self.registry.register(self.decisions)
        self.rejected = Counter(
            "eip_guard_http_rejected",
            "Requests to /validate-eip refused before judging (HTTP 400, 408, 413, 501, 503).",
            ("code",),
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "eip_guard_connections_closed",
            "Connections closed by a limit (app.webhook.connections), and malformed requests, "
            f"by reason: {', '.join(REASONS)}.",
            ("reason",),
            registry=self.registry,
        )

        # Read when scraped (the app sets the function): what /readyz would answer now, so
        # an alert sees a replica that is up but refusing reviews as not ready.
        self.ready = Gauge(
            "eip_guard_ready",
            "1 while /readyz answers 200 (this replica judges Eips), else 0.",
            registry=self.registry,
        )

    def closed(self, reason: str) -> None:
        """Count one connection closed by a limit (the server's callback)."""
        self.connections_closed.labels(reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
