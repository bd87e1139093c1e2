"""Several agents, each seeing the cluster's changes after its own lags, never both answer
for an IP, and end up answering as the election says: whatever changed (a node's Ready
condition, its Node deleted and made again, the exclude label, an endpoint of a Local
Service moving, the Service turning Local or back, or deleted, an IP taken back and handed
out again, a node's Lease lapsing and coming back), and whenever the first read succeeds.

Real ``runner.Agent`` objects on one virtual clock, each reading the history of the Nodes,
of the Services and Eips, and of the Leases with a lag of its own per stream, under the
settle time (3 s). Reviews found two answerers, before ``election.Claims``, for a Service
turning from Local to Cluster and for the exclude label, and then for an IP back soon after
it left, a Lease change while another change settled, and a first read that failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.agent import runner
from app.agent.election import cluster_view, winners
from app.core.labels import EXCLUDE_LABEL

from .lab import NoNics
from .test_election import eip, service, slice_

NODES = ("node-a", "node-b", "node-c")
IPS = tuple(f"10.0.0.{i}" for i in range(1, 7))
SETTLE = 3.0
TENTHS = 10  # ticks per second: the clock counts tenths


@dataclasses.dataclass(frozen=True)
class Nodes:
    """What the Node stream says of each node: (Ready, present, excluded)."""

    states: tuple[tuple[str, bool, bool, bool], ...]

    def objects(self) -> list[dict[str, Any]]:
        found = []
        for name, ready, present, excluded in self.states:
            if present:
                labels = {EXCLUDE_LABEL: ""} if excluded else {}
                condition = {"type": "Ready", "status": "True" if ready else "False"}
                found.append({"kind": "Node", "metadata": {"name": name, "labels": labels},
                              "status": {"conditions": [condition]}})  # fmt: skip
        return found


@dataclasses.dataclass(frozen=True)
class Services:
    """What the Service stream says: the policy ('' for no Service) and the endpoints' nodes."""

    policy: str
    endpoints: frozenset[str]
    used: frozenset[str] = frozenset(IPS)  # the IPs in the Eip's status.used

    def objects(self) -> list[dict[str, Any]]:
        pool = eip("pool", dict.fromkeys(sorted(self.used), "shop/web"))
        if not self.policy:
            return [pool]
        return [pool, service("shop", "web", self.policy),
                slice_("shop", "web", *((n, True) for n in sorted(self.endpoints)))]  # fmt: skip


NODE_EVENTS = ("flip", "delete", "exclude")
SERVICE_EVENTS = ("move", "policy", "gone", "used")
LEASE_EVENTS = ("lease",)  # the node's Lease lapses (its agent fenced), or it joins again


def _histories(
    events: Sequence[tuple[int, str, str]], policy: str
) -> tuple[list[tuple[int, Nodes]], list[tuple[int, Services]], list[tuple[int, frozenset[str]]]]:
    nodes = [(0, Nodes(tuple((n, True, True, False) for n in NODES)))]
    services = [(0, Services(policy, frozenset({"node-b"})))]
    members = [(0, frozenset(NODES))]
    for at, node, what in sorted(events):
        if what in LEASE_EVENTS:
            members.append((at, members[-1][1] ^ {node}))
        elif what in NODE_EVENTS:
            flip = (what == "flip", what == "delete", what == "exclude")
            states = [
                (name, ready ^ flip[0], present ^ flip[1], excluded ^ flip[2])
                if name == node
                else (name, ready, present, excluded)
                for name, ready, present, excluded in nodes[-1][1].states
            ]
            nodes.append((at, Nodes(tuple(states))))
        else:
            last = services[-1][1]
            if what == "move":
                last = dataclasses.replace(last, endpoints=last.endpoints ^ {node})
            elif what == "policy":
                flipped = {"Local": "Cluster", "Cluster": "Local", "": "Local"}[last.policy]
                last = dataclasses.replace(last, policy=flipped)
            elif what == "used":  # OpenELB takes an IP back, or hands it out again
                ip = IPS[NODES.index(node)]
                last = dataclasses.replace(last, used=last.used ^ {ip})
            else:
                last = dataclasses.replace(last, policy="")
            services.append((at, last))
    return nodes, services, members


