"""Synthetic clusters for the benchmark: realistic shapes, any size, same bytes for a seed.

A cluster is a list of plain Kubernetes objects (dicts), as `kubectl get -o json` prints
them, so the benchmark exercises the same `extract`/`assemble` path as a real snapshot.

Address plan (every family and kind in its own block, so nothing collides by accident):
- Node network 172.16.0.0/12 in racks of /22; the gateway of a rack is ``.1`` and nodes
  start at ``.10`` (up to 200 nodes a rack). Every tenth node is dual-stack (fd00:16::/48).
  Even racks run Calico (``projectcalico.org/IPv4Address``), odd racks flannel; every node
  carries the eip-guard agent's report (NICs, subnets, gateway).
- Pod CIDRs: a /24 per node from 10.64.0.0/10; dual-stack nodes add a /64 from fd00:64::/48.
- Services: ClusterIPs drawn at random from the ServiceCIDR 10.96.0.0/12 (IPv6:
  fd00:10:96::/108); some headless, some dual-stack, some LoadBalancer (OpenELB or
  kube-vip), a few externalIPs from 198.18.0.0/15.
- Eips: layer2/vip pools in the upper three /24s of each rack (where a NIC subnet holds
  them, as the speaker requires); bgp pools in 100.64.0.0/10 (IPv4) and fd00:eb::/32
  (IPv6). Shapes: single IPs, CIDRs and ``a-b`` ranges that are not CIDR-aligned.
- kube-vip: a static pod per control-plane node (control-plane VIP 172.16.0.5), a
  DaemonSet reading its address from a ConfigMap, and the kube-vip-cloud-provider
  ConfigMap ``kube-system/kubevip`` with global and per-namespace pools.
- ServiceCIDR objects for both Service ranges.

``candidates`` returns Eips to judge against a cluster: allowed ones (free pools,
``can_reach`` at a rack gateway) and denied ones (``can_reach`` at a node IP, a Service IP,
a pod IP, an IP inside a pool, and pools that overlap another Eip).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

NODE_NET = int(ipaddress.IPv4Address("172.16.0.0"))
RACK_SIZE = 1024  # a /22
RACK_PREFIX = 22
NODES_PER_RACK = 200
FIRST_NODE_HOST = 10
CONTROL_PLANE_VIP = "172.16.0.5"
NODE_NET6 = int(ipaddress.IPv6Address("fd00:16::"))
POD_NET = int(ipaddress.IPv4Address("10.128.0.0"))  # /24 per node: clear of the /12 ServiceCIDR
POD_NET6 = int(ipaddress.IPv6Address("fd00:64::"))
SERVICE_CIDR = "10.96.0.0/12"
SERVICE_CIDR6 = "fd00:10:96::/108"
SERVICE_NET = int(ipaddress.IPv4Address("10.96.0.0"))
SERVICE_NET6 = int(ipaddress.IPv6Address("fd00:10:96::"))
SERVICE_SPACE = 1 << 20  # addresses in the /12 (and in the /108)
EXTERNAL_NET = int(ipaddress.IPv4Address("198.18.0.0"))
BGP_NET = int(ipaddress.IPv4Address("100.64.0.0"))
BGP_NET6 = int(ipaddress.IPv6Address("fd00:eb::"))
BGP_SLOT = 64  # addresses reserved per bgp pool; pools use part of their slot
L2_SLOT = 16  # addresses reserved per layer2 pool inside a rack
L2_FIRST = 256  # layer2 pools live in the upper three /24s of each rack (not its broadcast)
L2_PER_RACK = (RACK_SIZE - L2_FIRST) // L2_SLOT - 1  # the last slot holds the broadcast address
FREE_L2 = 224  # a free /28 of every rack, past its nodes and before its pools: new pools
KUBE_VIP_POOL = "198.51.100.0/24"
KUBE_VIP_RANGE = ("198.51.101.10", "198.51.101.200")
KUBE_VIP_POOL6 = "fd00:5e::/120"
NAMESPACES = 200


@dataclass(frozen=True, slots=True)
class Shape:
    """How big a synthetic cluster is."""

    name: str
    nodes: int
    eips: int
    services: int

    @property
    def racks(self) -> int:
        return max(1, -(-self.nodes // NODES_PER_RACK))


SIZES: tuple[Shape, ...] = (
    Shape("xs", 10, 10, 10),
    Shape("s", 100, 500, 1_000),
    Shape("m", 1_000, 5_000, 10_000),
    Shape("l", 3_000, 15_000, 30_000),
    Shape("xl", 10_000, 50_000, 100_000),
)
QUICK_SIZES: tuple[Shape, ...] = SIZES[:3]


def v4(key: int) -> str:
    return str(ipaddress.IPv4Address(key))


def v6(key: int) -> str:
    return str(ipaddress.IPv6Address(key))


def rack_base(rack: int) -> int:
    return NODE_NET + rack * RACK_SIZE


def rack_gateway(rack: int) -> str:
    return v4(rack_base(rack) + 1)


def node_ip(i: int) -> str:
    return v4(rack_base(i // NODES_PER_RACK) + FIRST_NODE_HOST + i % NODES_PER_RACK)


def node_ip6(i: int) -> str:
    return v6(NODE_NET6 + ((i // NODES_PER_RACK) << 64) + FIRST_NODE_HOST + i % NODES_PER_RACK)


def _meta(name: str, namespace: str = "", **extra: Any) -> Obj:
    meta: Obj = {"name": name, **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _node(i: int, control_plane: bool) -> Obj:
    rack = i // NODES_PER_RACK
    ip = node_ip(i)
    dual = i % 10 == 0
    name = f"node-{i:05d}"
    interfaces: list[Obj] = [
        {"name": "lo", "mac": "00:00:00:00:00:00", "up": True, "addresses": ["127.0.0.1/8"]},
        {
            "name": "eth0",
            "mac": f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}",
            "up": True,
            "addresses": [f"{ip}/{RACK_PREFIX}"] + ([f"{node_ip6(i)}/64"] if dual else []),
        },
    ]
    annotations: Obj = {
        "eip-guard.io/network": json.dumps(
            {"interfaces": interfaces, "gateways": [rack_gateway(rack)]}, separators=(",", ":")
        ),
        "node.alpha.kubernetes.io/ttl": "0",
    }
    if rack % 2 == 0:
        annotations["projectcalico.org/IPv4Address"] = f"{ip}/{RACK_PREFIX}"
    else:
        annotations["flannel.alpha.coreos.com/public-ip"] = ip
    pod_cidrs = [f"{v4(POD_NET + i * 256)}/24"]
    addresses = [{"type": "InternalIP", "address": ip}]
    if dual:
        pod_cidrs.append(f"{v6(POD_NET6 + (i << 64))}/64")
        addresses.append({"type": "InternalIP", "address": node_ip6(i)})
    addresses.append({"type": "Hostname", "address": name})
    labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": f"rack-{rack}"}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(name, labels=labels, annotations=annotations),
        "spec": {"podCIDR": pod_cidrs[0], "podCIDRs": pod_cidrs},
        "status": {"addresses": addresses},
    }


@dataclass(frozen=True, slots=True)
class _Pool:
    name: str
    address: str
    first: str  # first IP of the pool, handed to a Service
    protocol: str
    interface: str
    inside: str  # an IP strictly inside the pool (for denied candidates)


def l2_capacity(shape: Shape) -> int:
    return shape.racks * L2_PER_RACK


def _l2_pool(j: int, rng: random.Random) -> _Pool:
    rack, slot = divmod(j, L2_PER_RACK)
    base = rack_base(rack) + L2_FIRST + slot * L2_SLOT
    form = j % 3
    if form == 0:  # an aligned /28 CIDR
        address, first, last = f"{v4(base)}/28", base, base + 15
    elif form == 1:  # a range that is not CIDR-aligned
        start = base + rng.randrange(1, 5)
        last = start + rng.randrange(3, 10)
        address, first = f"{v4(start)}-{v4(last)}", start
    else:  # a single IP
        first = last = base + rng.randrange(0, L2_SLOT)
        address = v4(first)
    protocol = "vip" if j % 17 == 0 else "layer2"
    interface = f"can_reach:{rack_gateway(rack)}" if j % 2 == 0 else "eth0"
    return _Pool(f"l2-{j:05d}", address, v4(first), protocol, interface, v4((first + last) // 2))


def _bgp_pool(j: int, rng: random.Random) -> _Pool:
    form = j % 10
    if form >= 8:  # IPv6, CIDR or range
        base = BGP_NET6 + (j << 8)
        if form == 8:
            return _Pool(f"bgp6-{j:05d}", f"{v6(base)}/120", v6(base), "bgp", "", v6(base + 77))
        start = base + rng.randrange(1, 20)
        last = start + rng.randrange(10, 200)
        address = f"{v6(start)}-{v6(last)}"
        return _Pool(f"bgp6-{j:05d}", address, v6(start), "bgp", "", v6(start + 5))
    base = BGP_NET + j * BGP_SLOT
    if form < 4:  # unaligned range
        start = base + rng.randrange(1, 9)
        last = start + rng.randrange(4, 40)
        address = f"{v4(start)}-{v4(last)}"
        return _Pool(f"bgp-{j:05d}", address, v4(start), "bgp", "", v4(start + 2))
    if form < 7:  # CIDR /26, /27 or /29
        prefix = (26, 27, 29)[form - 4]
        address = f"{v4(base)}/{prefix}"
        return _Pool(f"bgp-{j:05d}", address, v4(base), "bgp", "", v4(base + 3))
    return _Pool(f"bgp-{j:05d}", v4(base), v4(base), "bgp", "", v4(base))


def _pools(shape: Shape, rng: random.Random) -> list[_Pool]:
    n_l2 = min(max(1, int(shape.eips * 0.3)), l2_capacity(shape), shape.eips)
    pools = [_l2_pool(j, rng) for j in range(n_l2)]
    pools += [_bgp_pool(j, rng) for j in range(shape.eips - n_l2)]
    return pools


def _eip(pool: _Pool, used_by: str | None, default: bool) -> Obj:
    annotations = {"eip.openelb.kubesphere.io/is-default-eip": "true"} if default else {}
    spec: Obj = {"address": pool.address, "protocol": pool.protocol}
    if pool.interface:
        spec["interface"] = pool.interface
    status: Obj = {"firstIP": pool.first, "ready": True, "v4": ":" not in pool.first}
    if used_by is not None:
        status["used"] = {pool.first: used_by}
        status["usage"] = 1
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": _meta(pool.name, annotations=annotations),
        "spec": spec,
        "status": status,
    }


def _service(i: int, cluster_ip: int, lb: Obj | None) -> Obj:
    ns = f"ns-{i % NAMESPACES:03d}"
    name = f"svc-{i:06d}"
    spec: Obj = {
        "type": "ClusterIP",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        "selector": {"app": name},
    }
    if i % 10 == 3:  # headless
        spec["clusterIP"] = "None"
        spec["clusterIPs"] = ["None"]
    elif i % 10 == 5:  # dual-stack
        ips = [v4(SERVICE_NET + cluster_ip), v6(SERVICE_NET6 + cluster_ip)]
        spec.update(clusterIP=ips[0], clusterIPs=ips, ipFamilyPolicy="PreferDualStack")
    else:
        spec.update(
            clusterIP=v4(SERVICE_NET + cluster_ip), clusterIPs=[v4(SERVICE_NET + cluster_ip)]
        )
    if i % 50 == 7:
        spec["externalIPs"] = [v4(EXTERNAL_NET + i)]
    obj: Obj = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns), "spec": spec}
    if lb is not None:
        spec["type"] = "LoadBalancer"
        obj["metadata"]["annotations"] = lb["annotations"]
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": lb["ip"]}]}}
    return obj


def _kube_vip(control_planes: list[str]) -> list[Obj]:
    objs: list[Obj] = []
    image = "ghcr.io/kube-vip/kube-vip:v0.8.9"
    for node in control_planes:
        env = [
            {"name": "vip_interface", "value": "eth0"},
            {"name": "address", "value": CONTROL_PLANE_VIP},
            {"name": "cp_enable", "value": "true"},
            {"name": "vip_leaderelection", "value": "true"},
        ]
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": _meta(f"kube-vip-{node}", "kube-system"),
                "spec": {
                    "hostNetwork": True,
                    "nodeName": node,
                    "containers": [
                        {"name": "kube-vip", "image": image, "args": ["manager"], "env": env}
                    ],
                },
            }
        )
    ref = {"configMapKeyRef": {"name": "kube-vip-svc", "key": "address"}}
    objs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("kube-vip-ds", "kube-system"),
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "kube-vip",
                                "image": image,
                                "args": ["manager"],
                                "env": [
                                    {"name": "cp_enable", "value": "true"},
                                    {"name": "svc_enable", "value": "true"},
                                    {"name": "address", "valueFrom": ref},
                                ],
                            }
                        ]
                    }
                }
            },
        }
    )
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("kube-vip-svc", "kube-system"),
            "data": {"address": "172.16.0.6,fd00:16::6"},
        }
    )
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("kubevip", "kube-system"),
            "data": {
                "cidr-global": f"{KUBE_VIP_POOL},{KUBE_VIP_POOL6}",
                "range-ns-001": "-".join(KUBE_VIP_RANGE),
            },
        }
    )
    return objs


def _service_cidrs() -> list[Obj]:
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": _meta("kubernetes"),
            "spec": {"cidrs": [SERVICE_CIDR, SERVICE_CIDR6]},
        }
    ]


def _rng(shape: Shape, seed: int) -> random.Random:
    """The generator of a cluster's random draws: the same draws for the same shape and seed."""
    return random.Random(f"{seed}:{shape.name}:{shape.nodes}:{shape.eips}:{shape.services}")


