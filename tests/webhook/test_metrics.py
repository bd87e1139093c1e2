"""The review metrics count in plain ints; prometheus_client's own Counter and Histogram,
fed the same reviews, are the oracle for every sample they expose."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from app.webhook.metrics import LATENCY_BUCKETS, OPERATIONS, VERDICTS, Metrics

RULES = ("can-reach-node-ip", "address-overlap")
REVIEWS = st.lists(
    st.tuples(
        st.sampled_from(("CREATE", "UPDATE", "DELETE")),
        st.sampled_from(VERDICTS),
        st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(0, 5, allow_nan=False)),
        st.lists(st.sampled_from(RULES), max_size=2),
        st.lists(st.sampled_from(RULES), max_size=2),
    ),
    max_size=30,
)


def _samples(text: bytes, names: tuple[str, ...]) -> dict[str, float]:
    found = {}
    for line in text.decode().splitlines():
        if line.startswith(names):
            sample, _, value = line.rpartition(" ")
            found[sample] = float(value)
    return found


@given(REVIEWS)
def test_review_metrics_expose_what_prometheus_client_would(
    reviews: list[tuple[str, str, float, list[str], list[str]]],
) -> None:
    ours = Metrics()
    oracle = CollectorRegistry()
    counted = Counter("eip_guard_admission_reviews", "x", ("operation", "verdict"), registry=oracle)
    hits = Counter("eip_guard_rule_violations", "x", ("rule", "action"), registry=oracle)
    latency = Histogram(
        "eip_guard_admission_duration_seconds", "x", buckets=LATENCY_BUCKETS, registry=oracle
    )
    for operation in OPERATIONS:  # every series from 0, as eip-guard makes them
        for verdict in VERDICTS:
            counted.labels(operation, verdict)
    for operation, verdict, seconds, denied, warned in reviews:
        ours.decisions.record(operation, verdict, seconds, denied, warned)
        counted.labels(operation, verdict).inc()
        for rule in denied:
            hits.labels(rule, "deny").inc()
        for rule in warned:
            hits.labels(rule, "warn").inc()
        latency.observe(seconds)
    names = (
        "eip_guard_admission_reviews_total",
        "eip_guard_rule_violations_total",
        "eip_guard_admission_duration_seconds_bucket",
        "eip_guard_admission_duration_seconds_count",
    )
    got = _samples(ours.exposition()[0], names)
    want = _samples(generate_latest(oracle), names)
    assert got == want
    total = "eip_guard_admission_duration_seconds_sum"
    assert abs(_samples(ours.exposition()[0], (total,))[total] - sum(r[2] for r in reviews)) < 1e-9


def test_every_review_series_exists_from_zero() -> None:
    # An alert on increase() misses a series born at 1: a pod's first errored review.
    text = Metrics().exposition()[0].decode()
    for operation in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        for verdict in VERDICTS:
            labels = f'operation="{operation}",verdict="{verdict}"'
            assert f"eip_guard_admission_reviews_total{{{labels}}} 0.0" in text
