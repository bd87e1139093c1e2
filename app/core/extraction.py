"""What one Kubernetes object contributes to the inventory (pure: plain dicts in).

``extract(obj)`` turns one object into what the rules need of it (an :class:`Extract`),
so a live watcher can keep one small extract per object instead of whole objects. The
extractors write through a :class:`FactBuilder`; ``inventory.build`` hands them one that
files each fact straight into the inventory's indexes instead.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from app.core.addresses import (
    AddressError,
    Span,
    is_loopback_or_link_local,
    key_or_none,
    parse_eip_address,
    parse_ip_or_cidr,
    parse_key,
    parse_key_with_prefix,
    quoted,
)
from app.core.eips import Eip, is_eip, own, shared
from app.core.facts import Fact, FactKind, Source
from app.core.fields import as_list, as_mapping, as_str
from app.core.labels import NODE_REPORT_ANNOTATION

CALICO_ANNOTATIONS = ("projectcalico.org/IPv4Address", "projectcalico.org/IPv6Address")
# Calico's tunnel and WireGuard device addresses (IPAM IPs, no prefix): bound on tunl0,
# vxlan.calico or wireguard.cali of their node, so 'ip route get' answers lo there too.
CALICO_TUNNEL_ANNOTATIONS = tuple(
    f"projectcalico.org/{name}"
    for name in (
        "IPv4IPIPTunnelAddr",
        "IPv4VXLANTunnelAddr",
        "IPv6VXLANTunnelAddr",
        "IPv4WireguardInterfaceAddr",
        "IPv6WireguardInterfaceAddr",
    )
)
FLANNEL_ANNOTATION = "flannel.alpha.coreos.com/public-ip"
# Other addresses CNIs and distributions annotate a Node with, bound on that node: Flannel's
# public IPs; the cilium_host device's IP (Cilium's own and its older 'io.cilium.network.'
# spelling); the node IPs k3s and RKE2 record, comma-separated when dual-stack; the IPs of
# Antrea's transport interface (a second NIC when 'transportInterface' is set); the IPs of
# Kube-OVN's ovn0 port in its join subnet (pkg/controller/node.go; kube-ovn-cni binds them on
# ovn0). IPs only: no API server validates annotations, and a CIDR here is no address of the
# node. (Kube-OVN's ovn.kubernetes.io/cidr and gateway are the join subnet and its gateway in
# OVN: neither bound on the host nor a pod range.)
NODE_IP_ANNOTATIONS = (
    FLANNEL_ANNOTATION,
    "flannel.alpha.coreos.com/public-ipv6",
    "network.cilium.io/ipv4-cilium-host",
    "network.cilium.io/ipv6-cilium-host",
    "io.cilium.network.ipv4-cilium-host",
    "io.cilium.network.ipv6-cilium-host",
    "k3s.io/internal-ip",
    "k3s.io/external-ip",
    "rke2.io/internal-ip",
    "rke2.io/external-ip",
    "node.antrea.io/transport-addresses",
    "ovn.kubernetes.io/ip_address",
)
# OVN-Kubernetes writes JSON (go-controller/pkg/util/node_annotations.go): the primary NIC's
# address as {"ipv4": "IP/len", "ipv6": ...}; every host address as ["IP/len", ...] (its
# 'host-addresses' before OpenShift 4.14: ["IP", ...]); the node's pod subnets per network
# as {"default": "CIDR" or ["CIDR", ...], ...}: only "default" is routed on the host. Left
# out: node-gateway-router-lrp-ifaddr and l3-gateway-config's addresses (ports of OVN's
# gateway router; its next hop is the LAN gateway, a good can_reach IP).
OVN_PRIMARY_IFADDR = "k8s.ovn.org/node-primary-ifaddr"
OVN_HOST_CIDRS = ("k8s.ovn.org/host-cidrs", "k8s.ovn.org/host-addresses")
OVN_NODE_SUBNETS = "k8s.ovn.org/node-subnets"
# A node's pod CIDRs where its CNI keeps them instead of (or besides) spec.podCIDRs: Cilium's
# cluster-pool IPAM (its default) and kube-router's override annotations (comma lists).
POD_CIDR_ANNOTATIONS = (
    "network.cilium.io/ipv4-pod-cidr",
    "network.cilium.io/ipv6-pod-cidr",
    "io.cilium.network.ipv4-pod-cidr",
    "io.cilium.network.ipv6-pod-cidr",
    "kube-router.io/pod-cidr",
    "kube-router.io/pod-cidrs",
)
KUBE_VIP_LB_ANNOTATION = "kube-vip.io/loadbalancerIPs"
KUBE_VIP_IGNORE_ANNOTATION = "kube-vip.io/ignore"  # "true": kube-vip skips the Service
OPENELB_IP_ANNOTATION = "eip.openelb.kubesphere.io/v1alpha1"
KUBE_VIP_ENV = ("address", "vip_address")
# kube-vip binds `address` (the control-plane VIP) only with its control plane feature on:
# the env cp_enable when set and not empty (it overwrites flags), else the --controlplane flag
# (default false), else a --config-file (kube-vip 1.x) may turn it on. A Services-only
# kube-vip (svc_enable, its Helm chart's default) never binds it (cmd/kube-vip.go,
# pkg/kubevip/config_environment.go, pkg/manager: startARP, startBGP, StartControlPlane).
KUBE_VIP_CP_ENV = "cp_enable"
KUBE_VIP_CP_FLAG = "--controlplane"
KUBE_VIP_CONFIG_FILE_FLAG = "--config-file"
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # Go's strconv.ParseBool
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
MAX_ANNOTATION_IPS = 16  # of kube-vip.io/loadbalancerIPs on one Service, or one Node annotation
_NODE_REPORT_FIELD = sys.intern(f"annotation {NODE_REPORT_ANNOTATION}")
# Where a Service IP fact was read (its Source.field): the rules tell a cluster IP from a
# load-balancer IP by it, and leave out requests (loadBalancerIP, OpenELB's annotation).
CLUSTER_IPS_FIELD = sys.intern("spec.clusterIPs")
EXTERNAL_IPS_FIELD = sys.intern("spec.externalIPs")
LOAD_BALANCER_IP_FIELD = sys.intern("spec.loadBalancerIP")
INGRESS_IP_FIELD = sys.intern("status.loadBalancer.ingress.ip")
# The same, of a Service OpenELB serves: an IP it handed out from some Eip.
OPENELB_INGRESS_FIELD = sys.intern("status.loadBalancer.ingress.ip, from OpenELB")
OPENELB_CLASS_ANNOTATION = "lb.kubesphere.io/v1alpha1"
OPENELB_EIP_ANNOTATION = "eip.openelb.kubesphere.io/v1alpha2"
KUBE_VIP_LB_FIELD = sys.intern(f"annotation {KUBE_VIP_LB_ANNOTATION}")
# The same of a Service kube-vip ignores: bound by no one, but asked for (as a loadBalancerIP).
KUBE_VIP_LB_IGNORED_FIELD = sys.intern(
    f"annotation {KUBE_VIP_LB_ANNOTATION}, of a Service kube-vip ignores"
)
OPENELB_IP_FIELD = sys.intern(f"annotation {OPENELB_IP_ANNOTATION}")
_ADDRESS_FIELDS = {t: sys.intern(f"status.addresses {t}") for t in ("InternalIP", "ExternalIP")}
_HOSTNAME_FIELD = sys.intern("status.addresses Hostname")
_NODE_IP_FIELDS = tuple((k, sys.intern(f"annotation {k}")) for k in NODE_IP_ANNOTATIONS)
_POD_CIDR_FIELDS = tuple((k, sys.intern(f"annotation {k}")) for k in POD_CIDR_ANNOTATIONS)
_CALICO_FIELDS = tuple((key, sys.intern(f"annotation {key}")) for key in CALICO_ANNOTATIONS)
_TUNNEL_FIELDS = tuple((k, sys.intern(f"annotation {k}")) for k in CALICO_TUNNEL_ANNOTATIONS)
_OVN_KEYS = frozenset((OVN_PRIMARY_IFADDR, *OVN_HOST_CIDRS, OVN_NODE_SUBNETS))
_OVN_PRIMARY_FIELD = sys.intern(f"annotation {OVN_PRIMARY_IFADDR}")
_OVN_HOST_FIELDS = tuple((k, sys.intern(f"annotation {k}")) for k in OVN_HOST_CIDRS)
_OVN_SUBNETS_FIELD = sys.intern(f"annotation {OVN_NODE_SUBNETS}")


# kubeadm keeps the cluster's Service and pod subnets (comma lists when dual-stack) in this
# ConfigMap: the only record of the Service range where no ServiceCIDR object exists
# (Kubernetes before 1.33, or its feature gate off). Read by line (no YAML parser in core):
# kubeadm writes these keys once each, indented under 'networking:'.
KUBEADM_CONFIGMAP = ("kube-system", "kubeadm-config")
_KUBEADM_SUBNET = re.compile(r"^[ \t]+(podSubnet|serviceSubnet):[ \t]*(.*)$", re.MULTILINE)
_KUBEADM_KINDS = {"podSubnet": FactKind.POD_CIDR, "serviceSubnet": FactKind.SERVICE_CIDR}


@dataclass(frozen=True, slots=True)
class Options:
    kube_vip_configmap: tuple[str, str] = ("kube-system", "kubevip")


@dataclass(frozen=True, slots=True)
class VipValue:
    """A kube-vip env value that assemble must finish: a DNS name, a ConfigMap key, or a
    Secret's (never read: it is only said to be unchecked)."""

    source: Source
    text: str = ""  # literal value (IPs already became facts; what is left are names)
    configmap: tuple[str, str, str] | None = None  # (namespace, name, key)
    # From ``envFrom``, or an ``env`` ref with ``optional: true``: a ConfigMap without the
    # key sets nothing, and is no gap.
    optional: bool = False
    absent_ok: bool = False  # ``optional: true``: no ConfigMap at all sets nothing either
    secret: str = ""  # "namespace/name key" or "namespace/name" (envFrom)
    # From ``envFrom``: the (namespace, name, key) of the ``optional: true`` env refs to the
    # same variable. Env wins, but kubelet skips such a ref when its ConfigMap or key is
    # absent: this value stands unless one of them exists.
    unless: tuple[tuple[str, str, str], ...] = ()


