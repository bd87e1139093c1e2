"""Pure NIC resolution and planning over hand-made HostNet values."""

from __future__ import annotations

import ipaddress
import json

from app.agent.election import cluster_view, mine
from app.agent.netlink import Address, HostNet, Link, Route, RouteAnswer
from app.agent.plan import by_can_reach_ip, local_bindings, node_report, plan
from app.agent.resolve import Resolved, Unresolved, describe_route_get, resolve
from app.agent.runner import targets
from app.core.facts import FactKind
from app.core.interfaces import parse_interface
from app.core.inventory import build


def link(index: int, name: str, **kw: object) -> Link:
    base: dict[str, object] = dict(kind="", mac=f"02:00:00:00:00:{index:02x}", up=True,
                                   master=None, noarp=False, loopback=False)  # fmt: skip
    base.update(kw)
    return Link(index, name, **base)  # type: ignore[arg-type]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


LO = link(1, "lo", loopback=True)
ETH = link(2, "eth1")
IPVS = link(3, "kube-ipvs0", kind="dummy", up=False)
MGMT = link(4, "eno1")
HOST = HostNet(
    links=(LO, ETH, IPVS, MGMT),
    addresses=(
        Address(1, ip("127.0.0.1"), 8),
        Address(2, ip("10.0.0.5"), 24),
        Address(4, ip("192.168.9.5"), 24),
    ),
    routes=(
        Route(net("10.0.0.0/24"), 2, None),
        Route(net("192.168.9.0/24"), 4, None),
        Route(net("0.0.0.0/0"), 4, ip("192.168.9.1"), 100),
        Route(net("172.20.0.0/16"), 2, ip("10.0.0.1")),
    ),
    # A Service IP bound by kube-proxy on kube-ipvs0, whose addresses are never read: the
    # agent probes its can_reach IPs instead.
    bound={ip("10.0.0.50"): (3,), ip("10.0.0.1"): ()},
)


def picked(spec: str, host: HostNet = HOST) -> str:
    result = resolve(parse_interface(spec), host)
    assert isinstance(result, Resolved), result
    return result.link.name


def test_connected_subnet_wins_even_for_a_locally_bound_ip() -> None:
    assert picked("can_reach:10.0.0.50") == "eth1"
    assert picked("can_reach:10.0.0.5") == "eth1"  # the node's own IP: still its NIC


def test_gateway_routes_come_after_connected_ones() -> None:
    assert picked("can_reach:172.20.3.4") == "eth1"  # the more specific gateway route
    assert picked("can_reach:8.8.8.8") == "eno1"  # the default route


def test_a_subnet_whose_nic_is_down_is_not_answered_on_another_segment() -> None:
    """eth1 lost its carrier: its connected route stays (linkdown), or went when it was set
    down, and the default route's eno1 sits on another segment, where answering for the
    Eip's IPs reaches nobody who asks for them (a probe saw the IP move there)."""
    down = link(2, "eth1", up=False)
    links = (LO, down, IPVS, MGMT)
    linkdown = HostNet(links, HOST.addresses, HOST.routes)
    for host in (linkdown, HostNet(links, HOST.addresses, HOST.routes[1:])):
        result = resolve(parse_interface("can_reach:10.0.0.1"), host)
        assert isinstance(result, Unresolved) and not result.bad_spec, result
        assert result.reason.startswith(
            "10.0.0.1 is on a subnet of this node whose device cannot answer (eth1 "
            "(10.0.0.0/24)); a gateway route would answer on another segment, so none is used"
        )
    # Off every subnet of this node, the gateway routes still decide.
    assert picked("can_reach:8.8.8.8", linkdown) == "eno1"
    assert picked("can_reach:172.20.3.4", linkdown) == "eno1"  # its gateway's NIC is down
    # A gateway route more specific than the subnet is the kernel's answer even with the
    # NIC up: still taken.
    narrower = Route(net("10.0.0.0/28"), 4, ip("192.168.9.1"))
    assert (
        picked("can_reach:10.0.0.1", HostNet(links, HOST.addresses, (*HOST.routes, narrower)))
        == "eno1"
    )


