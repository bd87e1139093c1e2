"""The agent's hand-read link, address and route dumps against pyroute2's reading of the same
kernel state: every address kind (IPv4, IPv6, point-to-point) and route kind the agent meets
(default, multipath, other tables, the local table, null routes); what the kernel filters
for us, and the same answers from a kernel that filters nothing; the bound-IP probes."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from app.agent.netlink import MAIN_TABLE, NULL_ROUTES, Address, Link, Route
from app.agent.pyroute2_netlink import (
    _IFADDR,
    IFF_LOOPBACK,
    IFF_LOWER_UP,
    IFF_NOARP,
    IFF_UP,
    MAIN_ROUTES,
    RTM_F_LOOKUP_TABLE,
    RTM_GETADDR,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWROUTE,
    RTN_TYPES,
    Pyroute2Netlink,
    Rtnetlink,
    dump_addresses,
    dump_routes,
    looked_up,
)
from app.agent.resolve import Resolved, Unresolved, resolve
from app.core.interfaces import parse_interface

from .lab import batch_netns

IPVS_ADDRESSES = 600  # more than one netlink datagram of a dump


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    batch = [
        "link add nic-a type veth peer name nic-b",
        "link add kube-ipvs0 type bridge",
        "link add port type veth peer name port-peer",
        "link set port master kube-ipvs0",
        "link set lo up", "link set nic-a up", "link set nic-b up",
        "address add 192.0.2.10/24 dev nic-a",
        "address add 2001:db8:1::10/64 dev nic-a nodad",  # routed as local at once
        "address add 10.9.0.1 peer 10.9.0.2/32 dev nic-b",
        "address add 198.51.100.5/24 dev nic-b",
        "route add default via 192.0.2.1 dev nic-a metric 50",
        "route add 203.0.113.0/24 nexthop via 192.0.2.1 dev nic-a nexthop via 198.51.100.1 "
        "dev nic-b",
        "route add 2001:db8:9::/48 via 2001:db8:1::1 dev nic-a metric 7",
        "route add 203.0.114.0/24 via 192.0.2.1 dev nic-a table 100",
        "rule add to 203.0.114.0/24 lookup 100",
        "route add throw 198.18.2.0/24",
        "route add 2001:db8:dead::/48 dev nic-a",  # a more specific null route below
        "route add blackhole 2001:db8:dead:1::/64",
        "route add unreachable default metric 4278198272",  # as some distros add
        "route add blackhole 192.0.2.128/25",
        "route add prohibit 198.18.0.0/24",
        "route add unreachable 198.18.1.0/24",
    ]  # fmt: skip
    batch += [
        f"address add 10.96.{i // 250}.{i % 250 + 1}/32 dev kube-ipvs0"
        for i in range(IPVS_ADDRESSES)
    ]
    with batch_netns("eg-dump", batch) as name:
        yield name


# pyroute2's reading: how the agent read these dumps before it read them by hand.


def oracle_addresses(ns: str) -> set[Address]:
    with IPRoute(netns=ns) as ipr:
        found = set()
        for m in ipr.get_addr():
            text = m.get("IFA_LOCAL") or m.get("IFA_ADDRESS")
            if text:
                found.add(Address(int(m["index"]), ipaddress.ip_address(text), m["prefixlen"]))
        return found


def oracle_routes(ns: str) -> set[Route]:
    """The main table's routes, and those of the tables the rules look up (here: all plain)."""
    found = set()
    with IPRoute(netns=ns) as ipr:
        tables = {MAIN_TABLE} | {
            int(r.get("FRA_TABLE") or r["table"]) for r in ipr.get_rules() if r["action"] == 1
        }
        tables.discard(255)
        for family, table in ((f, t) for f in (socket.AF_INET, socket.AF_INET6) for t in tables):
            for m in ipr.get_routes(family=family, table=table):
                kind = RTN_TYPES.get(m["type"])
                if m.get("RTA_TABLE", m["table"]) != table or kind not in READ:
                    continue
                zero = "0.0.0.0" if family == socket.AF_INET else "::"
                dst = ipaddress.ip_network(f"{m.get('RTA_DST') or zero}/{m['dst_len']}")
                metric = int(m.get("RTA_PRIORITY") or 0)
                if kind != "unicast":
                    found.add(Route(dst, 0, None, metric, kind, table=table))
                    continue
                hops = m.get("RTA_MULTIPATH")
                pairs = (
                    [(h["oif"], h.get("RTA_GATEWAY")) for h in hops]
                    if hops
                    else [(m.get("RTA_OIF"), m.get("RTA_GATEWAY"))]
                )
                devices = tuple(int(oif) for oif, _ in pairs) if len(pairs) > 1 else ()
                for oif, gw in pairs:
                    if oif is not None:
                        ip = ipaddress.ip_address(gw) if gw else None
                        found.add(Route(dst, int(oif), ip, metric, multipath=devices, table=table))
    return found


