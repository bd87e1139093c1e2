"""The rules of ``spec.interface``: a ``can_reach`` IP that something binds on a node (the
lo trap), its syntax and subnet, and NIC names no speaker can use."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from app.core.addresses import V6_OFFSET, Span, quoted, special_kind_of_key, special_route
from app.core.eips import Eip
from app.core.extraction import KUBE_VIP_LB_IGNORED_FIELD, LOAD_BALANCER_IP_FIELD, OPENELB_IP_FIELD
from app.core.facts import Fact, FactKind
from app.core.interfaces import BadInterface, CanReach, NicName
from app.core.inventory import Inventory
from app.core.rules.review import (
    INTERFACE,
    LO_TRAP_SENTENCE,
    Review,
    describe,
    owner_ref,
    some_of,
)
from app.core.rules.suggestion import (
    CLAIM_KINDS,
    RULE_OF_KIND,
    advise,
    anycast_of,
    pools_containing,
    suggest,
)
from app.core.verdict import Violation

# What the conflict does to OpenELB's speaker, by rule: every claim but a pod CIDR is bound.
_CONSEQUENCE = {
    "can-reach-pod-cidr": "'ip route get' then answers a pod-network device (a CNI bridge or "
    "tunnel), so OpenELB's speaker answers on the wrong NIC, or on none.",
}
UNDER_REVIEW = ", the Eip under review"
DISABLED = ", disabled now (enabled again, it hands out its IPs)"

_WHY_BOUND = {
    FactKind.NODE_IP: "the node binds it",
    FactKind.KUBE_VIP_VIP: "kube-vip binds it on the node holding the VIP",
    FactKind.KUBE_VIP_POOL: "kube-vip binds it once it hands it to a Service",
    FactKind.SERVICE_IP: "kube-proxy in IPVS mode binds it on kube-ipvs0 on every node",
    FactKind.SERVICE_CIDR: "a Service given it is bound on kube-ipvs0 on every node under IPVS",
    FactKind.POD_CIDR: "it routes into the pod network, not to the NIC the speaker must use",
}
# Service IPs only asked for, which anyone who may write a Service in their namespace can
# name: nothing binds them until a load balancer gives them (kube-vip takes loadBalancerIP
# as asked), so the denial must not say kube-proxy binds them now.
_ASKED_FIELDS = frozenset((LOAD_BALANCER_IP_FIELD, OPENELB_IP_FIELD, KUBE_VIP_LB_IGNORED_FIELD))
_WHY_ASKED = (
    "that Service only asks for it, but once a load balancer gives it (kube-vip takes "
    "spec.loadBalancerIP as asked), kube-proxy in IPVS mode binds it on kube-ipvs0 on every node"
)


def _asked(fact: Fact) -> bool:
    return fact.kind is FactKind.SERVICE_IP and fact.source.field in _ASKED_FIELDS


def can_reach_rules(r: Review) -> Iterator[Violation]:
    eip = r.candidate
    advisory = not eip.speaks_layer2
    spec = eip.interface
    if isinstance(spec, BadInterface):
        yield Violation(
            "can-reach-syntax",
            INTERFACE,
            eip.interface_text,
            f"{spec.reason}. OpenELB's speaker rejects this value and announces nothing. "
            "Write 'can_reach:<IP>' with one plain IP, or a NIC name.",
            spec.reason,
            advisory,
        )
        return
    if isinstance(spec, NicName):
        yield from _nic_name(r, spec, advisory)
        return
    if not isinstance(spec, CanReach):
        return
    key, ip = spec.key, spec.text
    kind = special_kind_of_key(key)
    if kind is not None:
        yield Violation(
            "can-reach-special",
            INTERFACE,
            eip.interface_text,
            f"{ip} is {kind}: {special_route(kind)}, so OpenELB's speaker cannot find the "
            f"Eip's NIC by it. {advise(eip, (), r.inventory)}",
            f"{ip} is {kind}: no route to the Eip's NIC",
            advisory,
        )
        return
    inventory = r.inventory
    subnets = inventory.containing(FactKind.NODE_SUBNET, key)
    advice = ""  # made once, when a message needs it: the denials and the warning share it
    pools = pools_containing(key, eip, inventory)
    facts = inventory.matching_any(CLAIM_KINDS, key)
    anycast = anycast_of(key, subnets)
    if pools or facts or anycast:
        found: dict[str, list[str]] = {}
        if pools:
            found["can-reach-in-eip"] = [
                f"{ip} lies in Eip {p.name} ({p.address_text}){UNDER_REVIEW if p is eip else ''}"
                f"{DISABLED if p.disabled else ''}; once OpenELB assigns it to a Service, "
                "kube-proxy binds it on kube-ipvs0"
                for p in pools
            ]
        if anycast:
            found["can-reach-node-ip"] = [
                f"{ip} is the subnet-router anycast address of node subnet {s.span} of "
                f"{s.source.object_ref} ({s.source.field}); a node with an address in it "
                "binds it when it forwards IPv6, as Kubernetes nodes do"
                for s in anycast
            ]
        named: set[tuple[FactKind, str]] = set()
        # A Service's IP given (an ingress IP) is named before the same IP it asked for.
        for fact in sorted(facts, key=_asked):
            # One object read twice (its status and an annotation), or one node read from
            # its Node and its CiliumNode (Cilium writes the cilium_host IP into both).
            seen = (fact.kind, owner_ref(fact.source))
            if seen in named:
                continue
            named.add(seen)
            why = _WHY_ASKED if _asked(fact) else _WHY_BOUND[fact.kind]
            reason = f"{describe(fact, ip)}; {why}"
            found.setdefault(RULE_OF_KIND[fact.kind], []).append(reason)
        advice = advise(eip, subnets, inventory)
        for rule, reasons in found.items():
            yield Violation(
                rule,
                INTERFACE,
                eip.interface_text,
                f"{some_of(reasons)}. {_CONSEQUENCE.get(rule, LO_TRAP_SENTENCE)} {advice}",
                reasons[0].partition(";")[0],
                advisory,
            )
    if advisory:
        return
    if subnets:
        yield from _pool_off_subnet(eip, spec, subnets, inventory)
        return
    # can-reach-unknown-subnet warns only: node subnets come from reports and annotations,
    # which may be incomplete. Only subnets of the IP's own family count: IPv4 reports say
    # nothing of IPv6. Precomputed per inventory: listing 20,000 per request took 45 ms.
    known = inventory.node_subnet_names.get(4 if key < V6_OFFSET else 6, ())
    if known:
        yield Violation(
            "can-reach-unknown-subnet",
            INTERFACE,
            eip.interface_text,
            f"{ip} lies in no known node subnet ({some_of(known)}), so the speaker follows "
            "a gateway route and may pick a NIC off the Eip's network. "
            f"{advice or advise(eip, subnets, inventory)}",
            f"{ip} lies in no known node subnet",
        )


def _nic_name(r: Review, spec: NicName, advisory: bool) -> Iterator[Violation]:
    """A NIC name that no NIC can have (the agent's ``resolve`` refuses it too), or that of
    a device where no client of the Eip's network asks: the loopback device, and virtual
    devices of kube-proxy, the CNI or containers (the agent never answers on them)."""
    if spec.problem is None and spec.never_answers is None:
        return
    eip = r.candidate
    if spec.problem is not None:
        detail = (
            f"{spec.problem}. OpenELB's speaker finds no NIC of that name on any node and "
            "announces nothing for this Eip."
        )
        short = spec.problem
    else:
        detail = (
            f"{quoted(spec.name)} {spec.never_answers}: OpenELB's speaker would answer ARP/NDP "
            "there, where no client of the Eip's network asks, and eip-guard's agent never "
            "answers on it."
        )
        short = f"{quoted(spec.name)} {spec.never_answers}"
    yield Violation(
        "interface-name",
        INTERFACE,
        eip.interface_text,
        f"{detail} Name the node's NIC on the Eip's network (e.g. eth0), or write "
        f"can_reach:<IP>. {advise(eip, (), r.inventory)}",
        short,
        advisory,
    )


def _pool_off_subnet(
    eip: Eip, spec: CanReach, subnets: Sequence[Fact], inventory: Inventory
) -> Iterator[Violation]:
    """can-reach-pool-subnet (warns only): OpenELB's speaker (v0.6 and later) announces an
    Eip only on a NIC with a subnet holding its whole range; the NIC is the one of the
    ``can_reach`` IP's subnet. Only a subnet holding both the IP and the pool clears it."""
    pool = eip.address
    if pool is None or (pool.first < V6_OFFSET) != (spec.key < V6_OFFSET):
        return  # another family: the NIC's subnet of that family is not known by the IP
    hull = Span(min(spec.key, pool.first), max(spec.key, pool.last))
    if inventory.covering(FactKind.NODE_SUBNET, hull):
        return
    subnet = subnets[0]  # a rack's nodes report one subnet: the first names it
    around = inventory.covering(FactKind.NODE_SUBNET, pool)
    free = suggest(eip, around, inventory) if around else None
    elsewhere = (
        f"a can_reach IP in the pool's node subnet {around[0].span}, e.g. can_reach:{free}"
        if free is not None
        else "a can_reach IP in the pool's own node subnet"
    )
    yield Violation(
        "can-reach-pool-subnet",
        INTERFACE,
        eip.interface_text,
        f"{spec.text} lies in node subnet {subnet.span} of {subnet.source.object_ref} "
        f"({subnet.source.field}), which does not hold the whole pool {eip.address_text}: "
        "OpenELB's speaker (v0.6 and later) announces an Eip only on a NIC with a subnet "
        "holding its whole range, so unless that NIC has another address in a subnet around "
        f"the pool it announces nothing. Keep the pool inside {subnet.span}, or use "
        f"{elsewhere}.",
        f"the pool is not inside {spec.text}'s node subnet {subnet.span}",
    )
