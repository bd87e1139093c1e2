"""Who records the Warning Event of a can_reach IP bound on the node (``records_event``)."""

from __future__ import annotations

import ipaddress

from app.agent.plan import LocalBinding
from app.agent.runner import EVENT_REPORTERS, records_event

MEMBERS = frozenset(f"node{i}" for i in range(1000))
SERVICE_IP = LocalBinding("pool", ipaddress.ip_address("10.96.0.10"), ("kube-ipvs0",))


def test_a_service_ip_bound_on_every_node_is_recorded_by_a_few_members() -> None:
    # kube-proxy in IPVS mode binds every Service IP on every node: each of a thousand
    # agents recorded its own Event of one Eip.
    recorders = [n for n in MEMBERS if records_event(n, SERVICE_IP, MEMBERS)]
    assert len(recorders) == EVENT_REPORTERS
    other = LocalBinding("pool", ipaddress.ip_address("10.96.0.11"), ("kube-ipvs0",))
    assert {n for n in MEMBERS if records_event(n, other, MEMBERS)} != set(recorders)
    # kube-router's dummy device binds them on every node too.
    router = LocalBinding("pool", SERVICE_IP.ip, ("kube-dummy-if",))
    assert sum(records_event(n, router, MEMBERS) for n in MEMBERS) == EVENT_REPORTERS


def test_a_binding_of_the_node_itself_is_always_recorded() -> None:
    # A node address, a kube-vip VIP on a NIC or lo: bound on this node alone, maybe.
    for devices in (("ens3",), ("lo",), ("kube-ipvs0", "ens3")):
        binding = LocalBinding("pool", SERVICE_IP.ip, devices)
        assert all(records_event(n, binding, MEMBERS) for n in MEMBERS), devices


def test_a_node_not_yet_a_member_counts_itself_and_no_members_means_record() -> None:
    recorders = [n for n in MEMBERS if records_event(n, SERVICE_IP, MEMBERS)]
    first = recorders[0]
    assert records_event(first, SERVICE_IP, MEMBERS - {first})  # warming up: still it
    assert records_event("node7", SERVICE_IP, frozenset())  # members unknown (static mode)