def test_a_tunnel_holds_back_only_the_gateway_routes_it_is_more_specific_than() -> None:
    """The kernel's choice decides: wg-quick's 10.0.0.0/8 on a NOARP tunnel loses to a more
    specific gateway route on eth1 (a review found that refused), and wins over the default
    route, so an IP it holds is announced nowhere rather than on eno1's segment."""
    vpn = link(5, "vpn0", noarp=True)
    host = HostNet(
        (LO, ETH, MGMT, vpn),
        (*HOST.addresses, Address(5, ip("10.9.9.9"), 8)),
        (Route(net("10.0.0.0/8"), 5, None), Route(net("10.50.0.0/16"), 2, ip("10.0.0.1")),
         Route(net("0.0.0.0/0"), 4, ip("192.168.9.1"))),
    )  # fmt: skip
    assert picked("can_reach:10.50.0.1", host) == "eth1"
    tunnel = resolve(parse_interface("can_reach:10.60.0.1"), host)
    assert isinstance(tunnel, Unresolved) and "cannot answer (vpn0 (10.0.0.0/8))" in tunnel.reason
    assert picked("can_reach:8.8.8.8", host) == "eno1"  # no subnet of this node holds it


def test_of_equal_prefixes_the_lower_metric_wins_as_in_the_kernel() -> None:
    """A backup uplink's `default dev ppp0 metric 700` beside `default via ... dev eno1
    metric 100`: the kernel takes eno1, and so does eip-guard (a review found every
    off-subnet can_reach unresolved on such a node)."""
    ppp = link(6, "ppp0", noarp=True, mac="")
    routes = (
        Route(net("0.0.0.0/0"), 4, ip("192.168.9.1"), 100),
        Route(net("0.0.0.0/0"), 6, None, 700),
    )
    host = HostNet((LO, ETH, MGMT, ppp), HOST.addresses, routes)
    assert picked("can_reach:8.8.8.8", host) == "eno1"
    # The device route preferred (a lower metric): unresolved, as the kernel sends it there.
    first = (
        Route(net("0.0.0.0/0"), 4, ip("192.168.9.1"), 700),
        Route(net("0.0.0.0/0"), 6, None, 100),
    )
    result = resolve(
        parse_interface("can_reach:8.8.8.8"), HostNet(host.links, HOST.addresses, first)
    )
    assert isinstance(result, Unresolved) and "ppp0 (0.0.0.0/0)" in result.reason


def test_longest_prefix_then_metric() -> None:
    host = HostNet(
        HOST.links,
        HOST.addresses,
        (Route(net("10.0.0.0/16"), 4, None), Route(net("10.0.0.0/24"), 2, None, 50),
         Route(net("10.0.0.0/24"), 4, None, 10)),
    )  # fmt: skip
    assert picked("can_reach:10.0.0.9", host) == "eno1"


def test_never_lo_ipvs_or_dummy_devices() -> None:
    host = HostNet(
        (LO, link(3, "kube-ipvs0"), link(5, "dummy-x", kind="dummy"), link(6, "cali1234")),
        (),
        (Route(net("10.0.0.0/24"), 3, None), Route(net("10.0.0.0/24"), 5, None),
         Route(net("10.0.0.0/24"), 6, None), Route(net("10.0.0.0/24"), 1, None)),
    )  # fmt: skip
    result = resolve(parse_interface("can_reach:10.0.0.9"), host)
    assert isinstance(result, Unresolved)
    for why in ("kube-ipvs0 (10.0.0.0/24) is a virtual device", "dummy-x", "loopback"):
        assert why in result.reason


def test_nic_names() -> None:
    assert picked("eth1") == "eth1"
    missing = resolve(parse_interface("ens3"), HOST)
    assert isinstance(missing, Unresolved) and not missing.bad_spec
    assert "no NIC named 'ens3'" in missing.reason and "eth1" in missing.reason
    down = resolve(parse_interface("kube-ipvs0"), HOST)
    assert isinstance(down, Unresolved) and "virtual device" in down.reason


def test_bad_specs_are_flagged() -> None:
    for spec in ("", "vlan:3", "can_reach:10.0.0.0/24"):
        result = resolve(parse_interface(spec), HOST)
        assert isinstance(result, Unresolved) and result.bad_spec


