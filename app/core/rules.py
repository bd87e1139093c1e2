"""Every rule of eip-guard, in one place, as pure functions of (Eip, old Eip, inventory).

``check`` is the one judgement used by the webhook, ``eip-guard check``, ``audit`` and live
mode's background audit: on UPDATE the candidate replaces its namesake, so the old version of
the Eip under review never conflicts with the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple, cast

from app.core.addresses import (
    V6_OFFSET,
    Span,
    key_or_none,
    key_text,
    openelb_size,
    quoted,
    shown,
    special_kind_of_key,
    special_route,
)
from app.core.eips import ALLOW_RULES_ANNOTATION, DEFAULT_EIP_ANNOTATION, Eip
from app.core.extraction import (
    CLUSTER_IPS_FIELD,
    EXTERNAL_IPS_FIELD,
    INGRESS_IP_FIELD,
    KUBE_VIP_LB_FIELD,
    OPENELB_INGRESS_FIELD,
)
from app.core.facts import Fact, FactKind, Source
from app.core.interfaces import BadInterface, CanReach, NicName, NoInterface
from app.core.inventory import Inventory, first_lines
from app.core.verdict import WARNING_LIMIT, Action, Operation, Policy, Verdict, Violation


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    denies_when: str  # one line, for the README and `eip-guard rules`
    warns_only: bool = False  # its violations are advisory whatever the policy says
    # Whether eip-guard.io/allow-rules can turn its denials into warnings. Not for what
    # OpenELB's own webhook refuses whatever the annotation: an Eip's writer must not
    # approve those (the admin's policy still sets them to warn or off).
    overridable: bool = True


RULES: tuple[Rule, ...] = (
    Rule("can-reach-syntax", "the interface has an `x:y` form that is not `can_reach:<one IP>`"),
    Rule(
        "can-reach-special", "the IP is loopback, unspecified, multicast, link-local or broadcast"
    ),
    Rule("can-reach-node-ip", "the IP is an address of a Node"),
    Rule("can-reach-in-eip", "the IP lies in an Eip pool (any protocol, this Eip included)"),
    Rule(
        "can-reach-kube-vip", "the IP is a kube-vip VIP or lies in a kube-vip-cloud-provider pool"
    ),
    Rule("can-reach-service-ip", "the IP is a Service IP or lies in a ServiceCIDR"),
    Rule("can-reach-pod-cidr", "the IP lies in a Node's pod CIDR"),
    Rule("eip-covers-can-reach", "the pool contains the `can_reach` IP of another Eip"),
    Rule(
        "can-reach-unknown-subnet",
        "never denies, warns: the IP lies in no known node subnet of its family (if one is known)",
        warns_only=True,
    ),
    Rule(
        "can-reach-pool-subnet",
        "never denies, warns: the IP's known node subnet does not hold the whole pool",
        warns_only=True,
    ),
    Rule(
        "interface-name",
        "`spec.interface` is a NIC name no NIC can have, or lo or a virtual device's",
    ),
    Rule(
        "spec-schema",
        "a spec field has a type or value the Eip CRD's schema rejects",
        overridable=False,
    ),
    Rule(
        "address-syntax",
        "`spec.address` is not a single IP, a CIDR or an `a-b` range",
        # overridable only where OpenELB reads the address (checked in ``check``)
    ),
    Rule("address-size", "OpenELB's 64-bit count of the pool's size overflows"),
    Rule("address-overlap", "the pool overlaps another Eip's pool", overridable=False),
    Rule(
        "address-node-ip",
        "the pool contains a node's address, a gateway nodes report, or a node subnet's "
        "broadcast address",
    ),
    Rule(
        "address-kube-vip",
        "the pool contains a kube-vip VIP or overlaps a kube-vip-cloud-provider pool",
    ),
    Rule(
        "address-cluster-network",
        "the pool overlaps a ServiceCIDR or a pod CIDR, or contains a cluster IP",
    ),
    Rule(
        "address-service-ip",
        "the pool contains another Service's externalIP or load-balancer IP",
    ),
    Rule("interface-required", "protocol is layer2 or vip and `spec.interface` is empty"),
    Rule("default-eip-unique", "another Eip is already the default Eip", overridable=False),
    Rule("address-immutable", "an UPDATE changes `spec.address`", overridable=False),
)
RULE_IDS = frozenset(r.id for r in RULES)
_WARNS_ONLY = frozenset(r.id for r in RULES if r.warns_only)
NOT_OVERRIDABLE = frozenset(r.id for r in RULES if not r.overridable)

LO_TRAP = (
    "an IP bound on a node makes 'ip route get' answer 'lo', so OpenELB's speaker "
    "loses its NIC at its next restart"
)
LO_TRAP_SENTENCE = LO_TRAP[0].upper() + LO_TRAP[1:] + "."
# What the conflict does to OpenELB's speaker, by rule: every claim but a pod CIDR is bound.
_CONSEQUENCE = {
    "can-reach-pod-cidr": "'ip route get' then answers a pod-network device (a CNI bridge or "
    "tunnel), so OpenELB's speaker answers on the wrong NIC, or on none.",
}
INTERFACE = "spec.interface"
ADDRESS = "spec.address"
DEFAULT_POLICY = Policy()
ALLOWED = Verdict(True)
UNDER_REVIEW = ", the Eip under review"
DISABLED = ", disabled now (enabled again, it hands out its IPs)"
MAX_NAMED = 3  # conflicting objects named in one message; the rest are counted
_new = tuple.__new__  # a Span without NamedTuple's Python-level __new__ (hot path)


# --- can_reach conflicts: shared by the rules and by the suggestion search ------------

_RULE_OF_KIND: dict[FactKind, str] = {  # in the order denials list them
    FactKind.NODE_IP: "can-reach-node-ip",
    FactKind.KUBE_VIP_VIP: "can-reach-kube-vip",
    FactKind.KUBE_VIP_POOL: "can-reach-kube-vip",
    FactKind.SERVICE_IP: "can-reach-service-ip",
    FactKind.SERVICE_CIDR: "can-reach-service-ip",
    FactKind.POD_CIDR: "can-reach-pod-cidr",
}
_CLAIM_KINDS = tuple(_RULE_OF_KIND)

_WHY_BOUND = {
    FactKind.NODE_IP: "the node binds it",
    FactKind.KUBE_VIP_VIP: "kube-vip binds it on the node holding the VIP",
    FactKind.KUBE_VIP_POOL: "kube-vip binds it once it hands it to a Service",
    FactKind.SERVICE_IP: "kube-proxy in IPVS mode binds it on kube-ipvs0 on every node",
    FactKind.SERVICE_CIDR: "a Service given it is bound on kube-ipvs0 on every node under IPVS",
    FactKind.POD_CIDR: "it routes into the pod network, not to the NIC the speaker must use",
}


_KIND_TEXT = {kind: kind.value for kind in FactKind}  # Enum's .value runs Python code


# Kinds that are ranges even when one holds a single IP ("lies in pool 10.0.0.9").
_RANGE_KINDS = frozenset({FactKind.POD_CIDR, FactKind.KUBE_VIP_POOL, FactKind.SERVICE_CIDR})


def _describe(fact: Fact, ip: str) -> str:
    kind, span, source = fact
    if span.first == span.last and span.prefix is None and kind not in _RANGE_KINDS:
        return f"{ip} is a {_KIND_TEXT[kind]} of {source.object_ref} ({source.field})"
    return f"{ip} lies in {_KIND_TEXT[kind]} {span} of {source.object_ref} ({source.field})"


def _named(items: Sequence[str]) -> str:
    shown = "; ".join(items[:MAX_NAMED])
    more = len(items) - MAX_NAMED
    return shown + (f"; and {more} more" if more > 0 else "")


def _first_of(items: Sequence[str]) -> str:
    """The first item, and how many more: a warning keeps one line, and must not hide them."""
    return items[0] + (f" and {len(items) - 1} more" if len(items) > 1 else "")


def _pools_containing(key: int, candidate: Eip, inventory: Inventory) -> list[Eip]:
    pools = [e for e in inventory.eip_pools.containing(key) if e.name != candidate.name]
    if candidate.address is not None and candidate.address.contains(key):
        pools.insert(0, candidate)
    return pools


def _is_taken(key: int, candidate: Eip | None, inventory: Inventory) -> int | None:
    """None when nothing claims ``key``; else the last address of the claim, to skip past.

    With no candidate, every stored Eip counts (the answer then depends on the inventory
    alone, so it can be cached there).
    """
    if special_kind_of_key(key) is not None:
        return key
    last: int | None = None
    pools = (
        inventory.eip_pools.containing(key)
        if candidate is None
        else _pools_containing(key, candidate, inventory)
    )
    for pool in pools:
        assert pool.address is not None
        last = max(last or key, pool.address.last)
    for fact in inventory.matching_any(_CLAIM_KINDS, key):
        last = max(last or key, fact.span.last)
    return last


_WINDOW = 1024  # addresses whose claims are gathered at once while searching a subnet


def _claimed_runs(window: Span, inventory: Inventory) -> tuple[list[int], list[int]]:
    """What claims addresses of ``window`` (every stored Eip, every claim kind), merged
    into sorted disjoint runs: their firsts and lasts. Once per inventory and window: a
    rack's consecutive node IPs are then one run to jump over, not a lookup each."""
    memo_key = ("claimed-runs", window.first, window.last)
    found = inventory.memo.get(memo_key)
    if found is None:
        pools = inventory.eip_pools.overlapping(window)
        spans = [(e.address.first, e.address.last) for e in pools if e.address is not None]
        for kind in _CLAIM_KINDS:
            points, ranges = inventory.points.get(kind), inventory.spans.get(kind)
            if points is not None:
                spans += [(key, key) for key, _ in points.within(window)]
            if ranges is not None:
                spans += [(f.span.first, f.span.last) for f in ranges.overlapping(window)]
        spans.sort()
        firsts: list[int] = []
        lasts: list[int] = []
        for first, last in spans:
            if lasts and first <= lasts[-1] + 1:
                lasts[-1] = max(lasts[-1], last)
            else:
                firsts.append(first)
                lasts.append(last)
        found = inventory.memo[memo_key] = (firsts, lasts)
    return cast(tuple[list[int], list[int]], found)


