"""NIC resolution against a real kernel's routes: eip-guard picks what ``ip route get`` picks
(for IPs not bound on the node), null routes included, and says why when it cannot."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from app.agent.pyroute2_netlink import Pyroute2Netlink
from app.agent.resolve import Resolved, Unresolved, describe_route_get, resolve
from app.core.interfaces import parse_interface

from .lab import batch_netns


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    lines = [
        "link set lo up",
        "link add eth1 type veth peer name eth1p", "link add eth2 type veth peer name eth2p",
        "link add eth3 type veth peer name eth3p",
        "link set eth1p up", "link set eth1 up", "link set eth2p up", "link set eth2 up",
        "link set eth3 up",  # its peer stays down: no carrier
        "address add 10.1.0.5/24 dev eth1", "address add 10.2.0.5/24 dev eth2",
        "address add 2001:db8:1::5/64 dev eth1 nodad",
        "address add 2001:db8:2::5/64 dev eth2 nodad",
        "route add default via 10.1.0.1 dev eth1 metric 100",
        "route add unreachable default metric 4278198272",  # as some distros add
        "route add default dev eth1 metric 50",  # a device route: no subnet of eth1's
        "route add 203.0.113.0/24 via 10.2.0.1 dev eth2",
        "route add blackhole 198.51.100.0/24",
        "route add unreachable 198.51.101.0/24",
        "route add prohibit 198.51.102.0/24",
        "route add throw 198.51.103.0/24",
        "nexthop add id 12 blackhole",
        "route add 198.51.104.0/24 nhid 12",
        "route add blackhole 10.1.0.128/25",  # inside eth1's subnet
        "route add 10.1.0.192/26 via 10.2.0.1 dev eth2",  # inside the blackhole
        "route add 10.1.0.64/26 via 10.2.0.1 dev eth2",  # inside eth1's subnet
        "route add 198.18.7.0/24 nexthop via 10.1.0.1 dev eth1 nexthop via 10.2.0.1 dev eth2",
        "nexthop add id 1 via 10.1.0.1 dev eth1", "nexthop add id 2 via 10.2.0.1 dev eth2",
        "nexthop add id 3 group 1/2",
        "route add 198.18.8.0/24 nhid 3",
        "route add default via 2001:db8:1::1 dev eth1",
        "route add blackhole 2001:db8:dead::/48",
        "route add 2001:db8:dead:1::/64 via 2001:db8:2::1 dev eth2",
        "route add prohibit 2001:db8:beef::/48",
    ]  # fmt: skip
    with batch_netns("eg-order", lines) as name:
        yield name


REFUSED = {  # IP -> the null route the kernel meets
    "198.51.100.9": "blackhole 198.51.100.0/24",
    "198.51.101.9": "unreachable 198.51.101.0/24",
    "198.51.102.9": "prohibit 198.51.102.0/24",
    "198.51.103.9": "throw 198.51.103.0/24",
    "198.51.104.9": "blackhole 198.51.104.0/24",  # through a blackhole nexthop object
    "10.1.0.150": "blackhole 10.1.0.128/25",
    "2001:db8:dead::9": "blackhole 2001:db8:dead::/48 metric 1024",
    "2001:db8:beef::9": "prohibit 2001:db8:beef::/48 metric 1024",
}
ROUTED = {  # IP -> the NIC the kernel and eip-guard pick
    "10.1.0.9": "eth1",
    "10.1.0.70": "eth2",  # a more specific gateway route inside eth1's subnet
    "10.1.0.210": "eth2",  # a more specific route inside a blackhole
    "203.0.113.9": "eth2",  # a gateway route more specific than `default dev eth1`
    "8.8.8.8": "eth1",  # `default dev eth1 metric 50`, before the gateway and unreachable ones
    "2001:db8:dead:1::9": "eth2",
    "2001:db8:77::1": "eth1",
}


@pytest.mark.parametrize("text", list(REFUSED))
def test_what_the_kernel_refuses_is_unresolved_and_says_why(netns: str, text: str) -> None:
    netlink = Pyroute2Netlink(netns)
    ip = ipaddress.ip_address(text)
    host = netlink.host()
    kernel = netlink.route_get(ip)
    assert kernel.oif is None and kernel.error, kernel
    result = resolve(parse_interface(f"can_reach:{text}"), host)
    assert isinstance(result, Unresolved) and not result.bad_spec, result
    assert f"is {REFUSED[text]}" in result.reason
    nic, why = describe_route_get(ip, kernel, host)
    assert nic is None and why.endswith(
        "OpenELB's speaker fails too (its RouteGet returns this error)"
    )
    kind = REFUSED[text].split()[0]
    assert why.startswith("no route:" if kind == "throw" else f"{kind} route:")


@pytest.mark.parametrize("text", list(ROUTED))
def test_eip_guard_picks_the_kernels_nic(netns: str, text: str) -> None:
    netlink = Pyroute2Netlink(netns)
    host = netlink.host()
    kernel = netlink.route_get(ipaddress.ip_address(text))
    result = resolve(parse_interface(f"can_reach:{text}"), host)
    assert isinstance(result, Resolved), result
    assert result.link.name == ROUTED[text]
    assert result.link.index == kernel.oif


@pytest.mark.parametrize("text", ["198.18.7.9", "198.18.8.9"], ids=["multipath", "nhid-group"])
def test_a_multipath_route_names_its_next_hops(netns: str, text: str) -> None:
    result = resolve(parse_interface(f"can_reach:{text}"), Pyroute2Netlink(netns).host())
    assert isinstance(result, Resolved) and result.link.name == "eth1"
    assert "a multipath route over eth1, eth2: eip-guard takes the first next hop" in result.why


def test_a_nic_without_carrier_is_not_called_down(netns: str) -> None:
    result = resolve(parse_interface("eth3"), Pyroute2Netlink(netns).host())
    assert isinstance(result, Unresolved)
    assert result.reason.startswith("NIC eth3 has no carrier (set up, but no cable or peer)")