READ = ("unicast", *NULL_ROUTES)


def test_the_address_dump_reads_what_pyroute2_reads(netns: str) -> None:
    mine = dump_addresses(netns)
    assert set(mine) == oracle_addresses(netns)
    assert len(mine) == len(set(mine))
    texts = {str(a) for a in mine}
    assert {"192.0.2.10/24", "2001:db8:1::10/64", "10.9.0.1/32", "10.96.0.1/32"} <= texts
    assert "10.9.0.2/32" not in texts  # the point-to-point peer is not this host's
    assert sum(a.ip in ipaddress.ip_network("10.96.0.0/16") for a in mine) == IPVS_ADDRESSES


def test_the_route_dump_reads_the_rules_tables_as_pyroute2_does(netns: str) -> None:
    mine = dump_routes(netns)
    assert set(mine) == oracle_routes(netns)
    dsts = sorted({str(r.dst) for r in mine})
    assert "0.0.0.0/0" in dsts and "2001:db8:9::/48" in dsts
    multipath = [r for r in mine if str(r.dst) == "203.0.113.0/24"]
    assert len(multipath) == 2  # one per next hop, each naming both devices
    assert {r.multipath for r in multipath} == {tuple(r.oif for r in multipath)}
    assert {r.table for r in mine if str(r.dst) == "203.0.114.0/24"} == {100}  # by a rule
    # Null routes: the kernel refuses what they hold, and so must the agent.
    nulls = {(str(r.dst), r.type, r.metric) for r in mine if r.type != "unicast"}
    assert nulls == {
        ("192.0.2.128/25", "blackhole", 0), ("198.18.0.0/24", "prohibit", 0),
        ("198.18.1.0/24", "unreachable", 0), ("198.18.2.0/24", "throw", 0),
        ("2001:db8:dead:1::/64", "blackhole", 1024), ("0.0.0.0/0", "unreachable", 4278198272),
    }  # fmt: skip
    assert all(r.oif == 0 and r.gateway is None for r in mine if r.type != "unicast")
    assert not any(r.dst.prefixlen == 32 and str(r.dst).startswith("10.96.") for r in mine)


def oracle_links(ns: str) -> set[Link]:
    with IPRoute(netns=ns) as ipr:
        found = set()
        for m in ipr.get_links():
            flags = int(m["flags"])
            info = m.get("IFLA_LINKINFO")
            kind = info.get("IFLA_INFO_KIND") if info is not None else None
            up = bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
            found.add(
                Link(index=int(m["index"]), name=str(m.get("IFLA_IFNAME")), kind=str(kind or ""),
                     mac=str(m.get("IFLA_ADDRESS") or ""), up=up, master=m.get("IFLA_MASTER"),
                     noarp=bool(flags & IFF_NOARP), loopback=bool(flags & IFF_LOOPBACK),
                     no_carrier=bool(flags & IFF_UP) and not up)
            )  # fmt: skip
        return found


def test_the_link_dump_reads_what_pyroute2_reads(netns: str) -> None:
    with Rtnetlink(netns) as sock:
        mine = sock.links()
    assert set(mine) == oracle_links(netns)
    by_name = {lk.name: lk for lk in mine}
    assert by_name["kube-ipvs0"].kind == "bridge" and by_name["nic-a"].kind == "veth"
    assert by_name["port"].master == by_name["kube-ipvs0"].index
    assert by_name["lo"].loopback and by_name["nic-a"].up and not by_name["port"].up


def counted(sock: Rtnetlink, request: int, body: bytes, reply: int) -> int:
    """How many ``reply`` messages the kernel sent for this dump."""
    return len(sock.ask(request, body, reply, lambda data, start, end: [None]))


@pytest.mark.parametrize("strict", [True, False], ids=["kernel-filtered", "as-before-4.20"])
def test_a_links_address_dump_is_filtered_by_the_kernel(netns: str, strict: bool) -> None:
    every = oracle_addresses(netns)
    with Rtnetlink(netns, strict=strict) as sock:
        index = {lk.name: lk.index for lk in sock.links()}
        nics = [index["nic-a"], index["nic-b"]]
        mine = sock.addresses(nics)
        sent = counted(sock, RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, index["nic-a"]), RTM_NEWADDR)
    assert set(mine) == {a for a in every if a.index in nics}
    assert len(mine) == len(set(mine))
    with Rtnetlink(netns, strict=strict) as sock:
        assert sock.addresses([max(index.values()) + 1000]) == ()  # a link gone meanwhile
    # The kernel sends nic-a's own addresses only: the 600 of kube-ipvs0 never cross.
    own = len([a for a in every if a.index == index["nic-a"]])
    assert sent == (own if strict else len(every))


