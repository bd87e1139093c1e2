"""Cluster facts from plain Kubernetes objects, in two pure steps.

``extract(obj)`` turns one object into what the rules need of it (an :class:`Extract`),
so a live watcher can keep one small extract per object instead of whole objects.
``assemble(extracts)`` joins extracts into an immutable :class:`Inventory` with indexes;
it resolves kube-vip values that point at ConfigMaps or DNS names (DNS through a
resolver passed in, so the core itself never touches the network).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from app.core.addresses import (
    AddressError,
    IntervalIndex,
    PointIndex,
    Span,
    is_loopback_or_link_local,
    parse_eip_address,
    parse_ip,
    parse_ip_or_cidr,
    parse_key_with_prefix,
)
from app.core.eips import Eip, is_eip, own
from app.core.facts import Fact, FactKind, Source
from app.core.fields import as_list, as_mapping, as_str
from app.core.interfaces import CanReach

NODE_REPORT_ANNOTATION = "eip-guard.io/network"
CALICO_ANNOTATIONS = ("projectcalico.org/IPv4Address", "projectcalico.org/IPv6Address")
FLANNEL_ANNOTATION = "flannel.alpha.coreos.com/public-ip"
KUBE_VIP_LB_ANNOTATION = "kube-vip.io/loadbalancerIPs"
OPENELB_IP_ANNOTATION = "eip.openelb.kubesphere.io/v1alpha1"
KUBE_VIP_ENV = ("address", "vip_address")
_NODE_REPORT_FIELD = sys.intern(f"annotation {NODE_REPORT_ANNOTATION}")
_KUBE_VIP_LB_FIELD = sys.intern(f"annotation {KUBE_VIP_LB_ANNOTATION}")
_OPENELB_IP_FIELD = sys.intern(f"annotation {OPENELB_IP_ANNOTATION}")

Resolver = Callable[[str], list[str]]
"""Resolves a DNS name to IP strings; raises OSError (or returns []) when it cannot."""


@dataclass(frozen=True, slots=True)
class Options:
    kube_vip_configmap: tuple[str, str] = ("kube-system", "kubevip")


@dataclass(frozen=True, slots=True)
class VipValue:
    """A kube-vip env value that assemble must finish: a DNS name or a ConfigMap key."""

    source: Source
    text: str = ""  # literal value (IPs already became facts; what is left are names)
    configmap: tuple[str, str, str] | None = None  # (namespace, name, key)


class Extract(NamedTuple):
    """What one object contributes (a NamedTuple: made once per object, 160,000 at a time)."""

    facts: tuple[Fact, ...] = ()
    eip: Eip | None = None
    vip_values: tuple[VipValue, ...] = ()
    configmap: tuple[str, str, Mapping[str, str]] | None = None  # (namespace, name, data)
    notes: tuple[str, ...] = ()  # what an admin should know: values we could not read


EMPTY = Extract()
DEFAULT_OPTIONS = Options()
_new = tuple.__new__  # Span, Fact and Source without their Python-level __new__ (hot path)


def _source(obj: Mapping[str, Any], kind: str, fld: str) -> Source:
    meta = as_mapping(obj.get("metadata"))
    # Interned: 200,000 facts share a handful of kinds, namespaces and field names.
    namespace = sys.intern(own(as_str(meta.get("namespace"))))
    name = own(as_str(meta.get("name")))
    return _new(Source, (sys.intern(kind), namespace, name, sys.intern(fld)))


class _Builder:
    """Collects the facts of one object; unreadable values become notes, never errors."""

    __slots__ = ("_first", "_sources", "facts", "kind", "notes", "obj")

    def __init__(self, obj: Mapping[str, Any], kind: str) -> None:
        self.obj, self.kind = obj, kind
        self.facts: list[Fact] = []
        self.notes: list[str] = []
        self._first: Source | None = None
        self._sources: dict[str, Source] = {}

    def source(self, fld: str) -> Source:
        """One Source per field of this object, shared by its facts (and one name copy)."""
        first = self._first
        if first is None:
            first = self._first = _source(self.obj, self.kind, fld)
            self._sources[fld] = first
            return first
        if first.field is fld:  # the usual case: every fact of the object from one field
            return first
        found = self._sources.get(fld)
        if found is None:  # a node has facts from five fields: copy its name once, not five
            found = _new(Source, (first.kind, first.namespace, first.name, sys.intern(fld)))
            self._sources[fld] = found
        return found

    def add(self, fact_kind: FactKind, text: Any, fld: str, *, quiet: bool = False) -> None:
        first = self._first  # source()'s usual case, without the call (200,000 facts)
        source = first if first is not None and first.field is fld else self.source(fld)
        try:
            span = parse_ip_or_cidr(text if type(text) is str else as_str(text))
        except AddressError as exc:
            if not quiet:
                self.notes.append(f"{source}: ignored {text!r}: {exc}")
            return
        self.facts.append(_new(Fact, (fact_kind, span, source)))

    def add_span(self, fact_kind: FactKind, span: Span, fld: str) -> None:
        self.facts.append(_new(Fact, (fact_kind, span, self.source(fld))))

    def done(self, **extra: Any) -> Extract:
        if extra:
            return Extract(facts=tuple(self.facts), notes=tuple(self.notes), **extra)
        return _new(Extract, (tuple(self.facts), None, (), None, tuple(self.notes)))


def _node(obj: Mapping[str, Any]) -> Extract:
    b = _Builder(obj, "Node")
    status, spec = as_mapping(obj.get("status")), as_mapping(obj.get("spec"))
    annotations = as_mapping(as_mapping(obj.get("metadata")).get("annotations"))
    for addr in map(as_mapping, as_list(status.get("addresses"))):
        addr_type, value = as_str(addr.get("type")), as_str(addr.get("address"))
        if addr_type in ("InternalIP", "ExternalIP"):
            b.add(FactKind.NODE_IP, value, f"status.addresses {addr_type}")
        elif addr_type == "Hostname":  # a hostname is only a fact when it is an IP
            b.add(FactKind.NODE_IP, value, "status.addresses Hostname", quiet=True)
    cidrs = as_list(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for cidr in cidrs:
        b.add(FactKind.POD_CIDR, cidr, "spec.podCIDRs")
    if FLANNEL_ANNOTATION in annotations:
        b.add(FactKind.NODE_IP, annotations[FLANNEL_ANNOTATION], f"annotation {FLANNEL_ANNOTATION}")
    for key in CALICO_ANNOTATIONS:
        if key in annotations:
            fld = f"annotation {key}"
            try:
                ip, subnet = parse_key_with_prefix(as_str(annotations[key]))
            except AddressError as exc:
                b.notes.append(f"{_source(obj, 'Node', fld)}: ignored: {exc}")
                continue
            b.add_span(FactKind.NODE_IP, Span(ip, ip), fld)
            b.add_span(FactKind.NODE_SUBNET, subnet, fld)
    if NODE_REPORT_ANNOTATION in annotations:
        _node_report(b, annotations[NODE_REPORT_ANNOTATION])
    return b.done()


def _node_report(b: _Builder, text: Any) -> None:
    """The eip-guard agent's report: every NIC address is bound here, and its subnet is known."""
    fld = _NODE_REPORT_FIELD
    try:
        report = as_mapping(json.loads(as_str(text)))
    except ValueError:
        b.notes.append(f"{_source(b.obj, 'Node', fld)}: ignored: not JSON")
        return
    for nic in as_list(report.get("interfaces")):
        for addr in as_list(as_mapping(nic).get("addresses")):
            try:
                ip, subnet = parse_key_with_prefix(as_str(addr))
            except AddressError:
                continue
            b.add_span(FactKind.NODE_IP, _new(Span, (ip, ip, None)), fld)
            if subnet.first != subnet.last and not is_loopback_or_link_local(ip):
                b.add_span(FactKind.NODE_SUBNET, subnet, fld)
    for gateway in as_list(report.get("gateways")):
        b.add(FactKind.NODE_GATEWAY, gateway, fld, quiet=True)


