"""The rules of ``spec.address``: its syntax and size as OpenELB reads them, and what else
the pool must not hold (another pool, a ``can_reach`` IP, a node's address, kube-vip's,
the cluster's networks, another Service's IP), since OpenELB's IPAM hands out any IP of
its pool that status.used does not list."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

from app.core.addresses import V6_OFFSET, Span, key_or_none, key_text, openelb_size
from app.core.eips import Eip
from app.core.extraction import (
    CLUSTER_IPS_FIELD,
    EXTERNAL_IPS_FIELD,
    INGRESS_IP_FIELD,
    KUBE_VIP_LB_FIELD,
    OPENELB_INGRESS_FIELD,
)
from app.core.facts import Fact, FactKind, Source
from app.core.inventory import Inventory
from app.core.rules.review import (
    ADDRESS,
    KIND_TEXT,
    LO_TRAP,
    MAX_NAMED,
    Review,
    erred,
    first_of,
    owner_ref,
    some_of,
)
from app.core.verdict import Violation

_new = tuple.__new__  # a Span without NamedTuple's Python-level __new__ (hot path)


def address_rules(r: Review) -> Iterator[Violation]:
    eip = r.candidate
    if eip.address_error and eip.address is not None:  # OpenELB reads it, we refuse the form
        if not erred(r, ADDRESS):
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
        if erred(r, ADDRESS):
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
            f"eip address overlap with {some_of(names)}; OpenELB would hand one IP to two "
            "Services. Choose a range that no other Eip covers (both ends count).",
            f"eip address overlap with {first_of(names)}",
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
            f"the pool contains {some_of(names)}. Once OpenELB assigns "
            f"{'that IP' if one else 'one of those IPs'} to a Service it is bound on every "
            f"node, and {LO_TRAP}. Leave {'that IP' if one else 'those IPs'} out of the pool "
            "(split the range around it) or give the other Eip another can_reach IP.",
            f"the pool contains {first_of(names)}",
        )
    yield from _pool_holds_node_ips(r)
    yield from _pool_holds_claims(r)
    yield from _pool_size(eip)


_HELD_BY = {
    FactKind.NODE_IP: "an address of",
    FactKind.NODE_GATEWAY: "a gateway reported by",
}
_BROADCAST = (
    "A node subnet's broadcast address cannot serve a Service: clients send to it as a "
    "link-layer broadcast, and every node of the subnet routes it as broadcast in its local "
    "table."
)
_ANYCAST = (
    "An IPv6 node subnet's subnet-router anycast address (its first) cannot serve a "
    "Service: the subnet's routers own it (and nodes that forward IPv6 bind it), so traffic "
    "from off the segment ends at the router and never reaches the speaker."
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
    an IPv4 node subnet, or the subnet-router anycast address of an IPv6 one: OpenELB hands
    it out too (a CIDR pool's first address first), and it cannot work (an IPv4 subnet's
    network address is only warned about)."""
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
    anycast = False
    for key, fact in inventory.node_subnet_ends.within(pool):
        if key != fact.span.first:
            what = f"{key_text(key)}, the broadcast address of node subnet {fact.span}"
        elif key < V6_OFFSET:
            network.setdefault(key, fact)
            continue
        else:
            anycast = True
            what = f"{key_text(key)}, the subnet-router anycast address of node subnet {fact.span}"
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
        # A pool is of one family: its subnet ends are all IPv4 broadcasts or IPv6 anycasts.
        why += f" {_ANYCAST if anycast else _BROADCAST}"
        ends_are = "subnet-router anycast" if anycast else "broadcast"
        leave = f"node addresses, gateways and the {ends_are} addresses of node subnets"
    else:
        leave = "node addresses and gateways"
    ips = [n.split(",")[0] for n in named.values()]
    short = (
        f"the pool contains {first_of([what for _, (_, what) in sorted(ends.items())] + ips)}"
        if ends
        else f"the pool contains {first_of(ips)}, a node's address or gateway"
    )
    yield Violation(
        "address-node-ip",
        ADDRESS,
        eip.address_text,
        f"the pool contains {some_of(names)}.{why} Leave {leave} out of the pool (split the "
        "range around them).",
        short,
    )


def _pool_size(eip: Eip) -> Iterator[Violation]:
    """A pool whose size OpenELB counts in a Go int64 that overflows: an IPv6 CIDR of /65 or
    shorter (0 for 64 host bits or more, MinInt64 for 63), or a range of 2^63 addresses or
    more that GetSize still reads (the others parse_range refuses, as GetSize does). Its
    IPAM then hands out offsets below that size (none), and its overlap test adds size-1 to
    the first address (misjudged)."""
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
    never count as Service IPs (cluster IPs aside): they are OpenELB's own hand-outs from
    this pool."""
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
                if rule_what is None:
                    continue
                # A status.used IP is OpenELB's own hand-out, never a cluster IP: the
                # cluster routes that one inside whoever it was handed to.
                if own and key in own and source.field is not CLUSTER_IPS_FIELD:
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
        # One range of one object once: a node's pod CIDR is in its spec.podCIDRs, in
        # Cilium's annotation and in its CiliumNode (owner_ref).
        ranged: set[tuple[str, Span, str]] = set()
        for fact in ranges:  # CIDRs and pools: a few
            source = fact.source
            if service:
                rule_what = _SERVICE_IP_RULE.get(source.field)
                if rule_what is None:
                    continue
                rule, what = rule_what
            once = (rule, fact.span, owner_ref(source))
            if once in ranged:
                continue
            ranged.add(once)
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
        ordered = sorted(named[rule], key=_claim_order)[:MAX_NAMED]
        texts = [_claim_text(pool, *fact[2:]) for fact in ordered]
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


def _claim_order(
    entry: tuple[int, str, FactKind, Span, Source, str],
) -> tuple[int, str, str, int, int, int, str]:
    """Named facts by address, then object: one object may hold one range as a CIDR and
    as a range (kube-vip's cidr-global and range-global), or two kinds of range at one
    address (kubeadm's pod and Service subnets), and neither a None prefix nor a FactKind
    orders against its like."""
    start, ref, kind, span, source, _ = entry
    prefix = -1 if span.prefix is None else span.prefix
    return start, ref, kind.value, span.first, span.last, prefix, source.field


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
        short = f"{KIND_TEXT[kind]} {span} of {ref}"
    else:
        short = f"{shared}, part of {KIND_TEXT[kind]} {span} of {ref}"
    return f"{short} ({source.field})", short, shared.first == shared.last