def test_route_get_description_names_the_trap() -> None:
    nic, why = describe_route_get(ip("10.0.0.50"), RouteAnswer(1, "local", 255), HOST)
    assert nic == "lo"
    assert "kube-ipvs0" in why and "invalid interface lo" in why
    nic, why = describe_route_get(ip("10.0.0.9"), RouteAnswer(2, "unicast", 254), HOST)
    assert (nic, why) == ("eth1", "unicast route in table main")


def eip(name: str, interface: str, used: tuple[str, ...]) -> dict[str, object]:
    return {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": name},
            "spec": {"address": "10.0.0.40-10.0.0.60", "protocol": "layer2",
                     "interface": interface},
            "status": {"used": dict.fromkeys(used, "default/web")}}  # fmt: skip


def eth1_and_tun0(tun_address: str, tun_subnet: str) -> HostNet:
    """eth1 on 10.0.0.0/24, and a tun device (up, no MAC) with an address and its route."""
    subnet = net(tun_subnet)
    return HostNet(
        links=(LO, ETH, link(5, "tun0", mac="")),
        addresses=(Address(2, ip("10.0.0.5"), 24), Address(5, ip(tun_address), subnet.prefixlen)),
        routes=(Route(net("10.0.0.0/24"), 2, None), Route(subnet, 5, None)),
        bound={},
    )


def test_a_nic_without_an_ethernet_mac_is_skipped_not_a_crash() -> None:
    # A tun device is up, takes ARP flags and addresses, but has no MAC to answer with: the
    # speaker died on it (and with it every other announcement).
    host = eth1_and_tun0("10.77.0.1", "10.77.0.0/24")
    named = resolve(parse_interface("tun0"), host)
    assert isinstance(named, Unresolved) and "has no Ethernet MAC address" in named.reason
    routed = resolve(parse_interface("can_reach:10.77.0.9"), host)
    assert isinstance(routed, Unresolved) and "tun0 (10.77.0.0/24) has no Ethernet MAC" in (
        routed.reason
    )
    view = cluster_view([eip("tun", "can_reach:10.77.0.9", ("10.0.0.41",)),
                         eip("good", "eth1", ("10.0.0.42",))])  # fmt: skip
    result = plan(mine(view, ["me"], "me"), host)
    assert result.by_nic() == {"eth1": frozenset({ip("10.0.0.42")})}
    assert targets(result, host).keys() == {"eth1"}  # no MAC to parse, no crash


def test_a_nic_found_past_skipped_ones_says_which_were_skipped() -> None:
    # A narrower subnet on a NIC without a MAC would have been the answer: the admin reading
    # why another NIC was picked learns it was skipped, and why.
    host = eth1_and_tun0("10.0.0.129", "10.0.0.128/25")
    found = resolve(parse_interface("can_reach:10.0.0.200"), host)
    assert isinstance(found, Resolved) and found.link.name == "eth1"
    assert found.why == (
        "connected subnet 10.0.0.0/24 (table main); "
        "skipped: tun0 (10.0.0.128/25) has no Ethernet MAC address to answer with"
    )


def test_plan_announces_on_the_resolved_nic_and_explains_failures() -> None:
    view = cluster_view([eip("good", "can_reach:10.0.0.50", ("10.0.0.41",)),
                         eip("bad", "ens9", ("10.0.0.42",))])  # fmt: skip
    result = plan(mine(view, ["me"], "me"), HOST)
    assert result.by_nic() == {"eth1": frozenset({ip("10.0.0.41")})}
    assert len(result.problems) == 1 and "Eip bad: won 10.0.0.42" in result.problems[0]
    assert plan(mine(view, ["me", "other"], "nobody"), HOST).announcements == ()
    assert result.notes == ()


