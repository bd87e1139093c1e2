"""The findings of the rules review: pools over what the cluster already uses, subnet ends,
pools off the can_reach subnet, sizes OpenELB miscounts, overrides an Eip writer must not
grant, leading-zero prefixes, DELETE warnings and NIC names no speaker can use.

Only ``check`` and the objects it reads are used here, so each test runs against any
version of the rules (the review's reproductions are in tests that failed before the fix).
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.eips import Eip
from app.core.inventory import Inventory, build
from app.core.rules import audit, check
from app.core.verdict import WARNING_LIMIT, Action, Operation, Policy, Verdict
from tests.core.objects import configmap, eip, kube_vip_pod, node, service, service_cidr
from tests.core.test_rules import GW, cluster, denied, judge, l2, warned


def message_of(verdict: Verdict, rule: str) -> str:
    return next(v.message for v in verdict.denied_by + verdict.warned_by if v.rule == rule)


# --- finding 1: a pool over kube-vip, the cluster's networks or other Services' IPs --------


def test_a_pool_over_a_kube_vip_vip_or_pool_is_denied_with_exact_addresses() -> None:
    v = judge(l2("eth0", "172.16.236.98-172.16.236.112"))
    assert denied(v) == {"address-kube-vip"}
    message = message_of(v, "address-kube-vip")
    assert "172.16.236.100, a kube-vip VIP of Pod kube-system/kube-vip-node1" in message
    # What the pool shares with the kube-vip-cloud-provider pool, not a summarised CIDR.
    assert (
        "172.16.236.110-172.16.236.112, part of kube-vip-cloud-provider pool "
        "172.16.236.110-172.16.236.119 of ConfigMap kube-system/kubevip (data.range-global)"
    ) in message
    assert "API server flap" in message
    assert judge(l2("eth0", "172.16.236.101-172.16.236.109")).allowed  # between them: free
    assert denied(judge(l2("eth0", "172.16.236.119-172.16.236.130"))) == {"address-kube-vip"}


@pytest.mark.parametrize(
    ("address", "names"),
    [
        ("10.233.9.17", "10.233.9.17, a cluster IP of Service ns/nginx (spec.clusterIPs)"),
        ("10.233.20.0/28", "ServiceCIDR 10.233.0.0/18 of ServiceCIDR kubernetes (spec.cidrs)"),
        (
            "10.233.63.250-10.233.64.5",  # not CIDR-aligned, across two facts
            "10.233.63.250-10.233.63.255, part of ServiceCIDR 10.233.0.0/18",
        ),
        (
            "10.233.63.250-10.233.64.5",
            "10.233.64.0-10.233.64.5, part of pod CIDR 10.233.64.0/24 of Node node1",
        ),
        ("10.233.65.7", "10.233.65.7, part of pod CIDR 10.233.65.0/24 of Node node2"),
    ],
)
def test_a_pool_over_the_cluster_networks_is_denied(address: str, names: str) -> None:
    v = judge(l2("eth0", address))
    assert denied(v) == {"address-cluster-network"}
    assert names in message_of(v, "address-cluster-network")


def test_a_pool_inside_a_large_service_cidr_is_found_by_overlap() -> None:
    # A /12 ServiceCIDR around a small pool: an interval query, neither end inside the pool.
    inv = cluster(service_cidr("big", "10.96.0.0/12"))
    v = judge(l2("eth0", "10.100.5.10-10.100.5.20"), inv)
    assert denied(v) == {"address-cluster-network"}
    assert "10.100.5.10-10.100.5.20, part of ServiceCIDR 10.96.0.0/12 of ServiceCIDR big" in (
        v.message
    )
    assert judge(l2("eth0", "10.112.0.0-10.112.0.9"), inv).allowed  # just past its end


def test_a_pool_over_another_services_ips_is_denied() -> None:
    kube_vip_lb = service(
        "kv", "ns", ingress=("172.16.236.97",),
        annotations={"kube-vip.io/loadbalancerIPs": "172.16.236.96"},
    )  # fmt: skip
    other_lb = service("other", "ns", ingress=("172.16.236.95",))
    v = judge(l2("eth0", "172.16.236.85-172.16.236.99"), cluster(kube_vip_lb, other_lb))
    assert denied(v) == {"address-service-ip"}
    message = message_of(v, "address-service-ip")
    assert "172.16.236.90, an externalIP of Service ns/api (spec.externalIPs)" in message
    assert "172.16.236.95, the load-balancer IP of Service ns/other" in message
    assert "172.16.236.96, a kube-vip load-balancer IP of Service ns/kv" in message
    assert "and 1 more" in message  # 172.16.236.97: three named, the rest counted
    assert v.denied_by[0].short.startswith("the pool holds 172.16.236.90, an externalIP of")


def test_requests_for_an_ip_and_the_eips_own_hand_outs_never_count() -> None:
    # spec.loadBalancerIP and OpenELB's IP annotation ask a pool for an IP: not taken yet.
    asking = service(
        "ask", "ns", lb_ip="172.16.236.201",
        annotations={"eip.openelb.kubesphere.io/v1alpha1": "172.16.236.202"},
    )  # fmt: skip
    assert judge(l2("eth0", "172.16.236.200-172.16.236.210"), cluster(asking)).allowed
    # The Eip's own status.used IPs are Services' ingress IPs: its own hand-outs.
    own = eip("mine", "172.16.236.200-172.16.236.210",
              used={"172.16.236.201": "ns/web", "172.16.236.203": "ns/a;ns/b"})  # fmt: skip
    web = service("web", "ns", ingress=("172.16.236.201",))
    # A Service status.used names, with an ingress IP of this pool not (yet) a used key.
    moved = service("a", "ns", ingress=("172.16.236.204",))
    other = service("x", "ns", ingress=("172.16.236.205",))  # not served by this Eip
    inv = cluster(own, web, moved)
    assert judge(own, inv).allowed
    assert audit(inv)["mine"].allowed
    v = judge(own, cluster(own, web, moved, other))
    assert denied(v) == {"address-service-ip"} and "172.16.236.205" in v.message
    assert "172.16.236.201" not in v.message and "172.16.236.204" not in v.message


def test_an_update_of_an_eip_in_use_stays_allowed() -> None:
    # The example pool hands 172.16.236.40 to nginx, whose ingress IP it is. An update (a
    # finalizer, an interface), a manifest without status judged against the stored Eip
    # (eip-guard check), and the audit: none counts that IP against the pool.
    stored = eip("eip-pool", "172.16.236.40-172.16.236.60", used={"172.16.236.40": "ns/nginx"})
    inv = cluster()
    assert check(Eip.from_object(stored), Eip.from_object(stored), inv).allowed
    manifest = eip("eip-pool", "172.16.236.40-172.16.236.60", interface="eth1")
    assert check(Eip.from_object(manifest), Eip.from_object(stored), inv).allowed
    assert check(Eip.from_object(manifest), None, inv).allowed  # its namesake's status
    assert audit(inv)["eip-pool"].allowed


def test_the_new_pool_rules_are_overridable_and_follow_the_policy() -> None:
    bad = l2("eth0", "172.16.236.100", allow="address-kube-vip")
    v = judge(bad)
    assert v.allowed and warned(v) == {"address-kube-vip"}
    off = Policy(actions={"address-cluster-network": Action.OFF})
    assert judge(l2("eth0", "10.233.9.17"), policy=off).allowed


def test_a_recreated_eips_own_services_ips_only_warn() -> None:
    """Deleted and made again (kubectl replace --force, a GitOps restore), an Eip comes back
    without status while OpenELB's Services still hold IPs it gave out from it: only a
    warning, since OpenELB handed them out; another load balancer's IPs are still denied
    (a review's false denial)."""
    served = {"lb.kubesphere.io/v1alpha1": "openelb",
              "eip.openelb.kubesphere.io/v1alpha2": "pool-b"}  # fmt: skip
    inv = cluster(
        service("web", "shop", ingress=("172.16.236.201",), annotations=served),
        service("metal", "shop", ingress=("172.16.236.202",)),
    )
    v = judge(eip("pool-b", "172.16.236.200-172.16.236.201", interface="eth0"), inv)
    assert v.allowed and warned(v) == {"address-service-ip"}
    message = message_of(v, "address-service-ip")
    assert "Service shop/web (status.loadBalancer.ingress.ip, from OpenELB)" in message
    assert "deleted and made again is fine" in message
    v = judge(eip("pool-b", "172.16.236.200-172.16.236.202", interface="eth0"), inv)
    assert denied(v) == {"address-service-ip"} and warned(v) == {"address-service-ip"}
    assert "Service shop/metal" in message_of(v, "address-service-ip")


# --- finding 2: a node subnet's network and broadcast addresses ---------------------------


def test_a_pool_holding_a_node_subnets_broadcast_address_is_denied() -> None:
    v = judge(l2("eth0", "172.16.236.250-172.16.236.255"))
    which = "172.16.236.255, the broadcast address"
    assert denied(v) == {"address-node-ip"}
    assert f"{which} of node subnet 172.16.236.0/24 of Node node1" in v.message
    assert "link-layer broadcast" in v.message
    assert v.denied_by[0].short.startswith(f"the pool contains {which} of node subnet")
    assert judge(l2("eth0", "172.16.236.240-172.16.236.254")).allowed


def test_a_pool_holding_a_node_subnets_network_address_is_warned_about() -> None:
    # Linux 5.14 and later route the lowest address of a subnet as unicast (a review saw
    # only the broadcast route in a 6.18 kernel's local table): older hosts may not.
    v = judge(l2("eth0", "172.16.236.0-172.16.236.5"))
    assert v.allowed and warned(v) == {"address-node-ip"}
    assert "172.16.236.0, the network address of node subnet 172.16.236.0/24" in v.warnings[0]
    assert any("Linux 5.14" in x.detail for x in v.warned_by)


def test_only_ipv4_subnets_shorter_than_31_have_ends_that_count() -> None:
    inv = cluster(
        node("p2p", annotations={"projectcalico.org/IPv4Address": "10.50.0.1/31"}),
        node("v6", annotations={"projectcalico.org/IPv6Address": "fd00:7::10/64"}),
    )
    assert judge(l2("eth0", "10.50.0.0-10.50.0.0"), inv).allowed
    assert judge(l2("eth0", "fd00:7::ffff:ffff:ffff:fff0-fd00:7::ffff:ffff:ffff:ffff"), inv).allowed


def test_a_pool_holding_an_ipv6_node_subnets_anycast_address_is_denied() -> None:
    # OpenELB hands out a CIDR pool's first address first: fd00:7:: here, the subnet-router
    # anycast address of the node subnet, which the subnet's router owns (and a node that
    # forwards IPv6 binds: 'anycast fd00:7:: dev lo', seen in a network namespace).
    inv = cluster(
        node("v6", annotations={"projectcalico.org/IPv6Address": "fd00:7::10/64"}),
        node("p2p", annotations={"projectcalico.org/IPv6Address": "fd00:8::1/127"}),
    )
    v = judge(l2("eth0", "fd00:7::/124"), inv)
    assert denied(v) == {"address-node-ip"}
    which = "fd00:7::, the subnet-router anycast address of node subnet fd00:7::/64"
    assert f"{which} of Node v6 (annotation projectcalico.org/IPv6Address)" in v.message
    assert "traffic from off the segment ends at the router" in v.message
    assert "link-layer broadcast" not in v.message
    assert v.denied_by[0].short == f"the pool contains {which}"
    assert judge(l2("eth0", "fd00:7::1:0/120"), inv).allowed
    assert judge(l2("eth0", "fd00:8::"), inv).allowed  # a /127: no subnet-router anycast


# --- finding 3: a pool off the subnet of the can_reach IP (warns only) --------------------


def test_a_pool_outside_the_can_reach_ips_node_subnet_warns() -> None:
    v = judge(l2(f"can_reach:{GW}", "192.168.50.10-192.168.50.20"))
    assert v.allowed and warned(v) == {"can-reach-pool-subnet"}
    message = message_of(v, "can-reach-pool-subnet")
    assert "does not hold the whole pool 192.168.50.10-192.168.50.20" in message
    assert "node subnet 172.16.236.0/24" in message
    straddling = judge(l2(f"can_reach:{GW}", "172.16.236.240-172.16.237.5"))
    assert warned(straddling) == {"can-reach-pool-subnet"}
    assert not judge(l2(f"can_reach:{GW}")).warned_by  # inside: nothing to say
    # bgp never uses the interface; a NIC name says nothing of subnets.
    assert judge(l2(f"can_reach:{GW}", "192.168.50.10", protocol="bgp")).allowed
    assert not judge(l2(f"can_reach:{GW}", "192.168.50.10", protocol="bgp")).warned_by
    assert not judge(l2("eth0", "192.168.50.10")).warned_by
    # The rule never denies, whatever the policy says.
    assert judge(l2(f"can_reach:{GW}", "192.168.50.10")).allowed


def test_a_pool_in_another_known_subnet_is_sent_to_a_can_reach_ip_there() -> None:
    inv = cluster(node("n9", annotations={"projectcalico.org/IPv4Address": "192.168.50.5/24"}))
    v = judge(l2(f"can_reach:{GW}", "192.168.50.10-192.168.50.20"), inv)
    assert warned(v) == {"can-reach-pool-subnet"}
    assert "node subnet 192.168.50.0/24, e.g. can_reach:192.168.50.1" in v.warned_by[0].message
    assert not judge(l2("can_reach:192.168.50.1", "192.168.50.10-192.168.50.20"), inv).warned_by
    # A denied can_reach IP is sent to the pool's subnet too.
    v = judge(l2("can_reach:172.16.236.152", "192.168.50.10-192.168.50.20"), inv)
    assert "e.g. can_reach:192.168.50.1." in message_of(v, "can-reach-node-ip")


# --- finding 4: sizes OpenELB counts in an overflowing int64 -------------------------------


@pytest.mark.parametrize(
    ("address", "size"),
    [
        ("fd00:1::/64", "0"),
        ("fd00:1::/48", "0"),
        ("fd00:1::/65", "-9223372036854775808"),
        ("fd00:1::-fd00:1::7fff:ffff:ffff:ffff", "-9223372036854775808"),  # last-first 2^63-1
    ],
)
def test_a_pool_whose_size_openelb_counts_as_zero_or_less_is_denied(
    address: str, size: str
) -> None:
    v = judge(l2("eth0", address))
    assert denied(v) == {"address-size"}
    assert f"OpenELB computes this pool's size as {size} and hands out none of its IPs" in (
        v.message
    )
    if "/" in address:
        assert "use /66 or longer, or a range" in v.message


def test_a_pool_openelb_counts_right_is_allowed_and_a_wrapped_count_is_denied() -> None:
    assert judge(l2("eth0", "fd00:1::/66")).allowed
    assert judge(l2("eth0", "fd00:1::-fd00:1::7fff:ffff:ffff:fffe")).allowed  # 2^63-1 IPs
    wrapped = judge(l2("eth0", "fd00:1::-fd00:1:0:1::4"))  # 2^64+5 IPs: Int64() keeps 4
    assert denied(wrapped) == {"address-size"}
    assert "computes this pool's size as 5 (it holds 18446744073709551621)" in wrapped.message


@pytest.mark.parametrize(
    "address",
    [
        "fd00:1::-fd00:1::ffff:ffff:ffff:ffff",  # GetSize: Int64(2^64-1) = -1, ord < 0
        "fd00:1::-fd00:1::8000:0:0:0",  # Int64(2^63) = MinInt64
    ],
)
def test_a_range_openelb_refuses_for_its_size_is_its_syntax_error_and_no_pool(
    address: str,
) -> None:
    # OpenELB's webhook says "invalid eip address format", and a stored one is no pool to
    # it (GetSize fails): not a size eip-guard.io/allow-rules could waive.
    v = judge(l2("eth0", address, allow="address-size,address-syntax"))
    assert denied(v) == {"address-syntax"}
    assert "invalid eip address format: " in v.message
    assert "OpenELB counts last-first in a 64-bit integer" in v.message
    assert Eip.from_object(eip("stored", address)).address is None


# --- finding 5: what OpenELB's own webhook refuses cannot be overridden by the annotation ---


@pytest.mark.parametrize(
    ("rule", "obj"),
    [
        ("address-overlap", l2("eth0", "172.16.236.50-172.16.236.80")),
        ("address-syntax", l2("eth0", "172.16.236.050")),
        ("spec-schema", dict(l2("eth0"), spec={"address": 10, "interface": "eth0"})),
    ],
)
def test_the_annotation_cannot_waive_what_openelb_refuses(rule: str, obj: dict[str, Any]) -> None:
    obj["metadata"]["annotations"]["eip-guard.io/allow-rules"] = f"{rule},address-node-ip"
    v = judge(obj)
    assert rule in denied(v)
    assert f"eip-guard: {rule} cannot be overridden by eip-guard.io/allow-rules" in v.warnings
    # The admin's policy still can.
    assert judge(obj, policy=Policy(actions={rule: Action.WARN})).allowed


def test_address_immutable_and_default_eip_unique_stand_against_the_annotation() -> None:
    inv = cluster(eip("dflt", "172.16.236.220", default=True))
    second = l2("eth0", default=True, allow="default-eip-unique")
    v = judge(second, inv)
    assert denied(v) == {"default-eip-unique"}
    assert "eip-guard: default-eip-unique cannot be overridden by eip-guard.io/allow-rules" in (
        v.warnings
    )
    old = eip("eip-pool", "172.16.236.40-172.16.236.60", used={"172.16.236.40": "ns/nginx"})
    moved = eip("eip-pool", "172.16.236.41-172.16.236.60", allow="address-immutable",
                used={"172.16.236.40": "ns/nginx"})  # fmt: skip
    v = check(Eip.from_object(moved), Eip.from_object(old), inv)
    assert denied(v) == {"address-immutable"}


def test_an_address_openelb_reads_is_still_overridable_and_node_ips_are_too() -> None:
    mapped = l2("eth0", "::ffff:172.16.236.70", allow="address-syntax")
    v = judge(mapped)
    assert v.allowed and warned(v) == {"address-syntax"}
    assert not any("cannot be overridden" in w for w in v.warnings)
    single_node = judge(l2("eth0", "172.16.236.152", allow="address-node-ip"))
    assert single_node.allowed and warned(single_node) == {"address-node-ip"}


# --- finding 7: a prefix length with leading zeros is what Go reads -----------------------


def test_a_leading_zero_prefix_is_read_as_openelb_reads_it() -> None:
    v = judge(l2("eth0", "172.16.237.0/024"))
    assert denied(v) == {"address-syntax"}
    assert "OpenELB reads it as 172.16.237.0/24" in v.message
    assert "write spec.address: 172.16.237.0/24." in v.message
    assert "invalid eip address format" not in v.message
    # Stored so, it is the /24 OpenELB serves: it counts for the other rules.
    inv = cluster(eip("zeros", "172.16.237.0/024"))
    assert denied(judge(l2("eth0", "172.16.237.10-172.16.237.20"), inv)) == {"address-overlap"}
    assert not any("Eip zeros" in note for note in inv.notes)
    assert Eip.from_object(eip("x", "10.0.0.0/0033")).address is None  # /33: no IPv4 prefix


# --- finding 10: DELETE names the Services that lose their IPs -----------------------------


def test_delete_names_the_services_and_ips_within_a_warnings_length() -> None:
    used = {f"172.16.236.{40 + i}": f"ns-{i}/service-{i}" for i in range(6)}
    used["172.16.236.50"] = "ns/a;ns/b"
    pool = Eip.from_object(eip("eip-pool", "172.16.236.40-172.16.236.60", used=used))
    v = check(pool, pool, cluster(), operation=Operation.DELETE)
    assert v.allowed
    listed, advice = v.warnings
    assert listed.startswith("eip-guard: Eip eip-pool hands out 172.16.236.40 to ns-0/service-0")
    assert listed.endswith(" more")
    assert "lose their IPs" in advice and "move them to another Eip first" in advice
    long_name = Eip.from_object(eip("e" * 200, "10.0.0.0/24", used={"10.0.0.1": "n" * 150}))
    for warning in check(long_name, None, cluster(), operation=Operation.DELETE).warnings:
        assert len(warning) <= WARNING_LIMIT


# --- finding 11: NIC names no speaker can use ----------------------------------------------


@pytest.mark.parametrize(
    ("interface", "why"),
    [
        ("lo", "'lo' is the loopback device"),
        ("kube-ipvs0", "is a virtual device (kube-ipvs*)"),
        ("cali1234abcd", "is a virtual device (cali*)"),
        ("eth0 ", "Linux refuses whitespace"),
        ("eth0/1", "Linux refuses '/'"),
        ("averyveryverylongnicname0", "Linux allows 15 bytes"),
        ("..", "Linux refuses '.' and '..'"),
        ("eth\x010", "control character"),
    ],
)
def test_a_nic_name_no_speaker_can_use_is_denied_for_layer2_and_warned_for_bgp(
    interface: str, why: str
) -> None:
    v = judge(l2(interface))
    assert denied(v) == {"interface-name"}
    assert why in v.message
    assert f"can_reach:{GW}" in v.message  # a working alternative
    bgp = judge(l2(interface, protocol="bgp"))
    assert bgp.allowed and warned(bgp) == {"interface-name"}


@pytest.mark.parametrize("interface", ["eth0", "bond0.100", "br-lan", "enp3s0f1", "eno1@if2"])
def test_ordinary_nic_names_pass(interface: str) -> None:
    v = judge(l2(interface))
    assert v.allowed and not v.warned_by


def test_a_kube_vip_ip_of_a_service_kube_vip_ignores_is_only_a_request() -> None:
    # kube-vip skips a Service annotated kube-vip.io/ignore: "true" (pkg/manager/
    # watch_services.go, v0.5 to now): nothing binds its kube-vip.io/loadbalancerIPs, e.g.
    # left behind when the Service moved to OpenELB, whose new pool holds that very IP.
    annotations = {"kube-vip.io/loadbalancerIPs": "172.16.236.203", "kube-vip.io/ignore": "true"}
    moved = service("moved", "ns", annotations=annotations)
    pool = l2("eth0", "172.16.236.200-172.16.236.210")
    assert judge(pool, cluster(moved)).allowed
    # As spec.loadBalancerIP, it still keeps can_reach off it: asked for, it may be bound.
    v = judge(l2("can_reach:172.16.236.203", "172.16.236.61-172.16.236.80"), cluster(moved))
    assert denied(v) == {"can-reach-service-ip"}
    assert "(annotation kube-vip.io/loadbalancerIPs, of a Service kube-vip ignores)" in v.message
    # Not ignored (any other value), kube-vip binds it: another Service's IP again.
    annotations["kube-vip.io/ignore"] = "True"
    assert denied(judge(pool, cluster(service("kv", "ns", annotations=annotations)))) == {
        "address-service-ip"
    }


def _inventory_with_everything() -> Inventory:
    return build(
        [
            node("n", "10.0.0.5", pod_cidrs=("10.244.0.0/24",)),
            service("s", cluster_ip="10.96.0.1", ingress=("10.0.0.77",)),
            service_cidr("k", "10.96.0.0/12"),
            kube_vip_pod("kv", [{"name": "address", "value": "10.0.0.100"}]),
            configmap("kubevip", {"cidr-global": "10.0.1.0/28"}),
        ]
    )


def test_every_new_rule_reads_only_indexes_and_a_free_pool_passes_them_all() -> None:
    inv = _inventory_with_everything()
    assert judge(l2("eth0", "10.0.2.0/28"), inv).allowed
    everything = judge(l2("eth0", "10.0.0.0/8"), inv)
    assert {"address-kube-vip", "address-cluster-network", "address-service-ip"} <= denied(
        everything
    )


def test_a_pool_over_many_service_ips_counts_each_object_once() -> None:
    clustered = [service(f"s{i:02d}", "ns", cluster_ip=f"10.233.30.{i}") for i in range(1, 41)]
    v = judge(l2("eth0", "10.233.30.0/24"), cluster(*clustered))
    # The ServiceCIDR (from the pool's first address) and 40 cluster IPs: the lowest named.
    assert "10.233.30.0-10.233.30.255, part of ServiceCIDR 10.233.0.0/18" in v.message
    assert "10.233.30.1, a cluster IP of Service ns/s01 (spec.clusterIPs); " in v.message
    assert "; and 38 more." in v.message
    assert v.denied_by[0].short.endswith(" and 40 more")
    # One Service, one IP, read from its ingress and kube-vip's annotation: named once.
    kv = service("kv", "ns", ingress=("172.16.236.97",),
                 annotations={"kube-vip.io/loadbalancerIPs": "172.16.236.97"})  # fmt: skip
    v = judge(l2("eth0", "172.16.236.97"), cluster(kv))
    assert "It already belongs to another Service" in v.message
    assert "more" not in v.message.partition(". It")[0]


@pytest.mark.parametrize(
    ("lb_ip", "annotations", "field"),
    [
        ("172.16.236.1", {}, "(spec.loadBalancerIP)"),
        (None, {"eip.openelb.kubesphere.io/v1alpha1": "172.16.236.1"},
         "(annotation eip.openelb.kubesphere.io/v1alpha1)"),
        (None, {"kube-vip.io/loadbalancerIPs": "172.16.236.1", "kube-vip.io/ignore": "true"},
         "(annotation kube-vip.io/loadbalancerIPs, of a Service kube-vip ignores)"),
    ],
)  # fmt: skip
def test_a_can_reach_ip_a_service_only_asks_for_is_not_said_to_be_bound(
    lb_ip: str | None, annotations: dict[str, str], field: str
) -> None:
    # Anyone who may write a Service in their namespace may ask for the gateway: the denial
    # must say that the IP is asked for, not that kube-proxy binds it (it binds no request).
    asking = service("ask", "tenant", lb_ip=lb_ip, annotations=annotations)
    v = judge(l2("can_reach:172.16.236.1", "172.16.236.61-172.16.236.80"), cluster(asking))
    assert denied(v) == {"can-reach-service-ip"}
    message = message_of(v, "can-reach-service-ip")
    said = f"172.16.236.1 is a Service IP of Service tenant/ask {field}; "
    assert said + "that Service only asks for it, but once a load balancer gives it" in message
    assert said + "kube-proxy" not in message
    # What a load balancer gave out is bound: said so, as before.
    given = service("given", "tenant", ingress=("172.16.236.1",))
    v = judge(l2("can_reach:172.16.236.1", "172.16.236.61-172.16.236.80"), cluster(given))
    bound = "(status.loadBalancer.ingress.ip); kube-proxy in IPVS mode binds it on kube-ipvs0"
    assert bound in message_of(v, "can-reach-service-ip")
    # Asked for and given: the Service is named once, by what binds the IP.
    both = service("both", "tenant", lb_ip="172.16.236.1", ingress=("172.16.236.1",))
    v = judge(l2("can_reach:172.16.236.1", "172.16.236.61-172.16.236.80"), cluster(both))
    message = message_of(v, "can-reach-service-ip")
    assert "Service tenant/both " + bound in message and "only asks" not in message
