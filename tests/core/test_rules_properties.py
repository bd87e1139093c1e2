"""Properties of the rules over generated inventories.

- The free ``can_reach`` IP a message suggests ("e.g. can_reach:X") must itself pass: no
  rule denies it for that Eip in that inventory, and it lies in the network the Eip needs
  (the pool's known node subnet, else the replaced IP's, else a subnet of the pool's family).
- An UPDATE that leaves the spec as it was (a label, an annotation eip-guard does not read)
  is allowed whatever the cluster did since: an admin is never locked out of an Eip.

``EIP_GUARD_SUGGESTION_EXAMPLES`` sets how many inventories each property test generates.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.addresses import V6_OFFSET, Span, parse_eip_address, parse_key
from app.core.eips import Eip
from app.core.facts import FactKind
from app.core.inventory import Inventory, build
from app.core.rules import check
from app.core.verdict import Verdict
from tests.core.objects import configmap, eip, node, service

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_SUGGESTED = re.compile(r"e\.g\. can_reach:([0-9a-f:.]+?)\.(?: |$)")
# Small node subnets, so that generated claims crowd them; and a /64, searched from its start.
SUBNETS: tuple[Net, ...] = tuple(
    ipaddress.ip_network(s) for s in ("10.9.0.0/28", "10.9.1.0/29", "fd00:9::/124", "fd00:9:1::/64")
)
OFF_SUBNETS: tuple[Net, ...] = tuple(
    ipaddress.ip_network(s) for s in ("10.50.0.0/28", "fd00:50::/124")
)
SPECIAL = ("127.0.0.1", "0.0.0.0", "224.0.0.1", "169.254.20.10", "::1", "::", "fe80::1", "ff02::1")


def report(*addresses: str, gateways: tuple[str, ...] = ()) -> dict[str, str]:
    body = {"interfaces": [{"name": "eth0", "addresses": list(addresses)}], "gateways": gateways}
    return {"eip-guard.io/network": json.dumps(body)}


def suggested(verdict: Verdict) -> str | None:
    found = _SUGGESTED.search(" ".join(v.message for v in verdict.denied_by + verdict.warned_by))
    return found[1] if found else None


def with_interface(obj: dict[str, Any], interface: str) -> dict[str, Any]:
    return dict(obj, spec=dict(obj["spec"], interface=interface))


@st.composite
def _host(draw: st.DrawFn, net: Net) -> str:
    size = net.num_addresses
    offset = draw(st.integers(0, min(size - 1, 40)) | st.sampled_from([0, 1, 2, size - 1]))
    return str(net.network_address + offset)


@st.composite
def _range(draw: st.DrawFn, net: Net) -> str:
    a, b = sorted((ipaddress.ip_address(draw(_host(net))), ipaddress.ip_address(draw(_host(net)))))
    if int(b) - int(a) >= 1 << 63:  # OpenELB refuses it (GetSize's Int64 is negative)
        b = a + (1 << 62)
    return f"{a}-{b}"


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An inventory crowding known node subnets (reports with gateways, node, Service and
    kube-vip IPs, pod CIDRs, other Eips, some disabled) and a layer2 Eip to judge."""
    nets = st.sampled_from(SUBNETS)
    objects: list[dict[str, Any]] = [
        node("base", "10.200.0.1"),
        service("kubernetes", cluster_ip="10.96.0.1"),
    ]
    for i, net in enumerate(SUBNETS):
        if draw(st.booleans()):
            gateways = tuple(draw(st.lists(_host(net), max_size=2)))
            own = f"{draw(_host(net))}/{net.prefixlen}"
            objects.append(node(f"r{i}", annotations=report(own, gateways=gateways)))
    for i in range(draw(st.integers(0, 6))):
        objects.append(node(f"n{i}", draw(nets.flatmap(_host))))
    for i in range(draw(st.integers(0, 6))):
        objects.append(service(f"s{i}", external_ips=(draw(nets.flatmap(_host)),)))
    for i in range(draw(st.integers(0, 4))):
        interface = draw(st.sampled_from(["eth0", "can_reach"]))
        if interface == "can_reach":
            interface = f"can_reach:{draw(nets.flatmap(_host))}"
        protocol = draw(st.sampled_from(["layer2", "vip", "bgp"]))
        pool = eip(f"p{i}", draw(nets.flatmap(_range)), protocol=protocol, interface=interface)
        pool["spec"]["disable"] = draw(st.booleans())
        objects.append(pool)
    if draw(st.booleans()):
        objects.append(configmap("kubevip", {"range-global": draw(nets.flatmap(_range))}))
    if draw(st.booleans()):
        net = draw(nets)
        cidr = ipaddress.ip_network(f"{draw(_host(net))}/{net.prefixlen + 2}", strict=False)
        objects.append(node("pods", "10.201.0.1", pod_cidrs=(str(cidr),)))
    pool_net = draw(st.sampled_from(SUBNETS + OFF_SUBNETS))
    replaced = draw(st.sampled_from(SPECIAL) | nets.flatmap(_host))
    candidate = eip(
        "candidate",
        draw(_range(pool_net)),
        protocol=draw(st.sampled_from(["layer2", "vip"])),
        interface=f"can_reach:{replaced}",
    )
    return objects, candidate


