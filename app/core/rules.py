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
    quoted,
    special_kind_of_key,
    special_route,
)
from app.core.eips import ALLOW_RULES_ANNOTATION, DEFAULT_EIP_ANNOTATION, Eip
from app.core.facts import Fact, FactKind
from app.core.interfaces import BadInterface, CanReach, NoInterface
from app.core.inventory import Inventory, first_lines
from app.core.verdict import Action, Operation, Policy, Verdict, Violation


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    denies_when: str  # one line, for the README and `eip-guard rules`
    warns_only: bool = False  # its violations are advisory whatever the policy says


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
    Rule("spec-schema", "a spec field has a type or value the Eip CRD's schema rejects"),
    Rule("address-syntax", "`spec.address` is not a single IP, a CIDR or an `a-b` range"),
    Rule("address-overlap", "the pool overlaps another Eip's pool"),
    Rule("address-node-ip", "the pool contains a node's address or a gateway nodes report"),
    Rule("interface-required", "protocol is layer2 or vip and `spec.interface` is empty"),
    Rule("default-eip-unique", "another Eip is already the default Eip"),
    Rule("address-immutable", "an UPDATE changes `spec.address`"),
)
RULE_IDS = frozenset(r.id for r in RULES)
_WARNS_ONLY = frozenset(r.id for r in RULES if r.warns_only)

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
    free = suggest(candidate, subnets, inventory)
    if free is not None:
        return f"Use an IP that nodes reach but nothing binds, e.g. can_reach:{free}."
    own = candidate.address
    if own is not None and any(
        own.first <= s.span.first + 1 and s.span.last - 1 <= own.last for s in subnets
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
    if subnets or advisory:
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
    yield from _pool_holds_node_ips(eip, r.inventory)


_HELD_BY = {
    FactKind.NODE_IP: "an address of",
    FactKind.NODE_GATEWAY: "a gateway reported by",
}


def _pool_holds_node_ips(eip: Eip, inventory: Inventory) -> Iterator[Violation]:
    """A pool over the node network that holds a node's address or a gateway: OpenELB would
    hand it to a Service and its speaker (or eip-guard's) answer for it, taking that node's
    or that gateway's traffic from the segment."""
    assert eip.address is not None
    named: dict[int, str] = {}
    for kind, what in _HELD_BY.items():
        index = inventory.points.get(kind)
        for key, source in index.within(eip.address) if index is not None else ():
            if key not in named:  # one line an address: ten nodes report one gateway
                named[key] = f"{key_text(key)}, {what} {source.object_ref} ({source.field})"
    if named and eip.used:
        # Its own IPs in use, bound on a NIC by OpenELB's vip mode (keepalived) or kube-vip,
        # read back as node addresses: not a node's, the Eip's.
        for text in eip.used:
            named.pop(key_or_none(text) or -1, None)
    if named:
        names = list(named.values())
        one = len(names) == 1
        yield Violation(
            "address-node-ip",
            ADDRESS,
            eip.address_text,
            f"the pool contains {_named(names)}. OpenELB would hand "
            f"{'that IP' if one else 'those IPs'} to a Service, and the speaker would answer "
            f"ARP/NDP for {'it' if one else 'them'}, taking the traffic of that node or "
            "gateway from the whole segment. Leave node addresses and gateways out of the "
            "pool (split the range around them).",
            f"the pool contains {_first_of([n.split(',')[0] for n in names])}, a node's "
            "address or gateway",
        )


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
        if gone.used:
            in_use = (
                f"eip-guard: Eip {gone.name} still hands out {len(gone.used)} IP(s) (status.used)"
            )
            return Verdict(True, notes=(in_use,))
        return Verdict(True)

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
                notes.append(f"eip-guard: {ALLOW_RULES_ANNOTATION} turned {v.rule} into a warning")
                action = Action.WARN
        (denied if action is Action.DENY else warned).append(v)
    if candidate.allow_rules:
        unknown = sorted(set(candidate.allow_rules) - RULE_IDS)
        if unknown:
            what = f"unknown rule id(s) in {ALLOW_RULES_ANNOTATION}: {_named(unknown)}"
            notes.append(f"eip-guard: {what}")
        if not policy.allow_overrides:
            notes.append(f"eip-guard: the policy does not allow {ALLOW_RULES_ANNOTATION}")
    if inventory.gaps and isinstance(candidate.interface, CanReach):
        # One note each: a kubectl warning keeps 120 characters, and gaps come in any number.
        notes += [f"eip-guard: not checked: {g}" for g in first_lines(inventory.gaps, MAX_NAMED)]
    unique_notes = tuple(dict.fromkeys(notes)) if notes else ()
    return Verdict(not denied, tuple(denied), tuple(warned), unique_notes)


def audit(inventory: Inventory, policy: Policy = DEFAULT_POLICY) -> dict[str, Verdict]:
    """Judge every existing Eip as if it were created now (the others stay as they are)."""
    return {
        name: check(eip, None, inventory, policy, Operation.CREATE)
        for name, eip in sorted(inventory.eips.items())
    }