@pytest.mark.parametrize("strict", [True, False], ids=["kernel-filtered", "as-before-4.20"])
def test_the_route_dump_is_the_same_whatever_the_kernel_filters(netns: str, strict: bool) -> None:
    with Rtnetlink(netns, strict=strict) as sock:
        mine = sock.routes(looked_up(sock.rules()))
        sent = counted(sock, RTM_GETROUTE, MAIN_ROUTES, RTM_NEWROUTE)
    assert set(mine) == oracle_routes(netns)
    assert (sent < IPVS_ADDRESSES) == strict  # the local table's routes, one per address


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "as-before-4.20"])
def test_a_probe_says_on_which_link_an_ip_is_bound(netns: str, strict: bool) -> None:
    with Rtnetlink(netns, strict=strict) as sock:
        index = {lk.name: lk.index for lk in sock.links()}

        def bound(text: str) -> tuple[int, ...]:
            return sock.bound(ipaddress.ip_address(text))

        assert bound("10.96.0.1") == (index["kube-ipvs0"],)
        assert bound(f"10.96.{(IPVS_ADDRESSES - 1) // 250}.{(IPVS_ADDRESSES - 1) % 250 + 1}") == (
            index["kube-ipvs0"],
        )
        assert bound("192.0.2.10") == (index["nic-a"],)
        assert bound("2001:db8:1::10") == (index["nic-a"],)
        assert bound("192.0.2.99") == ()  # on a connected subnet, not bound
        assert bound("8.8.8.8") == ()  # by the default route
        assert bound("2001:db8:ffff::1") == ()  # no route at all: the kernel says unreachable
        # Routes the kernel answers with an error: not local either, and no failed tick.
        assert bound("192.0.2.130") == bound("198.18.0.1") == bound("198.18.1.1") == ()


def test_the_host_reads_own_nics_and_probes_the_rest(netns: str) -> None:
    host = Pyroute2Netlink(netns).host([ipaddress.ip_address("10.96.0.1")])
    assert {str(a) for a in host.addresses} >= {"192.0.2.10/24", "198.51.100.5/24"}
    assert not any(a.ip in ipaddress.ip_network("10.96.0.0/16") for a in host.addresses)
    assert not any(a.ip.is_loopback for a in host.addresses)
    assert [lk.name for lk in host.bound_on(ipaddress.ip_address("10.96.0.1"))] == ["kube-ipvs0"]
    assert set(host.routes) == oracle_routes(netns)


def test_route_get_answers_what_pyroute2_reads(netns: str) -> None:
    """``ip route get``, OpenELB's method, read by hand as pyroute2 reads it."""
    netlink = Pyroute2Netlink(netns)
    with IPRoute(netns=netns) as ipr:
        for text in ("10.96.0.1", "192.0.2.10", "192.0.2.99", "8.8.8.8", "2001:db8:9::1"):
            flags = RTM_F_LOOKUP_TABLE if "." in text else 0  # the real table (IPv4)
            msg = ipr.route("get", dst=text, flags=flags)[0]
            expected = (msg.get("RTA_OIF"), int(msg["type"]), msg.get("RTA_TABLE"))
            answer = netlink.route_get(ipaddress.ip_address(text))
            assert (answer.oif, RTN_NUMBERS[answer.type], answer.table) == expected, text
    assert netlink.route_get(ipaddress.ip_address("10.96.0.1")).type == "local"
    missing = netlink.route_get(ipaddress.ip_address("2001:db8:ffff::1"))  # no route at all
    assert missing.oif is None and missing.type.startswith("error: ")
    assert missing.error == errno.ENETUNREACH
    # The kernel refuses what a null route holds: its errno says which (see resolve).
    for text, code in (("192.0.2.130", errno.EINVAL), ("198.18.0.1", errno.EACCES),
                       ("198.18.1.1", errno.EHOSTUNREACH), ("198.18.2.1", errno.ENETUNREACH),
                       ("2001:db8:dead:1::1", errno.EINVAL)):  # fmt: skip
        refused = netlink.route_get(ipaddress.ip_address(text))
        assert (refused.oif, refused.error) == (None, code), text


def test_route_get_names_the_table_policy_routing_chose(netns: str) -> None:
    """An IPv4 route get says table main whatever table the rules chose, unless asked for the
    real one; IPv6 always says it and refuses the flag."""
    netlink = Pyroute2Netlink(netns)
    with IPRoute(netns=netns) as ipr:
        oif = ipr.route("get", dst="203.0.114.9")[0].get("RTA_OIF")
    answer = netlink.route_get(ipaddress.ip_address("203.0.114.9"))
    assert (answer.oif, answer.type, answer.table) == (oif, "unicast", 100)
    assert netlink.route_get(ipaddress.ip_address("8.8.8.8")).table == MAIN_TABLE
    assert netlink.route_get(ipaddress.ip_address("2001:db8:9::1")).table == MAIN_TABLE


