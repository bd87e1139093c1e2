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
from typing import Any, NamedTuple

from app.core.addresses import (
    AddressError,
    IntervalIndex,
    PointIndex,
    Span,
    is_loopback_or_link_local,
    key_or_none,
    parse_eip_address,
    parse_ip,
    parse_ip_or_cidr,
    parse_key,
    parse_key_with_prefix,
)
from app.core.eips import Eip, is_eip, own, shared
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
_ADDRESS_FIELDS = {t: sys.intern(f"status.addresses {t}") for t in ("InternalIP", "ExternalIP")}
_HOSTNAME_FIELD = sys.intern("status.addresses Hostname")
_FLANNEL_FIELD = sys.intern(f"annotation {FLANNEL_ANNOTATION}")
_CALICO_FIELDS = tuple((key, sys.intern(f"annotation {key}")) for key in CALICO_ANNOTATIONS)

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
    namespace = shared(as_str(meta.get("namespace")))
    name = own(as_str(meta.get("name")))
    return _new(Source, (sys.intern(kind), namespace, name, sys.intern(fld)))


class _Builder:
    """Collects the facts of one object; unreadable values become notes, never errors.

    ``extract`` makes one per object and packs what it found into an :class:`Extract`;
    ``build`` files every fact where the inventory keeps it instead (:class:`_Filer`).
    """

    __slots__ = ("_first", "_sources", "configmap", "facts", "kind", "notes", "obj", "vip_values")

    def __init__(self, obj: Mapping[str, Any], kind: str) -> None:
        self.obj, self.kind = obj, kind
        self.facts: list[Fact] = []
        self.notes: list[str] = []
        self.vip_values: list[VipValue] = []
        self.configmap: tuple[str, str, Mapping[str, str]] | None = None
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
        """The fact of an IP or CIDR; ``quiet``: a value that is no IP is no note either."""
        first = self._first  # source()'s usual case, without the call (200,000 facts)
        source = first if first is not None and first.field is fld else self.source(fld)
        if type(text) is not str:
            text = as_str(text)
        if "/" not in text:
            key = key_or_none(text)  # no exception for what is no IP (a node's Hostname)
            if key is not None:
                self.point(fact_kind, key, source)
                return
            if quiet:
                return
        try:
            span = parse_ip_or_cidr(text)
        except AddressError as exc:
            if not quiet:
                self.notes.append(f"{source}: ignored {text!r}: {exc}")
            return
        self.fact(fact_kind, span, source)

    def add_span(self, fact_kind: FactKind, span: Span, fld: str) -> None:
        self.fact(fact_kind, span, self.source(fld))

    def point(self, fact_kind: FactKind, key: int, source: Source) -> None:
        """The fact of one address (most facts)."""
        self.facts.append(_new(Fact, (fact_kind, _new(Span, (key, key, None)), source)))

    def fact(self, fact_kind: FactKind, span: Span, source: Source) -> None:
        self.facts.append(_new(Fact, (fact_kind, span, source)))

    def set_configmap(self, ns: str, name: str, data: Mapping[str, str]) -> None:
        self.configmap = (ns, name, data)

    def done(self) -> Extract:
        return _new(
            Extract,
            (tuple(self.facts), None, tuple(self.vip_values), self.configmap, tuple(self.notes)),
        )


class _Filer(_Builder):
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


def _node(b: _Builder, options: Options) -> None:
    # Field names are constants (a Source per field is shared by identity), and the usual
    # types (dict, list) are tested inline, not by a call each: 10,000 nodes, 12 facts each.
    obj = b.obj
    status, spec, meta = obj.get("status"), obj.get("spec"), obj.get("metadata")
    status = status if type(status) is dict else as_mapping(status)
    spec = spec if type(spec) is dict else as_mapping(spec)
    meta = meta if type(meta) is dict else as_mapping(meta)
    annotations = as_mapping(meta.get("annotations"))
    for item in as_list(status.get("addresses")):
        addr = item if type(item) is dict else as_mapping(item)
        addr_type = addr.get("type")
        if addr_type in ("InternalIP", "ExternalIP"):  # a tuple: a type may be unhashable
            b.add(FactKind.NODE_IP, addr.get("address"), _ADDRESS_FIELDS[addr_type])
        elif addr_type == "Hostname":  # a hostname is only a fact when it is an IP
            b.add(FactKind.NODE_IP, addr.get("address"), _HOSTNAME_FIELD, quiet=True)
    cidrs = as_list(spec.get("podCIDRs")) or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for cidr in cidrs:
        b.add(FactKind.POD_CIDR, cidr, "spec.podCIDRs")
    if not annotations:
        return
    if FLANNEL_ANNOTATION in annotations:
        b.add(FactKind.NODE_IP, annotations[FLANNEL_ANNOTATION], _FLANNEL_FIELD)
    for key, fld in _CALICO_FIELDS:
        if key in annotations:
            try:
                ip, subnet = parse_key_with_prefix(as_str(annotations[key]))
            except AddressError as exc:
                b.notes.append(f"{_source(obj, 'Node', fld)}: ignored: {exc}")
                continue
            b.point(FactKind.NODE_IP, ip, b.source(fld))
            b.add_span(FactKind.NODE_SUBNET, subnet, fld)
    if NODE_REPORT_ANNOTATION in annotations:
        _node_report(b, annotations[NODE_REPORT_ANNOTATION])


