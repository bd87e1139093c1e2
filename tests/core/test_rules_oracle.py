"""The rules against a naive oracle written from the README ("Rules") alone.

Small clusters in a tiny address space (10.0.0.0/27 and fd00::/123, so that node, Service,
kube-vip and Eip addresses collide often) are judged by ``check``; the oracle computes by
brute force over plain sets of ``ipaddress`` objects which rules must fire, and the set of
rule ids the verdict denies or warns must be exactly that.

Generated: Nodes (status.addresses, spec.podCIDRs, CNI and k3s/RKE2 annotations, the agent's
report and Calico's addresses with their subnets and gateways), Services (cluster IPs,
externalIPs, loadBalancerIP, ingress IPs, kube-vip's and OpenELB's annotations), other Eips
(single IPs, CIDRs, ranges, forms OpenELB reads and eip-guard refuses, status.used, a
namesake of the candidate, CREATE or UPDATE), kube-vip (env, flags, cp_enable as written,
cloud-provider pools), and the cluster's Service and pod ranges (ServiceCIDR,
kubeadm-config, control-plane flags, Calico IPPools, CiliumNodes). Left out, as the oracle
cannot model them simply: DNS names, values from ConfigMaps, the policy and overrides.

``EIP_GUARD_ORACLE_EXAMPLES`` sets how many clusters the property generates.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.eips import Eip
from app.core.inventory import build
from app.core.rules import check
from tests.core.objects import (
    calico_pool,
    cilium_node,
    configmap,
    eip,
    kube_vip_pod,
    node,
    service,
    service_cidr,
)

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
# cp_enable values, as Go's strconv.ParseBool reads them (and some it cannot read).
CP_ON = ("true", "True", "TRUE", "t", "T", "1")
CP_OFF = ("false", "False", "FALSE", "f", "F", "0")
CP_UNREADABLE = ("yes", "on", " true")
# The rules of a can_reach IP itself: they only warn for a bgp Eip.
INTERFACE_RULES = frozenset({
    "can-reach-special",
    "can-reach-node-ip",
    "can-reach-in-eip",
    "can-reach-service-ip",
    "can-reach-pod-cidr",
    "can-reach-kube-vip",
})  # fmt: skip
SPECIAL = ("127.0.0.1", "0.0.0.0", "224.0.0.1", "169.254.20.10", "255.255.255.255")
SPECIAL_V6 = ("::1", "::", "fe80::1", "ff02::1")
# Node annotations of node IPs ("{}": an IPv4 or IPv6 one as named) and of pod CIDRs.
NODE_IP_KEYS = (
    "flannel.alpha.coreos.com/public-ipv{}",  # public-ip for IPv4, public-ipv6
    "network.cilium.io/ipv{}-cilium-host",
    "io.cilium.network.ipv{}-cilium-host",
    "k3s.io/internal-ip",
    "k3s.io/external-ip",
    "rke2.io/internal-ip",
    "rke2.io/external-ip",
)
POD_CIDR_KEYS = (
    "network.cilium.io/ipv{}-pod-cidr",
    "io.cilium.network.ipv{}-pod-cidr",
    "kube-router.io/pod-cidr",
    "kube-router.io/pod-cidrs",
)
SPACES = (ipaddress.ip_network("10.0.0.0/27"), ipaddress.ip_network("fd00::/123"))


def _as_openelb(text: str) -> IP:
    """An IP as OpenELB reads it: an IPv4-mapped IPv6 address is the IPv4 one."""
    ip = ipaddress.ip_address(text)
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip


def _ips(text: str) -> set[IP]:
    """Every address of a single IP, a CIDR or an ``a-b`` range, by brute force, as OpenELB
    reads them (IPv4-mapped, and prefix lengths with leading zeros as Go reads them)."""
    try:
        return _read(text)
    except ValueError:  # whitespace, or no address at all: no pool
        return set()


def _read(text: str) -> set[IP]:
    if "-" in text:
        low, high = (_as_openelb(end) for end in text.split("-"))
        return (
            {ipaddress.ip_address(n) for n in range(int(low), int(high) + 1)}
            if (low.version == high.version)
            else set()
        )
    if "/" in text:
        ip, length = text.split("/")
        base = _as_openelb(ip)
        bits = int(length) - (96 if base.version != ipaddress.ip_address(ip).version else 0)
        return set(ipaddress.ip_network(f"{base}/{bits}", strict=False))
    return {_as_openelb(text)}


def _refused(text: str) -> bool:
    """What address-syntax refuses: a form OpenELB reads (IPv4-mapped, a 0-led prefix), or
    no pool at all (whitespace, a reversed or mixed-family range)."""
    return "::ffff:" in text or "/0" in text or not _ips(text)


# What the generator builds: plain data, turned into objects and judged twice.


@dataclass
class Cluster:
    # Per node: InternalIPs, ExternalIPs, pod CIDRs, and its Hostname address (an IP or not).
    nodes: list[tuple[list[str], list[str], list[str], str | None]] = field(default_factory=list)
    # Nodes known by CNI and distribution annotations only: their node IPs, pod CIDRs and
    # bound addresses with their subnet (OVN-Kubernetes' host-cidrs), and the annotations.
    annotated: list[tuple[list[str], list[str], list[str], dict[str, str]]] = field(
        default_factory=list
    )
    services: list[dict[str, Any]] = field(default_factory=list)
    eips: list[dict[str, Any]] = field(default_factory=list)
    vip: list[str] = field(default_factory=list)  # kube-vip's address: comma-separated
    vip_variable: str = "address"  # or the deprecated vip_address
    vip_control_plane: str | None = "true"  # cp_enable as written (None: not set)
    vip_flags: list[str] = field(default_factory=list)  # --controlplane, --address=IP...
    vip_kind: str = "Pod"  # or DaemonSet
    vip_pools: list[str] = field(default_factory=list)  # kube-vip-cloud-provider's
    service_ranges: list[str] = field(default_factory=list)  # one ServiceCIDR's spec.cidrs
    # The cluster's ranges elsewhere: (Service ranges, pod ranges) of kubeadm-config, of
    # kube-apiserver's and kube-controller-manager's flags; Calico IPPools (cidr, disabled,
    # for LoadBalancer IPs only); CiliumNodes (pod CIDRs, cilium_host IP).
    kubeadm: tuple[list[str], list[str]] | None = None
    flags: tuple[list[str], list[str]] | None = None
    calico_pools: list[tuple[str, bool, bool]] = field(default_factory=list)
    cilium_nodes: list[tuple[list[str], str | None]] = field(default_factory=list)
    # Per node, its NIC addresses (IP/len) and gateways: the agent's report, or Calico's
    # annotations (one address a family, no gateway).
    reports: list[tuple[list[str], list[str], bool]] = field(default_factory=list)


@st.composite
def _ip(draw: st.DrawFn, family: int | None = None) -> str:
    net = SPACES[draw(st.sampled_from([0, 1])) if family is None else family]
    ip = net.network_address + draw(st.integers(0, net.num_addresses - 1))
    # IPv6 as the API server keeps it: canonical, or as written (every group in full).
    return ip.exploded if ip.version == 6 and draw(st.booleans()) else str(ip)


@st.composite
def _cidr(draw: st.DrawFn, family: int | None = None) -> str:
    ip = ipaddress.ip_address(draw(_ip(family)))
    length = draw(st.integers(ip.max_prefixlen - 3, ip.max_prefixlen))
    return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))


@st.composite
def _pool(draw: st.DrawFn) -> str:
    family = draw(st.sampled_from([0, 1]))
    form = draw(st.sampled_from(["ip", "cidr", "range"]))
    if form == "ip":
        return draw(_ip(family))
    if form == "cidr":
        return draw(_cidr(family))
    a, b = sorted(ipaddress.ip_address(draw(_ip(family))) for _ in range(2))
    return f"{a}-{b}"


@st.composite
def _eip_address(draw: st.DrawFn) -> str:
    """A pool, now and then in a form OpenELB reads and address-syntax refuses."""
    text = draw(_pool())
    odd = draw(st.sampled_from(["", "", "", "mapped", "zero", "bad"]))
    if odd == "bad":  # no pool to OpenELB's allocator: reversed, mixed, with a space
        a, b = ipaddress.ip_address(draw(_ip())), ipaddress.ip_address(draw(_ip()))
        return draw(st.sampled_from([f"{max(a, b, key=int)}-{min(a, b, key=int)}",
                                     f"{a}-{b}", f" {a}"]))  # fmt: skip
    if odd == "zero" and "/" in text:
        ip, length = text.split("/")
        return f"{ip}/0{length}"
    if odd == "mapped" and ":" not in text:
        ends = text.split("/")[0].split("-")
        mapped = "-".join(f"::ffff:{end}" for end in ends)
        return f"{mapped}/{int(text.split('/')[1]) + 96}" if "/" in text else mapped
    return text


@st.composite
def _eip(draw: st.DrawFn, name: str, services: int) -> dict[str, Any]:
    address = draw(_eip_address())
    protocol = draw(st.sampled_from(["layer2", "vip", "bgp"]))
    interface = draw(st.sampled_from(["eth0", "can_reach"]))
    if interface == "can_reach":
        target = ipaddress.ip_address(draw(_ip() | st.sampled_from(SPECIAL + SPECIAL_V6)))
        mapped = target.version == 4 and draw(st.booleans())
        written = target.exploded if target.version == 6 and draw(st.booleans()) else target
        interface = f"can_reach:{'::ffff:' if mapped else ''}{written}"
    obj = eip(name, address, protocol=protocol, interface=interface)
    if protocol == "bgp" and draw(st.booleans()):
        del obj["spec"]["protocol"]  # absent: bgp
    if draw(st.booleans()):
        obj["spec"]["disable"] = True
    pool = sorted(_ips(address))
    if services and pool and draw(st.booleans()):
        used = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
        # "ns/name", or "ns/a;ns/b" when shared; now and then a namespace with no such Service.
        owner = st.builds(
            "{}/s{}".format, st.sampled_from(["a", "b"]), st.integers(0, services - 1)
        )
        owners = st.lists(owner, min_size=1, max_size=2, unique=True).map(";".join)
        obj["status"] = {"used": {str(ip): draw(owners) for ip in used}}
    return obj


@st.composite
def _cluster(draw: st.DrawFn) -> Cluster:
    c = Cluster()
    for _ in range(draw(st.integers(0, 3))):
        c.nodes.append((
            draw(st.lists(_ip(), max_size=2)),
            draw(st.lists(_ip(), max_size=1)),
            draw(st.lists(_cidr(), max_size=2)),
            draw(st.none() | _ip()),
        ))  # fmt: skip
    for _ in range(draw(st.integers(0, 3))):
        c.services.append({
            "cluster_ip": draw(st.none() | st.just("None") | _ip()),  # "None": headless
            "second_cluster_ip": draw(st.none() | _ip()),  # dual-stack: spec.clusterIPs[1]
            "external_ips": tuple(draw(st.lists(_ip(), max_size=2))),
            "lb_ip": draw(st.none() | _ip()),
            "ingress": tuple(draw(st.lists(_ip(), max_size=2))),
            "kube_vip": draw(st.lists(_ip(), max_size=2)),
            "kube_vip_ignored": draw(st.booleans()),
            "openelb_ip": draw(st.none() | _ip()),
            "namespace": draw(st.sampled_from(["a", "b"])),
        })  # fmt: skip
    for i in range(draw(st.integers(0, 3))):
        stored = draw(_eip(f"e{i}", len(c.services)))
        address = stored["spec"]["address"]
        plain_v4 = address == address.strip() and ":" not in address and "/0" not in address
        if plain_v4 and _ips(address) and draw(st.integers(0, 4)) == 0:
            # As a v1alpha1 snapshot shows it: IPv4 only, no vip, and spec.interface an
            # unknown field (the API server drops it): no can_reach IP.
            stored["apiVersion"] = "network.kubesphere.io/v1alpha1"
            if stored["spec"].get("protocol") == "vip":
                stored["spec"]["protocol"] = "layer2"
        c.eips.append(stored)
    for _ in range(draw(st.integers(0, 2))):
        c.annotated.append(draw(_annotated_node()))
    c.vip = draw(st.lists(_ip(), max_size=2))
    flags = st.sampled_from(["--controlplane", "--services", "--arp"]) | _ip().map(
        "--address={}".format
    )
    c.vip_flags = draw(st.lists(flags, max_size=3, unique=True))
    c.vip_kind = draw(st.sampled_from(["Pod", "DaemonSet"]))
    c.vip_variable = draw(st.sampled_from(["address", "vip_address"]))
    c.vip_control_plane = draw(st.sampled_from([*CP_ON, *CP_ON, *CP_OFF, *CP_UNREADABLE, None, ""]))
    c.vip_pools = draw(st.lists(_pool(), max_size=3))
    c.service_ranges = draw(st.lists(_cidr(), max_size=2))
    ranges = st.tuples(st.lists(_cidr(), max_size=2), st.lists(_cidr(), max_size=2))
    c.kubeadm = draw(st.none() | ranges)
    c.flags = draw(st.none() | ranges)
    c.calico_pools = draw(st.lists(st.tuples(_cidr(), st.booleans(), st.booleans()), max_size=2))
    c.cilium_nodes = draw(
        st.lists(st.tuples(st.lists(_cidr(), max_size=2), st.none() | _ip()), max_size=2)
    )
    for _ in range(draw(st.integers(0, 2))):
        bound = draw(st.lists(_bound(), max_size=2))
        if draw(st.booleans()):  # Calico's annotations: one address a family, no gateway
            one = {ipaddress.ip_interface(a).version: a for a in bound}
            c.reports.append((list(one.values()), [], True))
        else:
            c.reports.append((bound, draw(st.lists(_ip(), max_size=1)), False))
    return c


def _named(pattern: str, text: str) -> str:
    """An annotation name for the family of ``text`` (an IP or a CIDR)."""
    version = ipaddress.ip_network(text, strict=False).version
    name = pattern.format(version)
    return name.replace("public-ipv4", "public-ip")  # Flannel's IPv4 one has no suffix


@st.composite
def _annotated_node(draw: st.DrawFn) -> tuple[list[str], list[str], list[str], dict[str, str]]:
    """A Node whose addresses and pod CIDRs only CNI or distribution annotations give."""
    ips: list[str] = []
    pods: list[str] = []
    bound: list[str] = []
    annotations: dict[str, str] = {}
    for pattern in draw(st.lists(st.sampled_from(NODE_IP_KEYS), max_size=2, unique=True)):
        # One IP of the family the name says; k3s and RKE2: comma-separated when dual-stack.
        listed = draw(st.lists(_ip(), min_size=1, max_size=1 if "{}" in pattern else 2))
        annotations[_named(pattern, listed[0])] = ",".join(listed)
        ips += listed
    for pattern in draw(st.lists(st.sampled_from(POD_CIDR_KEYS), max_size=2, unique=True)):
        most = 2 if pattern.endswith("cidrs") else 1  # kube-router's pod-cidrs: a comma list
        listed = draw(st.lists(_cidr(), min_size=1, max_size=most))
        annotations[_named(pattern, listed[0])] = ",".join(listed)
        pods += listed
    if draw(st.booleans()):
        bound = draw(st.lists(_bound(), min_size=1, max_size=2))
        annotations["k8s.ovn.org/host-cidrs"] = json.dumps(bound)
    if draw(st.booleans()):  # only the default network is routed on the host
        default, other = draw(st.lists(_cidr(), max_size=2)), draw(st.lists(_cidr(), max_size=1))
        annotations["k8s.ovn.org/node-subnets"] = json.dumps({"default": default, "l2": other})
        pods += default
    return ips, pods, bound, annotations


@st.composite
def _bound(draw: st.DrawFn) -> str:
    """A NIC address as the agent reports it: IP/len, its node subnet (none for /32, /128)."""
    ip = ipaddress.ip_address(draw(_ip()))
    return f"{ip}/{draw(st.integers(ip.max_prefixlen - 5, ip.max_prefixlen))}"


def _node(
    name: str, internal: list[str], external: list[str], pods: list[str], hostname: str | None
) -> dict[str, Any]:
    addresses = [{"type": "InternalIP", "address": ip} for ip in internal]
    addresses += [{"type": "ExternalIP", "address": ip} for ip in external]
    addresses.append({"type": "Hostname", "address": hostname or name})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDRs": pods},
        "status": {"addresses": addresses},
    }


def static_pod(name: str, container: str, command: list[str]) -> dict[str, Any]:
    """A control-plane static Pod of kubeadm, in kube-system."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"containers": [{"name": container, "command": command}]},
    }


