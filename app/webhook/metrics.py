"""Prometheus metrics of one webhook app, in a registry of its own (no process globals).

A registry per app lets tests (and several apps in one process) count independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

# Judging an Eip takes well under a millisecond; the upper buckets catch a stalled loop.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The label values a decision can have, listed for the README and the tests.
VERDICTS = ("allowed", "warned", "denied", "unavailable", "errored", "skipped")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.reviews = Counter(
            "eip_guard_admission_reviews",
            "AdmissionReviews answered, by operation and verdict "
            "(allowed, warned, denied, unavailable, errored, skipped).",
            ("operation", "verdict"),
            registry=self.registry,
        )
        self.rules = Counter(
            "eip_guard_rule_violations",
            "Violations found in AdmissionReviews, by rule id and the action taken (deny, warn).",
            ("rule", "action"),
            registry=self.registry,
        )
        self.rejected = Counter(
            "eip_guard_http_rejected",
            "Requests to /validate-eip refused before judging (HTTP 400, 413).",
            ("code",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "eip_guard_admission_duration_seconds",
            "Time from receiving an AdmissionReview to having its answer ready.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