Point = FactKind | int | Source  # an item of Extract.points


class Extract(NamedTuple):
    """What one object contributes (a NamedTuple: made once per object, 160,000 at a time).

    Single addresses (most facts) are ``points``, flat: kind, key, source, kind, key... Live
    mode keeps an extract per object, and a Fact and a Span per address took 21 MB more at
    the xl size; the point indexes keep only key and source anyway.
    """

    facts: tuple[Fact, ...] = ()  # facts of a range: CIDRs, subnets
    eip: Eip | None = None
    vip_values: tuple[VipValue, ...] = ()
    configmap: tuple[str, str, Mapping[str, str]] | None = None  # (namespace, name, data)
    notes: tuple[str, ...] = ()  # what an admin should know: values we could not read
    points: tuple[Point, ...] = ()

    def point_triples(self) -> Iterator[tuple[FactKind, int, Source]]:
        points = self.points
        return zip(
            cast(tuple[FactKind, ...], points[0::3]),
            cast(tuple[int, ...], points[1::3]),
            cast(tuple[Source, ...], points[2::3]),
            strict=True,
        )

    @property
    def every_fact(self) -> tuple[Fact, ...]:
        """``facts`` and the points made into facts, in that order."""
        points = tuple(
            _new(Fact, (kind, _new(Span, (key, key, None)), source))
            for kind, key, source in self.point_triples()
        )
        return self.facts + points