def _objects(c: Cluster) -> list[dict[str, Any]]:
    objects = [_node(f"n{i}", *n) for i, n in enumerate(c.nodes)]
    objects += [node(f"a{i}", annotations=a[3]) for i, a in enumerate(c.annotated)]
    for i, s in enumerate(c.services):
        annotations = {}
        if s["kube_vip"]:
            annotations["kube-vip.io/loadbalancerIPs"] = ",".join(s["kube_vip"])
            if s["kube_vip_ignored"]:
                annotations["kube-vip.io/ignore"] = "true"
        if s["openelb_ip"]:
            annotations["eip.openelb.kubesphere.io/v1alpha1"] = s["openelb_ip"]
        fields = {
            k: v for k, v in s.items() if k in ("cluster_ip", "external_ips", "lb_ip", "ingress")
        }
        obj = service(f"s{i}", s["namespace"], annotations=annotations, **fields)
        if s["cluster_ip"] not in (None, "None") and s["second_cluster_ip"]:
            obj["spec"]["clusterIPs"].append(s["second_cluster_ip"])
        objects.append(obj)
    objects += c.eips
    if c.vip or c.vip_flags:
        env = [{"name": c.vip_variable, "value": ", ".join(c.vip)}] if c.vip else []
        if c.vip_control_plane is not None:
            env.append({"name": "cp_enable", "value": c.vip_control_plane})
        pod = kube_vip_pod("kube-vip-n0", env, control_plane=None)
        pod["spec"]["containers"][0]["args"] = ["manager", *c.vip_flags]
        if c.vip_kind == "DaemonSet":
            template = {"metadata": {}, "spec": pod["spec"]}
            pod = dict(pod, apiVersion="apps/v1", kind="DaemonSet", spec={"template": template})
        objects.append(pod)
    if c.vip_pools:
        cidrs = [p for p in c.vip_pools if "/" in p]
        ranges = [p if "-" in p else f"{p}-{p}" for p in c.vip_pools if "/" not in p]
        data = {"cidr-global": ",".join(cidrs), "range-global": ",".join(ranges)}
        objects.append(configmap("kubevip", {k: v for k, v in data.items() if v}))
    for i, (bound, gateways, calico) in enumerate(c.reports):
        body = {"interfaces": [{"name": "eth0", "addresses": bound}], "gateways": gateways}
        report = {"eip-guard.io/network": json.dumps(body)}
        if calico:
            family = {4: "IPv4Address", 6: "IPv6Address"}
            report = {
                f"projectcalico.org/{family[ipaddress.ip_interface(a).version]}": a for a in bound
            }
        objects.append(node(f"r{i}", annotations=report))
    if c.service_ranges:
        objects.append(service_cidr("kubernetes", *c.service_ranges))
    if c.kubeadm is not None:
        networking = {"serviceSubnet": c.kubeadm[0], "podSubnet": c.kubeadm[1]}
        text = "".join(f"  {k}: {','.join(v)}\n" for k, v in networking.items() if v)
        config = f"apiVersion: kubeadm.k8s.io/v1beta4\nnetworking:\n{text}"
        objects.append(configmap("kubeadm-config", {"ClusterConfiguration": config}))
    if c.flags is not None:
        for component, flag, cidrs in (
            ("kube-apiserver", "--service-cluster-ip-range", c.flags[0]),
            ("kube-controller-manager", "--cluster-cidr", c.flags[1]),
        ):
            if cidrs:
                command = [component, f"{flag}={','.join(cidrs)}"]
                objects.append(static_pod(f"{component}-n0", component, command))
    for i, (cidr, disabled, lb_only) in enumerate(c.calico_pools):
        uses = ("LoadBalancer",) if lb_only else None
        objects.append(calico_pool(f"pool{i}", cidr, disabled=disabled, allowed_uses=uses))
    for i, (cidrs, host) in enumerate(c.cilium_nodes):
        objects.append(cilium_node(f"a{i}", pod_cidrs=tuple(cidrs), cilium_host=host))
    return objects