RTN_NUMBERS = {name: number for number, name in RTN_TYPES.items()}


def test_gateways_of_the_other_family_and_nexthop_objects_are_read() -> None:
    # An IPv4 route through an IPv6 gateway (RTA_VIA) read as a connected subnet and won;
    # a route through a nexthop object (nhid, compat mode off) carries no device and was
    # dropped: both picked another NIC than the kernel's.
    lines = [
        "link add nic-a type veth peer name nic-b",
        "link set lo up", "link set nic-a up", "link set nic-b up",
        "address add 192.0.2.10/24 dev nic-a",
        "address add 198.51.100.5/24 dev nic-b",
        "address add 2001:db8:1::10/64 dev nic-b nodad",
        "route add 10.0.0.0/8 via inet6 2001:db8:1::1 dev nic-b",
        "nexthop add id 8 via 192.0.2.1 dev nic-a",
        "nexthop add id 9 via 198.51.100.1 dev nic-b",
        "nexthop add id 10 group 8/9",
        "nexthop add id 12 blackhole",
        "nexthop add id 13 group 12",
        "route add 10.66.0.0/16 nhid 8",
        "route add 10.67.0.0/16 nhid 10",
        "route add 10.68.0.0/16 nhid 12",
        "route add 10.69.0.0/16 nhid 13",
    ]  # fmt: skip
    with batch_netns("eg-nh", lines, "net.ipv4.nexthop_compat_mode=0") as name:
        netlink = Pyroute2Netlink(name)
        host = netlink.host()
        index = {lk.name: lk.index for lk in host.links}
        routes = set(dump_routes(name))
        assert Route(ipaddress.ip_network("10.0.0.0/8"), index["nic-b"],
                     ipaddress.ip_address("2001:db8:1::1"), 0) in routes  # fmt: skip
        assert Route(ipaddress.ip_network("10.66.0.0/16"), index["nic-a"],
                     ipaddress.ip_address("192.0.2.1"), 0) in routes  # fmt: skip
        assert {(r.oif, r.multipath) for r in routes if str(r.dst) == "10.67.0.0/16"} == {
            (index["nic-a"], (index["nic-a"], index["nic-b"])),
            (index["nic-b"], (index["nic-a"], index["nic-b"])),
        }
        # Through a blackhole nexthop object, alone or in a group: the kernel refuses them.
        for dst in ("10.68.0.0/16", "10.69.0.0/16"):
            assert Route(ipaddress.ip_network(dst), 0, None, 0, "blackhole") in routes
            blackholed = ipaddress.ip_address(dst.replace(".0/16", ".1"))
            assert netlink.route_get(blackholed).error == errno.EINVAL
            refused = resolve(parse_interface(f"can_reach:{blackholed}"), host)
            assert isinstance(refused, Unresolved) and "blackhole " + dst in refused.reason
        for ip, nic in (("10.0.0.9", "nic-b"), ("10.66.0.1", "nic-a")):
            picked = resolve(parse_interface(f"can_reach:{ip}"), host)
            assert isinstance(picked, Resolved) and picked.link.name == nic, picked
            kernel = netlink.route_get(ipaddress.ip_address(ip))
            assert kernel.oif == index[nic]  # as `ip route get` says


class _Refusing:
    """A netlink socket stand-in whose kernel answers every request with one error."""

    def __init__(self, code: int) -> None:
        self.code, self.seq = code, 0

    def send(self, data: bytes) -> None:
        self.seq = struct.unpack_from("=IHHII", data)[3]

    def recv(self, _: int) -> bytes:
        body = struct.pack("=i", -self.code) + bytes(16)  # the error and the request's header
        return struct.pack("=IHHII", 16 + len(body), 2, 0, self.seq, 0) + body  # NLMSG_ERROR

    def close(self) -> None:
        pass


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EAFNOSUPPORT])
def test_a_kernel_without_ipv6_binds_no_ipv6_address(code: int) -> None:
    # Booted with ipv6.disable=1, the kernel has no IPv6 route lookup and refuses the
    # question with EOPNOTSUPP: it was an error, raised on every tick, so the agent planned
    # nothing at all, IPv4 Eips included, while any Eip named an IPv6 can_reach IP.
    with Rtnetlink(None) as sock:
        real = sock._sock
        sock._sock = _Refusing(code)
        try:
            assert sock.bound(ipaddress.ip_address("2001:db8::1")) == ()
        finally:
            real.close()
