"""What the agent says of itself, pure: its state after each look, and from that whether it
is alive (``/healthz``), ready (``/readyz``) and what its metrics read.

The loop publishes a new :class:`Status` after every look (swapped whole, never edited), and
the probe server's threads read whichever is current: no lock, no shared mutable state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# A look takes milliseconds (a view of 50,000 Eips about 2 s): a loop that has finished none
# for this long, or for this many intervals when they are longer, is stuck (a hung netlink
# socket, a deadlock) and a restart is the way out.
STUCK_AFTER_SECONDS = 30.0
STUCK_AFTER_LOOKS = 20


@dataclass(frozen=True, slots=True)
class Status:
    started: float  # monotonic clock, when the agent was made
    interval: float  # seconds between looks
    looks: int = 0  # looks finished, whatever they found
    last_look: float | None = None  # monotonic clock, end of the last finished look
    last_look_unix: float = 0.0  # the same, in Unix time (for the metric)
    viewed: bool = False  # the cluster was read whole at least once
    cluster_error: str | None = None  # why the cluster could not be read at the last look
    cluster_errors: int = 0  # looks that could not read the cluster
    kernel_error: str | None = None  # why the node's links could not be read at the last look
    kernel_errors: int = 0  # looks that could not read them
    member: bool = False  # this node counts itself live (its Lease is current)
    members: int = 0  # live nodes this node sees, itself included
    speaker: bool = False  # answering ARP/NDP (else report-only)
    announced: Mapping[str, int] = field(default_factory=dict)  # NIC: IPs answered (or would be)
    problems: int = 0  # problems and notes the agent logs now (won IPs not announced...)
    bound_locally: int = 0  # can_reach IPs bound on this node: the trap eip-guard exists for
    replies: int = 0  # ARP/NDP replies sent
    drops: Mapping[str, int] = field(default_factory=dict)  # frames not answered, by reason
    view_seconds: float = 0.0  # how long the last view of the cluster took to make


def stuck_after(status: Status) -> float:
    return max(STUCK_AFTER_SECONDS, STUCK_AFTER_LOOKS * status.interval)


def liveness(status: Status, now: float) -> str:
    """Why the agent is not alive ("" when it is): its loop has finished no look lately."""
    since = status.started if status.last_look is None else status.last_look
    limit = stuck_after(status)
    if now - since <= limit:
        return ""
    what = "no look finished" if status.last_look is None else "the last look finished"
    return f"{what} {now - since:.0f} s ago (limit {limit:.0f} s): the agent's loop is stuck"


def readiness(status: Status) -> str:
    """Why the agent is not ready ("" when it is). Ready: it has read the cluster whole, at
    its last look it read the cluster and this node's links, and it counts itself among the
    live nodes (its Lease is current). An agent short of one of these keeps acting on what
    it last knew, but a rollout should not go on to the next node past it."""
    if status.kernel_error is not None:
        return f"cannot read this node's links, addresses and routes: {status.kernel_error}"
    if not status.viewed:
        if status.cluster_error is not None:
            return f"no view of the cluster yet: {status.cluster_error}"
        return "no view of the cluster yet"
    if status.cluster_error is not None:
        return f"acting on its last view: {status.cluster_error}"
    if not status.member:
        return (
            "this node does not count itself live (yet): its Lease is new or was not "
            "renewed in time, the Leases have not been listed yet, or its Node object is "
            "missing"
        )
    return ""