def _service(obj: Mapping[str, Any]) -> Extract:
    b = _Builder(obj, "Service")
    spec = as_mapping(obj.get("spec"))
    cluster_ips = as_list(spec.get("clusterIPs")) or [spec.get("clusterIP")]
    for ip in cluster_ips:
        if ip and ip != "None":  # headless Services have no IP
            b.add(FactKind.SERVICE_IP, ip, "spec.clusterIPs")
    # Most Services have none of the rest: test before iterating (100,000 Services).
    external_ips = spec.get("externalIPs")
    if external_ips:
        for ip in as_list(external_ips):
            b.add(FactKind.SERVICE_IP, ip, "spec.externalIPs")
    if spec.get("loadBalancerIP"):
        b.add(FactKind.SERVICE_IP, spec["loadBalancerIP"], "spec.loadBalancerIP")
    status = obj.get("status")
    if status:
        for ingress in as_list(as_mapping(as_mapping(status).get("loadBalancer")).get("ingress")):
            if as_mapping(ingress).get("ip"):
                b.add(FactKind.SERVICE_IP, ingress["ip"], "status.loadBalancer.ingress.ip")
    annotations = as_mapping(as_mapping(obj.get("metadata")).get("annotations"))
    if annotations:
        for part in as_str(annotations.get(KUBE_VIP_LB_ANNOTATION)).split(","):
            ip = part.strip()
            if ip and ip != "0.0.0.0":  # 0.0.0.0 asks kube-vip for DHCP: no address yet
                b.add(FactKind.SERVICE_IP, ip, _KUBE_VIP_LB_FIELD)
        if annotations.get(OPENELB_IP_ANNOTATION):
            b.add(FactKind.SERVICE_IP, annotations[OPENELB_IP_ANNOTATION], _OPENELB_IP_FIELD)
    return b.done()