def cluster(shape: Shape, seed: int = 0) -> list[Obj]:
    """Every object of a synthetic cluster; the same list for the same shape and seed."""
    return list(iter_cluster(shape, seed))


def iter_cluster(shape: Shape, seed: int = 0) -> Iterator[Obj]:
    """Like :func:`cluster`, one object at a time (to build an inventory without a list)."""
    rng = _rng(shape, seed)
    n_cp = min(3, shape.nodes)
    control_planes = [f"node-{i:05d}" for i in range(n_cp)]
    for i in range(shape.nodes):
        yield _node(i, i < n_cp)
    pools = _pools(shape, rng)
    cluster_ips = rng.sample(range(10, SERVICE_SPACE), shape.services)
    # Every tenth Service is a LoadBalancer: OpenELB hands it the first IP of a pool,
    # every fifth of those gets its IP from kube-vip instead.
    used: dict[str, str] = {}
    lbs: dict[int, Obj] = {}
    vip_pool = ipaddress.ip_network(KUBE_VIP_POOL)
    for n, i in enumerate(range(0, shape.services, 10)):
        ns, name = f"ns-{i % NAMESPACES:03d}", f"svc-{i:06d}"
        if n % 5 == 4:
            ip = str(vip_pool[n % 250 + 1])
            lbs[i] = {"ip": ip, "annotations": {"kube-vip.io/loadbalancerIPs": ip}}
        elif n < len(pools):
            pool = pools[n]
            used[pool.name] = f"{ns}/{name}"
            lbs[i] = {
                "ip": pool.first,
                "annotations": {
                    "lb.kubesphere.io/v1alpha1": "openelb",
                    "eip.openelb.kubesphere.io/v1alpha2": pool.name,
                },
            }
    for j, pool in enumerate(pools):
        yield _eip(pool, used.get(pool.name), default=j == 0)
    for i in range(shape.services):
        yield _service(i, cluster_ips[i], lbs.get(i))
    yield from _kube_vip(control_planes)
    yield from _service_cidrs()