def _node_report(b: _Builder, text: Any) -> None:
    """The eip-guard agent's report: every NIC address is bound here, and its subnet is known."""
    fld = _NODE_REPORT_FIELD
    try:
        report = as_mapping(json.loads(as_str(text)))
    except ValueError:
        b.notes.append(f"{_source(b.obj, 'Node', fld)}: ignored: not JSON")
        return
    source = b.source(fld)
    for nic in as_list(report.get("interfaces")):
        for addr in as_list(as_mapping(nic).get("addresses")):
            try:
                ip, subnet = parse_key_with_prefix(as_str(addr))
            except AddressError:
                continue
            b.point(FactKind.NODE_IP, ip, source)
            if subnet.first != subnet.last and not is_loopback_or_link_local(ip):
                b.fact(FactKind.NODE_SUBNET, subnet, source)
    for gateway in as_list(report.get("gateways")):
        b.add(FactKind.NODE_GATEWAY, gateway, fld, quiet=True)


def _service(b: _Builder, options: Options) -> None:
    # The usual types (dict, list) are tested inline, not by a call each: 100,000 Services.
    obj = b.obj
    spec = obj.get("spec")
    if type(spec) is not dict:
        spec = as_mapping(spec)
    cluster_ips = spec.get("clusterIPs")
    if not isinstance(cluster_ips, list) or not cluster_ips:
        cluster_ips = [spec.get("clusterIP")]
    for ip in cluster_ips:
        if ip and ip != "None":  # headless Services have no IP
            b.add(FactKind.SERVICE_IP, ip, "spec.clusterIPs")
    # Most Services have none of the rest: test before iterating.
    external_ips = spec.get("externalIPs")
    if external_ips:
        for ip in as_list(external_ips):
            b.add(FactKind.SERVICE_IP, ip, "spec.externalIPs")
    if spec.get("loadBalancerIP"):
        b.add(FactKind.SERVICE_IP, spec["loadBalancerIP"], "spec.loadBalancerIP")
    status = obj.get("status")
    if status:
        balancer = as_mapping(status).get("loadBalancer")
        if balancer:
            for item in as_list(as_mapping(balancer).get("ingress")):
                ingress = item if type(item) is dict else as_mapping(item)
                if ingress.get("ip"):
                    b.add(FactKind.SERVICE_IP, ingress["ip"], "status.loadBalancer.ingress.ip")
    meta = obj.get("metadata")
    annotations = (meta if type(meta) is dict else as_mapping(meta)).get("annotations")
    if annotations:
        annotations = as_mapping(annotations)
        vips = annotations.get(KUBE_VIP_LB_ANNOTATION)
        if vips:
            for part in as_str(vips).split(","):
                ip = part.strip()
                if ip and ip != "0.0.0.0":  # 0.0.0.0 asks kube-vip for DHCP: no address yet
                    b.add(FactKind.SERVICE_IP, ip, _KUBE_VIP_LB_FIELD)
        if annotations.get(OPENELB_IP_ANNOTATION):
            b.add(FactKind.SERVICE_IP, annotations[OPENELB_IP_ANNOTATION], _OPENELB_IP_FIELD)


def _service_cidr(b: _Builder, options: Options) -> None:
    for cidr in as_list(as_mapping(b.obj.get("spec")).get("cidrs")):
        b.add(FactKind.SERVICE_CIDR, cidr, "spec.cidrs")