def _node_subnets(inventory: Inventory) -> list[Span]:
    index = inventory.spans.get(FactKind.NODE_SUBNET)
    return [fact.span for fact in index.all()] if index is not None else []


def _assert_a_working_suggestion(objects: list[dict[str, Any]], candidate: dict[str, Any]) -> None:
    inventory = build(objects)
    free = suggested(check(Eip.from_object(candidate), None, inventory))
    if free is None:
        return
    again = check(Eip.from_object(with_interface(candidate, f"can_reach:{free}")), None, inventory)
    assert not [v.message for v in again.denied_by if v.field == "spec.interface"], free
    known = _node_subnets(inventory)
    pool = parse_eip_address(candidate["spec"]["address"])
    key = parse_key(free)
    around = [s for s in known if s.first <= pool.first and pool.last <= s.last]
    replaced = parse_key(candidate["spec"]["interface"].partition(":")[2])
    its_own = [s for s in known if s.contains(replaced)]
    if around:  # the NIC OpenELB's speaker (v0.6 and later) needs: a subnet holding the pool
        assert any(s.contains(key) for s in around), free
    elif its_own:  # the network the admin chose
        assert any(s.contains(key) for s in its_own), free
    else:  # a subnet of the pool's family: the other family's NIC may not carry the pool
        assert (key >= V6_OFFSET) == (pool.first >= V6_OFFSET), free
        assert any(s.contains(key) for s in known), free
    warned = {v.rule for v in again.warned_by}
    assert "can-reach-unknown-subnet" not in warned
    assert not around or "can-reach-pool-subnet" not in warned


EXAMPLES = settings(
    max_examples=int(os.environ.get("EIP_GUARD_SUGGESTION_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@EXAMPLES
@given(_case())
@example(  # found by this test: a gateway the report names is its subnet's anycast address
    (
        [
            node("base", "10.200.0.1"),
            service("kubernetes", cluster_ip="10.96.0.1"),
            node("r", annotations=report("fd00:9::1/124", gateways=("fd00:9::",))),
        ],
        eip("candidate", "fd00:50::5", interface="can_reach:::1"),
    )
)
@example(  # found by this test: an IPv6 suggestion for an IPv4 pool (no IPv4 subnet known)
    (
        [
            node("base", "10.200.0.1"),
            service("kubernetes", cluster_ip="10.96.0.1"),
            node("r", annotations=report("fd00:9::1/124", gateways=("fd00:9::2",))),
        ],
        eip("candidate", "10.50.0.5", interface="can_reach:127.0.0.1"),
    )
)
def test_a_suggested_can_reach_ip_passes_and_lies_in_the_eips_network(
    case: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    _assert_a_working_suggestion(*case)


def test_the_anycast_address_of_a_nested_ipv6_subnet_is_never_suggested() -> None:
    # The /64's first free address past a pool is the first of a node's /120: its
    # subnet-router anycast address, which that node binds (can-reach-node-ip denies it).
    inventory = build([
        node("wide", annotations=report("fd00:1::1:1/64")),
        node("narrow", annotations=report("fd00:1::105/120")),
        eip("low", "fd00:1::1-fd00:1::ff", protocol="bgp"),
        service("kubernetes", cluster_ip="10.96.0.1"),
    ])  # fmt: skip
    candidate = eip("c", "fd00:1::200-fd00:1::20f", interface="can_reach:fd00:1::1:1")
    verdict = check(Eip.from_object(candidate), None, inventory)
    assert "can-reach-node-ip" in {v.rule for v in verdict.denied_by}
    assert suggested(verdict) == "fd00:1::101"
    fixed = with_interface(candidate, "can_reach:fd00:1::101")
    assert check(Eip.from_object(fixed), None, inventory).allowed


def test_no_suggestion_of_the_other_family_when_the_pool_has_no_known_subnet() -> None:
    # Only an IPv4 node subnet is known: an IPv4 can_reach IP picks the IPv4 network's NIC,
    # which need not carry the IPv6 pool's subnet. The advice stays general.
    inventory = build([
        node("n", annotations=report("172.16.236.153/24", gateways=("172.16.236.254",))),
        service("kubernetes", cluster_ip="10.96.0.1"),
    ])  # fmt: skip
    candidate = eip("c", "2001:db8:77::10", interface="can_reach:::1")
    verdict = check(Eip.from_object(candidate), None, inventory)
    assert suggested(verdict) is None
    assert "the node network's gateway is a good choice" in verdict.message


@EXAMPLES
@given(_case(), st.sampled_from(["layer2", "vip", "bgp"]), st.booleans())
def test_an_update_that_changes_nothing_the_rules_read_is_allowed(
    case: tuple[list[dict[str, Any]], dict[str, Any]], protocol: str, disable: bool
) -> None:
    objects, candidate = case
    stored = dict(candidate, spec=dict(candidate["spec"], protocol=protocol, disable=disable))
    inventory = build([*objects, stored])  # it came in before the cluster changed
    labelled = dict(stored, metadata=dict(stored["metadata"], labels={"team": "net"}))
    verdict = check(Eip.from_object(labelled), Eip.from_object(stored), inventory)
    assert verdict.allowed, verdict.message
