"""Agent liveness from per-node Leases (coordination.k8s.io/v1), pure.

Each agent renews ``eip-guard-agent-<node>`` in its namespace every ``renew`` seconds
with ``leaseDurationSeconds = duration``. Another agent is live while fewer than
``duration`` seconds have passed, on this node's monotonic clock, since this node saw its
``renewTime`` change (client-go's leader election judges by this observed time too). So
node clocks need not agree: comparing another node's ``renewTime`` with our own clock,
one NTP step of 30 s on one node made it count every other node dead and announce every
IP. Only the first list an agent makes is judged by the clocks (a Lease already run out
by them is not live), so a long-dead node does not count for a Lease duration after a
start.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LEASE_PREFIX = "eip-guard-agent-"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "eip-guard-agent"
SELECTOR = f"{COMPONENT_LABEL}={COMPONENT}"


NAME_MAX = 253  # a Lease's name is a DNS subdomain, as a Node's
HASH_LENGTH = 10  # hex digits of the node name's SHA-256 that end a shortened name


def lease_name(node: str) -> str:
    """``eip-guard-agent-<node>``; for a node name longer than 237 characters (node names
    go up to 253), its first characters, "-" and 10 hex digits of its SHA-256: still a DNS
    subdomain of at most 253, and one per node. Cut at 253, two long names alike up to
    there shared one Lease, and a cut ending in "." or "-" was refused by the API server.
    The others read the node from the Lease's holderIdentity, never from its name."""
    name = f"{LEASE_PREFIX}{node}"
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(node.encode()).hexdigest()[:HASH_LENGTH]
    # Each part of a DNS subdomain ends in a letter or digit: none of "." or "-" before ours.
    kept = name[: NAME_MAX - HASH_LENGTH - 1].rstrip(".-")
    return f"{kept}-{digest}"


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


def renewal_patch(
    node: str, duration: int, now: datetime, version: str | None = None
) -> dict[str, Any]:
    """``version``: the resourceVersion we last wrote, which the API server then requires
    (409 Conflict if the Lease was written since)."""
    # The label too: a Lease whose label was edited away is out of the others' list, and
    # a node that still counts itself would speak for IPs the others gave away.
    meta: dict[str, Any] = {"labels": {COMPONENT_LABEL: COMPONENT}}
    if version:
        meta["resourceVersion"] = version
    return {
        "metadata": meta,
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration,
            "renewTime": micro_time(now),
        },
    }


@dataclass(frozen=True, slots=True)
class Held:
    """Our Lease as this agent last wrote it. A renewal is conditional on its
    ``resourceVersion`` and a release deletes it only while it is still so (the API
    server's preconditions): a new pod of this node (``kubectl delete --force``, the old
    one still stopping) renews the same Lease, and must not have it deleted under it."""

    uid: str
    version: str  # metadata.resourceVersion
    renew_time: str  # spec.renewTime as we wrote it


def held(lease: Mapping[str, Any]) -> Held:
    meta, spec = lease.get("metadata") or {}, lease.get("spec") or {}
    return Held(
        str(meta.get("uid") or ""),
        str(meta.get("resourceVersion") or ""),
        str(spec.get("renewTime") or ""),
    )


@dataclass(frozen=True, slots=True)
class Seen:
    """An agent's last renewal as this node saw it."""

    renew_time: str  # spec.renewTime as written: another text is another renewal
    at: float  # this node's monotonic clock when it first saw that renewal
    duration: int  # spec.leaseDurationSeconds


def _agent_lease(lease: Mapping[str, Any]) -> tuple[str, str, datetime, int] | None:
    """(holder, renewTime text, renewTime, duration), or None for a Lease that is not an
    agent's or cannot be read."""
    meta = lease.get("metadata") or {}
    spec = lease.get("spec") or {}
    labels = meta.get("labels") or {}
    name = str(meta.get("name") or "")
    if labels.get(COMPONENT_LABEL) != COMPONENT or not name.startswith(LEASE_PREFIX):
        return None
    holder, text = spec.get("holderIdentity"), spec.get("renewTime")
    renewed = parse_time(text)
    duration = spec.get("leaseDurationSeconds")
    if not isinstance(holder, str) or not holder or renewed is None:
        return None
    if name != lease_name(holder):  # one Lease per node, named for it: no Lease speaks for another
        return None
    if not isinstance(duration, int) or duration <= 0:
        return None
    return holder, str(text), renewed, duration


def observe(
    before: Mapping[str, Seen] | None,
    leases: Iterable[Mapping[str, Any]],
    at: float,
    now: datetime,
    longest: int | None = None,
) -> dict[str, Seen]:
    """Each agent's last renewal as seen in a list answered at ``at`` (monotonic), ``now``
    by the wall clock; ``before`` is what the previous list left (None: this is the first).

    Only the first list judges by the clocks, so that Leases long run out (nodes that died
    without giving theirs up) do not count at a start. A Lease that appears later was just
    written (a node joining, or restarting after it gave its Lease up), whatever its
    holder's clock says: judged by the clocks, a node 30 s behind counted as dead until its
    next renewal, after its own warm-up, and two nodes answered meanwhile.

    ``longest`` caps each Lease's duration (the agents of a release share theirs): a Lease
    written once with a duration of years would otherwise count as a live member, winning
    IPs nobody answers for, long after its writer stopped.
    """
    seen: dict[str, Seen] = {}
    for lease in leases:
        found = _agent_lease(lease)
        if found is None:
            continue
        holder, text, renewed, duration = found
        if longest is not None:
            duration = min(duration, longest)
        old = before.get(holder) if before is not None else None
        if old is not None and old.renew_time == text:
            seen[holder] = Seen(text, old.at, duration)  # no renewal since
        elif before is None and (now - renewed).total_seconds() >= duration:
            # Run out at our start. A difference, not renewTime + duration: a renewTime of
            # 9999-12-31 (valid MicroTime) overflowed that, and the error ended the listing.
            seen[holder] = Seen(text, -math.inf, duration)
        else:
            seen[holder] = Seen(text, at, duration)
    return seen


def live_seen(seen: Mapping[str, Seen], at: float) -> frozenset[str]:
    """The agents live at ``at`` (monotonic)."""
    return frozenset(holder for holder, s in seen.items() if at < s.at + s.duration)


def next_seen_expiry(seen: Mapping[str, Seen], at: float) -> float | None:
    """The first moment after ``at`` (monotonic) a live agent's Lease runs out: the agent
    lists the Leases again right then."""
    return min((s.at + s.duration for s in seen.values() if s.at + s.duration > at), default=None)