def _pod_spec(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    spec = as_mapping(obj.get("spec"))
    return spec if kind == "Pod" else as_mapping(as_mapping(spec.get("template")).get("spec"))


def _kube_vip(b: _Builder, options: Options) -> None:
    """VIPs from the env of kube-vip containers (static pod, DaemonSet or Deployment)."""
    obj, kind = b.obj, b.kind
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
                b.vip_values.append(VipValue(source, configmap=cm))
            else:
                b.vip_values.extend(_vip_text(b, as_str(env.get("value")), source))


def _vip_text(b: _Builder, value: str, source: Source) -> list[VipValue]:
    """A kube-vip ``address``: comma list of IPs or DNS names; IPs become facts now."""
    names = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            b.point(FactKind.KUBE_VIP_VIP, parse_key(part), source)
        except AddressError:
            names.append(VipValue(source, text=part))
    return names


def _configmap(b: _Builder, options: Options) -> None:
    meta = as_mapping(b.obj.get("metadata"))
    ns, name = as_str(meta.get("namespace")), as_str(meta.get("name"))
    data = {k: v for k, v in as_mapping(b.obj.get("data")).items() if isinstance(v, str)}
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
    b.set_configmap(ns, name, MappingProxyType(data))


# The kinds that carry facts, but Eips (no builder: Eip.from_object).
_EXTRACTORS: dict[str, Callable[[_Builder, Options], None]] = {
    "Service": _service,
    "Node": _node,
    "ServiceCIDR": _service_cidr,
    "Pod": _kube_vip,
    "DaemonSet": _kube_vip,
    "Deployment": _kube_vip,
    "ConfigMap": _configmap,
}
_KINDS = tuple(_EXTRACTORS)  # membership by ==: a kind read from a file may be unhashable


def extract(obj: Mapping[str, Any], options: Options = DEFAULT_OPTIONS) -> Extract:
    """What the rules need of one Kubernetes object; EMPTY for kinds that carry nothing."""
    kind = obj.get("kind")
    if kind == "Eip":
        return _new(Extract, ((), Eip.from_object(obj), (), None, ())) if is_eip(obj) else EMPTY
    if kind not in _KINDS:
        return EMPTY
    b = _Builder(obj, kind)
    _EXTRACTORS[kind](b, options)
    return b.done()


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
        if span.first == span.last and span.prefix is None:
            self.point_keys[kind].append(span.first)
            self.point_sources[kind].append(source)
        else:
            self.span_facts[kind].append(_new(Fact, (kind, span, source)))

    def file(self, facts: Iterable[Fact]) -> None:
        point_keys, point_sources, span_facts = self.point_keys, self.point_sources, self.span_facts
        for fact in facts:
            kind, span, source = fact
            if span.first == span.last and span.prefix is None:
                point_keys[kind].append(span.first)
                point_sources[kind].append(source)
            else:
                span_facts[kind].append(fact)

    def take(self, ex: Extract) -> None:
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

    def inventory(self, resolve: Resolver | None) -> Inventory:
        more, gaps = _resolve_vips(self.vip_values, self.configmaps, resolve)
        self.file(more)
        eips = self.eips
        points = {
            k: PointIndex.of_columns(keys, self.point_sources[k])
            for k, keys in self.point_keys.items()
            if keys
        }
        inventory = Inventory(
            eips=MappingProxyType(eips),
            eip_pools=IntervalIndex((e.address, e) for e in eips.values() if e.address is not None),
            can_reach_ips=PointIndex(
                (_ip_key_of(e.interface), e)
                for e in eips.values()
                if isinstance(e.interface, CanReach)
            ),
            default_eips=tuple(sorted(name for name, e in eips.items() if e.is_default)),
            points=MappingProxyType(points),
            spans=MappingProxyType(
                {
                    k: IntervalIndex((f.span, f) for f in facts)
                    for k, facts in self.span_facts.items()
                    if facts
                }
            ),
            notes=tuple(self.notes),
            gaps=tuple(gaps),
        )
        inventory.node_subnet_names  # noqa: B018 (computed here, off the request path)
        return inventory


def assemble(extracts: Iterable[Extract], resolve: Resolver | None = None) -> Inventory:
    """Join extracts into an indexed, immutable inventory."""
    filing = _Filing()
    for ex in extracts:
        filing.take(ex)
    return filing.inventory(resolve)


def _ip_key_of(spec: CanReach) -> int:
    return Span.of_ip(spec.ip).first


def build(
    objects: Iterable[Mapping[str, Any]],
    options: Options = DEFAULT_OPTIONS,
    resolve: Resolver | None = None,
) -> Inventory:
    """The whole path for a snapshot: objects in, inventory out. The same inventory as
    ``assemble(extract(o) for o in objects)``, without making the extracts on the way."""
    filing = _Filing()
    filer = _Filer(filing)
    eips = filing.eips
    for obj in objects:
        kind = obj.get("kind")
        if kind == "Service":  # the most common kind first
            filer.start(obj, kind)
            _service(filer, options)
        elif kind == "Eip":
            if is_eip(obj):
                eip = Eip.from_object(obj)
                eips[eip.name] = eip
        elif kind in _KINDS:
            filer.start(obj, kind)
            _EXTRACTORS[kind](filer, options)
    return filing.inventory(resolve)