def test_plan_never_answers_for_a_gateway_or_an_address_of_this_node() -> None:
    # A pool over the node network, and a Service given its gateway or a node's IP: a
    # root ARP speaker answering for those takes their traffic (a security review's case).
    wide = eip("wide", "eth1", ("10.0.0.1", "10.0.0.5", "10.0.0.41"))
    mgmt = eip("mgmt", "eno1", ("192.168.9.1",))
    wide["spec"]["address"], mgmt["spec"]["address"] = "10.0.0.0/24", "192.168.9.0/24"  # type: ignore[index]
    result = plan(mine(cluster_view([wide, mgmt]), ["me"], "me"), HOST)
    assert result.by_nic() == {"eth1": frozenset({ip("10.0.0.41")})}
    assert sorted(p.split(" but ")[0] for p in result.problems) == [
        "Eip mgmt: won 192.168.9.1", "Eip wide: won 10.0.0.1", "Eip wide: won 10.0.0.5"
    ]  # fmt: skip
    assert any("it is an address of this node's eth1" in p for p in result.problems)
    assert any("it is a gateway of this node's routes" in p for p in result.problems)


def test_service_ips_on_a_proxys_dummy_device_are_no_node_address() -> None:
    # kube-router puts every Service IP, LoadBalancer IPs included, on kube-dummy-if: taken
    # for the node's own, they were refused to every Eip (a review's finding).
    router = link(5, "kube-dummy-if", kind="dummy")
    named = link(6, "kube-dummy-if2")  # by name too, whatever its kind reads
    host = HostNet((*HOST.links, router, named),
                   (*HOST.addresses, Address(5, ip("10.0.0.41"), 32),
                    Address(6, ip("10.0.0.42"), 32)), HOST.routes)  # fmt: skip
    view = cluster_view([eip("lb", "eth1", ("10.0.0.41", "10.0.0.42"))])
    result = plan(mine(view, ["me"], "me"), host)
    assert result.by_nic() == {"eth1": frozenset({ip("10.0.0.41"), ip("10.0.0.42")})}
    assert result.problems == ()
    assert "kube-dummy-if" not in node_report(host).to_json()


def test_plan_notes_an_ip_outside_every_subnet_of_its_nic() -> None:
    view = cluster_view([eip("far", "eth1", ("10.0.0.41",))])
    host = HostNet(HOST.links, (Address(2, ip("192.0.2.5"), 24),), HOST.routes)
    result = plan(mine(view, ["me"], "me"), host)
    assert result.by_nic() == {"eth1": frozenset({ip("10.0.0.41")})}
    assert len(result.notes) == 1 and "10.0.0.41 lies in no subnet of eth1" in result.notes[0]


def test_bound_on_joins_the_probe_and_the_own_nics_addresses() -> None:
    assert [lk.name for lk in HOST.bound_on(ip("10.0.0.50"))] == ["kube-ipvs0"]
    assert [lk.name for lk in HOST.bound_on(ip("10.0.0.5"))] == ["eth1"]  # not probed
    assert HOST.bound_on(ip("10.0.0.1")) == ()
    both = HostNet(HOST.links, HOST.addresses, HOST.routes, {ip("10.0.0.5"): (3, 2)})
    assert [lk.name for lk in both.bound_on(ip("10.0.0.5"))] == ["kube-ipvs0", "eth1"]


def test_the_probes_are_the_can_reach_ips_of_layer2_eips_with_their_eips() -> None:
    bgp = eip("bgp", "can_reach:10.0.0.9", ())
    bgp["spec"]["protocol"] = "bgp"  # type: ignore[index]
    view = cluster_view([eip("a", "can_reach:10.0.0.50", ()), eip("b", "can_reach:10.0.0.50", ()),
                         eip("c", "can_reach:fd00::1", ()), eip("d", "eth1", ()), bgp])  # fmt: skip
    assert by_can_reach_ip(view.eips) == {ip("10.0.0.50"): ("a", "b"), ip("fd00::1"): ("c",)}


def test_local_bindings_are_the_trap_live() -> None:
    view = cluster_view([eip("trap", "can_reach:10.0.0.50", ()),
                         eip("fine", "can_reach:10.0.0.1", ())])  # fmt: skip
    found = local_bindings(by_can_reach_ip(view.eips), HOST)
    assert [(b.eip, str(b.ip), b.devices) for b in found] == [
        ("trap", "10.0.0.50", ("kube-ipvs0",))
    ]
    assert "invalid interface lo" in found[0].message