def _at(history: Sequence[tuple[int, Any]], tick: int) -> Any:
    found = history[0][1]
    for when, state in history:
        if when <= tick:
            found = state
    return found


EVENTS = st.lists(
    st.tuples(st.integers(1, 150), st.sampled_from(NODES),
              st.sampled_from(NODE_EVENTS + SERVICE_EVENTS + LEASE_EVENTS)),
    min_size=1, max_size=8,
)  # fmt: skip
LAG = st.integers(0, int(SETTLE * TENTHS) - 5)  # in ticks, under the settle time


@settings(max_examples=250, deadline=None)
@given(
    events=EVENTS,
    lags=st.lists(LAG, min_size=3 * len(NODES), max_size=3 * len(NODES)),
    policy=st.sampled_from(["Local", "Cluster", ""]),
    first_read=st.lists(st.integers(0, 20), min_size=len(NODES), max_size=len(NODES)),
)
def test_agents_never_both_answer_and_end_as_the_election_says(
    events: list[tuple[int, str, str]], lags: list[int], policy: str, first_read: list[int]
) -> None:
    nodes, services, leases = _histories(events, policy)
    made: dict[tuple[int, int], list[Mapping[str, Any]]] = {}

    def objects(node_tick: int, service_tick: int) -> list[Mapping[str, Any]]:
        at = (node_tick, service_tick)
        key = (id(_at(nodes, node_tick)), id(_at(services, service_tick)))
        if key not in made:  # the same list while nothing changed, as live mode hands out
            made[key] = [*_at(nodes, at[0]).objects(), *_at(services, at[1]).objects()]
        return made[key]

    now = [0]
    warm_up = int(SETTLE * TENTHS) - 1  # longer than any lag: the others saw it join first

    class Lagging:
        """One agent's reads: each stream ``lags`` behind; the cluster cannot be read before
        ``ready`` (the watches' first lists); its own Lease as live mode counts it: gone at
        once when it lapses (fenced), back only after the warm-up."""

        def __init__(self, name: str, lags: tuple[int, int, int], ready: int) -> None:
            self.name, self.lags, self.ready = name, lags, ready

        def objects(self) -> Sequence[Mapping[str, Any]]:
            if now[0] < self.ready:
                raise runner.SourceError("not listed yet")
            return objects(now[0] - self.lags[0], now[0] - self.lags[1])

        def members(self) -> frozenset[str]:
            seen: frozenset[str] = _at(leases, now[0] - self.lags[2]) - {self.name}
            live = self.name in _at(leases, now[0]) and all(
                self.name in _at(leases, t) for t in range(now[0] - warm_up, now[0] + 1)
            )
            return seen | {self.name} if live else seen

    agents = {
        name: runner.Agent(
            runner.Settings(name, settle=SETTLE),
            Lagging(name, (lags[3 * i], lags[3 * i + 1], lags[3 * i + 2]), first_read[i]),
            NoNics(),
            lambda _: None,
            clock=lambda: now[0] / TENTHS,
        )
        for i, name in enumerate(NODES)
    }
    end = max(at for at, _, _ in events) + 2 * int(SETTLE * TENTHS) + 10
    claims: dict[str, list[str]] = {}
    for tick in range(end + 1):
        now[0] = tick
        claims = {}
        for name, agent in agents.items():
            current = agent.tick()
            assert current is not None
            for problem in current.problems:  # no NIC here: a won IP is a problem of the plan
                for ip in IPS:
                    if f"won {ip} " in problem:
                        claims.setdefault(ip, []).append(name)
        for ip, who in claims.items():
            assert len(who) == 1, (tick, ip, who)
    # Settled: each IP with the node the election chooses on the final state, and no other.
    final = cluster_view(objects(end, end))
    # Members without a Node are left out, unless no Node is left: a view without Nodes is
    # no news of them (a snapshot made without 'kubectl get nodes').
    present = {n for n, _, present, _ in _at(nodes, end).states if present} or set(NODES)
    members = present & _at(leases, end)
    expected = {ip: [n] for ip, n in winners(final, members).items() if n is not None}
    assert claims == expected
