"""Small statistics for timings: percentiles by the nearest-rank method, no numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """Median and p99 in microseconds, with the sample count."""
    return {
        "n": len(samples_ns),
        "median_us": round(percentile(samples_ns, 50) / 1000, 2),
        "p99_us": round(percentile(samples_ns, 99) / 1000, 2),
    }


THROUGHPUT_TARGET = 0.75  # the issue's: the webhook serves at least this share of the floor


def decision_budget_us(floor_cpu: float | None, no_decision_cpu: float | None) -> float | None:
    """CPU per review the decision may cost, served, for the webhook to still serve
    ``THROUGHPUT_TARGET`` of the floor's requests on one core: the floor's CPU per request
    over the target, minus what the webhook costs with a fixed answer in place of deciding.
    Negative when the webhook misses the target even without deciding."""
    if floor_cpu is None or no_decision_cpu is None:
        return None
    return round(floor_cpu / THROUGHPUT_TARGET - no_decision_cpu, 1)


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else math.inf