def test_node_report_round_trips_through_the_core() -> None:
    text = node_report(HOST).to_json()
    report = json.loads(text)
    assert [i["name"] for i in report["interfaces"]] == ["eno1", "eth1"]  # no lo, no ipvs
    assert report["gateways"] == ["192.168.9.1"]
    node = {
        "kind": "Node",
        "metadata": {"name": "n", "annotations": {"eip-guard.io/network": text}},
    }
    inventory = build([node])
    assert inventory.count(FactKind.NODE_SUBNET) == 2
    assert inventory.count(FactKind.NODE_GATEWAY) == 1
    assert inventory.count(FactKind.NODE_IP) == 2


def test_what_can_never_be_a_nic_is_a_bad_spec_not_the_default_route() -> None:
    # The default route "reaches" 127.0.0.1 or 224.0.0.1 too; OpenELB's speaker finds no NIC
    # there, and the webhook denies them (can-reach-special): so does resolve (exit 2).
    for spec in ("can_reach:127.0.0.1", "can_reach:0.0.0.0", "can_reach:224.0.0.1",
                 "can_reach:255.255.255.255", "can_reach:ff02::1"):  # fmt: skip
        result = resolve(parse_interface(spec), HOST)
        assert isinstance(result, Unresolved) and result.bad_spec, spec
        assert "'ip route get' answers" in result.reason
        lo = "answers lo" in result.reason
        assert lo == (spec in ("can_reach:127.0.0.1", "can_reach:0.0.0.0")), spec
    long_name = resolve(parse_interface("a-nic-name-of-16b"), HOST)
    assert isinstance(long_name, Unresolved) and long_name.bad_spec
    assert "Linux allows 15 bytes" in long_name.reason
    assert picked("can_reach:10.0.0.9") == "eth1"  # an ordinary IP still resolves


def test_names_linux_refuses_are_a_bad_spec_not_a_missing_nic() -> None:
    # The agent logs them as wrong Eips (resolve exits 2), not as "no such NIC on this node".
    for name in (" eth0", "eth0 ", "a/b", "../x", ".", "..", "eth\x01", "eth\u00a0", "\udcff"):
        result = resolve(parse_interface(name), HOST)
        assert isinstance(result, Unresolved) and result.bad_spec, repr(name)
        assert "cannot be a NIC name" in result.reason, repr(name)
    # What Linux takes is looked for on this node: names with '.', '@', '_' or '-', UTF-8.
    for name in ("eth1.100", "br-lan", "veth_x", "lan@if2", "eth-\u00fc", "a" * 15):
        result = resolve(parse_interface(name), HOST)
        assert isinstance(result, Unresolved) and not result.bad_spec, repr(name)
        assert result.reason.startswith("no NIC named"), repr(name)
    assert picked("eth1") == "eth1"


def test_no_ipv6_eip_is_announced_on_a_nic_whose_ipv6_is_off() -> None:
    """disable_ipv6 (or an MTU below 1280): the kernel drops IPv6 arriving on the NIC, so
    answering NDP there draws the Eip's traffic into nothing. IPv4 is still answered."""
    off = link(2, "eth1", ipv6=False)
    host = HostNet((LO, off, IPVS, MGMT), HOST.addresses, HOST.routes)
    six = eip("six", "eth1", ("2001:db8:5::7",))
    six["spec"]["address"] = "2001:db8:5::/64"  # type: ignore[index]
    result = plan(mine(cluster_view([six, eip("four", "eth1", ("10.0.0.41",))]), ["me"], "me"),
                  host)  # fmt: skip
    assert result.by_nic() == {"eth1": frozenset({ip("10.0.0.41")})}
    assert result.problems == (
        "Eip six: won 2001:db8:5::7 but will not announce it: IPv6 is off on eth1 "
        "(net.ipv6.conf.eth1.disable_ipv6=1, an MTU below 1280, or no IPv6 in the kernel), so "
        "the kernel drops the IPv6 traffic that answering NDP would draw there; turn IPv6 on "
        "for eth1 or point the Eip's interface at a NIC with IPv6",
    )