def _service_cidr(obj: Mapping[str, Any]) -> Extract:
    b = _Builder(obj, "ServiceCIDR")
    for cidr in as_list(as_mapping(obj.get("spec")).get("cidrs")):
        b.add(FactKind.SERVICE_CIDR, cidr, "spec.cidrs")
    return b.done()


def _pod_spec(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    spec = as_mapping(obj.get("spec"))
    return spec if kind == "Pod" else as_mapping(as_mapping(spec.get("template")).get("spec"))


def _kube_vip(obj: Mapping[str, Any], kind: str) -> Extract:
    """VIPs from the env of kube-vip containers (static pod, DaemonSet or Deployment)."""
    b = _Builder(obj, kind)
    pending: list[VipValue] = []
    for container in map(as_mapping, as_list(_pod_spec(obj, kind).get("containers"))):
        if "kube-vip" not in as_str(container.get("image")):
            continue
        for env in map(as_mapping, as_list(container.get("env"))):
            name = as_str(env.get("name"))
            if name not in KUBE_VIP_ENV:
                continue
            fld = f"container {as_str(container.get('name'))} env {name}"
            source = _source(obj, kind, fld)
            ref = as_mapping(as_mapping(env.get("valueFrom")).get("configMapKeyRef"))
            if ref:
                ns = as_str(as_mapping(obj.get("metadata")).get("namespace"))
                cm = (ns, as_str(ref.get("name")), as_str(ref.get("key")))
                pending.append(VipValue(source, configmap=cm))
            else:
                pending.extend(_vip_text(b, as_str(env.get("value")), source))
    return b.done(vip_values=tuple(pending))


def _vip_text(b: _Builder, value: str, source: Source) -> list[VipValue]:
    """A kube-vip ``address``: comma list of IPs or DNS names; IPs become facts now."""
    names = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            b.facts.append(Fact(FactKind.KUBE_VIP_VIP, Span.of_ip(parse_ip(part)), source))
        except AddressError:
            names.append(VipValue(source, text=part))
    return names


def _configmap(obj: Mapping[str, Any], options: Options) -> Extract:
    meta = as_mapping(obj.get("metadata"))
    ns, name = as_str(meta.get("namespace")), as_str(meta.get("name"))
    data = {k: v for k, v in as_mapping(obj.get("data")).items() if isinstance(v, str)}
    b = _Builder(obj, "ConfigMap")
    if (ns, name) == options.kube_vip_configmap:
        for key, value in sorted(data.items()):
            if not key.startswith(("cidr-", "range-")):
                continue
            for part in value.split(","):
                try:
                    span = parse_eip_address(part)
                except AddressError as exc:
                    b.notes.append(f"ConfigMap {ns}/{name} (data.{key}): ignored {part!r}: {exc}")
                    continue
                b.add_span(FactKind.KUBE_VIP_POOL, span, f"data.{key}")
    return b.done(configmap=(ns, name, MappingProxyType(data)))


def extract(obj: Mapping[str, Any], options: Options = DEFAULT_OPTIONS) -> Extract:
    """What the rules need of one Kubernetes object; EMPTY for kinds that carry nothing."""
    kind = obj.get("kind")
    if kind == "Service":  # the most common kind first
        return _service(obj)
    if kind == "Eip":
        return _new(Extract, ((), Eip.from_object(obj), (), None, ())) if is_eip(obj) else EMPTY
    if kind == "Node":
        return _node(obj)
    if kind == "ServiceCIDR":
        return _service_cidr(obj)
    if kind in ("Pod", "DaemonSet", "Deployment"):
        return _kube_vip(obj, kind)
    if kind == "ConfigMap":
        return _configmap(obj, options)
    return EMPTY


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
    gaps: tuple[str, ...] = ()  # facts we could not learn (unresolved kube-vip names)
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

    @property
    def fact_count(self) -> int:
        return sum(self.count(k) for k in FactKind) + len(self.eips)


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
        if value.configmap is not None:
            ns, name, key = value.configmap
            text = configmaps.get((ns, name), {}).get(key)
            if text is None:
                notes.append(f"{value.source}: ConfigMap {ns}/{name} key {key!r} not found")
                continue
            b = _Builder({}, value.source.kind)
            names = _vip_text(b, text, value.source)
            facts.extend(b.facts)
        else:
            names = [value]
        for pending in names:
            ips: list[str] = []
            if resolve is not None:
                try:
                    ips = resolve(pending.text)
                except OSError:
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


def assemble(extracts: Iterable[Extract], resolve: Resolver | None = None) -> Inventory:
    """Join extracts into an indexed, immutable inventory."""
    eips: dict[str, Eip] = {}
    vip_values: list[VipValue] = []
    configmaps: dict[tuple[str, str], Mapping[str, str]] = {}
    notes: list[str] = []
    # Facts are filed as each extract comes, keeping only what the indexes hold, so a
    # snapshot's extracts and their facts die one by one. Kept until the end, they were
    # interleaved in memory with what the inventory keeps, and their freed pages stayed
    # resident: 50 MB at the xl size.
    point_keys: dict[FactKind, list[int]] = {}
    point_sources: dict[FactKind, list[Source]] = {}
    span_facts: dict[FactKind, list[Fact]] = {}

    def file(facts: Iterable[Fact]) -> None:
        for fact in facts:
            kind, span, source = fact
            if span.first == span.last and span.prefix is None:
                keys = point_keys.get(kind)
                if keys is None:
                    keys = point_keys[kind] = []
                    point_sources[kind] = []
                keys.append(span.first)
                point_sources[kind].append(source)
            else:
                span_facts.setdefault(kind, []).append(fact)

    for ex in extracts:
        if ex.facts:
            file(ex.facts)
        if ex.notes:
            notes.extend(ex.notes)
        if ex.vip_values:
            vip_values.extend(ex.vip_values)
        if ex.eip is not None:
            eips[ex.eip.name] = ex.eip
        if ex.configmap is not None:
            configmaps[ex.configmap[0], ex.configmap[1]] = ex.configmap[2]
    more, gaps = _resolve_vips(vip_values, configmaps, resolve)
    file(more)
    points = {
        k: PointIndex(zip(keys, point_sources[k], strict=True)) for k, keys in point_keys.items()
    }
    inventory = Inventory(
        eips=MappingProxyType(eips),
        eip_pools=IntervalIndex((e.address, e) for e in eips.values() if e.address is not None),
        can_reach_ips=PointIndex(
            (_ip_key_of(e.interface), e) for e in eips.values() if isinstance(e.interface, CanReach)
        ),
        default_eips=tuple(sorted(name for name, e in eips.items() if e.is_default)),
        points=MappingProxyType(points),
        spans=MappingProxyType(
            {k: IntervalIndex((f.span, f) for f in facts) for k, facts in span_facts.items()}
        ),
        notes=tuple(notes),
        gaps=tuple(gaps),
    )
    inventory.node_subnet_names  # noqa: B018 (computed here, off the request path)
    return inventory


def _ip_key_of(spec: CanReach) -> int:
    return Span.of_ip(spec.ip).first


def build(
    objects: Iterable[Mapping[str, Any]],
    options: Options = DEFAULT_OPTIONS,
    resolve: Resolver | None = None,
) -> Inventory:
    """The whole path for a snapshot: objects in, inventory out."""
    return assemble((extract(o, options) for o in objects), resolve)
