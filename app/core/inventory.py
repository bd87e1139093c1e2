"""Cluster facts from plain Kubernetes objects, in two pure steps.

``extract(obj)`` (in :mod:`app.core.extraction`) turns one object into what the rules need
of it (an :class:`Extract`), so a live watcher can keep one small extract per object.
``assemble(extracts)`` joins extracts into an immutable :class:`Inventory` with indexes;
it resolves kube-vip values that point at ConfigMaps or DNS names (DNS through a
resolver passed in, so the core itself never touches the network). ``build(objects)``
does both for a snapshot, filing facts as they are extracted. ``update(inventory, gone,
new)`` makes the inventory after a change from the one before and the changed extracts,
as ``assemble`` would make it from all of them.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, cast

from app.core.addresses import V6_OFFSET, AddressError, IntervalIndex, PointIndex, Span, parse_ip
from app.core.eips import Eip, is_eip
from app.core.extraction import (
    DEFAULT_OPTIONS,
    EMPTY,
    EXTRACTORS,
    KINDS,
    Extract,
    FactBuilder,
    Options,
    VipValue,
    eip_notes,
    extract,
    vip_text,
)
from app.core.facts import Fact, FactKind, Source
from app.core.interfaces import CanReach

__all__ = [  # with what extraction.py holds that callers of the inventory use
    "DEFAULT_OPTIONS",
    "EMPTY",
    "Extract",
    "Inventory",
    "Options",
    "Resolver",
    "assemble",
    "build",
    "extract",
    "first_lines",
    "update",
]

_new = tuple.__new__  # Fact and Span without their Python-level __new__ (hot path)

Resolver = Callable[[str], list[str]]
"""Resolves a DNS name to IP strings; raises OSError (or returns []) when it cannot."""


_Lookup = tuple[
    FactKind,
    Callable[[int], tuple[Source, ...]] | None,
    Callable[[int], tuple[Fact, ...]] | None,
]


@dataclass(frozen=True)
class Inventory:
    """Everything the rules know about a cluster; immutable, swapped whole when it changes."""

    eips: Mapping[str, Eip] = field(default_factory=dict)
    eip_pools: IntervalIndex[Eip] = field(default_factory=lambda: IntervalIndex(()))
    can_reach_ips: PointIndex[Eip] = field(default_factory=lambda: PointIndex(()))
    default_eips: tuple[str, ...] = ()
    # Single-IP facts keep only their source, by key; at() remakes the fact on demand: a
    # Fact and a Span each for 130,000 Service and node IPs were a fifth of the inventory.
    points: Mapping[FactKind, PointIndex[Source]] = field(default_factory=dict)
    spans: Mapping[FactKind, IntervalIndex[Fact]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # values we could not read, for the logs
    gaps: tuple[str, ...] = ()  # facts we could not learn: no Node or Service, kube-vip names
    # ConfigMaps (namespace, name) a kube-vip value reads: a change to one needs a whole
    # assemble; a change to any other (cluster-autoscaler rewrites its status every 10 s in
    # kube-system, where kube-vip's ConfigMaps are watched) is patched like any object.
    vip_configmaps: frozenset[tuple[str, str]] = frozenset()
    # Answers the rules derive from this inventory alone, kept on first use (the inventory
    # never changes, so neither do they): e.g. the free addresses suggested per subnet.
    memo: dict[Hashable, object] = field(default_factory=dict, compare=False, repr=False)

    def at(self, kind: FactKind, key: int) -> tuple[Fact, ...]:
        """Facts of ``kind`` naming exactly this address (single IPs)."""
        index = self.points.get(kind)
        return _point_facts(kind, key, index.at(key)) if index is not None else ()

    def containing(self, kind: FactKind, key: int) -> tuple[Fact, ...]:
        """Facts of ``kind`` whose range (CIDR, pool, subnet) contains this address."""
        index = self.spans.get(kind)
        return index.containing(key) if index is not None else ()

    def covering(self, kind: FactKind, span: Span) -> tuple[Fact, ...]:
        """Facts of ``kind`` whose range holds all of ``span`` (a node subnet around a pool)."""
        index = self.spans.get(kind)
        return index.covering(span) if index is not None else ()

    def matching(self, kind: FactKind, key: int) -> tuple[Fact, ...]:
        """``at`` then ``containing``; inlined, as every verdict asks this for six kinds."""
        points, spans = self.points.get(kind), self.spans.get(kind)
        exact = _point_facts(kind, key, points.at(key)) if points is not None else ()
        inside = spans.containing(key) if spans is not None else ()
        return exact + inside if exact and inside else exact or inside

    def matching_any(self, kinds: tuple[FactKind, ...], key: int) -> list[Fact]:
        """``matching`` for several kinds in one call, in their order (every can_reach
        verdict asks six, and six calls cost twice this one)."""
        found: list[Fact] = []
        for kind, at, containing in self._lookups(kinds):
            if at is not None:
                sources = at(key)
                if sources:
                    found += _point_facts(kind, key, sources)
            if containing is not None:
                found += containing(key)
        return found

    def _lookups(self, kinds: tuple[FactKind, ...]) -> tuple[_Lookup, ...]:
        """The indexes holding ``kinds``, found once per inventory (kinds with none skipped)."""
        memo_key = ("lookups", kinds)
        found = self.memo.get(memo_key)
        if found is None:
            found = self.memo[memo_key] = tuple(
                (kind, points.at if points else None, spans.containing if spans else None)
                for kind in kinds
                for points, spans in [(self.points.get(kind), self.spans.get(kind))]
                if points or spans
            )
        return cast(tuple[_Lookup, ...], found)

    def count(self, kind: FactKind) -> int:
        return len(self.points.get(kind) or ()) + len(self.spans.get(kind) or ())

    @functools.cached_property
    def node_subnet_names(self) -> Mapping[int, tuple[str, ...]]:
        """The distinct node subnets as text, sorted, per IP version (4, 6): once per inventory."""
        index = self.spans.get(FactKind.NODE_SUBNET)
        names: dict[int, set[str]] = {4: set(), 6: set()}
        # Distinct spans first: 10,000 nodes report a few hundred subnets.
        for span in {fact.span for fact in index.all()} if index is not None else ():
            names[span.version].add(str(span))
        return MappingProxyType({v: tuple(sorted(n)) for v, n in names.items()})

    @functools.cached_property
    def node_subnet_ends(self) -> PointIndex[Fact]:
        """The network and broadcast addresses of the distinct IPv4 node subnets shorter than
        /31, and the subnet-router anycast address (the first) of the IPv6 ones shorter than
        /127 (one fact each, the first seen), by address: once per inventory, so a pool is
        checked for them by one range query (10,000 nodes report a few hundred subnets)."""
        index = self.spans.get(FactKind.NODE_SUBNET)
        firsts: dict[Span, Fact] = {}
        for fact in index.all() if index is not None else ():
            span = fact.span
            if span.prefix is not None and span.prefix < (31 if span.first < V6_OFFSET else 127):
                firsts.setdefault(span, fact)
        return PointIndex(
            (key, fact)
            for span, fact in firsts.items()
            for key in ((span.first, span.last) if span.first < V6_OFFSET else (span.first,))
        )

    @property
    def fact_count(self) -> int:
        return sum(self.count(k) for k in FactKind) + len(self.eips)

    @property
    def problems(self) -> tuple[str, ...]:
        """What this inventory could not check (gaps) or read (notes), one line each, for an
        edge to print or log: an admin must learn that a value was ignored."""
        return (*(f"not checked: {gap}" for gap in self.gaps), *self.notes)


def first_lines(lines: Sequence[str], limit: int = 10) -> list[str]:
    """At most ``limit`` of ``lines`` and one that counts the rest: a bad annotation on every
    one of 10,000 nodes is one line per node."""
    if len(lines) <= limit:
        return list(lines)
    return [*lines[:limit], f"... and {len(lines) - limit} more"]


def _point_facts(kind: FactKind, key: int, sources: tuple[Source, ...]) -> tuple[Fact, ...]:
    """The facts of single IPs, remade from what the point index keeps."""
    if not sources:
        return ()
    span = _new(Span, (key, key, None))
    return tuple([_new(Fact, (kind, span, source)) for source in sources])


def _resolve_vips(
    values: Iterable[VipValue],
    configmaps: Mapping[tuple[str, str], Mapping[str, str]],
    resolve: Resolver | None,
) -> tuple[list[Fact], list[str]]:
    """kube-vip values that need another object or DNS; returns facts and gaps."""
    facts: list[Fact] = []
    notes: list[str] = []
    for value in values:
        if value.secret:
            notes.append(
                f"{value.source}: Secret {value.secret} is not read by eip-guard; a kube-vip "
                "VIP set there is not checked"
            )
            continue
        if value.configmap is not None:
            if any(_has_key(configmaps, ref) for ref in value.unless):
                continue  # an optional env ref to the same variable sets it: env wins
            ns, name, key = value.configmap
            data = configmaps.get((ns, name))
            text = None if data is None else data.get(key)
            if text is None:
                if (data is None and not value.absent_ok) or (
                    data is not None and not value.optional
                ):
                    found = "not found" if data is None else f"key {key!r} not found"
                    notes.append(f"{value.source}: ConfigMap {ns}/{name} {found}")
                continue
            b = FactBuilder({}, value.source.kind)
            names = vip_text(b, text, value.source)
            facts.extend(b.done().every_fact)
        else:
            names = [value]
        for pending in names:
            ips: list[str] = []
            if resolve is not None:
                try:
                    ips = resolve(pending.text)
                except (OSError, ValueError):
                    # ValueError: a name DNS cannot carry ("vip..example", a label over 63
                    # characters) fails in IDNA encoding, not in the lookup.
                    ips = []
            if not ips:
                notes.append(
                    f"{pending.source}: could not resolve {pending.text!r}; "
                    "that kube-vip VIP is not checked"
                )
            for ip in ips:
                try:
                    span = Span.of_ip(parse_ip(ip))
                except AddressError:
                    continue
                facts.append(Fact(FactKind.KUBE_VIP_VIP, span, pending.source))
    return facts, notes


def _has_key(
    configmaps: Mapping[tuple[str, str], Mapping[str, str]], ref: tuple[str, str, str]
) -> bool:
    """Whether ConfigMap (namespace, name) holds ``key`` (kubelet sets a variable from it,
    even to an empty value)."""
    data = configmaps.get(ref[:2])
    return data is not None and ref[2] in data


def _read_configmaps(values: Iterable[VipValue]) -> frozenset[tuple[str, str]]:
    """The ConfigMaps (namespace, name) that kube-vip ``values`` read, or whose keys decide
    whether an envFrom value stands (``unless``): a change to one resolves them anew."""
    return frozenset(
        ref[:2] for value in values for ref in (value.configmap, *value.unless) if ref is not None
    )


class _Filing:
    """What an inventory is made of, filed as each object's facts come: single addresses as
    (key, source) per kind for the point indexes, other facts per kind for the interval ones.

    Filed as they come, a snapshot's extracts and facts die one by one. Kept until the end,
    they were interleaved in memory with what the inventory keeps, and their freed pages
    stayed resident: 50 MB at the xl size.
    """

    __slots__ = (
        "configmaps",
        "eips",
        "notes",
        "point_keys",
        "point_sources",
        "span_facts",
        "vip_values",
    )

    def __init__(self) -> None:
        self.point_keys: dict[FactKind, list[int]] = {k: [] for k in FactKind}
        self.point_sources: dict[FactKind, list[Source]] = {k: [] for k in FactKind}
        self.span_facts: dict[FactKind, list[Fact]] = {k: [] for k in FactKind}
        self.eips: dict[str, Eip] = {}
        self.vip_values: list[VipValue] = []
        self.configmaps: dict[tuple[str, str], Mapping[str, str]] = {}
        self.notes: list[str] = []

    def file_one(self, kind: FactKind, span: Span, source: Source) -> None:
        if _is_point(span):
            self.point_keys[kind].append(span.first)
            self.point_sources[kind].append(source)
        else:
            self.span_facts[kind].append(_new(Fact, (kind, span, source)))

    def file(self, facts: Iterable[Fact]) -> None:
        for kind, span, source in facts:
            self.file_one(kind, span, source)

    def take(self, ex: Extract) -> None:
        if ex.points:
            keys, sources = self.point_keys, self.point_sources
            for kind, key, source in ex.point_triples():
                keys[kind].append(key)
                sources[kind].append(source)
        if ex.facts:
            self.file(ex.facts)
        if ex.notes:
            self.notes.extend(ex.notes)
        if ex.vip_values:
            self.vip_values.extend(ex.vip_values)
        if ex.eip is not None:
            self.eips[ex.eip.name] = ex.eip
        if ex.configmap is not None:
            self.configmaps[ex.configmap[0], ex.configmap[1]] = ex.configmap[2]

    def inventory(self, resolve: Resolver | None, unread: Iterable[str] = ()) -> Inventory:
        more, vip_gaps = _resolve_vips(self.vip_values, self.configmaps, resolve)
        gaps = [*unread, *vip_gaps]
        self.file(more)
        points = {
            k: PointIndex.of_columns(keys, self.point_sources[k])
            for k, keys in self.point_keys.items()
            if keys
        }
        spans = {
            k: IntervalIndex((f.span, f) for f in facts)
            for k, facts in self.span_facts.items()
            if facts
        }
        return _indexed(
            self.eips,
            _eip_indexes(self.eips),
            points,
            spans,
            notes=self.notes,
            gaps=gaps,
            vip_configmaps=_read_configmaps(self.vip_values),
        )


_EipIndexes = tuple[IntervalIndex[Eip], PointIndex[Eip], tuple[str, ...]]


def _eip_indexes(eips: Mapping[str, Eip]) -> _EipIndexes:
    """The pools, the can_reach IPs and the default Eips of ``eips``."""
    return (
        IntervalIndex((e.address, e) for e in eips.values() if e.address is not None),
        PointIndex(
            (e.interface.key, e) for e in eips.values() if isinstance(e.interface, CanReach)
        ),
        tuple(sorted(name for name, e in eips.items() if e.is_default)),
    )


def _indexed(
    eips: Mapping[str, Eip],
    eip_indexes: _EipIndexes,
    points: dict[FactKind, PointIndex[Source]],
    spans: dict[FactKind, IntervalIndex[Fact]],
    *,
    notes: Iterable[str],
    gaps: Iterable[str],
    vip_configmaps: frozenset[tuple[str, str]],
    subnet_names: Mapping[int, tuple[str, ...]] | None = None,
    subnet_ends: PointIndex[Fact] | None = None,
) -> Inventory:
    pools, can_reach, defaults = eip_indexes
    inventory = Inventory(
        eips=eips if isinstance(eips, MappingProxyType) else MappingProxyType(eips),
        eip_pools=pools,
        can_reach_ips=can_reach,
        default_eips=defaults,
        points=MappingProxyType(points),
        spans=MappingProxyType(spans),
        notes=tuple(notes),
        gaps=_with_missing(gaps, points, spans),
        vip_configmaps=vip_configmaps,
    )
    if subnet_names is not None:  # a cached_property: set where it keeps its value
        inventory.__dict__["node_subnet_names"] = subnet_names
    if subnet_ends is not None:
        inventory.__dict__["node_subnet_ends"] = subnet_ends
    inventory.node_subnet_names  # noqa: B018 (computed here, off the request path)
    inventory.node_subnet_ends  # noqa: B018 (the same)
    return inventory


# Kinds of fact whose absence means a class of checks did not run: a snapshot made without
# nodes or services would otherwise allow every can_reach IP that they bind. Each text fits
# a kubectl warning (WARNING_LIMIT) after "eip-guard: not checked: ".
_NEEDED: tuple[tuple[tuple[FactKind, ...], str], ...] = (
    (
        (FactKind.NODE_IP,),
        "node IPs, subnets and pod CIDRs: no Node has an address "
        "(a snapshot needs 'kubectl get nodes')",
    ),
    (
        # Not a Service range: every cluster has the 'kubernetes' Service, and a range read
        # from kube-system's static Pods or kubeadm-config says nothing of the Services.
        (FactKind.SERVICE_IP,),
        "Service IPs: no Service has an IP (a snapshot needs 'kubectl get services -A')",
    ),
)
_MISSING_GAPS = frozenset(text for _, text in _NEEDED)


def _with_missing(
    gaps: Iterable[str], points: Mapping[FactKind, object], spans: Mapping[FactKind, object]
) -> tuple[str, ...]:
    """``gaps`` with one for each needed kind of fact the indexes lack, first: made here, where
    every inventory is made, so that a patched inventory gains and loses them as a whole one."""
    missing = [text for kinds, text in _NEEDED if not any(k in points or k in spans for k in kinds)]
    return (*missing, *(g for g in gaps if g not in _MISSING_GAPS))


def _is_point(span: Span) -> bool:
    """Whether a fact on ``span`` is filed in a point index (a single address)."""
    return span.first == span.last and span.prefix is None


class _Filer(FactBuilder):
    """A builder for ``build``: files each fact as :func:`assemble` would file the object's
    extract, without making the extract, nor a Fact and a Span for a single address (the
    point index keeps only its key and source). One for all objects (``start`` each)."""

    __slots__ = ("_filing",)

    def __init__(self, filing: _Filing) -> None:
        super().__init__({}, "")
        self._filing = filing
        self.notes = filing.notes  # in object order, as assemble joins them
        self.vip_values = filing.vip_values

    def start(self, obj: Mapping[str, Any], kind: str) -> None:
        self.obj, self.kind, self._first = obj, kind, None
        self._sources.clear()

    def point(self, fact_kind: FactKind, key: int, source: Source) -> None:
        self._filing.point_keys[fact_kind].append(key)
        self._filing.point_sources[fact_kind].append(source)

    def fact(self, fact_kind: FactKind, span: Span, source: Source) -> None:
        self._filing.file_one(fact_kind, span, source)

    def set_configmap(self, ns: str, name: str, data: Mapping[str, str]) -> None:
        self._filing.configmaps[ns, name] = data


def assemble(
    extracts: Iterable[Extract], resolve: Resolver | None = None, unread: Iterable[str] = ()
) -> Inventory:
    """Join extracts into an indexed, immutable inventory. ``unread``: gaps the caller knows
    of, what it could not read (live mode: a source it may not list); ``update`` keeps them."""
    filing = _Filing()
    for ex in extracts:
        filing.take(ex)
    return filing.inventory(resolve, unread)


MAX_CHANGES = 1_000  # changed objects above which assembling whole is about as quick


def update(
    inventory: Inventory, gone: Sequence[Extract], new: Sequence[Extract]
) -> Inventory | None:
    """``inventory`` without what ``gone`` contributed and with what ``new`` does: the
    inventory ``assemble`` makes of the extracts after a change, made from the one before.

    Only the indexes of the kinds that changed are made again, and point indexes (100,000
    Service IPs) are copied and patched: a Service's change costs milliseconds where a
    whole assemble takes about a second at the xl size. None when the change needs a whole
    assemble: kube-vip values (resolved against every ConfigMap, and DNS) and the ConfigMaps
    they read, too many changes, or something to remove that the inventory does not hold
    (then it was not made from these extracts). The same inventory when nothing the rules
    read changed (a ConfigMap no kube-vip value reads).
    """
    if len(gone) + len(new) > 2 * MAX_CHANGES:
        return None
    read = inventory.vip_configmaps
    if any(
        ex.vip_values or (ex.configmap is not None and ex.configmap[:2] in read)
        for ex in (*gone, *new)
    ):
        return None
    if all(_no_facts(ex) for ex in (*gone, *new)):
        return inventory
    changes: dict[FactKind, tuple[list[tuple[int, Source]], list[tuple[int, Source]]]] = {}
    span_changes: dict[FactKind, tuple[list[Fact], list[Fact]]] = {}
    for side, extracts in ((0, gone), (1, new)):
        for ex in extracts:
            for kind, key, source in ex.point_triples():
                changes.setdefault(kind, ([], []))[side].append((key, source))
            for fact in ex.facts:
                if _is_point(fact.span):
                    pair = (fact.span.first, fact.source)
                    changes.setdefault(fact.kind, ([], []))[side].append(pair)
                else:
                    span_changes.setdefault(fact.kind, ([], []))[side].append(fact)
    points = dict(inventory.points)
    for kind, (removed, added) in changes.items():
        index = points.get(kind)
        patched = (index or PointIndex(())).patched(removed, added)
        if patched is None:
            return None
        if len(patched):
            points[kind] = patched
        else:
            points.pop(kind, None)
    spans = dict(inventory.spans)
    for kind, (removed_facts, added_facts) in span_changes.items():
        kept = _without(spans[kind].all() if kind in spans else (), removed_facts)
        if kept is None:
            return None
        facts = [*kept, *added_facts]
        if facts:
            spans[kind] = IntervalIndex((f.span, f) for f in facts)
        else:
            spans.pop(kind, None)
    eips, eip_indexes = _updated_eips(
        inventory,
        [ex.eip for ex in gone if ex.eip is not None],
        [ex.eip for ex in new if ex.eip is not None],
    )
    notes = _without(inventory.notes, [note for ex in gone for note in ex.notes])
    if eips is None or eip_indexes is None or notes is None:
        return None
    notes += [note for ex in new for note in ex.notes]
    subnets = spans.get(FactKind.NODE_SUBNET)
    same_subnets = subnets is inventory.spans.get(FactKind.NODE_SUBNET)
    return _indexed(
        eips,
        eip_indexes,
        points,
        spans,
        notes=notes,
        gaps=inventory.gaps,
        vip_configmaps=read,
        # Kept when the node subnets did not change: made anew, 25 ms at 10,000 nodes.
        subnet_names=inventory.node_subnet_names if same_subnets else None,
        subnet_ends=inventory.node_subnet_ends if same_subnets else None,
    )


def _no_facts(ex: Extract) -> bool:
    """Whether ``ex`` adds nothing to an inventory (a ConfigMap's own data aside)."""
    return not (ex.points or ex.facts or ex.eip or ex.notes or ex.vip_values)


def _updated_eips(
    inventory: Inventory, gone: list[Eip], new: list[Eip]
) -> tuple[Mapping[str, Eip] | None, _EipIndexes | None]:
    """The Eips and their indexes after a change; (None, None) when ``gone`` are not held.

    OpenELB writes an Eip's ``status.used`` on every IP it hands out, so most changes keep
    each Eip's address: then the pool index swaps the Eip in place (made whole, 50,000 pools
    took 0.2 s)."""
    if not gone and not new:
        indexes = (inventory.eip_pools, inventory.can_reach_ips, inventory.default_eips)
        return inventory.eips, indexes
    # The proxy's copy is the dict's own: dict(proxy) reads 50,000 Eips one by one (15 ms).
    eips = cast("MappingProxyType[str, Eip]", inventory.eips).copy()
    for eip in gone:
        if eips.get(eip.name) != eip:
            return None, None
        del eips[eip.name]
    for eip in new:
        eips[eip.name] = eip
    before = {e.name: e for e in gone}
    after = {e.name: e for e in new}
    swaps = [
        (e.address, e, after[name])
        for name, e in before.items()
        if name in after and e.address is not None
    ]
    pools = None
    if before.keys() == after.keys() and all(before[n].address == after[n].address for n in before):
        pools = inventory.eip_pools.swapped(swaps)
    if pools is None:
        return eips, _eip_indexes(eips)
    can_reach = inventory.can_reach_ips.patched(
        [(e.interface.key, e) for e in gone if isinstance(e.interface, CanReach)],
        [(e.interface.key, e) for e in new if isinstance(e.interface, CanReach)],
    )
    if can_reach is None:
        return eips, _eip_indexes(eips)
    defaults = set(inventory.default_eips) - before.keys() | {e.name for e in new if e.is_default}
    return eips, (pools, can_reach, tuple(sorted(defaults)))


H = TypeVar("H", bound=Hashable)


def _without(items: Iterable[H], removed: Iterable[H]) -> list[H] | None:
    """``items`` less one occurrence of each of ``removed``; None if one is missing."""
    drop = Counter(removed)
    if not drop:
        return list(items)
    kept = []
    for item in items:
        if drop[item] > 0:
            drop[item] -= 1
        else:
            kept.append(item)
    return None if any(drop.values()) else kept


def build(
    objects: Iterable[Mapping[str, Any]],
    options: Options = DEFAULT_OPTIONS,
    resolve: Resolver | None = None,
) -> Inventory:
    """The whole path for a snapshot: objects in, inventory out. The same inventory as
    ``assemble(extract(o) for o in objects)``, without making the extracts on the way."""
    filing = _Filing()
    filer = _Filer(filing)
    eips, service = filing.eips, EXTRACTORS["Service"]
    for obj in objects:
        kind = obj.get("kind")
        if kind == "Service":  # the most common kind first
            filer.start(obj, kind)
            service(filer, options)
        elif kind == "Eip":
            if is_eip(obj):
                eip = Eip.from_object(obj)
                eips[eip.name] = eip
                if eip.address is None:
                    filing.notes.extend(eip_notes(eip))
        elif kind in KINDS:
            filer.start(obj, kind)
            EXTRACTORS[kind](filer, options)
    return filing.inventory(resolve)