def _free_keys(subnet: Span, candidate: Eip | None, inventory: Inventory) -> Iterator[int]:
    """Free addresses of a node subnet in the order suggested: known gateways, then the
    subnet from its first host on, a window at a time, jumping over whole runs of claims.

    With a candidate, its pool is claimed too; its stored version stays claimed as well (a
    free address found is then free for certain; one only the old version held is missed).
    """
    gateways = inventory.points.get(FactKind.NODE_GATEWAY)
    offered: set[int] = set()
    if gateways is not None:
        for key, _ in gateways.within(subnet):
            if key not in offered and _is_taken(key, candidate, inventory) is None:
                offered.add(key)
                yield key
    own = candidate.address if candidate is not None else None
    key, steps = subnet.first + 1, 4096  # steps: windows, runs and special addresses passed
    while key < subnet.last and steps > 0:
        window = Span(key, min(key + _WINDOW - 1, subnet.last - 1))
        firsts, lasts = _claimed_runs(window, inventory)
        run, steps = 0, steps - 1
        while key <= window.last and steps > 0:
            if run < len(firsts) and firsts[run] <= key:
                if key <= lasts[run]:
                    key, steps = lasts[run] + 1, steps - 1
                run += 1
            elif own is not None and own.contains(key):
                key, steps = own.last + 1, steps - 1
            elif special_kind_of_key(key) is not None:
                key, steps = key + 1, steps - 1
            else:
                if key not in offered:
                    yield key
                key += 1


