"""IPv6 as the kernel has it, in real network namespaces: router preferences of RA-learned
default routes, addresses whose DAD failed, NICs with IPv6 off. Each is compared with what
``ip -6 route get`` and ``ip -6 addr`` say."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import time

from pyroute2.netns import create_socket

from app.agent.election import cluster_view, mine
from app.agent.netlink import HostNet
from app.agent.plan import local_bindings, node_report, plan
from app.agent.pyroute2_netlink import Pyroute2Netlink
from app.agent.resolve import Resolved, resolve
from app.core.eips import Eip
from app.core.interfaces import parse_interface
from app.core.inventory import build
from app.core.rules import check

from .lab import batch_netns, sh
from .test_resolve_plan import eip, ip

NO_DAD = ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
PREFERENCES = {"high": 1, "medium": 0, "low": 3}  # RFC 4191's two bits


def send_ra(ns: str, nic: str, preference: str) -> None:
    """A Router Advertisement (a default router, no prefix) out of ``nic``, from its
    link-local address: what a router sends, so the kernel adds a default route ``proto ra``
    that no ``ip route`` command can make (two of one metric on two NICs, not multipath)."""
    sock = create_socket(ns, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, nic.encode())
        index = int(sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{nic}/ifindex").stdout)
        # type, code, checksum (the kernel's), hop limit, flags (Prf in bits 4-3), lifetime
        ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, PREFERENCES[preference] << 3, 1800, 0, 0)
        sock.sendto(ra, ("ff02::1", 0, 0, index))
    finally:
        sock.close()


def wait_for(netlink: Pyroute2Netlink, ready: object, timeout: float = 10) -> HostNet:
    deadline = time.monotonic() + timeout
    while True:
        host = netlink.host()
        if ready(host) or time.monotonic() > deadline:  # type: ignore[operator]
            return host
        time.sleep(0.1)


def test_ra_default_routes_rank_by_router_preference_as_the_kernel_does() -> None:
    """Two routers advertise themselves on two NICs, the same metric (1024): the kernel takes
    the one of higher preference (``pref high``); eip-guard took the first dumped."""
    lines = [
        "link add na type veth peer name ra-a",
        "link add nb type veth peer name ra-b",
        *(f"link set {nic} up" for nic in ("lo", "na", "ra-a", "nb", "ra-b")),
    ]
    with batch_netns("six-ra", lines, *NO_DAD) as ns:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.ra-a.accept_ra=0",
           "net.ipv6.conf.ra-b.accept_ra=0")  # fmt: skip
        netlink = Pyroute2Netlink(ns)
        send_ra(ns, "ra-a", "medium")  # dumped first
        send_ra(ns, "ra-b", "high")
        host = wait_for(netlink, lambda h: sum(r.dst.prefixlen == 0 for r in h.routes) == 2)
        index = {lk.name: lk.index for lk in host.links}
        defaults = {r.oif: r for r in host.routes if r.dst.prefixlen == 0}
        assert set(defaults) == {index["na"], index["nb"]}, host.routes
        assert all(r.gateway is not None and r.gateway.is_link_local for r in defaults.values())
        far = ipaddress.ip_address("2001:db8:ffff::1")
        assert netlink.route_get(far).oif == index["nb"]  # `ip -6 route get` says dev nb
        found = resolve(parse_interface(f"can_reach:{far}"), host)
        assert isinstance(found, Resolved) and found.link.name == "nb", found
        assert "pref high" in found.why
        # The gateways the report gives: the routers' link-local addresses.
        gateways = set(node_report(host).gateways)
        assert gateways == {str(r.gateway) for r in defaults.values()}


def test_an_address_whose_dad_failed_is_no_address_of_this_node() -> None:
    """Another host on the link holds the address: the kernel marks it dadfailed and never
    binds it (``ip route get`` does not say lo). The report made it a node IP, so the webhook
    denied can_reach at it, the gateway itself when a node was given the gateway's address;
    and the agent warned that the IP was bound here."""
    with contextlib.ExitStack() as stack:
        router = stack.enter_context(batch_netns("six-rtr", ["link set lo up"]))
        ns = stack.enter_context(batch_netns("six-dad", [
            f"link add eth0 type veth peer name peer0 netns {router}",
            "link set lo up", "link set eth0 up",
        ]))  # fmt: skip
        sh("ip", "-n", router, "address", "add", "2001:db8:1::1/64", "dev", "peer0", "nodad")
        sh("ip", "-n", router, "link", "set", "peer0", "up")  # the router, say
        netlink = Pyroute2Netlink(ns)

        def router_ready(_: HostNet) -> bool:  # its link up: it answers DAD probes
            shown = sh("ip", "-n", router, "-6", "address", "show", "dev", "peer0").stdout
            return "scope link" in shown and "tentative" not in shown

        wait_for(netlink, router_ready)
        sh("ip", "-n", ns, "address", "add", "2001:db8:1::10/64", "dev", "eth0")
        sh("ip", "-n", ns, "address", "add", "2001:db8:1::1/64", "dev", "eth0")  # taken
        gateway = ipaddress.ip_address("2001:db8:1::1")

        def dad_done(_: HostNet) -> bool:
            shown = sh("ip", "-n", ns, "-6", "address", "show", "dev", "eth0").stdout
            return "tentative" not in shown.replace("dadfailed tentative", "")

        wait_for(netlink, dad_done)
        assert "dadfailed" in sh("ip", "-n", ns, "-6", "address", "show", "dev", "eth0").stdout
        host = netlink.host([gateway])
        assert netlink.route_get(gateway).type == "unicast"  # not bound: not dev lo
        report = node_report(host).to_json()
        assert "2001:db8:1::10/64" in report and "2001:db8:1::1/" not in report
        assert local_bindings({gateway: ("e",)}, host) == ()
        assert host.bound_on(gateway) == ()
        # What the webhook makes of the report: can_reach at the router is fine, at the
        # node's own address denied.
        node = {"kind": "Node", "metadata": {"name": "n1", "annotations": {
            "eip-guard.io/network": report}}}  # fmt: skip
        inventory = build([node])
        for target, denied in (("2001:db8:1::1", False), ("2001:db8:1::10", True)):
            pool = eip("six", f"can_reach:{target}", ())
            pool["spec"]["address"] = "2001:db8:1::100-2001:db8:1::1ff"  # type: ignore[index]
            verdict = check(Eip.from_object(pool), None, inventory)
            rules = {v.rule for v in verdict.denied_by}
            assert ("can-reach-node-ip" in rules) == denied, (target, verdict)
            assert verdict.allowed != denied, (target, verdict)


def test_a_nic_with_ipv6_off_is_said_and_gets_no_ipv6_eip() -> None:
    """disable_ipv6 on a NIC (or an MTU below 1280) and the kernel drops every IPv6 packet it
    receives there: answering NDP for an Eip there draws its traffic into nothing. IPv4 Eips
    on the NIC are still answered; ``addr_gen_mode none`` (what NetworkManager sets on the
    NICs it manages) leaves IPv6 on."""
    lines = [
        "link add eth1 type veth peer name peer1",
        "link add eth2 type veth peer name peer2",
        "link add eth3 type veth peer name peer3",
        "link set eth2 addrgenmode none",
        *(f"link set {nic} up" for nic in ("lo", "eth1", "peer1", "eth2", "peer2", "eth3")),
        "link set peer3 up",
        "link set eth3 mtu 1200",  # too small for IPv6: the kernel takes it off the NIC
    ]
    with batch_netns("six-off", lines, *NO_DAD) as ns:
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth1.disable_ipv6=1")
        host = Pyroute2Netlink(ns).host()
        on = {lk.name: lk.ipv6 for lk in host.links}
        assert (on["eth1"], on["eth2"], on["eth3"], on["peer1"]) == (False, True, False, True)
        six = eip("six", "eth1", ("2001:db8:5::7",))
        six["spec"]["address"] = "2001:db8:5::/64"  # type: ignore[index]
        four = eip("four", "eth1", ("10.0.0.41",))
        for nic in ("eth1", "eth3"):
            six["spec"]["interface"] = four["spec"]["interface"] = nic  # type: ignore[index]
            result = plan(mine(cluster_view([six, four]), ["me"], "me"), host)
            assert result.by_nic() == {nic: frozenset({ip("10.0.0.41")})}
            assert len(result.problems) == 1, result.problems
            assert result.problems[0].startswith(
                f"Eip six: won 2001:db8:5::7 but will not announce it: IPv6 is off on {nic}"
            )
            assert f"net.ipv6.conf.{nic}.disable_ipv6" in result.problems[0]
        six["spec"]["interface"] = "eth2"  # type: ignore[index]
        assert plan(mine(cluster_view([six]), ["me"], "me"), host).by_nic() == {
            "eth2": frozenset({ip("2001:db8:5::7")})
        }