EMPTY = Extract()
DEFAULT_OPTIONS = Options()
_new = tuple.__new__  # Span, Fact and Source without their Python-level __new__ (hot path)


def _source(obj: Mapping[str, Any], kind: str, fld: str) -> Source:
    meta = obj.get("metadata")
    if type(meta) is not dict:  # the usual type inline: once per object (110,000)
        meta = as_mapping(meta)
    namespace, name = meta.get("namespace"), meta.get("name")
    # Interned: 200,000 facts share a handful of kinds, namespaces and field names.
    return _new(
        Source,
        (
            sys.intern(kind),
            shared(namespace if type(namespace) is str else as_str(namespace)),
            own(name if type(name) is str else as_str(name)),
            sys.intern(fld),
        ),
    )


class FactBuilder:
    """Collects the facts of one object; unreadable values become notes, never errors.

    ``extract`` makes one per object and packs what it found into an :class:`Extract`;
    ``build`` files every fact where the inventory keeps it instead (``inventory._Filer``).
    """

    __slots__ = (
        "_first",
        "_sources",
        "configmap",
        "facts",
        "kind",
        "notes",
        "obj",
        "points",
        "vip_values",
    )

    def __init__(self, obj: Mapping[str, Any], kind: str) -> None:
        self.obj, self.kind = obj, kind
        self.facts: list[Fact] = []
        self.points: list[Point] = []
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

    def add(
        self, fact_kind: FactKind, text: Any, fld: str, *, quiet: bool = False, ip: bool = False
    ) -> None:
        """The fact of an IP or CIDR (``ip``: of an IP only); ``quiet``: a value that is no IP
        is no note either."""
        first = self._first  # source()'s usual case, without the call (200,000 facts)
        source = first if first is not None and first.field is fld else self.source(fld)
        if type(text) is not str:
            text = as_str(text)
        if ip and "/" in text:
            self.notes.append(f"{source}: ignored {quoted(text)}: an IP address, not a CIDR")
            return
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
                self.notes.append(f"{source}: ignored {quoted(text)}: {exc}")
            return
        self.fact(fact_kind, span, source)

    def add_span(self, fact_kind: FactKind, span: Span, fld: str) -> None:
        self.fact(fact_kind, span, self.source(fld))

    def point(self, fact_kind: FactKind, key: int, source: Source) -> None:
        """The fact of one address (most facts)."""
        self.points += (fact_kind, key, source)

    def fact(self, fact_kind: FactKind, span: Span, source: Source) -> None:
        self.facts.append(_new(Fact, (fact_kind, span, source)))

    def set_configmap(self, ns: str, name: str, data: Mapping[str, str]) -> None:
        self.configmap = (ns, name, data)

    def done(self) -> Extract:
        return _new(
            Extract,
            (
                tuple(self.facts),
                None,
                tuple(self.vip_values),
                self.configmap,
                tuple(self.notes),
                tuple(self.points),
            ),
        )


