"""A free ``can_reach`` IP to suggest in a denial: what claims an address (the kinds of
fact a ``can_reach`` IP must avoid, shared with the rules), and the first free addresses of
a node subnet, found once per inventory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import cast

from app.core.addresses import V6_OFFSET, Span, key_text, special_kind_of_key
from app.core.eips import Eip
from app.core.facts import Fact, FactKind
from app.core.interfaces import CanReach
from app.core.inventory import Inventory
from app.core.rules.review import MAX_NAMED

# What claims an address so that a can_reach IP must avoid it (bound on nodes, or routed
# into the pod network), and the rule that denies it there, in the order denials list them.
RULE_OF_KIND: dict[FactKind, str] = {
    FactKind.NODE_IP: "can-reach-node-ip",
    FactKind.KUBE_VIP_VIP: "can-reach-kube-vip",
    FactKind.KUBE_VIP_POOL: "can-reach-kube-vip",
    FactKind.SERVICE_IP: "can-reach-service-ip",
    FactKind.SERVICE_CIDR: "can-reach-service-ip",
    FactKind.POD_CIDR: "can-reach-pod-cidr",
}
CLAIM_KINDS = tuple(RULE_OF_KIND)


def pools_containing(key: int, candidate: Eip, inventory: Inventory) -> list[Eip]:
    """The pools holding ``key``: the candidate's own first, in place of its stored version."""
    pools = [e for e in inventory.eip_pools.containing(key) if e.name != candidate.name]
    if candidate.address is not None and candidate.address.contains(key):
        pools.insert(0, candidate)
    return pools


def anycast_of(key: int, subnets: Sequence[Fact]) -> tuple[Fact, ...]:
    """The IPv6 node subnets (of ``subnets``, those holding ``key``) whose subnet-router
    anycast address (all host bits zero) is ``key``: a router (IPv6 forwarding on) binds it
    for each on-link prefix shorter than /127, and 'ip route get' answers 'anycast ... dev
    lo', the trap of bound IPs. One fact per subnet (the nodes of a rack report one)."""
    if key < V6_OFFSET:
        return ()
    seen: dict[Span, Fact] = {}
    for fact in subnets:
        span = fact.span
        if span.first == key and span.prefix is not None and span.prefix < 127:
            seen.setdefault(span, fact)
    return tuple(seen.values())


def _unusable(key: int, inventory: Inventory) -> bool:
    """Whether a ``can_reach`` IP ``key`` is denied whatever claims it: a special address,
    or the subnet-router anycast address of a known IPv6 node subnet (can_reach_rules)."""
    return special_kind_of_key(key) is not None or bool(
        key >= V6_OFFSET and anycast_of(key, inventory.containing(FactKind.NODE_SUBNET, key))
    )


def _is_taken(key: int, candidate: Eip | None, inventory: Inventory) -> int | None:
    """None when nothing claims ``key``; else the last address of the claim, to skip past.

    With no candidate, every stored Eip counts (the answer then depends on the inventory
    alone, so it can be cached there).
    """
    if _unusable(key, inventory):
        return key
    last: int | None = None
    pools = (
        inventory.eip_pools.containing(key)
        if candidate is None
        else pools_containing(key, candidate, inventory)
    )
    for pool in pools:
        assert pool.address is not None
        last = max(last or key, pool.address.last)
    for fact in inventory.matching_any(CLAIM_KINDS, key):
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
        for kind in CLAIM_KINDS:
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
            elif _unusable(key, inventory):  # e.g. the anycast address of a nested subnet
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
    """The lowest node subnets of a family, where a suggestion for an IP in no known subnet
    looks. None of the other family: an IPv4 can_reach IP picks the NIC of the IPv4
    network, which need not carry the IPv6 pool's subnet (nor the other way round), and
    OpenELB's speaker (v0.6 and later) then announces nothing."""
    memo_key = ("first-subnets", v6)
    found = inventory.memo.get(memo_key)
    if found is None:
        index = inventory.spans.get(FactKind.NODE_SUBNET)
        every = index.all() if index else ()
        same = [f for f in every if (f.span.first >= V6_OFFSET) == v6]
        found = inventory.memo[memo_key] = tuple(same[:MAX_NAMED])
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


def advise(candidate: Eip, subnets: Sequence[Fact], inventory: Inventory) -> str:
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