# The oracle: README "Rules", one rule at a time, over sets of addresses.


def _can_reach(obj: dict[str, Any]) -> IP | None:
    interface = obj["spec"].get("interface", "")
    if not interface.startswith("can_reach:"):
        return None
    return _as_openelb(interface.partition(":")[2])  # as its speaker reads and routes it


def _used(obj: dict[str, Any] | None) -> dict[str, str]:
    return dict(obj.get("status", {}).get("used", {})) if obj else {}


def _subnets(c: Cluster) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The known node subnets: of the agent's reports, Calico's and OVN-Kubernetes' node
    addresses with a prefix, of more than one address."""
    nets = [ipaddress.ip_interface(a).network for bound, _, _ in c.reports for a in bound]
    nets += [ipaddress.ip_interface(a).network for _, _, bound, _ in c.annotated for a in bound]
    return [n for n in nets if n.num_addresses > 1]


def expected(
    c: Cluster, candidate: dict[str, Any], old: dict[str, Any] | None
) -> tuple[set[str], set[str]]:
    """The rules that must fire (deny or warn), and of them those that deny on CREATE."""
    name = candidate["metadata"]["name"]
    layer2 = candidate["spec"].get("protocol") in ("layer2", "vip")
    pool = _ips(candidate["spec"]["address"])
    others = [e for e in c.eips if e["metadata"]["name"] != name]
    namesake = next((e for e in c.eips if e["metadata"]["name"] == name), None)
    subnets = _subnets(c)
    node_ips = {
        ipaddress.ip_address(ip)
        for internal, external, _, hostname in c.nodes
        for ip in [*internal, *external, *([hostname] if hostname else [])]
    } | {ipaddress.ip_interface(a).ip for bound, _, _ in c.reports for a in bound}
    node_ips |= {ipaddress.ip_address(ip) for ips, _, _, _ in c.annotated for ip in ips}
    node_ips |= {ipaddress.ip_interface(a).ip for _, _, bound, _ in c.annotated for a in bound}
    gateways = {ipaddress.ip_address(ip) for _, gws, _ in c.reports for ip in gws}
    # Subnet ends: IPv4 broadcast (denied) and network (warned) addresses of subnets shorter
    # than /31; the subnet-router anycast address of IPv6 subnets shorter than /127.
    broadcast = {n.broadcast_address for n in subnets if n.version == 4 and n.prefixlen < 31}
    network = {n.network_address for n in subnets if n.version == 4 and n.prefixlen < 31}
    anycast = {n.network_address for n in subnets if n.version == 6 and n.prefixlen < 127}
    pod_ips = {ip for _, _, pods, _ in c.nodes for cidr in pods for ip in _ips(cidr)}
    pod_ips |= {ip for _, pods, _, _ in c.annotated for cidr in pods for ip in _ips(cidr)}
    cluster_ips = {
        ipaddress.ip_address(ip)
        for s in c.services
        if s["cluster_ip"] not in (None, "None")
        for ip in (s["cluster_ip"], s["second_cluster_ip"])
        if ip
    }
    external_ips = {ipaddress.ip_address(ip) for s in c.services for ip in s["external_ips"]}
    # Asked for, bound by nothing yet: loadBalancerIP, OpenELB's annotation, and kube-vip's
    # annotation on a Service kube-vip ignores.
    requested = {ipaddress.ip_address(s["lb_ip"]) for s in c.services if s["lb_ip"]}
    requested |= {ipaddress.ip_address(s["openelb_ip"]) for s in c.services if s["openelb_ip"]}
    requested |= {
        ipaddress.ip_address(ip)
        for s in c.services
        if s["kube_vip_ignored"]
        for ip in s["kube_vip"]
    }
    kube_vip_lb = {
        ipaddress.ip_address(ip)
        for s in c.services
        if not s["kube_vip_ignored"]
        for ip in s["kube_vip"]
    }
    ingress = {
        f"{s['namespace']}/s{i}": {ipaddress.ip_address(ip) for ip in s["ingress"]}
        for i, s in enumerate(c.services)
    }
    all_ingress: set[IP] = set().union(*ingress.values())
    service_ranges = c.service_ranges + (c.kubeadm or ([], []))[0] + (c.flags or ([], []))[0]
    range_ips = {ip for cidr in service_ranges for ip in _ips(cidr)}
    pod_ranges = (c.kubeadm or ([], []))[1] + (c.flags or ([], []))[1]
    pod_ranges += [cidr for cidr, _, lb_only in c.calico_pools if not lb_only]
    pod_ranges += [cidr for cidrs, _ in c.cilium_nodes for cidr in cidrs]
    pod_ips |= {ip for cidr in pod_ranges for ip in _ips(cidr)}
    node_ips |= {ipaddress.ip_address(host) for _, host in c.cilium_nodes if host}
    # kube-vip binds its address only with its control plane on: cp_enable as Go's
    # strconv.ParseBool reads it, and a value it cannot read counts as on.
    # kube-vip reads an empty variable as unset (`if env != ""`).
    # The env wins; unset (or empty), the --controlplane flag (default off) decides.
    if c.vip_control_plane in (None, ""):
        control_plane = "--controlplane" in c.vip_flags
    else:
        control_plane = c.vip_control_plane not in CP_OFF
    # Both the env's address and the --address flag's (env wins in kube-vip, but a flag's
    # value is taken too, README "can-reach-kube-vip").
    addresses = c.vip + [f.partition("=")[2] for f in c.vip_flags if f.startswith("--address=")]
    vips = {ipaddress.ip_address(ip) for ip in addresses} if control_plane else set()
    vips |= {ip for p in c.vip_pools for ip in _ips(p)}
    # The Eip's own hand-outs: its status.used, its old version's and its stored namesake's.
    used = {**_used(namesake), **_used(old), **_used(candidate)}
    own_ips = {ipaddress.ip_address(ip) for ip in used}
    own_services = {s for owners in used.values() for s in owners.split(";")}

    fired: set[str] = set()
    target = _can_reach(candidate)
    if target is not None and (
        target.is_loopback
        or target.is_unspecified
        or target.is_multicast
        or target.is_link_local
        or target == ipaddress.ip_address("255.255.255.255")
    ):
        fired.add("can-reach-special")  # and nothing else of the IP: it routes nowhere near
    elif target is not None:
        if target in node_ips | anycast:
            fired.add("can-reach-node-ip")
        if target in pool or any(target in _ips(e["spec"]["address"]) for e in others):
            fired.add("can-reach-in-eip")
        service_ips = cluster_ips | external_ips | requested | kube_vip_lb | all_ingress
        if target in service_ips | range_ips:
            fired.add("can-reach-service-ip")
        if target in pod_ips:
            fired.add("can-reach-pod-cidr")
        if target in vips:
            fired.add("can-reach-kube-vip")
        if layer2:
            around = [n for n in subnets if target in n]
            if not around and any(n.version == target.version for n in subnets):
                fired.add("can-reach-unknown-subnet")
            # Of one family only: which subnet of the other family the IP's NIC carries
            # is not known (the code's reading; the README says "no known node subnet").
            same = all(ip.version == target.version for ip in pool)
            if around and same and not any(pool <= set(n) for n in around):
                fired.add("can-reach-pool-subnet")
    for e in others:
        reach = None if e["apiVersion"].endswith("v1alpha1") else _can_reach(e)
        if e["spec"].get("protocol") in ("layer2", "vip") and reach is not None and reach in pool:
            fired.add("eip-covers-can-reach")
    if any(pool & _ips(e["spec"]["address"]) for e in others):
        fired.add("address-overlap")
    held = pool & (((node_ips | gateways) - own_ips) | broadcast | anycast)
    if held or pool & network:
        fired.add("address-node-ip")
    if pool & (pod_ips | range_ips | cluster_ips):
        fired.add("address-cluster-network")
    others_ingress = set().union(*(ips for svc, ips in ingress.items() if svc not in own_services))
    if pool & ((external_ips | others_ingress | kube_vip_lb) - own_ips):
        fired.add("address-service-ip")
    if pool & vips:
        fired.add("address-kube-vip")
    if _refused(candidate["spec"]["address"]):
        fired.add("address-syntax")
    if old is not None and old["spec"]["address"] != candidate["spec"]["address"]:
        fired.add("address-immutable")
    # Only warnings: the subnet rules; a can_reach IP the speaker never uses (bgp); a pool
    # holding only an IPv4 subnet's network address.
    advisory = {"can-reach-unknown-subnet", "can-reach-pool-subnet"}
    if not layer2:
        advisory |= INTERFACE_RULES
    if not held:
        advisory.add("address-node-ip")
    return fired, fired - advisory


@st.composite
def _review(draw: st.DrawFn) -> tuple[Cluster, dict[str, Any], dict[str, Any] | None]:
    c = draw(_cluster())
    names = ["candidate"] + [e["metadata"]["name"] for e in c.eips]
    candidate = draw(_eip(draw(st.sampled_from(names)), len(c.services)))
    namesake = next(
        (e for e in c.eips if e["metadata"]["name"] == candidate["metadata"]["name"]), None
    )
    old = namesake if namesake is not None and draw(st.booleans()) else None
    if old is not None and draw(st.booleans()):  # an update that keeps the address
        candidate["spec"]["address"] = old["spec"]["address"]
    return c, candidate, old


EXAMPLES = settings(
    max_examples=int(os.environ.get("EIP_GUARD_ORACLE_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _fired(
    c: Cluster, candidate: dict[str, Any], old: dict[str, Any] | None
) -> tuple[set[str], set[str]]:
    inventory = build(_objects(c))
    verdict = check(Eip.from_object(candidate), Eip.from_object(old) if old else None, inventory)
    return {v.rule for v in verdict.denied_by + verdict.warned_by}, {
        v.rule for v in verdict.denied_by
    }


@EXAMPLES
@given(_review())
def test_the_rules_fire_as_the_readme_says(
    review: tuple[Cluster, dict[str, Any], dict[str, Any] | None],
) -> None:
    c, candidate, old = review
    (fired, denied), (wanted, deny) = _fired(c, candidate, old), expected(c, candidate, old)
    assert fired == wanted, (sorted(fired - wanted), sorted(wanted - fired), candidate, old)
    if old is None:  # an UPDATE's denials also follow ratcheting: not modelled
        assert denied == deny, (sorted(denied - deny), sorted(deny - denied), candidate)


# Mismatches the oracle found, as plain examples.


def test_a_cluster_ip_the_eip_lists_in_status_used_still_counts() -> None:
    # status.used exempts OpenELB's own hand-outs from address-service-ip and
    # address-node-ip; a cluster IP is none: kube-proxy routes it inside whoever holds it.
    objects = [service("s0", cluster_ip="10.0.0.0")]
    candidate = eip("candidate", "10.0.0.0", used={"10.0.0.0": "default/s0"})
    verdict = check(Eip.from_object(candidate), None, build(objects))
    assert {v.rule for v in verdict.denied_by} == {"address-cluster-network"}


def test_one_object_holding_one_range_twice_is_named_not_a_crash() -> None:
    # kube-vip-cloud-provider's ConfigMap with one range as a CIDR and as a range (a Span
    # with a prefix and one without), and kubeadm's Service and pod subnets starting at one
    # address (two kinds of fact of one object): sorting them compared None with an int,
    # and two FactKinds, and the review raised TypeError.
    for data, name in (
        ({"cidr-global": "10.0.0.0/30", "range-global": "10.0.0.0-10.0.0.3"}, "kubevip"),
        (
            {"ClusterConfiguration": "networking:\n  podSubnet: 10.0.0.0/24\n"
             "  serviceSubnet: 10.0.0.0/28\n"},
            "kubeadm-config",
        ),
    ):  # fmt: skip
        inventory = build([configmap(name, data)])
        verdict = check(Eip.from_object(eip("candidate", "10.0.0.0")), None, inventory)
        assert not verdict.allowed
        assert f"ConfigMap kube-system/{name}" in verdict.message