CACHED_FREE_KEYS = 4  # per subnet: enough that a candidate's own pool rarely covers them all


def _free_in_inventory(subnet: Span, inventory: Inventory) -> tuple[tuple[int, str], ...]:
    """The first free addresses of a subnet (key and text) with every stored Eip counted,
    once per inventory.

    Searching took about half of a denial's cost; the answer only changes with the inventory.
    """
    memo_key = ("free-keys", subnet.first, subnet.last)
    found = inventory.memo.get(memo_key)
    if found is None:
        keys = islice(_free_keys(subnet, None, inventory), CACHED_FREE_KEYS)
        found = inventory.memo[memo_key] = tuple((key, key_text(key)) for key in keys)
    return cast(tuple[tuple[int, str], ...], found)


def _first_subnets(inventory: Inventory, v6: bool) -> tuple[Fact, ...]:
    """The lowest node subnets of a family (of the other when it has none), where a
    suggestion for an IP in no known subnet looks."""
    memo_key = ("first-subnets", v6)
    found = inventory.memo.get(memo_key)
    if found is None:
        index = inventory.spans.get(FactKind.NODE_SUBNET)
        every = index.all() if index else ()
        same = [f for f in every if (f.span.first >= V6_OFFSET) == v6]
        found = inventory.memo[memo_key] = tuple((same or every)[:MAX_NAMED])
    return cast(tuple[Fact, ...], found)


def _wants_v6(candidate: Eip) -> bool:
    """The family a suggested can_reach IP should have: the pool's, else the IP replaced."""
    if candidate.address is not None:
        return candidate.address.first >= V6_OFFSET
    spec = candidate.interface
    return isinstance(spec, CanReach) and spec.key >= V6_OFFSET


def suggest(candidate: Eip, subnets: Sequence[Fact], inventory: Inventory) -> str | None:
    """A concrete free ``can_reach`` IP: a known gateway first, else a free subnet address.

    ``subnets`` are the node subnets of the IP to replace; with none, the lowest known.
    Free: nothing in the inventory claims it, and it lies outside the candidate's own pool.
    """
    if not subnets:
        subnets = _first_subnets(inventory, _wants_v6(candidate))
    own = candidate.address
    tried: set[Span] = set()
    for subnet in subnets[:MAX_NAMED]:
        if subnet.span in tried:  # nodes of one rack report one subnet: walk it once
            continue
        tried.add(subnet.span)
        for key, text in _free_in_inventory(subnet.span, inventory):
            if own is None or not own.contains(key):
                return text
        # Rare: the candidate's own pool covers every cached address; search past it.
        past = next(_free_keys(subnet.span, candidate, inventory), None)
        if past is not None:
            return key_text(past)
    return None


def _advice(candidate: Eip, subnets: Sequence[Fact], inventory: Inventory) -> str:
    own = candidate.address
    around = inventory.covering(FactKind.NODE_SUBNET, own) if own is not None else ()
    if around:
        # The pool lies in a known node subnet: a can_reach IP there picks the NIC that
        # OpenELB's speaker (v0.6 and later) needs, one with a subnet holding the pool.
        subnets = around
    free = suggest(candidate, subnets, inventory)
    if free is not None:
        return f"Use an IP that nodes reach but nothing binds, e.g. can_reach:{free}."
    if own is not None and any(
        own.first <= s.span.first + 1 and s.span.last - 1 <= own.last for s in subnets[:MAX_NAMED]
    ):
        return (
            f"This Eip's own pool covers its node subnet ({subnets[0].span}), gateway "
            "included: leave an address of the subnet out of the pool (the gateway, say) "
            "and use that."
        )
    return (
        "Use an IP that nodes reach but no node, Eip pool, VIP or Service uses: "
        "the node network's gateway is a good choice."
    )


# --- the rules ------------------------------------------------------------------------


class Review(NamedTuple):
    candidate: Eip
    old: Eip | None
    inventory: Inventory
    operation: Operation
    # Whether spec-schema reports the fields it finds (its policy is not "off"); if not, the
    # other rules judge those fields as read (a wrong type reads as empty) rather than say
    # nothing of them.
    schema_reported: bool = True