def _candidate(name: str, address: str, protocol: str, interface: str = "") -> Obj:
    spec: Obj = {"address": address, "protocol": protocol}
    if interface:
        spec["interface"] = interface
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": {"name": name},
        "spec": spec,
    }


def candidates(shape: Shape, count: int, seed: int = 0) -> dict[str, list[Obj]]:
    """``count`` new Eips that eip-guard must allow, and ``count`` it must deny.

    Allowed: a free bgp pool past the last one, or a free layer2 pool of a rack's subnet
    with ``can_reach`` at the rack's gateway. Denied, in turn: ``can_reach`` at a node IP, at
    a Service IP, at an IP inside another Eip's pool, at a pod IP; a pool overlapping
    another Eip.
    """
    rng = random.Random(f"candidates:{seed}:{shape.name}")
    pools = _pools(shape, _rng(shape, seed))
    allowed: list[Obj] = []
    denied: list[Obj] = []
    free_bgp = BGP_NET + (shape.eips + 1) * BGP_SLOT
    for k in range(count):
        rack = rng.randrange(shape.racks)
        if k % 2 == 0:
            base = free_bgp + k * BGP_SLOT
            allowed.append(_candidate(f"new-{k}", f"{v4(base)}-{v4(base + 20)}", "bgp"))
        else:
            base, gateway = rack_base(rack) + FREE_L2, rack_gateway(rack)
            allowed.append(
                _candidate(f"new-{k}", f"{v4(base)}/28", "layer2", f"can_reach:{gateway}")
            )
        free = f"{v4(free_bgp + (count + k) * BGP_SLOT)}/29"
        form = k % 5
        if form == 0:
            target = node_ip(rng.randrange(shape.nodes))
        elif form == 1:
            target = _service_ip(shape, seed, rng.randrange(shape.services))
        elif form == 2:
            target = pools[rng.randrange(len(pools))].inside
        elif form == 3:
            target = v4(POD_NET + rng.randrange(shape.nodes) * 256 + rng.randrange(2, 250))
        else:
            pool = pools[rng.randrange(len(pools))]
            denied.append(_candidate(f"bad-{k}", pool.address, "bgp"))
            continue
        denied.append(_candidate(f"bad-{k}", free, "layer2", f"can_reach:{target}"))
    return {"allowed": allowed, "denied": denied}


def _service_ip(shape: Shape, seed: int, i: int) -> str:
    """The ClusterIP of Service ``i`` (a headless one borrows its neighbour's)."""
    if i % 10 == 3:
        i = i - 1 if i > 0 else i + 1
    return _cluster_ips(shape, seed)[i]


@functools.lru_cache(maxsize=2)
def _cluster_ips(shape: Shape, seed: int) -> tuple[str, ...]:
    """Every Service's ClusterIP, from the same draws as :func:`iter_cluster`."""
    rng = _rng(shape, seed)
    _pools(shape, rng)  # the draws iter_cluster makes first, in the same order
    offsets = rng.sample(range(10, SERVICE_SPACE), shape.services)
    return tuple(v4(SERVICE_NET + o) for o in offsets)


def write_snapshot(shape: Shape, path: Path, seed: int = 0) -> Path:
    """The cluster as one ``kind: List`` JSON file, as ``kubectl get -o json`` writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"apiVersion": "v1", "kind": "List", "items": cluster(shape, seed)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    tmp.replace(path)
    return path
