"""Policy routing against a real kernel: ``can_reach`` follows the kernel's rules (``ip
rule``) to the table the kernel would use, and still never the ``local`` table. eip-guard
read the main table only: under a rule before main it named another NIC than
``ip route get`` (and OpenELB's speaker)."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterator
from dataclasses import replace

import pytest

from app.agent.netlink import DEFAULT_RULES, Address, HostNet, Link, Route, Rule
from app.agent.pyroute2_netlink import Pyroute2Netlink, Rtnetlink, looked_up
from app.agent.resolve import Resolved, Unresolved, resolve
from app.core.interfaces import parse_interface

from .lab import batch_netns, sh


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    lines = [
        "link set lo up",
        "link add eth1 type veth peer name eth1p", "link add eth2 type veth peer name eth2p",
        "link add eth3 type veth peer name eth3p", "link add br0 type bridge",
        "link add kube-ipvs0 type veth peer name ipvsp",  # the dummy the kernel may lack
        "link set eth3 master br0",
        *(f"link set {n} up" for n in ("eth1p", "eth1", "eth2p", "eth2", "eth3p", "eth3", "br0",
                                        "ipvsp", "kube-ipvs0")),
        "address add 10.1.0.5/24 dev eth1", "address add 10.2.0.5/24 dev eth2",
        "address add 10.3.0.5/24 dev br0",
        "address add 2001:db8:1::5/64 dev eth1 nodad",
        "address add 2001:db8:2::5/64 dev eth2 nodad",
        "route add default via 10.1.0.1 dev eth1",
        "route add default via 2001:db8:1::1 dev eth1",
        # A table for some destinations, with a throw route inside.
        "route add 100.64.0.0/10 via 10.2.0.1 table 100",
        "route add throw 100.64.99.0/24 table 100",
        "route add 2001:db8:64::/48 via 2001:db8:2::1 table 100",
        "rule add pref 100 to 100.64.0.0/16 lookup 100",
        "rule add pref 101 to 100.64.99.0/24 lookup 100",
        # Rules a lookup of a destination alone never meets (no source, mark 0, from lo).
        "route add default via 10.2.0.1 table 110",
        "rule add pref 110 from 10.2.0.5 lookup 110",
        "rule add pref 120 fwmark 0x1 lookup 110",
        "rule add pref 140 iif eth1 lookup 110",
        # `iif lo` is where a local lookup comes from; the bridge, not its port.
        "route add default via 10.3.0.1 dev br0 table 130",
        "rule add pref 130 iif lo to 100.65.0.0/16 lookup 130",
        # wg-quick's pattern: main without its default route, then a table past 255.
        "route add default via 10.2.0.1 table 100000",
        "rule add pref 150 to 100.66.0.0/16 lookup main suppress_prefixlength 0",
        "rule add pref 151 to 100.66.0.0/16 lookup 100000",
        "rule add pref 160 to 100.67.0.0/16 unreachable",
        "rule add pref 170 to 100.68.0.0/16 goto 190",
        "rule add pref 180 to 100.68.0.0/16 lookup 100",
        "rule add pref 190 to 100.68.0.0/16 nop",
        "route add 8.8.0.0/16 via 10.3.0.1 table 200",
        "rule add pref 200 not to 10.0.0.0/8 lookup 200",
        # A VRF's rule (no table: a dump of table 0 is every table), a tunnel id's, and a
        # source prefix that holds 0.0.0.0 (the lookup's source).
        "rule add pref 1000 l3mdev", "rule add pref 1010 tun_id 7 lookup 110",
        "route add 100.69.0.0/16 via 10.3.0.1 table 1020",
        "rule add pref 1020 from 0.0.0.0/1 lookup 1020",
        # A goto to no rule ("unresolved"): the kernel goes on to the next rule.
        "route add 100.70.0.0/16 via 10.2.0.1 table 1030",
        "rule add pref 1030 to 100.70.0.0/16 goto 1035",
        "rule add pref 1040 to 100.70.0.0/16 lookup 1030",
        # IPv6 matches a source prefix, even one holding ::, only when a source is given.
        "route add 2001:db8:99::/48 via 2001:db8:2::1 table 1050",
    ]  # fmt: skip
    with batch_netns("rsv-rules", lines) as name:
        sh("ip", "-n", name, "-6", "rule", "add", "pref", "100", "to", "2001:db8:64::/48",
           "lookup", "100")  # fmt: skip
        sh("ip", "-n", name, "-6", "rule", "add", "pref", "1050", "from", "::/1", "lookup",
           "1050")  # fmt: skip
        yield name


ROUTED = {  # IP -> the NIC the kernel and eip-guard pick
    "100.64.1.1": "eth2",  # rule 100, table 100
    "100.64.99.9": "eth1",  # table 100 throws it: on to main
    "2001:db8:64::9": "eth2",
    "9.9.9.9": "eth1",  # source, fwmark and iif eth1 rules never match: main
    "100.65.1.1": "br0",  # iif lo matches
    "100.66.1.1": "eth2",  # main's default route suppressed: table 100000
    "100.68.1.1": "eth1",  # goto jumps over rule 180
    "8.8.8.8": "br0",  # not to 10.0.0.0/8
    "100.69.1.1": "br0",  # from 0.0.0.0/1 holds the lookup's source
    "100.70.1.1": "eth2",  # the goto to no rule is passed over, rule 1040 looks it up
    "2001:db8:99::1": "eth1",  # IPv6's from ::/1 never matches a lookup without a source
    "10.1.0.9": "eth1",
    "2001:db8:77::1": "eth1",
}


def test_the_rules_are_read_as_a_destination_lookup_meets_them(netns: str) -> None:
    with Rtnetlink(netns) as sock:
        rules = {(r.priority, r.version): r for r in sock.rules()}
    assert [r.plain for p, r in sorted(rules.items()) if p[0] in (110, 120, 130, 140)] == [
        False, False, True, False,
    ]  # fmt: skip
    assert rules[150, 4].suppress_prefixlen == 0 and rules[150, 4].table == 254
    assert rules[151, 4].table == 100000
    assert rules[170, 4].goto == 190 and rules[170, 4].action == "goto"
    assert rules[160, 4].action == "unreachable"
    assert rules[200, 4] == Rule(200, 4, "lookup", 200, ipaddress.ip_network("10.0.0.0/8"),
                                 invert=True)  # fmt: skip
    assert rules[0, 4].table == 255 and rules[32766, 6].table == 254
    assert [rules[p, 4].plain for p in (1000, 1010, 1020)] == [False, False, True]
    assert looked_up(rules.values()) == {100, 130, 254, 100000, 200, 253, 1020, 1030}
    assert not rules[1050, 6].plain


@pytest.mark.parametrize("strict", [True, False], ids=["kernel-filtered", "as-before-4.20"])
def test_the_rules_tables_are_read_whatever_the_kernel_filters(netns: str, strict: bool) -> None:
    with Rtnetlink(netns, strict=strict) as sock:
        routes = sock.routes(looked_up(sock.rules()))
    tables = {(str(r.dst), r.table) for r in routes}
    assert {("0.0.0.0/0", 100000), ("100.64.0.0/10", 100), ("8.8.0.0/16", 200)} <= tables
    assert ("0.0.0.0/0", 110) not in tables  # only source and mark rules look it up
    assert not any(r.table == 255 for r in routes)
    assert len(routes) == len(set(routes))  # each table read once


@pytest.mark.parametrize("text", list(ROUTED))
def test_eip_guard_follows_the_rules_as_the_kernel_does(netns: str, text: str) -> None:
    netlink = Pyroute2Netlink(netns)
    ip = ipaddress.ip_address(text)
    kernel = netlink.route_get(ip)
    result = resolve(parse_interface(f"can_reach:{text}"), netlink.host([ip]))
    assert isinstance(result, Resolved), result
    assert (result.link.name, result.link.index) == (ROUTED[text], kernel.oif)


def test_a_rule_that_refuses_the_ip_leaves_no_nic(netns: str) -> None:
    netlink = Pyroute2Netlink(netns)
    ip = ipaddress.ip_address("100.67.1.1")
    assert netlink.route_get(ip).error == errno.ENETUNREACH
    result = resolve(parse_interface("can_reach:100.67.1.1"), netlink.host([ip]))
    assert isinstance(result, Unresolved) and not result.bad_spec
    assert result.reason.startswith(
        "the kernel drops traffic to 100.67.1.1: its routing rule 160 is unreachable (it "
        "answers 'Network is unreachable')"
    )


DEVICE = {4: "kube-ipvs0", 6: "lo"}


def test_bound_here_the_rules_still_choose_the_nic(netns: str) -> None:
    """The #331 trap under policy routing: with each IP bound here (IPv4 on kube-ipvs0, IPv6
    on lo as kube-vip binds VIPs in BGP mode) the kernel says lo, and eip-guard still names
    the NIC the rules lead to. (An IPv6 address adds a route to itself in the main table:
    eip-guard took it for the kernel's way to the IP, through lo, and named no NIC.)"""
    netlink = Pyroute2Netlink(netns)
    ips = [ipaddress.ip_address(text) for text in ROUTED if text != "10.1.0.9"]
    for ip in ips:
        sh(
            "ip",
            "-n",
            netns,
            "address",
            "add",
            f"{ip}/{ip.max_prefixlen}",
            "dev",
            DEVICE[ip.version],
        )
    try:
        host = netlink.host(ips)
        for ip in ips:
            assert netlink.route_get(ip).type == "local", ip
            assert [lk.name for lk in host.bound_on(ip)] == [DEVICE[ip.version]]
            result = resolve(parse_interface(f"can_reach:{ip}"), host)
            assert isinstance(result, Resolved) and result.link.name == ROUTED[str(ip)], ip
    finally:
        for ip in ips:
            sh("ip", "-n", netns, "address", "del", f"{ip}/{ip.max_prefixlen}", "dev",
               DEVICE[ip.version], check=False)  # fmt: skip


def test_a_family_without_rules_is_looked_up_in_the_main_table() -> None:
    """A kernel without policy routing for a family (CONFIG_IPV6_MULTIPLE_TABLES off, or no
    fib rules at all: the rule dump is refused) dumps no rule of it, and looks its IPs up in
    the main table; eip-guard read no rule as no table, and named no NIC."""
    eth1 = Link(2, "eth1", "veth", "02:00:00:00:00:01", True, None, False, False)
    host = HostNet(
        (eth1,),
        (Address(2, ipaddress.ip_address("2001:db8:1::5"), 64),),
        (Route(ipaddress.ip_network("::/0"), 2, ipaddress.ip_address("2001:db8:1::1")),),
        rules=tuple(r for r in DEFAULT_RULES if r.version == 4),
    )
    result = resolve(parse_interface("can_reach:2001:db8:77::1"), host)
    assert isinstance(result, Resolved) and result.link.name == "eth1", result
    result = resolve(parse_interface("can_reach:2001:db8:77::1"), replace(host, rules=()))
    assert isinstance(result, Resolved) and result.link.name == "eth1", result
