"""Facts extracted from each kind of Kubernetes object, with their sources."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from app.cli.check_run import resolve_dns
from app.core.addresses import Span, parse_ip
from app.core.facts import FactKind
from app.core.inventory import Inventory, Options, build, extract
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


def key(ip: str) -> int:
    return Span.of_ip(parse_ip(ip)).first


def fields(inv: Inventory, kind: FactKind, ip: str) -> set[str]:
    return {str(f.source) for f in inv.matching(kind, key(ip))}


def inv_of(*objects: dict[str, Any], resolve: Any = None) -> Inventory:
    return build(list(objects), Options(), resolve)


def test_node_addresses_pod_cidrs_and_cni_annotations() -> None:
    n = node(
        "n1",
        "10.0.0.5",
        pod_cidrs=("10.244.1.0/24", "fd00:1::/64"),
        hostname="10.0.0.9",
        annotations={
            "flannel.alpha.coreos.com/public-ip": "10.0.0.6",
            "projectcalico.org/IPv4Address": "10.0.0.7/16",
            "projectcalico.org/IPv6Address": "2001:db8::7/64",
        },
    )
    n["status"]["addresses"].append({"type": "ExternalIP", "address": "203.0.113.5"})
    n["status"]["addresses"].append({"type": "InternalDNS", "address": "n1.internal"})
    inv = inv_of(n)
    assert fields(inv, FactKind.NODE_IP, "10.0.0.5") == {"Node n1 (status.addresses InternalIP)"}
    assert fields(inv, FactKind.NODE_IP, "203.0.113.5") == {"Node n1 (status.addresses ExternalIP)"}
    assert fields(inv, FactKind.NODE_IP, "10.0.0.9") == {"Node n1 (status.addresses Hostname)"}
    assert fields(inv, FactKind.NODE_IP, "10.0.0.6") == {
        "Node n1 (annotation flannel.alpha.coreos.com/public-ip)"
    }
    assert fields(inv, FactKind.NODE_IP, "2001:db8::7")
    # Calico's prefix becomes a known node subnet; its other addresses are not node IPs.
    assert fields(inv, FactKind.NODE_SUBNET, "10.0.200.1")
    assert not fields(inv, FactKind.NODE_IP, "10.0.200.1")
    assert fields(inv, FactKind.POD_CIDR, "10.244.1.77") == {"Node n1 (spec.podCIDRs)"}
    assert fields(inv, FactKind.POD_CIDR, "fd00:1::abcd")
    assert not inv.notes  # a DNS hostname is not an IP, quietly


def test_single_pod_cidr_field_and_bad_values_become_notes() -> None:
    n = node("n2", "10.0.0.8", annotations={"projectcalico.org/IPv4Address": "garbage"})
    n["spec"] = {"podCIDR": "10.244.2.0/24"}
    n["status"]["addresses"].append({"type": "InternalIP", "address": "10.0.0.300"})
    inv = inv_of(n)
    assert fields(inv, FactKind.POD_CIDR, "10.244.2.1")
    assert len(inv.notes) == 2
    assert any("10.0.0.300" in note for note in inv.notes)


def test_service_ips_of_every_kind() -> None:
    svc = service(
        "web",
        "shop",
        cluster_ip="10.96.0.10",
        external_ips=("192.0.2.10",),
        lb_ip="192.0.2.11",
        ingress=("192.0.2.12",),
        annotations={
            "kube-vip.io/loadbalancerIPs": "192.0.2.13, 2001:db8::13,0.0.0.0",
            "eip.openelb.kubesphere.io/v1alpha1": "192.0.2.14",
        },
    )
    headless = service("db", "shop", cluster_ip="None")
    inv = inv_of(svc, headless)
    expect = {
        "10.96.0.10": "spec.clusterIPs",
        "192.0.2.10": "spec.externalIPs",
        "192.0.2.11": "spec.loadBalancerIP",
        "192.0.2.12": "status.loadBalancer.ingress.ip",
        "192.0.2.13": "annotation kube-vip.io/loadbalancerIPs",
        "2001:db8::13": "annotation kube-vip.io/loadbalancerIPs",
        "192.0.2.14": "annotation eip.openelb.kubesphere.io/v1alpha1",
    }
    for ip, fld in expect.items():
        assert fields(inv, FactKind.SERVICE_IP, ip) == {f"Service shop/web ({fld})"}
    assert not fields(inv, FactKind.SERVICE_IP, "0.0.0.0")
    assert inv.count(FactKind.SERVICE_IP) == len(expect)


def test_calico_tunnel_and_wireguard_addresses_are_node_ips() -> None:
    names = ["IPv4IPIPTunnelAddr", "IPv4VXLANTunnelAddr", "IPv6VXLANTunnelAddr",
             "IPv4WireguardInterfaceAddr", "IPv6WireguardInterfaceAddr"]  # fmt: skip
    ips = ["10.244.1.0", "10.244.1.1", "fd00:244::1", "10.244.1.2", "fd00:244::2"]
    annotations = {f"projectcalico.org/{n}": ip for n, ip in zip(names, ips, strict=True)}
    inv = inv_of(node("n1", "10.0.0.5", annotations=annotations))
    for name, ip in zip(names, ips, strict=True):
        assert fields(inv, FactKind.NODE_IP, ip) == {
            f"Node n1 (annotation projectcalico.org/{name})"
        }
    broken = inv_of(node("n2", annotations={"projectcalico.org/IPv4IPIPTunnelAddr": "x"}))
    assert any("IPv4IPIPTunnelAddr): ignored 'x'" in note for note in broken.notes)


def test_service_annotations_take_a_few_ips_and_never_a_cidr() -> None:
    # No API server validates annotations: '0.0.0.0/0' on one tenant's Service made every
    # can_reach IP a Service IP, and 15,000 IPs in one annotation cost memory for nothing.
    many = ",".join(f"192.0.2.{i}" for i in range(1, 41))
    wide = service("wide", "tenant", annotations={
        "kube-vip.io/loadbalancerIPs": "0.0.0.0/0,::/0",
        "eip.openelb.kubesphere.io/v1alpha1": "10.0.0.0/8",
    })  # fmt: skip
    inv = inv_of(wide, service("many", "tenant", annotations={"kube-vip.io/loadbalancerIPs": many}))
    assert not fields(inv, FactKind.SERVICE_IP, "10.1.2.3")
    assert inv.count(FactKind.SERVICE_IP) == 16  # the first 16 of the 40
    assert fields(inv, FactKind.SERVICE_IP, "192.0.2.16") and not fields(
        inv, FactKind.SERVICE_IP, "192.0.2.17"
    )
    notes = "\n".join(inv.notes)
    assert (
        "Service tenant/wide (annotation kube-vip.io/loadbalancerIPs): ignored '0.0.0.0/0'" in notes
    )
    assert "ignored '10.0.0.0/8': an IP address, not a CIDR" in notes
    assert "Service tenant/many (annotation kube-vip.io/loadbalancerIPs): ignored 24 IP(s)" in notes


def test_an_annotation_ip_of_thousands_of_digits_is_ignored_not_a_crash() -> None:
    # Python's int() refuses more than 4,300 digits with a ValueError, which the address
    # parser let out: one tenant's annotation made every inventory build raise.
    huge = "1." + "1" * 5000 + ".1.1"
    inv = inv_of(
        service("huge", "tenant", annotations={"kube-vip.io/loadbalancerIPs": huge}),
        eip("e", "10.0.0.1", used={huge: "tenant/huge"}, interface=f"can_reach:{huge}"),
    )
    assert inv.count(FactKind.SERVICE_IP) == 0
    assert "Service tenant/huge (annotation kube-vip.io/loadbalancerIPs): ignored" in "\n".join(
        inv.notes
    )


def test_an_unreadable_annotation_is_said_in_a_note_of_bounded_length() -> None:
    # No API server validates annotations: a tenant's 200 KB value came back whole in the
    # note, and so in every `cluster: ...` log line and problem live mode keeps of it.
    junk = "x" * 200_000
    inv = inv_of(
        service("junk", "tenant", annotations={
            "kube-vip.io/loadbalancerIPs": f"{junk},{junk}y",
            "eip.openelb.kubesphere.io/v1alpha1": junk,
        }),
        node("n", "10.0.0.5", annotations={"k3s.io/internal-ip": junk}),
        configmap("kubevip", {"cidr-global": junk}),
    )  # fmt: skip
    assert inv.count(FactKind.SERVICE_IP) == 0
    said = [n for n in inv.notes if "ignored 'xxx" in n]
    assert len(said) == 5
    assert all(len(n) < 400 for n in said), [len(n) for n in said]
    assert "Service tenant/junk (annotation eip.openelb.kubesphere.io/v1alpha1): ignored 'xxx" in (
        "\n".join(said)
    )


def test_service_cidrs() -> None:
    inv = inv_of(service_cidr("kubernetes", "10.96.0.0/12", "fd00:10:96::/112"))
    assert fields(inv, FactKind.SERVICE_CIDR, "10.100.0.1") == {
        "ServiceCIDR kubernetes (spec.cidrs)"
    }
    assert fields(inv, FactKind.SERVICE_CIDR, "fd00:10:96::1")
    assert not fields(inv, FactKind.SERVICE_CIDR, "10.112.0.1")


def test_kube_vip_env_literal_configmap_and_dns() -> None:
    pod = kube_vip_pod(
        "kube-vip-n1",
        [
            {"name": "address", "value": "192.0.2.100, 2001:db8::100"},
            {"name": "vip_interface", "value": "eth0"},
            {
                "name": "vip_address",
                "valueFrom": {"configMapKeyRef": {"name": "vip-config", "key": "vip"}},
            },
        ],
    )
    ds: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "kube-vip-ds", "namespace": "kube-system"},
        "spec": {"template": {"spec": kube_vip_pod("x", [])["spec"]}},
    }
    ds["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "cp_enable", "value": "true"},
        {"name": "address", "value": "cp.example.test,unresolvable.example.test"},
    ]
    lookups: list[str] = []

    def resolve(name: str) -> list[str]:
        lookups.append(name)
        if name == "cp.example.test":
            return ["192.0.2.102"]
        raise OSError("NXDOMAIN")

    inv = inv_of(pod, ds, configmap("vip-config", {"vip": "192.0.2.101"}), resolve=resolve)
    assert fields(inv, FactKind.KUBE_VIP_VIP, "192.0.2.100") == {
        "Pod kube-system/kube-vip-n1 (container kube-vip env address)"
    }
    assert fields(inv, FactKind.KUBE_VIP_VIP, "2001:db8::100")
    assert fields(inv, FactKind.KUBE_VIP_VIP, "192.0.2.101") == {
        "Pod kube-system/kube-vip-n1 (container kube-vip env vip_address)"
    }
    assert fields(inv, FactKind.KUBE_VIP_VIP, "192.0.2.102") == {
        "DaemonSet kube-system/kube-vip-ds (container kube-vip env address)"
    }
    assert sorted(lookups) == ["cp.example.test", "unresolvable.example.test"]
    assert len(vip_gaps(inv)) == 1 and "unresolvable.example.test" in vip_gaps(inv)[0]


@pytest.mark.parametrize("name", ["vip..example.com", ".vip.example", "a" * 64 + ".example"])
def test_a_kube_vip_name_dns_cannot_carry_is_a_gap_not_a_crash(name: str) -> None:
    # The real resolver: getaddrinfo fails these in IDNA encoding (UnicodeError), before any
    # lookup; live mode then failed every whole assembly, and stayed unready or frozen.
    pod = kube_vip_pod("kv", [{"name": "address", "value": f"192.0.2.100,{name}"}])
    inv = inv_of(pod, resolve=resolve_dns)
    assert fields(inv, FactKind.KUBE_VIP_VIP, "192.0.2.100")
    assert len(vip_gaps(inv)) == 1 and f"could not resolve {name!r}" in vip_gaps(inv)[0]


def test_kube_vip_missing_configmap_is_a_gap_not_a_crash() -> None:
    pod = kube_vip_pod(
        "kv", [{"name": "address", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]
    )
    inv = inv_of(pod)
    assert inv.count(FactKind.KUBE_VIP_VIP) == 0
    assert vip_gaps(inv)[0].endswith("ConfigMap kube-system/nope not found")
    # The ConfigMap present without the key: the key is named.
    inv = inv_of(pod, configmap("nope", {"other": "192.0.2.1"}))
    assert vip_gaps(inv)[0].endswith("ConfigMap kube-system/nope key 'k' not found")


def test_kube_vip_env_from_configmaps_secrets_and_flags() -> None:
    """kube-vip's own Helm chart renders ``envFrom``, and ``kube-vip manifest`` can write
    ``--address``/``--vip`` flags: VIPs set there are bound as surely as env ones."""
    pod = kube_vip_pod("kv", [{"name": "address", "value": "192.0.2.1"}])
    container = pod["spec"]["containers"][0]
    container["envFrom"] = [
        {"configMapRef": {"name": "env-all"}},  # its address loses to env; vip_address counts
        {"configMapRef": {"name": "env-prefixed"}, "prefix": "vip_"},  # address -> vip_address
        {"configMapRef": {"name": "env-other"}},  # holds neither: no gap
        {"configMapRef": {"name": "env-missing"}},
        {"configMapRef": {"name": "env-optional", "optional": True}},  # absent: sets nothing
        {"secretRef": {"name": "vip-secret"}},
    ]
    container["command"] = ["/kube-vip", "--vip", "192.0.2.5"]
    container["args"] = ["manager", "--address=192.0.2.6", "--interface=eth0", "--vip"]
    inv = inv_of(
        pod,
        configmap("env-all", {"address": "192.0.2.2", "vip_address": "192.0.2.3"}),
        configmap("env-prefixed", {"address": "192.0.2.4", "vip_address": "192.0.2.99"}),
        configmap("env-other", {"vip_interface": "eth0"}),
    )
    where = "Pod kube-system/kv (container kube-vip"
    expected = {
        "192.0.2.1": f"{where} env address)",
        "192.0.2.3": f"{where} envFrom ConfigMap env-all key vip_address)",
        "192.0.2.4": f"{where} envFrom ConfigMap env-prefixed key address)",
        "192.0.2.5": f"{where} flag --vip)",
        "192.0.2.6": f"{where} flag --address)",
    }
    for ip, source in expected.items():
        assert fields(inv, FactKind.KUBE_VIP_VIP, ip) == {source}
    assert inv.count(FactKind.KUBE_VIP_VIP) == len(expected)
    assert vip_gaps(inv) == [
        f"{where} envFrom ConfigMap env-missing key vip_address): "
        "ConfigMap kube-system/env-missing not found",
        f"{where} envFrom): Secret kube-system/vip-secret is not read by eip-guard; "
        "a kube-vip VIP set there is not checked",
    ]
    # A Secret behind a variable env already sets says nothing: env wins over envFrom.
    container["env"].append({"name": "vip_address", "value": "192.0.2.7"})
    container["envFrom"] = [{"secretRef": {"name": "vip-secret"}}]
    assert vip_gaps(inv_of(pod)) == []
    container["env"][0] = {
        "name": "address",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
    }
    assert vip_gaps(inv_of(pod)) == [
        f"{where} env address): Secret kube-system/s key k is not read by eip-guard; "
        "a kube-vip VIP set there is not checked"
    ]


def test_configmap_keys_that_are_no_strings_are_left_out() -> None:
    # A YAML file may hold `1: ...` as a key; no API server stores one.
    data: dict[Any, str] = {1: "10.0.0.0/24", "cidr-global": "10.1.0.0/24"}
    provider = configmap("kubevip", data)
    inv = inv_of(provider)
    assert fields(inv, FactKind.KUBE_VIP_POOL, "10.1.0.7") == {
        "ConfigMap kube-system/kubevip (data.cidr-global)"
    }
    assert not fields(inv, FactKind.KUBE_VIP_POOL, "10.0.0.7")


def vip_gaps(inv: Inventory) -> list[str]:
    """The gaps of kube-vip values (these clusters have no Node or Service: gaps of their own)."""
    return [g for g in inv.gaps if "kube-vip" in g]


NO_NODE, NO_SERVICE = "no Node has an address", "no Service has an IP"


def test_a_cluster_without_nodes_or_services_is_a_gap_for_each() -> None:
    """A snapshot made without 'kubectl get nodes' or services would allow every can_reach IP
    they bind: the inventory says what it could not check."""
    only_eips = inv_of(eip("pool", "192.0.2.10-192.0.2.20"))
    assert [NO_NODE in only_eips.gaps[0], NO_SERVICE in only_eips.gaps[1]] == [True, True]
    assert len(only_eips.gaps) == 2
    with_node = inv_of(node("n1", "192.0.2.1"))
    assert len(with_node.gaps) == 1 and NO_SERVICE in with_node.gaps[0]
    # A Service range says nothing of the Services' own IPs (externalIPs, load-balancer IPs):
    # a snapshot of kube-system (its static Pods name the range) without Services is a gap.
    with_cidr = inv_of(node("n1", "192.0.2.1"), service_cidr("kubernetes", "10.96.0.0/12"))
    assert len(with_cidr.gaps) == 1 and NO_SERVICE in with_cidr.gaps[0]
    with_service = inv_of(node("n1", "192.0.2.1"), service("kubernetes", cluster_ip="10.96.0.1"))
    assert with_service.gaps == ()


def test_non_kube_vip_containers_are_ignored() -> None:
    pod = kube_vip_pod("web", [{"name": "address", "value": "192.0.2.50"}])
    pod["spec"]["containers"][0]["image"] = "nginx:1.27"
    assert inv_of(pod).count(FactKind.KUBE_VIP_VIP) == 0


def test_kube_vip_cloud_provider_pools() -> None:
    cm = configmap(
        "kubevip",
        {
            "cidr-global": "192.0.2.128/28,2001:db8:1::/120",
            "range-shop": "192.0.2.200-192.0.2.210",
            "range-bad": "192.0.2.9-192.0.2.1",
            "other": "192.0.2.0/24",
        },
    )
    inv = inv_of(cm)
    assert fields(inv, FactKind.KUBE_VIP_POOL, "192.0.2.130") == {
        "ConfigMap kube-system/kubevip (data.cidr-global)"
    }
    assert fields(inv, FactKind.KUBE_VIP_POOL, "192.0.2.205")
    assert fields(inv, FactKind.KUBE_VIP_POOL, "2001:db8:1::5")
    assert not fields(inv, FactKind.KUBE_VIP_POOL, "192.0.2.5")
    assert any("reversed" in n for n in inv.notes)
    # Another namespace or name is not the pool ConfigMap, unless configured so.
    moved = configmap("kubevip", {"cidr-global": "192.0.2.128/28"}, namespace="kv")
    assert build([moved]).count(FactKind.KUBE_VIP_POOL) == 0
    assert build([moved], Options(kube_vip_configmap=("kv", "kubevip"))).count(
        FactKind.KUBE_VIP_POOL
    )


def test_eips_both_versions_and_indexes() -> None:
    inv = inv_of(
        eip("a", "192.0.2.0/28", interface="can_reach:192.0.2.1", default=True),
        eip("b", "192.0.2.16-192.0.2.20", api_version="network.kubesphere.io/v1alpha1"),
        eip("bad", "192.0.2.40 "),
        {"apiVersion": "example.com/v1", "kind": "Eip", "metadata": {"name": "other"}},
    )
    assert sorted(inv.eips) == ["a", "b", "bad"]
    assert [e.name for e in inv.eip_pools.containing(key("192.0.2.17"))] == ["b"]
    assert [e.name for e in inv.can_reach_ips.at(key("192.0.2.1"))] == ["a"]
    assert inv.default_eips == ("a",)
    assert inv.eips["bad"].address is None and "whitespace" in inv.eips["bad"].address_error


def test_node_report_annotation_from_the_agent() -> None:
    report = {
        "interfaces": [
            {"name": "ens3", "mac": "52:54:00:00:00:01", "up": True,
             "addresses": ["172.16.0.5/24", "fe80::1/64"]},
        ],
        "gateways": ["172.16.0.1"],
    }  # fmt: skip
    inv = inv_of(node("n1", annotations={"eip-guard.io/network": json.dumps(report)}))
    assert fields(inv, FactKind.NODE_IP, "172.16.0.5")
    assert fields(inv, FactKind.NODE_SUBNET, "172.16.0.77")
    assert not fields(inv, FactKind.NODE_SUBNET, "fe80::2")  # link-local is no node network
    assert fields(inv, FactKind.NODE_GATEWAY, "172.16.0.1")
    broken = inv_of(node("n2", annotations={"eip-guard.io/network": "{not json"}))
    assert broken.notes and "not JSON" in broken.notes[0]
    # Anyone who may annotate a Node could break the inventory with this; it is only ignored.
    deep = inv_of(node("n3", annotations={"eip-guard.io/network": "[" * 100_000}))
    assert deep.notes and "nested too deeply" in deep.notes[0]


def test_unknown_kinds_carry_nothing() -> None:
    objects: Iterable[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
        {"kind": "Service"},  # no metadata at all: still no crash
    ]
    assert all(extract(o).every_fact == () for o in objects)


def test_an_extract_keeps_single_addresses_as_flat_points_and_ranges_as_facts() -> None:
    """Live mode keeps an extract per object: a single address is (kind, key, source) in one
    flat tuple, with no Fact or Span of its own; a range stays a Fact. Both read back alike."""
    ex = extract(node("n1", "10.0.0.1", pod_cidrs=("10.244.1.0/24",)))
    assert len(ex.points) == 3
    ((kind, key, source),) = ex.point_triples()
    assert (kind, key, source.name, source.field) == (
        FactKind.NODE_IP, int(parse_ip("10.0.0.1")), "n1", "status.addresses InternalIP",
    )  # fmt: skip
    assert [(f.kind, str(f.span)) for f in ex.facts] == [(FactKind.POD_CIDR, "10.244.1.0/24")]
    assert [(f.kind, str(f.span)) for f in ex.every_fact] == [
        (FactKind.POD_CIDR, "10.244.1.0/24"),
        (FactKind.NODE_IP, "10.0.0.1"),
    ]


# Nodes as CNIs and distributions annotate them: each address below is bound on its node
# (or lies in its pod network) and nowhere else in the Node object.
def test_cilium_host_ips_and_pod_cidrs_in_both_annotation_spellings() -> None:
    # Cilium's default IPAM (cluster-pool) leaves spec.podCIDRs empty, or set to a range it
    # does not use; the cilium_host IP is bound on the node ('ip route get' answers lo).
    inv = inv_of(
        node("c1", "192.168.1.11", annotations={
            "network.cilium.io/ipv4-cilium-host": "10.0.1.12",
            "network.cilium.io/ipv6-cilium-host": "fd00:0:0:1::d",
            "network.cilium.io/ipv4-pod-cidr": "10.0.1.0/24",
            "network.cilium.io/ipv6-pod-cidr": "fd00:0:0:1::/96",
            "network.cilium.io/ipv4-health-ip": "10.0.1.99",
        }),
        node("c2", "192.168.1.12", annotations={  # Cilium before 1.12, and its aliases
            "io.cilium.network.ipv4-cilium-host": "10.0.2.195",
            "io.cilium.network.ipv4-pod-cidr": "10.0.2.0/24",
        }),
    )  # fmt: skip
    ann = "Node c1 (annotation network.cilium.io/"
    assert fields(inv, FactKind.NODE_IP, "10.0.1.12") == {ann + "ipv4-cilium-host)"}
    assert fields(inv, FactKind.NODE_IP, "fd00:0:0:1::d") == {ann + "ipv6-cilium-host)"}
    assert fields(inv, FactKind.POD_CIDR, "10.0.1.200") == {ann + "ipv4-pod-cidr)"}
    assert fields(inv, FactKind.POD_CIDR, "fd00:0:0:1::abcd") == {ann + "ipv6-pod-cidr)"}
    # The health endpoint lives in a netns of its own: in the pod CIDR, not a node IP.
    assert not fields(inv, FactKind.NODE_IP, "10.0.1.99")
    assert fields(inv, FactKind.NODE_IP, "10.0.2.195") == {
        "Node c2 (annotation io.cilium.network.ipv4-cilium-host)"
    }
    assert fields(inv, FactKind.POD_CIDR, "10.0.2.7")
    assert not inv.notes


def test_flannel_ipv6_antrea_k3s_and_rke2_node_address_annotations() -> None:
    inv = inv_of(
        node("k1", "10.0.0.5", annotations={
            "flannel.alpha.coreos.com/public-ip": "10.0.0.5",
            "flannel.alpha.coreos.com/public-ipv6": "2001:db8::5",
            # k3s and RKE2 write dual-stack node IPs comma-separated.
            "k3s.io/internal-ip": "10.0.0.5,2001:db8::15",
            "k3s.io/external-ip": "203.0.113.5",
        }),
        node("r1", annotations={
            "rke2.io/internal-ip": "10.0.0.6, 2001:db8::6",
            "rke2.io/external-ip": "203.0.113.6",
        }),
        # Antrea's transportInterface (a second NIC): its IPs are nowhere else.
        node("a1", "10.0.0.7", annotations={
            "node.antrea.io/transport-addresses": "192.168.77.7,fd77::7",
        }),
    )  # fmt: skip
    expect = {
        "2001:db8::5": "Node k1 (annotation flannel.alpha.coreos.com/public-ipv6)",
        "2001:db8::15": "Node k1 (annotation k3s.io/internal-ip)",
        "203.0.113.5": "Node k1 (annotation k3s.io/external-ip)",
        "10.0.0.6": "Node r1 (annotation rke2.io/internal-ip)",
        "2001:db8::6": "Node r1 (annotation rke2.io/internal-ip)",
        "203.0.113.6": "Node r1 (annotation rke2.io/external-ip)",
        "192.168.77.7": "Node a1 (annotation node.antrea.io/transport-addresses)",
        "fd77::7": "Node a1 (annotation node.antrea.io/transport-addresses)",
    }
    for ip, source in expect.items():
        assert fields(inv, FactKind.NODE_IP, ip) == {source}, ip
    assert not inv.notes


def test_node_ip_annotations_take_ips_only_and_a_few() -> None:
    # Anyone who may annotate a Node must not make every can_reach IP a node IP.
    many = ",".join(f"192.0.2.{i}" for i in range(1, 41))
    inv = inv_of(node("k1", annotations={
        "k3s.io/internal-ip": "0.0.0.0/0",
        "network.cilium.io/ipv4-cilium-host": "10.0.0.0/8",
        "node.antrea.io/transport-addresses": many,
    }))  # fmt: skip
    assert not fields(inv, FactKind.NODE_IP, "10.1.2.3")
    assert inv.count(FactKind.NODE_IP) == 16
    notes = "\n".join(inv.notes)
    assert "Node k1 (annotation k3s.io/internal-ip): ignored '0.0.0.0/0'" in notes
    assert "ignored '10.0.0.0/8': an IP address, not a CIDR" in notes
    assert "(annotation node.antrea.io/transport-addresses): ignored 24 value(s)" in notes


def test_kube_router_pod_cidr_annotations() -> None:
    # kube-router takes a node's pod CIDRs from these when kube-controller-manager
    # allocates none (spec.podCIDRs empty).
    inv = inv_of(
        node("kr1", "10.0.0.5", annotations={"kube-router.io/pod-cidr": "10.32.1.0/24"}),
        node("kr2", "10.0.0.6", annotations={
            "kube-router.io/pod-cidrs": "10.32.2.0/24,fd32:0:0:2::/64",
        }),
    )  # fmt: skip
    assert fields(inv, FactKind.POD_CIDR, "10.32.1.9") == {
        "Node kr1 (annotation kube-router.io/pod-cidr)"
    }
    assert fields(inv, FactKind.POD_CIDR, "10.32.2.9") == {
        "Node kr2 (annotation kube-router.io/pod-cidrs)"
    }
    assert fields(inv, FactKind.POD_CIDR, "fd32:0:0:2::9")
    assert not inv.notes


def test_a_calico_address_without_a_prefix_is_still_a_node_ip() -> None:
    # calico-node's IP env may carry no prefix length; the address is bound all the same.
    inv = inv_of(node("n1", annotations={"projectcalico.org/IPv4Address": "10.0.0.7"}))
    assert fields(inv, FactKind.NODE_IP, "10.0.0.7") == {
        "Node n1 (annotation projectcalico.org/IPv4Address)"
    }
    assert inv.count(FactKind.NODE_SUBNET) == 0 and not inv.notes


@pytest.mark.parametrize("written", ["10.0.0.7/32", "fd00::7/128", "fe80::7/64"])
def test_a_calico_address_of_one_address_or_link_local_makes_no_node_subnet(written: str) -> None:
    # As the agent's report reads addresses: a /32 is no network of the node's, and a
    # link-local prefix is on every NIC; either as a node subnet would make can_reach IPs
    # seem to lie in a known subnet.
    key = "projectcalico.org/IPv6Address" if ":" in written else "projectcalico.org/IPv4Address"
    inv = inv_of(node("n1", annotations={key: written}))
    address = written.partition("/")[0]
    assert fields(inv, FactKind.NODE_IP, address) == {f"Node n1 (annotation {key})"}
    assert inv.count(FactKind.NODE_SUBNET) == 0 and not inv.notes


KUBEADM_CLUSTER_CONFIGURATION = """\
apiServer: {}
apiVersion: kubeadm.k8s.io/v1beta4
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controlPlaneEndpoint: 192.168.1.100:6443
controllerManager: {}
kind: ClusterConfiguration
kubernetesVersion: v1.30.4
networking:
  dnsDomain: cluster.local
  podSubnet: 10.244.0.0/16,fd00:10:244::/56
  serviceSubnet: "10.96.0.0/12"