def _node(b: FactBuilder, options: Options) -> None:
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
    for key, fld in _NODE_IP_FIELDS:
        if key in annotations:
            _comma_list(b, FactKind.NODE_IP, annotations[key], fld, ip=True)
    for key, fld in _POD_CIDR_FIELDS:
        if key in annotations:
            _comma_list(b, FactKind.POD_CIDR, annotations[key], fld)
    for key, fld in _CALICO_FIELDS:
        if key in annotations:  # calico-node's IP setting may carry no prefix: no subnet
            _bound_address(b, as_str(annotations[key]), fld, b.source(fld))
    for key, fld in _TUNNEL_FIELDS:
        if key in annotations:
            b.add(FactKind.NODE_IP, annotations[key], fld)
    if not _OVN_KEYS.isdisjoint(annotations):
        _ovn_kubernetes(b, annotations)
    if NODE_REPORT_ANNOTATION in annotations:
        _node_report(b, annotations[NODE_REPORT_ANNOTATION])


def _comma_list(
    b: FactBuilder, fact_kind: FactKind, text: Any, fld: str, *, ip: bool = False
) -> None:
    """A comma list of IPs (``ip``) or CIDRs, spaces trimmed (annotations and other text no
    API server validates): its first :data:`MAX_ANNOTATION_IPS` values, the rest said as
    ignored."""
    parts = [p for p in (p.strip() for p in as_str(text).split(",")) if p]
    for part in parts[:MAX_ANNOTATION_IPS]:
        b.add(fact_kind, part, fld, ip=ip)
    if len(parts) > MAX_ANNOTATION_IPS:
        left = len(parts) - MAX_ANNOTATION_IPS
        b.notes.append(f"{b.source(fld)}: ignored {left} value(s) past the first "
                       f"{MAX_ANNOTATION_IPS}")  # fmt: skip


_NOT_JSON = object()  # what _json gives for an annotation that is no JSON


def _json(b: FactBuilder, text: Any, fld: str) -> Any:
    """An annotation's JSON, or :data:`_NOT_JSON` (said in a note)."""
    try:
        return json.loads(as_str(text))
    except ValueError:
        b.notes.append(f"{b.source(fld)}: ignored: not JSON")
    except RecursionError:  # anyone who may annotate a Node may write "[[[[...": not ours
        b.notes.append(f"{b.source(fld)}: ignored: JSON nested too deeply")
    return _NOT_JSON


def _ovn_kubernetes(b: FactBuilder, annotations: Mapping[str, Any]) -> None:
    """OVN-Kubernetes' node annotations (:data:`OVN_PRIMARY_IFADDR`): the addresses bound on
    the node, with their subnets, and its pod subnets of the default network."""
    if OVN_PRIMARY_IFADDR in annotations:
        fld = _OVN_PRIMARY_FIELD
        value = _json(b, annotations[OVN_PRIMARY_IFADDR], fld)
        if type(value) is dict:
            for family in ("ipv4", "ipv6"):
                if family in value:
                    _bound_address(b, as_str(value[family]), fld, b.source(fld))
        elif value is not _NOT_JSON:
            b.notes.append(f"{b.source(fld)}: ignored: not a JSON object")
    for key, fld in _OVN_HOST_FIELDS:
        if key in annotations:
            value = _json(b, annotations[key], fld)
            if type(value) is list:
                for item in value[:MAX_ANNOTATION_IPS]:
                    _bound_address(b, as_str(item), fld, b.source(fld))
                if len(value) > MAX_ANNOTATION_IPS:
                    b.notes.append(f"{b.source(fld)}: ignored {len(value) - MAX_ANNOTATION_IPS} "
                                   f"value(s) past the first {MAX_ANNOTATION_IPS}")  # fmt: skip
            elif value is not _NOT_JSON:
                b.notes.append(f"{b.source(fld)}: ignored: not a JSON list")
    if OVN_NODE_SUBNETS in annotations:
        fld = _OVN_SUBNETS_FIELD
        value = _json(b, annotations[OVN_NODE_SUBNETS], fld)
        if type(value) is not dict:
            if value is not _NOT_JSON:
                b.notes.append(f"{b.source(fld)}: ignored: not a JSON object")
            return
        subnets = value.get("default")  # other networks' pods are not routed on the host
        if subnets is None:
            return
        for cidr in (subnets if type(subnets) is list else [subnets])[:MAX_ANNOTATION_IPS]:
            text = cidr if type(cidr) is str else as_str(cidr)
            if "/" not in text:
                b.notes.append(f"{b.source(fld)}: ignored {quoted(text)}: not a CIDR")
            else:
                b.add(FactKind.POD_CIDR, text, fld)