def _can_reach_rules(r: Review) -> Iterator[Violation]:
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
            f"Eip's NIC by it. {_advice(eip, (), r.inventory)}",
            f"{ip} is {kind}: no route to the Eip's NIC",
            advisory,
        )
        return
    inventory = r.inventory
    subnets = inventory.containing(FactKind.NODE_SUBNET, key)
    advice = ""  # made once, when a message needs it: the denials and the warning share it
    pools = _pools_containing(key, eip, inventory)
    facts = inventory.matching_any(_CLAIM_KINDS, key)
    anycast = _anycast_of(key, subnets) if subnets and key >= V6_OFFSET else ()
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
        for fact in facts:
            seen = (fact.kind, fact.source.object_ref)
            if seen in named:  # one object read twice (e.g. its status and an annotation)
                continue
            named.add(seen)
            reason = f"{_describe(fact, ip)}; {_WHY_BOUND[fact.kind]}"
            found.setdefault(_RULE_OF_KIND[fact.kind], []).append(reason)
        advice = _advice(eip, subnets, inventory)
        for rule, reasons in found.items():
            yield Violation(
                rule,
                INTERFACE,
                eip.interface_text,
                f"{_named(reasons)}. {_CONSEQUENCE.get(rule, LO_TRAP_SENTENCE)} {advice}",
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
            f"{ip} lies in no known node subnet ({_named(known)}), so the speaker follows "
            "a gateway route and may pick a NIC off the Eip's network. "
            f"{advice or _advice(eip, subnets, inventory)}",
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
        f"can_reach:<IP>. {_advice(eip, (), r.inventory)}",
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


def _anycast_of(key: int, subnets: Sequence[Fact]) -> tuple[Fact, ...]:
    """The IPv6 node subnets whose subnet-router anycast address (all host bits zero) is
    ``key``: a router (IPv6 forwarding on) binds it for each on-link prefix shorter than
    /127, and 'ip route get' answers 'anycast ... dev lo', the trap of bound IPs. One fact
    per subnet (the nodes of a rack report one)."""
    seen: dict[Span, Fact] = {}
    for fact in subnets:
        span = fact.span
        if span.first == key and span.prefix is not None and span.prefix < 127:
            seen.setdefault(span, fact)
    return tuple(seen.values())


def _spec_schema(r: Review) -> Iterator[Violation]:
    for error in r.candidate.field_errors:
        yield Violation(
            "spec-schema",
            error.field,
            error.value,
            f"{error.detail}. The Eip CRD's schema does not allow it, so the API server "
            f"rejects the Eip before any webhook sees it. {error.advice}",
            error.detail,
        )


def _erred(r: Review, field: str) -> bool:
    """Whether the schema rule already reported ``field`` (or the whole spec)."""
    return r.schema_reported and any(e.field in (field, "spec") for e in r.candidate.field_errors)


def _address_rules(r: Review) -> Iterator[Violation]:
    eip = r.candidate
    if eip.address_error and eip.address is not None:  # OpenELB reads it, we refuse the form
        if not _erred(r, ADDRESS):
            yield Violation(
                "address-syntax",
                ADDRESS,
                eip.address_text,
                f"{eip.address_error}. OpenELB reads it as {eip.address}, but other tools may "
                f"not: write spec.address: {eip.address}.",
                eip.address_error,
            )
        # The pool OpenELB reads is judged as well: overridden or warned, the refusal above
        # must not let an overlapping pool in.
    elif eip.address is None:
        if _erred(r, ADDRESS):
            return
        yield Violation(
            "address-syntax",
            ADDRESS,
            eip.address_text,
            f"invalid eip address format: {eip.address_error}. Write a single IP "
            "(192.168.0.10), a CIDR (192.168.0.0/28) or a range (192.168.0.10-192.168.0.20).",
            f"invalid eip address format: {eip.address_error}",
        )
        return
    # By name: the index keeps them in the order they came, which differs between a list
    # and a watch, and a message (an audit Event's) must not change with it.
    others = sorted(
        (e for e in r.inventory.eip_pools.overlapping(eip.address) if e.name != eip.name),
        key=lambda e: e.name,
    )
    if others:
        names = [f"Eip {o.name} ({o.address_text})" for o in others]
        yield Violation(
            "address-overlap",
            ADDRESS,
            eip.address_text,
            f"eip address overlap with {_named(names)}; OpenELB would hand one IP to two "
            "Services. Choose a range that no other Eip covers (both ends count).",
            f"eip address overlap with {_first_of(names)}",
        )
    covered = [
        (k, e)
        for k, e in r.inventory.can_reach_ips.within(eip.address)
        if e.name != eip.name and e.speaks_layer2
    ]
    if covered:
        names = [f"{key_text(k)}, the can_reach IP of Eip {e.name}" for k, e in covered]
        one = len(names) == 1
        yield Violation(
            "eip-covers-can-reach",
            ADDRESS,
            eip.address_text,
            f"the pool contains {_named(names)}. Once OpenELB assigns "
            f"{'that IP' if one else 'one of those IPs'} to a Service it is bound on every "
            f"node, and {LO_TRAP}. Leave {'that IP' if one else 'those IPs'} out of the pool "
            "(split the range around it) or give the other Eip another can_reach IP.",
            f"the pool contains {_first_of(names)}",
        )
    yield from _pool_holds_node_ips(r)
    yield from _pool_holds_claims(r)
    yield from _pool_size(eip)


_HELD_BY = {
    FactKind.NODE_IP: "an address of",
    FactKind.NODE_GATEWAY: "a gateway reported by",
}
_SUBNET_ENDS = (
    "A node subnet's broadcast address cannot serve a Service: clients send to it as a "
    "link-layer broadcast, and every node of the subnet routes it as broadcast in its local "
    "table."
)
_NETWORK_ADDRESS = (
    "the network address of node subnet {}: Linux 5.14 and later treat it as an ordinary "
    "address, but older kernels (and other systems) on the segment route it as broadcast, "
    "so their clients may not reach the Service. Leave it out of the pool if such hosts "
    "share the segment."
)


def _handed_out(r: Review) -> tuple[frozenset[int], frozenset[str]]:
    """The IPs OpenELB has handed out from the Eip under review (status.used keys) and the
    Services it serves them to (its values): of the candidate, of the old object, and of its
    stored namesake. OpenELB writes status; a spec update keeps it, but the candidate may
    not carry it (a manifest checked by the CLI, a request the API server stripped)."""
    eip = r.candidate
    keys: list[frozenset[int]] = []
    served: list[frozenset[str]] = []
    for version in (eip, r.old, r.inventory.eips.get(eip.name)):
        if version is not None and version.name == eip.name and version.used:
            found = _status_of(version)
            if not any(k is found[0] for k in keys):  # versions mostly share their status
                keys.append(found[0])
                served.append(found[1])
    return frozenset().union(*keys), frozenset().union(*served)


def _status_of(eip: Eip) -> tuple[frozenset[int], frozenset[str]]:
    """``eip``'s status.used keys as address keys, and the Services it names; the last
    answer is kept with the tuples it was made of: an Eip with 60,000 IPs in use was
    parsed five times over per UPDATE (130 ms), by two rules and the ratcheting review."""
    last = _LAST_STATUS[0]
    if last[0] == eip.used and last[1] == eip.used_by:  # equal copies: a request and the store
        return last[2]
    found = (frozenset(k for k in map(key_or_none, eip.used) if k is not None), eip.served())
    _LAST_STATUS[0] = (eip.used, eip.used_by, found)  # one tuple swapped whole
    return found


_LAST_STATUS: list[
    tuple[tuple[str, ...], tuple[str, ...], tuple[frozenset[int], frozenset[str]]]
] = [((), (), (frozenset(), frozenset()))]


def _pool_holds_node_ips(r: Review) -> Iterator[Violation]:
    """A pool over the node network that holds a node's address or a gateway: OpenELB would
    hand it to a Service and its speaker (or eip-guard's) answer for it, taking that node's
    or that gateway's traffic from the segment. Or one that holds the broadcast address of
    an IPv4 node subnet: OpenELB hands it out too, and it cannot work (its network address
    is only warned about)."""
    eip, inventory = r.candidate, r.inventory
    pool = eip.address
    assert pool is not None
    named: dict[int, str] = {}
    for kind, what in _HELD_BY.items():
        index = inventory.points.get(kind)
        for key, source in index.within(pool) if index is not None else ():
            if key not in named:  # one line an address: ten nodes report one gateway
                named[key] = f"{key_text(key)}, {what} {source.object_ref} ({source.field})"
    if named:
        # Its own IPs in use, bound on a NIC by OpenELB's vip mode (keepalived) or kube-vip,
        # read back as node addresses: not a node's, the Eip's.
        for key in _handed_out(r)[0]:
            named.pop(key, None)
    ends: dict[int, tuple[str, str]] = {}
    network: dict[int, Fact] = {}  # only warned about: see _NETWORK_ADDRESS
    for key, fact in inventory.node_subnet_ends.within(pool):
        if key == fact.span.first:
            network.setdefault(key, fact)
            continue
        what = f"{key_text(key)}, the broadcast address of node subnet {fact.span}"
        ends.setdefault(key, (f"{what} of {fact.source.object_ref} ({fact.source.field})", what))
    for key, fact in sorted(network.items())[:1]:  # one warning is enough to say it
        yield Violation(
            "address-node-ip",
            ADDRESS,
            eip.address_text,
            f"the pool contains {key_text(key)}, {_NETWORK_ADDRESS.format(fact.span)}",
            f"the pool contains {key_text(key)}, the network address of node subnet {fact.span}",
            advisory=True,
        )
    if not named and not ends:
        return
    names = list(named.values())
    one = len(names) == 1
    why = (
        f" OpenELB would hand {'that IP' if one else 'those IPs'} to a Service, and the speaker "
        f"would answer ARP/NDP for {'it' if one else 'them'}, taking the traffic of that node "
        "or gateway from the whole segment."
        if names
        else ""
    )
    if ends:
        names = [long for key, (long, _) in sorted(ends.items()) if key not in named] + names
        why += f" {_SUBNET_ENDS}"
        leave = "node addresses, gateways and the broadcast addresses of node subnets"
    else:
        leave = "node addresses and gateways"
    ips = [n.split(",")[0] for n in named.values()]
    short = (
        f"the pool contains {_first_of([what for _, (_, what) in sorted(ends.items())] + ips)}"
        if ends
        else f"the pool contains {_first_of(ips)}, a node's address or gateway"
    )
    yield Violation(
        "address-node-ip",
        ADDRESS,
        eip.address_text,
        f"the pool contains {_named(names)}.{why} Leave {leave} out of the pool (split the "
        "range around them).",
        short,
    )


def _pool_size(eip: Eip) -> Iterator[Violation]:
    """A pool whose size OpenELB counts in a Go int64 that overflows: an IPv6 CIDR of /65 or
    shorter (0 for 64 host bits or more, MinInt64 for 63), or a range of 2^63 addresses or
    more. Its IPAM then hands out offsets below that size (none), and its overlap test adds
    size-1 to the first address (misjudged)."""
    pool = eip.address
    assert pool is not None
    size = openelb_size(pool)
    if size == pool.size:
        return
    fix = (
        "use /66 or longer, or a range"
        if pool.prefix is not None
        else "use a range of fewer than 2^63 addresses"
    )
    if size <= 0:
        what = f"computes this pool's size as {size} and hands out none of its IPs"
    else:  # a range of 2^64 addresses or more: the count wraps to a small positive one
        what = (
            f"computes this pool's size as {size} (it holds {pool.size}): it hands out only "
            f"its first {size} IPs and misjudges which Eips overlap it"
        )
    yield Violation(
        "address-size",
        ADDRESS,
        eip.address_text,
        f"OpenELB {what}: {fix} (OpenELB counts a pool's size in a 64-bit integer, which "
        "overflows at 2^63 addresses).",
        f"OpenELB {what.partition(':')[0]}",
    )


# What else a pool must not hold: OpenELB's IPAM hands out any IP of its pool that
# status.used does not list. By rule, what each kind of fact means (Service IPs by field).
_CLAIM_RULE = {
    FactKind.KUBE_VIP_VIP: "address-kube-vip",
    FactKind.KUBE_VIP_POOL: "address-kube-vip",
    FactKind.SERVICE_CIDR: "address-cluster-network",
    FactKind.POD_CIDR: "address-cluster-network",
}
# spec.loadBalancerIP and the eip.openelb.kubesphere.io/v1alpha1 annotation are absent: they
# ask a pool (maybe this one) for an IP, and take none from it.
_FROM_OPENELB = "address-service-ip, from OpenELB"  # a bucket of address-service-ip that warns
_SERVICE_IP_RULE = {
    CLUSTER_IPS_FIELD: ("address-cluster-network", "a cluster IP of"),
    EXTERNAL_IPS_FIELD: ("address-service-ip", "an externalIP of"),
    INGRESS_IP_FIELD: ("address-service-ip", "the load-balancer IP of"),
    # Only warned about (_FROM_OPENELB): OpenELB handed it out from an Eip that no longer
    # lists it, maybe this very pool before it was deleted and made again.
    OPENELB_INGRESS_FIELD: (_FROM_OPENELB, "the load-balancer IP OpenELB gave"),
    KUBE_VIP_LB_FIELD: ("address-service-ip", "a kube-vip load-balancer IP of"),
}
_POINT_WHAT = {FactKind.KUBE_VIP_VIP: "a kube-vip VIP of"}
_CLAIM_KINDS_OF_POOLS = (*_CLAIM_RULE, FactKind.SERVICE_IP)
_CLAIM_WHY = {
    "address-kube-vip": (
        "OpenELB would hand {it} to a Service while kube-vip holds {it}: two speakers answer "
        "ARP/NDP for one IP (a control-plane VIP taken so makes the API server flap), or two "
        "allocators hand out one pool. Leave kube-vip's VIPs and pools out of the pool "
        "(split the range around them)."
    ),
    "address-cluster-network": (
        "OpenELB would hand {it} to a LoadBalancer Service, but the cluster uses {it} inside: "
        "kube-proxy and the CNI route cluster IPs and pod-CIDR addresses to Services and pods "
        "on every node, so traffic for the Service goes elsewhere, and the API server gives "
        "ServiceCIDR addresses to Services as cluster IPs. Choose a pool outside the "
        "ServiceCIDRs and pod CIDRs."
    ),
    "address-service-ip": (
        "{That} already {belongs} to another Service, and OpenELB would hand {it} to a second "
        "one: kube-proxy forwards one IP for two Services and two speakers may answer for "
        "{it}. Leave Service IPs out of the pool (split the range around them)."
    ),
    _FROM_OPENELB: (
        "OpenELB gave {it} out from an Eip that no longer lists {it} in status.used: this "
        "Eip before it was deleted and made again is fine, but if {it} came from another "
        "pool, OpenELB may hand {it} to a second Service. Check the Services named here."
    ),
}
_INGRESS = frozenset({INGRESS_IP_FIELD, OPENELB_INGRESS_FIELD})
_ClaimLookup = tuple[
    FactKind,
    Callable[[Span], tuple[list[int], list[Source]]] | None,
    Callable[[Span], list[Fact]] | None,
]


def _claim_lookups(inventory: Inventory) -> tuple[_ClaimLookup, ...]:
    """The point and interval indexes of the kinds a pool must not hold, once per inventory
    (kinds with neither skipped): an allowed pool then costs a binary search or two each."""
    found = inventory.memo.get("claim-lookups")
    if found is None:
        found = inventory.memo["claim-lookups"] = tuple(
            (kind, points.columns_within if points else None, spans.overlapping if spans else None)
            for kind in _CLAIM_KINDS_OF_POOLS
            for points, spans in [(inventory.points.get(kind), inventory.spans.get(kind))]
            if points or spans
        )
    return cast(tuple[_ClaimLookup, ...], found)


def _pool_holds_claims(r: Review) -> Iterator[Violation]:
    """address-kube-vip, address-cluster-network and address-service-ip: exact addresses
    (a range fact counts by what it shares with the pool, never a summarised CIDR). The
    Eip's own status.used IPs, and the load-balancer IPs of the Services status.used names,
    never count as Service IPs: they are OpenELB's own hand-outs from this pool."""
    eip, inventory = r.candidate, r.inventory
    pool = eip.address
    assert pool is not None
    # Per rule, the lowest facts of each kind (to name) and how many there are. Lean: a
    # pool over 0.0.0.0/0 meets every Service IP, so a point costs a lookup or two and no
    # allocation; texts are made for the few named only.
    named: dict[str, list[tuple[int, str, FactKind, Span, Source, str]]] = {}
    counts: dict[str, int] = {}
    own: frozenset[int] | None = None
    served: frozenset[str] = frozenset()
    for kind, within, overlapping in _claim_lookups(inventory):
        keys, sources = within(pool) if within is not None else ((), ())
        ranges = overlapping(pool) if overlapping is not None else ()
        if not keys and not ranges:  # every allowed pool: a binary search or two a kind
            continue
        service = kind is FactKind.SERVICE_IP
        if service and own is None:
            own, served = _handed_out(r)
        rule, what = _CLAIM_RULE.get(kind, ""), _POINT_WHAT.get(kind, "")
        taken: dict[str, int] = {}  # named of this kind, by rule: its lowest (keys ascend)
        # One object at one address once (an ingress IP also in kube-vip's annotation): the
        # first entry at address ``at`` in two variables, more in a set only when one repeats.
        at, at_rule, at_source = -1, "", sources[0] if sources else None
        here: set[tuple[str, str, str, str]] = set()
        for key, source in zip(keys, sources, strict=True):
            if service:
                rule_what = _SERVICE_IP_RULE.get(source.field)
                if rule_what is None or (own and key in own):
                    continue
                if served and source.field in _INGRESS and _served(source, served):
                    continue
                rule, what = rule_what
            if key == at and at_source is not None:
                if not here:
                    here.add((at_rule, at_source.kind, at_source.namespace, at_source.name))
                seen = (rule, source.kind, source.namespace, source.name)
                if seen in here:
                    continue
                here.add(seen)
            else:
                at, at_rule, at_source = key, rule, source
                if here:
                    here.clear()
            counts[rule] = counts.get(rule, 0) + 1
            if taken.get(rule, 0) < MAX_NAMED:
                taken[rule] = taken.get(rule, 0) + 1
                span = _new(Span, (key, key, None))
                entry = (key, source.object_ref, kind, span, source, what)
                named.setdefault(rule, []).append(entry)
        for fact in ranges:  # CIDRs and pools: a few
            source = fact.source
            if service:
                rule_what = _SERVICE_IP_RULE.get(source.field)
                if rule_what is None:
                    continue
                rule, what = rule_what
            start = max(fact.span.first, pool.first)
            counts[rule] = counts.get(rule, 0) + 1
            named.setdefault(rule, []).append(
                (start, source.object_ref, kind, fact.span, source, what)
            )
    for rule in (
        "address-kube-vip",
        "address-cluster-network",
        "address-service-ip",
        _FROM_OPENELB,
    ):
        total = counts.get(rule, 0)
        if not total:
            continue
        texts = [_claim_text(pool, *fact[2:]) for fact in sorted(named[rule])[:MAX_NAMED]]
        one = total == 1 and texts[0][2]
        why = _CLAIM_WHY[rule].format(
            it="it" if one else "them",
            That="It" if one else "They",
            belongs="belongs" if one else "belong",
        )
        more = total - len(texts)
        longs = "; ".join(long for long, _, _ in texts) + (f"; and {more} more" if more else "")
        yield Violation(
            "address-service-ip" if rule is _FROM_OPENELB else rule,
            ADDRESS,
            eip.address_text,
            f"the pool holds {longs}. {why}",
            f"the pool holds {texts[0][1]}" + (f" and {total - 1} more" if total > 1 else ""),
            advisory=rule is _FROM_OPENELB,
        )


def _served(source: Source, served: frozenset[str]) -> bool:
    """Whether the Service of ``source`` is one status.used names ("ns/name")."""
    return f"{source.namespace}/{source.name}" in served


def _claim_text(
    pool: Span, kind: FactKind, span: Span, source: Source, what: str
) -> tuple[str, str, bool]:
    """A fact the pool holds, as a denial names it (with the field) and as a warning does,
    and whether the pool shares one address with it. A range fact is named by what it
    shares with the pool: exact addresses, never a summarised CIDR."""
    shared = Span(max(span.first, pool.first), min(span.last, pool.last))
    ref = source.object_ref
    if span.first == span.last and span.prefix is None and what:
        short = f"{key_text(span.first)}, {what} {ref}"
    elif (shared.first, shared.last) == (span.first, span.last):
        short = f"{_KIND_TEXT[kind]} {span} of {ref}"
    else:
        short = f"{shared}, part of {_KIND_TEXT[kind]} {span} of {ref}"
    return f"{short} ({source.field})", short, shared.first == shared.last


def _interface_required(r: Review) -> Iterator[Violation]:
    eip = r.candidate
    if eip.speaks_layer2 and isinstance(eip.interface, NoInterface) and not _erred(r, INTERFACE):
        do = (
            # v1alpha1 has no such field (domain.md): advice to set it could not be followed.
            "A network.kubesphere.io/v1alpha1 Eip has no spec.interface: write this Eip as "
            "network.kubesphere.io/v1alpha2, with a NIC name or can_reach:<the node gateway "
            "IP> in spec.interface."
            if eip.v1alpha1
            else "Set a NIC name or can_reach:<the node gateway IP>."
        )
        yield Violation(
            "interface-required",
            INTERFACE,
            "",
            "if protocol is layer2 or vip, interface should not be empty: the speaker needs "
            f"a NIC to answer ARP/NDP on. {do}",
            "protocol layer2/vip needs spec.interface",
        )


def _default_unique(r: Review) -> Iterator[Violation]:
    eip = r.candidate
    if not eip.is_default:
        return
    others = [n for n in r.inventory.default_eips if n != eip.name]
    if others:
        yield Violation(
            "default-eip-unique",
            f"metadata.annotations[{DEFAULT_EIP_ANNOTATION}]",
            "true",
            f"already exists a default EIP: {_named(others)}. OpenELB picks one at random "
            "for Services that name no pool. Remove the annotation here or there.",
            f"already exists a default EIP: {_first_of(others)}",
        )


def _address_immutable(r: Review) -> Iterator[Violation]:
    if r.old is not None and r.old.address_text != r.candidate.address_text:
        yield Violation(
            "address-immutable",
            ADDRESS,
            r.candidate.address_text,
            f"the address field is not allowed to be modified (was {quoted(r.old.address_text)}): "
            "OpenELB keeps the IPs it handed out. Create a new Eip and move Services to it.",
            "the address field is not allowed to be modified",
        )


RULE_FUNCTIONS: tuple[Callable[[Review], Iterable[Violation]], ...] = (
    _spec_schema,
    _address_rules,
    _interface_required,
    _can_reach_rules,
    _default_unique,
)


def _violations(review: Review) -> list[Violation]:
    found = [v for fn in RULE_FUNCTIONS for v in fn(review)]
    if review.operation is Operation.UPDATE:
        found.extend(_address_immutable(review))
    return found


def check(
    candidate: Eip,
    old: Eip | None,
    inventory: Inventory,
    policy: Policy = DEFAULT_POLICY,
    operation: Operation | None = None,
) -> Verdict:
    """The judgement: every violation, shaped by policy, ratcheting and overrides."""
    if operation is None:
        operation = Operation.UPDATE if old is not None else Operation.CREATE
    if operation is Operation.DELETE:
        gone = old or candidate
        return Verdict(True, notes=in_use_notes(gone)) if gone.used else Verdict(True)

    schema_on = policy.action("spec-schema") is not Action.OFF
    found = _violations(Review(candidate, old, inventory, operation, schema_on))
    if not found and not candidate.allow_rules and not inventory.gaps:
        return ALLOWED  # the usual answer, with nothing to note: spare the loop below
    # Ratcheting: what the old object already broke, on a field left as it was, only warns.
    # An advisory violation broke nothing (can_reach on a bgp Eip is never used): turning
    # that Eip to layer2 must be judged as a create would be (openelb#331's trap).
    before: set[tuple[str, str, str]] = set()
    if old is not None:
        before = {
            (v.rule, v.field, v.value)
            for v in _violations(Review(old, None, inventory, Operation.CREATE, schema_on))
            if not v.advisory
        }
    overrides = candidate.allow_rules if policy.allow_overrides else ()
    denied: list[Violation] = []
    warned: list[Violation] = []
    notes: list[str] = []
    for v in found:
        action = policy.action(v.rule)
        if action is Action.OFF:
            continue
        if action is Action.DENY:
            if (
                v.advisory
                or v.rule in _WARNS_ONLY
                or (before and (v.rule, v.field, v.value) in before)
            ):
                action = Action.WARN
            elif v.rule in overrides:
                if not may_override(v.rule, candidate):
                    notes.append(_NO_OVERRIDE.format(v.rule))
                else:
                    notes.append(
                        f"eip-guard: {ALLOW_RULES_ANNOTATION} turned {v.rule} into a warning"
                    )
                    action = Action.WARN
        (denied if action is Action.DENY else warned).append(v)
    if candidate.allow_rules:
        unknown = sorted(set(candidate.allow_rules) - RULE_IDS)
        if unknown:
            what = f"unknown rule id(s) in {ALLOW_RULES_ANNOTATION}: {_named(unknown)}"
            notes.append(f"eip-guard: {what}")
        if not policy.allow_overrides:
            notes.append(f"eip-guard: the policy does not allow {ALLOW_RULES_ANNOTATION}")
        else:  # said whether or not the rule is broken now: the annotation cannot mean it
            notes += [_NO_OVERRIDE.format(r) for r in sorted(overrides) if r in NOT_OVERRIDABLE]
    if inventory.gaps and isinstance(candidate.interface, CanReach):
        # One note each: a kubectl warning keeps 120 characters, and gaps come in any number.
        notes += [f"eip-guard: not checked: {g}" for g in first_lines(inventory.gaps, MAX_NAMED)]
    unique_notes = tuple(dict.fromkeys(notes)) if notes else ()
    return Verdict(not denied, tuple(denied), tuple(warned), unique_notes)


_NO_OVERRIDE = "eip-guard: {} cannot be overridden by " + ALLOW_RULES_ANNOTATION


def may_override(rule: str, candidate: Eip) -> bool:
    """Whether the allow-rules annotation may turn ``rule`` into a warning for ``candidate``:
    not what OpenELB's own webhook refuses whatever the annotation (NOT_OVERRIDABLE, and an
    address OpenELB cannot read at all)."""
    return rule not in NOT_OVERRIDABLE and not (
        rule == "address-syntax" and candidate.address is None
    )


def in_use_notes(gone: Eip) -> tuple[str, ...]:
    """What deleting an Eip whose status.used is not empty does, in two kubectl warnings
    (each within WARNING_LIMIT): what to do, then which IPs go to which Services (a few, and
    how many more)."""
    name = shown(gone.name, 28)
    count = len(gone.used)
    pairs = sorted(
        zip(gone.used, gone.used_by or ("",) * count, strict=False),
        key=lambda pair: (key_or_none(pair[0]) is None, key_or_none(pair[0]) or 0, pair[0]),
    )
    items = [
        f"{shown(ip, 40)} to {shown(by.replace(';', ', '), 48)}" if by else shown(ip, 40)
        for ip, by in pairs[:MAX_NAMED]
    ]
    listed = f"eip-guard: Eip {name} hands out "
    text = ""
    for shown_count in range(len(items), 0, -1):  # as many as fit one warning
        more = count - shown_count
        text = listed + ", ".join(items[:shown_count]) + (f" and {more} more" if more else "")
        if len(text) <= WARNING_LIMIT:
            break
    advice = (
        f"eip-guard: Eip {name}'s Services lose their IPs if it goes: move them to another "
        "Eip first"
    )
    return (text, advice)


def audit(inventory: Inventory, policy: Policy = DEFAULT_POLICY) -> dict[str, Verdict]:
    """Judge every existing Eip as if it were created now (the others stay as they are)."""
    return {
        name: check(eip, None, inventory, policy, Operation.CREATE)
        for name, eip in sorted(inventory.eips.items())
    }
