"""Agent liveness from per-node Leases (coordination.k8s.io/v1), pure.

Each agent renews ``eip-guard-agent-<node>`` in its namespace every ``renew`` seconds
with ``leaseDurationSeconds = duration``. A node is live while ``renewTime + duration``
lies in the future: this trusts node clocks to agree (NTP), as Kubernetes node
heartbeats do; a clock that runs ``s`` seconds ahead sees others expire ``s`` seconds early.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

LEASE_PREFIX = "eip-guard-agent-"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "eip-guard-agent"
SELECTOR = f"{COMPONENT_LABEL}={COMPONENT}"


def lease_name(node: str) -> str:
    return f"{LEASE_PREFIX}{node}"[:253]


def micro_time(when: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def lease_body(node: str, namespace: str, duration: int, now: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(node),
            "namespace": namespace,
            "labels": {COMPONENT_LABEL: COMPONENT},
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration,
            "renewTime": micro_time(now),
        },
    }


def renewal_patch(node: str, duration: int, now: datetime) -> dict[str, Any]:
    # The label too: a Lease whose label was edited away is out of the others' list, and
    # a node that still counts itself would speak for IPs the others gave away.
    return {
        "metadata": {"labels": {COMPONENT_LABEL: COMPONENT}},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration,
            "renewTime": micro_time(now),
        },
    }


def expiry(lease: Mapping[str, Any]) -> tuple[str, datetime] | None:
    """(node, moment the lease runs out), or None for a Lease that is not an agent's."""
    meta = lease.get("metadata") or {}
    spec = lease.get("spec") or {}
    labels = meta.get("labels") or {}
    name = str(meta.get("name") or "")
    if labels.get(COMPONENT_LABEL) != COMPONENT or not name.startswith(LEASE_PREFIX):
        return None
    holder = spec.get("holderIdentity")
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if not isinstance(holder, str) or not holder or renewed is None:
        return None
    if not isinstance(duration, int) or duration <= 0:
        return None
    return holder, renewed + timedelta(seconds=duration)


def live_nodes(leases: Iterable[Mapping[str, Any]], now: datetime) -> frozenset[str]:
    found = (expiry(lease) for lease in leases)
    return frozenset(node for node, until in filter(None, found) if until > now)


def next_expiry(leases: Iterable[Mapping[str, Any]], now: datetime) -> datetime | None:
    """The first moment a live Lease runs out: the agent looks again right then."""
    ends = [until for _, until in filter(None, (expiry(lease) for lease in leases))]
    return min((e for e in ends if e > now), default=None)