def _bound_address(
    b: FactBuilder, text: str, fld: str, source: Source, *, quiet: bool = False
) -> None:
    """An address a node binds, as Calico, OVN-Kubernetes and the agent's report write it:
    ``IP/len`` is a node IP and a node subnet (not of one address, nor of a loopback or
    link-local one); ``IP`` alone a node IP. ``quiet``: what cannot be read is no note."""
    if "/" not in text:
        b.add(FactKind.NODE_IP, text, fld, ip=True, quiet=quiet)
        return
    try:
        ip, subnet = parse_key_with_prefix(text)
    except AddressError as exc:
        if not quiet:
            b.notes.append(f"{b.source(fld)}: ignored {quoted(text)}: {exc}")
        return
    b.point(FactKind.NODE_IP, ip, source)
    if subnet.first != subnet.last and not is_loopback_or_link_local(ip):
        b.fact(FactKind.NODE_SUBNET, subnet, source)


def _node_report(b: FactBuilder, text: Any) -> None:
    """The eip-guard agent's report: every NIC address is bound here, and its subnet is known."""
    fld = _NODE_REPORT_FIELD
    report = _json(b, text, fld)
    if report is _NOT_JSON:
        return
    report = as_mapping(report)
    source = b.source(fld)
    for nic in as_list(report.get("interfaces")):
        for addr in as_list(as_mapping(nic).get("addresses")):
            _bound_address(b, as_str(addr), fld, source, quiet=True)
    for gateway in as_list(report.get("gateways")):
        b.add(FactKind.NODE_GATEWAY, gateway, fld, quiet=True)


def _service(b: FactBuilder, options: Options) -> None:
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
            b.add(FactKind.SERVICE_IP, ip, CLUSTER_IPS_FIELD)
    # Most Services have none of the rest: test before iterating.
    external_ips = spec.get("externalIPs")
    if external_ips:
        for ip in as_list(external_ips):
            b.add(FactKind.SERVICE_IP, ip, EXTERNAL_IPS_FIELD)
    if spec.get("loadBalancerIP"):
        b.add(FactKind.SERVICE_IP, spec["loadBalancerIP"], LOAD_BALANCER_IP_FIELD)
    status = obj.get("status")
    meta = obj.get("metadata")
    if status:
        balancer = as_mapping(status).get("loadBalancer")
        if balancer:
            field = OPENELB_INGRESS_FIELD if _openelb_serves(meta) else INGRESS_IP_FIELD
            for item in as_list(as_mapping(balancer).get("ingress")):
                ingress = item if type(item) is dict else as_mapping(item)
                if ingress.get("ip"):
                    b.add(FactKind.SERVICE_IP, ingress["ip"], field)
    annotations = (meta if type(meta) is dict else as_mapping(meta)).get("annotations")
    if annotations:
        annotations = as_mapping(annotations)
        # Annotations, which no API server validates: IPs only (one '0.0.0.0/0' in any
        # tenant's Service denied every can_reach), and a few (a dual-stack pair is two).
        vips = annotations.get(KUBE_VIP_LB_ANNOTATION)
        if vips:
            # kube-vip skips a Service annotated kube-vip.io/ignore: "true" (exactly): then
            # nothing binds these IPs; they only ask for them, as spec.loadBalancerIP does.
            ignored = annotations.get(KUBE_VIP_IGNORE_ANNOTATION) == "true"
            fld = KUBE_VIP_LB_IGNORED_FIELD if ignored else KUBE_VIP_LB_FIELD
            parts = [p for p in (p.strip() for p in as_str(vips).split(",")) if p]
            for ip in parts[:MAX_ANNOTATION_IPS]:
                if ip != "0.0.0.0":  # 0.0.0.0 asks kube-vip for DHCP: no address yet
                    b.add(FactKind.SERVICE_IP, ip, fld, ip=True)
            if len(parts) > MAX_ANNOTATION_IPS:
                left = len(parts) - MAX_ANNOTATION_IPS
                b.notes.append(f"{b.source(fld)}: ignored {left} IP(s) past the "
                               f"first {MAX_ANNOTATION_IPS}")  # fmt: skip
        if annotations.get(OPENELB_IP_ANNOTATION):
            b.add(
                FactKind.SERVICE_IP, annotations[OPENELB_IP_ANNOTATION], OPENELB_IP_FIELD, ip=True
            )


def _openelb_serves(meta: Any) -> bool:
    """Whether OpenELB serves a Service of this metadata: its class annotation, or a pool
    named by the Eip annotation or label (domain.md, "Which Services OpenELB serves")."""
    meta = as_mapping(meta)
    annotations, labels = as_mapping(meta.get("annotations")), as_mapping(meta.get("labels"))
    return (
        annotations.get(OPENELB_CLASS_ANNOTATION) == "openelb"
        or OPENELB_EIP_ANNOTATION in annotations
        or OPENELB_EIP_ANNOTATION in labels
    )


def _service_cidr(b: FactBuilder, options: Options) -> None:
    for cidr in as_list(as_mapping(b.obj.get("spec")).get("cidrs")):
        b.add(FactKind.SERVICE_CIDR, cidr, "spec.cidrs")