scheduler: {}
"""


def test_kubeadm_config_gives_the_cluster_service_and_pod_subnets() -> None:
    # Before Kubernetes 1.33 no ServiceCIDR object exists by default: a kubeadm cluster keeps
    # its Service and pod subnets in this ConfigMap (and in kube-apiserver's flags) only.
    data = {"ClusterConfiguration": KUBEADM_CLUSTER_CONFIGURATION}
    inv = inv_of(configmap("kubeadm-config", data))
    where = "ConfigMap kube-system/kubeadm-config (data.ClusterConfiguration networking."
    assert fields(inv, FactKind.SERVICE_CIDR, "10.100.0.1") == {where + "serviceSubnet)"}
    assert fields(inv, FactKind.POD_CIDR, "10.244.200.1") == {where + "podSubnet)"}
    assert fields(inv, FactKind.POD_CIDR, "fd00:10:244::1")
    assert not fields(inv, FactKind.SERVICE_CIDR, "10.112.0.1")
    assert not inv.notes
    # The same ConfigMap elsewhere, a kubeadm-config without subnets, a broken one: nothing.
    other = configmap("kubeadm-config", data, namespace="tenant")
    bare = configmap("kubeadm-config", {"ClusterConfiguration": "networking:\n  dnsDomain: x\n"})
    assert inv_of(other).fact_count == inv_of(bare).fact_count == 0
    broken = configmap("kubeadm-config", {"ClusterConfiguration": "networking:\n  podSubnet: x\n"})
    assert any("podSubnet): ignored 'x'" in note for note in inv_of(broken).notes)


def test_kubeadm_subnets_in_a_form_not_read_are_said_not_checked() -> None:
    # Flow style (`kubeadm init --config` takes any YAML; an edited ConfigMap may keep it)
    # and JSON: neither range was read, and nothing said so.
    flow = "networking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/12}\n"
    json_text = '{"networking": {"serviceSubnet": "10.96.0.0/12"}}'
    for text, keys in ((flow, ["podSubnet", "serviceSubnet"]), (json_text, ["serviceSubnet"])):
        inv = inv_of(configmap("kubeadm-config", {"ClusterConfiguration": text}))
        assert not fields(inv, FactKind.SERVICE_CIDR, "10.96.0.1")
        said = [n for n in inv.notes if "not read, so not checked" in n]
        assert [k for k in keys if any(f"networking.{k})" in n for n in said)] == keys, said
    # Comments, quotes, CRLF and a dual-stack list with a space are read, and say nothing.
    block = (
        "networking:\r\n  # serviceSubnet: 10.200.0.0/16\r\n"
        "  serviceSubnet: '10.96.0.0/12, fd00::/108' # the default\r\n"
    )
    inv = inv_of(configmap("kubeadm-config", {"ClusterConfiguration": block}))
    assert fields(inv, FactKind.SERVICE_CIDR, "10.96.0.1")
    assert fields(inv, FactKind.SERVICE_CIDR, "fd00::1")
    assert not fields(inv, FactKind.SERVICE_CIDR, "10.200.0.1")
    assert not inv.notes


def control_plane_pod(name: str, command: list[str], args: list[str]) -> dict[str, Any]:
    """A static control-plane Pod as kubeadm and RKE2 write them (RKE2: one image for all)."""
    container = {"name": command[0], "image": "rancher/hardened-kubernetes:v1.30.4-rke2r1",
                 "command": command, "args": args}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-cp1", "namespace": "kube-system"},
        "spec": {"containers": [container]},
    }


def test_control_plane_flags_give_the_service_and_cluster_pod_cidrs() -> None:
    # RKE2 and kubeadm clusters before 1.33 have no ServiceCIDR object; their static pods
    # name the ranges in flags (RKE2 has no kubeadm-config either).
    apiserver = control_plane_pod("kube-apiserver", ["kube-apiserver"], [
        "--advertise-address=10.0.0.5", "--service-cluster-ip-range=10.43.0.0/16,fd00:43::/112",
    ])  # fmt: skip
    manager = control_plane_pod("kube-controller-manager", ["kube-controller-manager",
                                "--cluster-cidr", "10.42.0.0/16"], [])  # fmt: skip
    inv = inv_of(apiserver, manager)
    assert fields(inv, FactKind.SERVICE_CIDR, "10.43.7.7") == {
        "Pod kube-system/kube-apiserver-cp1 "
        "(container kube-apiserver flag --service-cluster-ip-range)"
    }
    assert fields(inv, FactKind.SERVICE_CIDR, "fd00:43::7")
    assert fields(inv, FactKind.POD_CIDR, "10.42.99.1") == {
        "Pod kube-system/kube-controller-manager-cp1 "
        "(container kube-controller-manager flag --cluster-cidr)"
    }
    assert not fields(inv, FactKind.NODE_IP, "10.0.0.5") and not inv.notes


def test_control_plane_flags_count_in_kube_system_only() -> None:
    # A snapshot holds every namespace's Pods: a tenant's container flag names no range.
    pod = control_plane_pod("kube-apiserver", ["kube-apiserver"], [
        "--service-cluster-ip-range=0.0.0.0/0", "--cluster-cidr=::/0",
    ])  # fmt: skip
    pod["metadata"]["namespace"] = "tenant"
    assert inv_of(pod).fact_count == 0


def test_calico_ip_pools_are_pod_cidrs_in_both_api_versions() -> None:
    # calico-ipam hands out pod IPs from the pools, not from spec.podCIDR: on most Calico
    # clusters the pools are the only record of the pod network.
    inv = inv_of(
        calico_pool("default-ipv4-ippool", "192.168.0.0/16"),
        calico_pool("v6", "fd00:10:244::/64", api_version="projectcalico.org/v3"),
    )
    assert fields(inv, FactKind.POD_CIDR, "192.168.40.7") == {
        "IPPool default-ipv4-ippool (spec.cidr)"
    }
    assert fields(inv, FactKind.POD_CIDR, "fd00:10:244::9") == {"IPPool v6 (spec.cidr)"}
    assert not inv.notes


def test_a_disabled_calico_pool_is_still_a_pod_range_and_says_so() -> None:
    # Disabled: no new IPs, but the pods it gave IPs to keep them, and their routes stay.
    inv = inv_of(calico_pool("old", "10.10.0.0/16", disabled=True))
    (where,) = fields(inv, FactKind.POD_CIDR, "10.10.3.3")
    assert where.startswith("IPPool old (spec.cidr, a disabled pool")


def test_calico_pools_for_load_balancer_ips_only_and_other_cnis_ip_pools_are_no_pod_range() -> None:
    whereabouts = {
        "apiVersion": "whereabouts.cni.cncf.io/v1alpha1",
        "kind": "IPPool",
        "metadata": {"name": "10.50.0.0-16", "namespace": "kube-system"},
        "spec": {"range": "10.50.0.0/16", "cidr": "10.50.0.0/16"},
    }
    inv = inv_of(
        calico_pool("lb", "10.60.0.0/24", allowed_uses=("LoadBalancer",)),
        calico_pool("tunnels", "10.70.0.0/24", allowed_uses=("Tunnel",)),
        whereabouts,
    )
    assert not fields(inv, FactKind.POD_CIDR, "10.60.0.5")
    assert not fields(inv, FactKind.POD_CIDR, "10.50.0.5")
    assert fields(inv, FactKind.POD_CIDR, "10.70.0.5") == {"IPPool tunnels (spec.cidr)"}
    assert not inv.notes


def test_unreadable_calico_pools_are_ignored_values() -> None:
    no_cidr = calico_pool("empty", "10.0.0.0/8")
    del no_cidr["spec"]["cidr"]
    inv = inv_of(
        calico_pool("bad", "10.300.0.0/16"),
        calico_pool("ip", "10.80.0.1"),
        no_cidr,
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "x"},
         "spec": "not a mapping"},
    )  # fmt: skip
    assert inv.count(FactKind.POD_CIDR) == 0
    assert len(inv.notes) == 4
    assert inv.notes[0].startswith("IPPool bad (spec.cidr): ignored '10.300.0.0/16'")
    assert inv.notes[1].endswith("ignored '10.80.0.1': not a CIDR (no prefix length)")
    assert inv.notes[2] == "IPPool empty (spec.cidr): ignored: the pool has no spec.cidr"


def test_cilium_nodes_give_pod_cidrs_and_the_cilium_host_ip() -> None:
    # Cilium's cluster-pool IPAM with its node annotations off: only the CiliumNode knows.
    inv = inv_of(
        cilium_node("n1", pod_cidrs=("10.0.1.0/24", "fd00:0:0:1::/96"), cilium_host="10.0.1.12",
                    internal_ip="172.16.0.1"),
        cilium_node("n2", pools={"default": ("10.1.2.0/27",), "blue": ("10.9.0.0/28",)}),
    )  # fmt: skip
    assert fields(inv, FactKind.POD_CIDR, "10.0.1.200") == {"CiliumNode n1 (spec.ipam.podCIDRs)"}
    assert fields(inv, FactKind.POD_CIDR, "fd00:0:0:1::abcd")
    assert fields(inv, FactKind.NODE_IP, "10.0.1.12") == {
        "CiliumNode n1 (spec.addresses CiliumInternalIP)"
    }
    # The node's own addresses come from its Node: not read twice.
    assert not fields(inv, FactKind.NODE_IP, "172.16.0.1")
    assert fields(inv, FactKind.POD_CIDR, "10.9.0.3") == {
        "CiliumNode n2 (spec.ipam.pools.allocated cidrs)"
    }
    assert not inv.notes


def test_unreadable_cilium_nodes_are_ignored_values_and_other_groups_nothing() -> None:
    odd = cilium_node("n3", pod_cidrs=("10.0.999.0/24",), cilium_host="10.0.3.1/24")
    other = dict(cilium_node("n4", pod_cidrs=("10.4.0.0/24",)), apiVersion="example.com/v1")
    inv = inv_of(odd, other)
    assert inv.count(FactKind.POD_CIDR) == inv.count(FactKind.NODE_IP) == 0
    assert len(inv.notes) == 2
    assert inv.notes[1] == (
        "CiliumNode n3 (spec.addresses CiliumInternalIP): ignored '10.0.3.1/24': "
        "an IP address, not a CIDR"
    )
    # The same extract, one object at a time (live mode), as from the whole snapshot.
    assert extract(odd).notes == inv.notes


def test_ovn_kubernetes_node_annotations_give_node_ips_subnets_and_pod_cidrs() -> None:
    """OVN-Kubernetes (go-controller/pkg/util/node_annotations.go, subnet_annotations.go):
    the primary NIC's address and every host address, each with its prefix; the node's pod
    subnets per network, of which only "default" is routed on the host."""
    inv = inv_of(
        node("o1", annotations={
            "k8s.ovn.org/node-primary-ifaddr": '{"ipv4":"172.18.0.2/16","ipv6":"fc00::2/64"}',
            "k8s.ovn.org/host-cidrs": '["172.18.0.2/16","192.168.50.2/24","fc00::2/64"]',
            "k8s.ovn.org/node-subnets":
                '{"default":["10.244.1.0/24","fd00:10:244:2::/64"],"nw1":"10.132.0.0/23"}',
            # Not on the host: the gateway router's port to the join switch, and the
            # next hop (the LAN gateway, the IP a can_reach should name).
            "k8s.ovn.org/node-gateway-router-lrp-ifaddr": '{"ipv4":"100.64.0.2/16"}',
            "k8s.ovn.org/l3-gateway-config": '{"default":{"mode":"shared",'
                '"ip-addresses":["172.18.0.2/16"],"next-hops":["172.18.0.1"]}}',
        }),
        # Before OpenShift 4.14 (host-cidrs' older name): IPs without a prefix.
        node("o2", annotations={
            "k8s.ovn.org/host-addresses": '["172.18.0.3","fc00::3"]',
            "k8s.ovn.org/node-subnets": '{"default":"10.244.2.0/24"}',
        }),
    )  # fmt: skip
    primary = "Node o1 (annotation k8s.ovn.org/node-primary-ifaddr)"
    hosts = "Node o1 (annotation k8s.ovn.org/host-cidrs)"
    assert fields(inv, FactKind.NODE_IP, "172.18.0.2") == {primary, hosts}
    assert fields(inv, FactKind.NODE_IP, "fc00::2") == {primary, hosts}
    assert fields(inv, FactKind.NODE_IP, "192.168.50.2") == {hosts}
    assert fields(inv, FactKind.NODE_SUBNET, "192.168.50.77") == {hosts}
    assert fields(inv, FactKind.NODE_SUBNET, "172.18.9.9") == {primary, hosts}
    assert fields(inv, FactKind.NODE_IP, "172.18.0.3") == {
        "Node o2 (annotation k8s.ovn.org/host-addresses)"
    }
    assert fields(inv, FactKind.NODE_IP, "fc00::3")
    assert fields(inv, FactKind.POD_CIDR, "10.244.1.9") == {
        "Node o1 (annotation k8s.ovn.org/node-subnets)"
    }
    assert fields(inv, FactKind.POD_CIDR, "fd00:10:244:2::9")
    assert fields(inv, FactKind.POD_CIDR, "10.244.2.9") == {
        "Node o2 (annotation k8s.ovn.org/node-subnets)"
    }
    assert not fields(inv, FactKind.POD_CIDR, "10.132.0.9")  # a secondary network's
    for ip in ("100.64.0.2", "172.18.0.1"):
        assert not inv.at(FactKind.NODE_IP, key(ip)), ip
    assert not inv.notes


def test_kube_ovn_node_annotation_gives_the_ovn0_address() -> None:
    """Kube-OVN (pkg/controller/node.go) writes the IPs of the node's ovn0 port in the join
    subnet, comma-separated when dual-stack; kube-ovn-cni binds them on ovn0. The join
    subnet itself (ovn.kubernetes.io/cidr) and its gateway live in OVN, not on the host."""
    inv = inv_of(node("k1", "10.0.0.5", annotations={
        "ovn.kubernetes.io/ip_address": "100.64.0.2,fd00:100:64::2",
        "ovn.kubernetes.io/cidr": "100.64.0.0/16,fd00:100:64::/112",
        "ovn.kubernetes.io/gateway": "100.64.0.1,fd00:100:64::1",
    }))  # fmt: skip
    where = "Node k1 (annotation ovn.kubernetes.io/ip_address)"
    assert fields(inv, FactKind.NODE_IP, "100.64.0.2") == {where}
    assert fields(inv, FactKind.NODE_IP, "fd00:100:64::2") == {where}
    assert not inv.at(FactKind.NODE_IP, key("100.64.0.1"))
    assert not fields(inv, FactKind.POD_CIDR, "100.64.0.9")
    assert not inv.notes


def test_unreadable_ovn_annotations_are_ignored_values_and_a_few_at_most() -> None:
    many = json.dumps([f"192.0.2.{i}/24" for i in range(1, 41)])
    inv = inv_of(node("o1", annotations={
        "k8s.ovn.org/node-primary-ifaddr": '{"ipv4":"0.0.0.0/0x"}',
        "k8s.ovn.org/host-cidrs": many,
        "k8s.ovn.org/host-addresses": "{not JSON",
        "k8s.ovn.org/node-subnets": '{"default":["10.244.1.0"]}',
    }))  # fmt: skip
    assert inv.count(FactKind.NODE_IP) == 16
    notes = "\n".join(inv.notes)
    assert "Node o1 (annotation k8s.ovn.org/node-primary-ifaddr): ignored '0.0.0.0/0x'" in notes
    assert "Node o1 (annotation k8s.ovn.org/host-cidrs): ignored 24 value(s)" in notes
    assert "Node o1 (annotation k8s.ovn.org/host-addresses): ignored: not JSON" in notes
    assert "(annotation k8s.ovn.org/node-subnets): ignored '10.244.1.0': not a CIDR" in notes
    # JSON of another shape than OVN-Kubernetes writes: said, never a crash.
    for value in ('"10.0.0.1/24"', "[[[1]]]", '{"ipv4": 7, "default": {}}', "null"):
        shapes = inv_of(node("o2", annotations={
            "k8s.ovn.org/node-primary-ifaddr": value,
            "k8s.ovn.org/host-cidrs": value,
            "k8s.ovn.org/node-subnets": value,
        }))  # fmt: skip
        assert shapes.count(FactKind.NODE_IP) == 0  # (its Hostname, o2, is no IP)
        assert shapes.count(FactKind.POD_CIDR) == 0
        assert len(shapes.notes) == 3, (value, shapes.notes)