def _pod_spec(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    spec = as_mapping(obj.get("spec"))
    return spec if kind == "Pod" else as_mapping(as_mapping(spec.get("template")).get("spec"))


def _kube_vip(b: FactBuilder, options: Options) -> None:
    """VIPs of kube-vip containers (static pod, DaemonSet or Deployment): from ``env``, from
    ``envFrom`` (kube-vip's own Helm chart renders it) and from the ``--address`` and
    ``--vip`` flags. Env wins over flags in kube-vip, but a flag's value is still taken:
    a denial that names it is better than a VIP bound unseen. And of any container, the
    cluster ranges control-plane flags name (:data:`CLUSTER_FLAGS`)."""
    obj, kind = b.obj, b.kind
    ns = as_str(as_mapping(obj.get("metadata")).get("namespace"))
    for container in map(as_mapping, as_list(_pod_spec(obj, kind).get("containers"))):
        if ns == "kube-system":  # where control planes run: no tenant's Pod names a range
            _cluster_flags(b, container)
        if "kube-vip" not in as_str(container.get("image")) or _control_plane_off(container):
            continue
        cname = as_str(container.get("name"))
        named: set[str] = set()  # set by env, which wins over envFrom
        # Set by env only if one of these ConfigMap keys exists: kubelet skips an env ref
        # with ``optional: true`` to an absent ConfigMap or key, and envFrom's value stands.
        maybe: dict[str, list[tuple[str, str, str]]] = {}
        for env in map(as_mapping, as_list(container.get("env"))):
            name = as_str(env.get("name"))
            if name not in KUBE_VIP_ENV:
                continue
            source = _source(obj, kind, f"container {cname} env {name}")
            value_from = as_mapping(env.get("valueFrom"))
            ref = as_mapping(value_from.get("configMapKeyRef"))
            secret = as_mapping(value_from.get("secretKeyRef"))
            if ref:
                cm = (ns, as_str(ref.get("name")), as_str(ref.get("key")))
                if ref.get("optional") is True:  # absent, it is no gap, and sets nothing
                    maybe.setdefault(name, []).append(cm)
                    value = VipValue(source, configmap=cm, optional=True, absent_ok=True)
                else:  # absent, the container does not start (CreateContainerConfigError)
                    named.add(name)
                    value = VipValue(source, configmap=cm)
                b.vip_values.append(value)
            elif secret:
                # An optional Secret key, never read, may be absent: envFrom's value counts.
                if secret.get("optional") is not True:
                    named.add(name)
                text = f"{ns}/{as_str(secret.get('name'))} key {as_str(secret.get('key'))}"
                b.vip_values.append(VipValue(source, secret=text))
            else:
                named.add(name)
                b.vip_values.extend(vip_text(b, as_str(env.get("value")), source))
        _kube_vip_env_from(b, container, cname, ns, named=named, maybe=maybe)
        _kube_vip_flags(b, container, cname)


def _control_plane_off(container: Mapping[str, Any]) -> bool:
    """Whether this kube-vip surely runs without its control plane, and so binds none of
    :data:`KUBE_VIP_ENV` (:data:`KUBE_VIP_CP_ENV`). What eip-guard cannot read (a value from
    a ConfigMap, Secret or config file, one Go cannot parse: kube-vip then exits, and the
    fix likely turns it on) counts as on: its VIPs count as before."""
    setting: Mapping[str, Any] | None = None
    for env in map(as_mapping, as_list(container.get("env"))):
        if env.get("name") == KUBE_VIP_CP_ENV:
            setting = env  # kubelet: the last of one name wins
    if setting is not None:
        if as_mapping(setting.get("valueFrom")):
            return False
        value = as_str(setting.get("value"))
        if value:  # set: it wins over flags and a config file
            return value in _GO_FALSE
    elif as_list(container.get("envFrom")):
        return False  # a ConfigMap or Secret may set it
    words = [
        as_str(w) for w in (*as_list(container.get("command")), *as_list(container.get("args")))
    ]
    on = False
    for word in words:
        flag, equals, value = word.partition("=")
        if flag == KUBE_VIP_CONFIG_FILE_FLAG:
            return False
        if flag == KUBE_VIP_CP_FLAG:
            if not equals:  # a bool flag: `--controlplane false` leaves 'false' an argument
                on = True
            elif value in _GO_TRUE or value in _GO_FALSE:
                on = value in _GO_TRUE
            else:
                return False
    return not on


def _kube_vip_env_from(
    b: FactBuilder,
    container: Mapping[str, Any],
    cname: str,
    ns: str,
    *,
    named: set[str],
    maybe: Mapping[str, list[tuple[str, str, str]]],
) -> None:
    """``envFrom``: each ConfigMap's keys become variables, after an optional prefix; but
    ``env`` wins: for variables it sets (``named``), or may set (``maybe``: its optional
    refs, which the inventory resolves against the ConfigMaps)."""
    wanted = [name for name in KUBE_VIP_ENV if name not in named]
    for item in map(as_mapping, as_list(container.get("envFrom"))):
        prefix = as_str(item.get("prefix"))
        ref, secret = as_mapping(item.get("configMapRef")), as_mapping(item.get("secretRef"))
        if ref:
            cm_name = as_str(ref.get("name"))
            for name in wanted:
                if name.startswith(prefix):
                    key = name[len(prefix) :]
                    fld = f"container {cname} envFrom ConfigMap {cm_name} key {key}"
                    value = VipValue(
                        _source(b.obj, b.kind, fld),
                        configmap=(ns, cm_name, key),
                        optional=True,
                        absent_ok=ref.get("optional") is True,
                        unless=tuple(maybe.get(name, ())),
                    )
                    b.vip_values.append(value)
        elif secret and wanted:
            fld = f"container {cname} envFrom"
            text = f"{ns}/{as_str(secret.get('name'))}"
            b.vip_values.append(VipValue(_source(b.obj, b.kind, fld), secret=text))


KUBE_VIP_FLAGS = ("--address", "--vip")
# The flags of control-plane components (static Pods of kubeadm and RKE2; read in
# kube-system only) that name the cluster's ranges, comma lists when dual-stack:
# kube-apiserver's Service range, and the cluster pod CIDR of kube-controller-manager (and
# of kube-proxy and kube-router, where they take it as a flag).
CLUSTER_FLAGS = {
    "--service-cluster-ip-range": FactKind.SERVICE_CIDR,
    "--cluster-cidr": FactKind.POD_CIDR,
}


def _flags(container: Mapping[str, Any], names: Container[str]) -> Iterator[tuple[str, str]]:
    """(flag, value) of ``names`` in the container's command or args (pflag: ``--f=v``,
    ``--f v``)."""
    words = [
        as_str(w) for w in (*as_list(container.get("command")), *as_list(container.get("args")))
    ]
    for i, word in enumerate(words):
        flag, equals, value = word.partition("=")
        if flag not in names:
            continue
        if not equals:
            if i + 1 >= len(words):
                continue
            value = words[i + 1]
        yield flag, value


def _kube_vip_flags(b: FactBuilder, container: Mapping[str, Any], cname: str) -> None:
    """``--address``/``--vip`` of a kube-vip container."""
    for flag, value in _flags(container, KUBE_VIP_FLAGS):
        source = _source(b.obj, b.kind, f"container {cname} flag {flag}")
        b.vip_values.extend(vip_text(b, value, source))


def _cluster_flags(b: FactBuilder, container: Mapping[str, Any]) -> None:
    """The Service range and cluster pod CIDR a control-plane container's flags name."""
    for flag, value in _flags(container, CLUSTER_FLAGS):
        fld = f"container {as_str(container.get('name'))} flag {flag}"
        _comma_list(b, CLUSTER_FLAGS[flag], value, fld)


def vip_text(b: FactBuilder, value: str, source: Source) -> list[VipValue]:
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


def _configmap(b: FactBuilder, options: Options) -> None:
    meta = as_mapping(b.obj.get("metadata"))
    ns, name = as_str(meta.get("namespace")), as_str(meta.get("name"))
    # A file may hold what no API server stores: keys that are no strings.
    data = {
        k: v
        for k, v in as_mapping(b.obj.get("data")).items()
        if isinstance(k, str) and isinstance(v, str)
    }
    if (ns, name) == options.kube_vip_configmap:
        for key, value in sorted(data.items()):
            if not key.startswith(("cidr-", "range-")):
                continue
            for part in value.split(","):
                try:
                    span = parse_eip_address(part)
                except AddressError as exc:
                    b.notes.append(
                        f"ConfigMap {ns}/{name} (data.{key}): ignored {quoted(part)}: {exc}"
                    )
                    continue
                b.add_span(FactKind.KUBE_VIP_POOL, span, f"data.{key}")
    if (ns, name) == KUBEADM_CONFIGMAP:
        text = data.get("ClusterConfiguration", "")
        read: set[str] = set()
        for match in _KUBEADM_SUBNET.finditer(text):
            key, value = match[1], match[2].partition(" #")[0].strip().strip("\"'")
            fld = f"data.ClusterConfiguration networking.{key}"
            _comma_list(b, _KUBEADM_KINDS[key], value, fld)
            read.add(key)
        # Named but not in the block style read above (flow style `networking: {podSubnet:
        # ...}`, JSON): the range went unchecked without a word.
        for key in sorted(set(_KUBEADM_KINDS) - read):
            if re.search(rf"\b{key}\b", text):
                b.notes.append(
                    f"ConfigMap {ns}/{name} (data.ClusterConfiguration networking.{key}): not "
                    f"read, so not checked: eip-guard reads it only as a line '  {key}: CIDR' "
                    "under 'networking:' (block style, as kubeadm writes it)"
                )
    b.set_configmap(ns, name, MappingProxyType(data))


# Calico's IP pools: calico-ipam (Calico's default IPAM) gives pods addresses from them,
# not from spec.podCIDR. Stored as crd.projectcalico.org/v1 (the Kubernetes datastore);
# projectcalico.org/v3 is how calicoctl and Calico's API server show the same objects. Other
# CNIs name a kind IPPool too (Whereabouts, Antrea, Kube-OVN): told apart by group.
CALICO_GROUPS = ("crd.projectcalico.org", "projectcalico.org")
CILIUM_GROUP = "cilium.io"
_POOL_FIELD = sys.intern("spec.cidr")
# A disabled pool hands out no new IP, but pods keep the ones it gave and Calico keeps
# routing its blocks: still a pod range, said so in the field a denial names.
_DISABLED_POOL_FIELD = sys.intern("spec.cidr, a disabled pool: its pods keep their IPs")
# Calico's default is [Workload, Tunnel]; a pool for LoadBalancer IPs only (Calico 3.29+)
# gives Services their IPs, not pods: they become facts as those Services' ingress IPs.
_POD_USES = ("Workload", "Tunnel")
_CILIUM_POD_CIDRS_FIELD = sys.intern("spec.ipam.podCIDRs")
_CILIUM_POOLS_FIELD = sys.intern("spec.ipam.pools.allocated cidrs")
_CILIUM_HOST_FIELD = sys.intern("spec.addresses CiliumInternalIP")


def _group(obj: Mapping[str, Any]) -> str:
    api_version = obj.get("apiVersion")
    return api_version.partition("/")[0] if isinstance(api_version, str) else ""


def _calico_pool(b: FactBuilder, options: Options) -> None:
    """A Calico IPPool: its CIDR is a pod range wherever calico-ipam hands out pod IPs."""
    if _group(b.obj) not in CALICO_GROUPS:
        return
    spec = as_mapping(b.obj.get("spec"))
    uses = spec.get("allowedUses")
    if isinstance(uses, list) and uses and not any(u in _POD_USES for u in uses):
        return
    fld = _DISABLED_POOL_FIELD if spec.get("disabled") is True else _POOL_FIELD
    if "cidr" not in spec:
        b.notes.append(f"{b.source(fld)}: ignored: the pool has no spec.cidr")
        return
    text = spec["cidr"]
    if isinstance(text, str) and "/" not in text:
        b.notes.append(f"{b.source(fld)}: ignored {quoted(text)}: not a CIDR (no prefix length)")
        return
    b.add(FactKind.POD_CIDR, text, fld)


def _cilium_node(b: FactBuilder, options: Options) -> None:
    """A CiliumNode: the pod CIDRs Cilium's operator gave the node (cluster-pool and
    multi-pool IPAM) and the cilium_host IP bound on it, whether or not Cilium also writes
    them into the Node's annotations."""
    if _group(b.obj) != CILIUM_GROUP:
        return
    spec = as_mapping(b.obj.get("spec"))
    ipam = as_mapping(spec.get("ipam"))
    for cidr in as_list(ipam.get("podCIDRs")):
        b.add(FactKind.POD_CIDR, cidr, _CILIUM_POD_CIDRS_FIELD)
    for allocation in as_list(as_mapping(ipam.get("pools")).get("allocated")):
        for cidr in as_list(as_mapping(allocation).get("cidrs")):
            b.add(FactKind.POD_CIDR, cidr, _CILIUM_POOLS_FIELD)
    for item in as_list(spec.get("addresses")):
        address = as_mapping(item)
        if address.get("type") == "CiliumInternalIP":
            b.add(FactKind.NODE_IP, address.get("ip"), _CILIUM_HOST_FIELD, ip=True)


# The kinds that carry facts, but Eips (no builder: Eip.from_object).
EXTRACTORS: dict[str, Callable[[FactBuilder, Options], None]] = {
    "Service": _service,
    "Node": _node,
    "ServiceCIDR": _service_cidr,
    "Pod": _kube_vip,
    "DaemonSet": _kube_vip,
    "Deployment": _kube_vip,
    "ConfigMap": _configmap,
    "IPPool": _calico_pool,
    "CiliumNode": _cilium_node,
}
KINDS = tuple(EXTRACTORS)  # membership by ==: a kind read from a file may be unhashable


def eip_notes(eip: Eip) -> tuple[str, ...]:
    """What an admin must learn of a stored Eip: a pool OpenELB may serve that no check sees."""
    if eip.address is not None:
        return ()
    return (f"Eip {eip.name} (spec.address): ignored {quoted(eip.address_text)}: "
            f"{eip.address_error}; its pool is not checked",)  # fmt: skip


def extract(obj: Mapping[str, Any], options: Options = DEFAULT_OPTIONS) -> Extract:
    """What the rules need of one Kubernetes object; EMPTY for kinds that carry nothing."""
    kind = obj.get("kind")
    if kind == "Eip":
        if not is_eip(obj):
            return EMPTY
        eip = Eip.from_object(obj)
        return _new(Extract, ((), eip, (), None, eip_notes(eip), ()))
    if kind not in KINDS:
        return EMPTY
    b = FactBuilder(obj, kind)
    EXTRACTORS[kind](b, options)
    return b.done()
