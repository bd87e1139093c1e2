"""Pure NIC resolution in the kernel's order: null routes, device routes ranked with gateway
routes, multipath routes, and what ``ip route get`` says when the kernel refuses an IP or
policy routing chose another table."""

from __future__ import annotations

import errno

import pytest

from app.agent.netlink import Address, HostNet, Route, RouteAnswer, Rule
from app.agent.resolve import Resolved, Unresolved, describe_route_get, resolve
from app.core.interfaces import parse_interface

from .test_resolve_plan import ETH, HOST, LO, MGMT, ip, link, net, picked

DEFAULT = Route(net("0.0.0.0/0"), 4, ip("192.168.9.1"), 100)  # via eno1


def unresolved(spec: str, host: HostNet) -> str:
    result = resolve(parse_interface(spec), host)
    assert isinstance(result, Unresolved) and not result.bad_spec, result
    return result.reason


def with_routes(*routes: Route, addresses: tuple[Address, ...] = HOST.addresses) -> HostNet:
    return HostNet(HOST.links, addresses, (*HOST.routes[:2], *routes))


@pytest.mark.parametrize(
    ("kind", "says"),
    [("blackhole", "it discards what is sent there"), ("unreachable", "No route to host"),
     ("prohibit", "Permission denied")],
)  # fmt: skip
def test_a_null_route_the_kernel_takes_leaves_no_nic(kind: str, says: str) -> None:
    """The default route does not serve what a more specific null route holds: the kernel
    refuses the IP, OpenELB's speaker fails there, and so must eip-guard (a probe saw the
    default route's NIC picked)."""
    host = with_routes(DEFAULT, Route(net("198.51.100.0/24"), 0, None, 0, kind))
    reason = unresolved("can_reach:198.51.100.9", host)
    assert reason.startswith(
        f"the kernel drops traffic to 198.51.100.9: the main table's route for it is {kind} "
        "198.51.100.0/24"
    )
    assert says in reason and "OpenELB's speaker fails there too" in reason
    assert "point can_reach at an IP this node routes through the Eip's NIC" in reason
    assert picked("can_reach:198.51.101.9", host) == "eno1"  # beside it, the default route


def test_a_null_route_inside_a_connected_subnet_and_in_ipv6() -> None:
    host = with_routes(Route(net("10.0.0.128/25"), 0, None, 0, "blackhole"))
    assert "blackhole 10.0.0.128/25" in unresolved("can_reach:10.0.0.200", host)
    assert picked("can_reach:10.0.0.9", host) == "eth1"
    six = HostNet(
        HOST.links,
        (Address(2, ip("2001:db8:1::5"), 64),),
        (Route(net("2001:db8:1::/64"), 2, None, 256), Route(net("::/0"), 4, ip("fe80::1"), 1024),
         Route(net("2001:db8:dead::/48"), 0, None, 1024, "prohibit")),
    )  # fmt: skip
    assert "prohibit 2001:db8:dead::/48 metric 1024" in unresolved(
        "can_reach:2001:db8:dead::1", six
    )
    assert picked("can_reach:2001:db8:beef::1", six) == "eno1"


def test_a_more_specific_route_wins_over_a_null_route_and_metrics_rank_defaults() -> None:
    """A distro's ``unreachable default metric 4278198272`` is the last resort: the real
    default route's lower metric wins, as in the kernel."""
    catch_all = Route(net("0.0.0.0/0"), 0, None, 4278198272, "unreachable")
    host = with_routes(Route(net("10.0.0.0/8"), 0, None, 0, "blackhole"), catch_all, DEFAULT)
    assert picked("can_reach:10.0.0.9", host) == "eth1"  # its connected /24 beats the /8
    assert picked("can_reach:8.8.8.8", host) == "eno1"
    alone = with_routes(catch_all)
    assert "unreachable 0.0.0.0/0 metric 4278198272" in unresolved("can_reach:8.8.8.8", alone)


def test_a_throw_route_is_no_route_of_the_main_table() -> None:
    host = with_routes(DEFAULT, Route(net("203.0.113.0/24"), 0, None, 0, "throw"))
    reason = unresolved("can_reach:203.0.113.9", host)
    assert reason.startswith("the main table's route for 203.0.113.9 is throw 203.0.113.0/24:")
    assert "the kernel leaves the main table for the tables of later rules" in reason
    assert "none of them routes it ('Network is unreachable')" in reason


def test_a_null_route_met_past_skipped_routes_ends_the_search() -> None:
    """With the gateway route's NIC down, eip-guard falls back as if that route were gone:
    the kernel would then take the blackhole, not the default route."""
    down = link(2, "eth1", up=False)
    host = HostNet(
        (LO, down, MGMT),
        HOST.addresses,
        (Route(net("172.20.0.0/16"), 2, ip("10.0.0.1")), DEFAULT,
         Route(net("172.16.0.0/12"), 0, None, 0, "blackhole")),
    )  # fmt: skip
    reason = unresolved("can_reach:172.20.0.9", host)
    assert reason.startswith(
        "no route of the main table reaches 172.20.0.9 through a usable NIC (past the routes "
        "skipped, the kernel's next, blackhole 172.16.0.0/12, refuses it); skipped: eth1 "
        "(172.20.0.0/16 via 10.0.0.1) is down"
    )


def test_a_device_route_ranks_with_gateway_routes_by_prefix() -> None:
    """``default dev eth1`` is no subnet of eth1's: the more specific gateway route wins, as
    in the kernel (a probe saw eth1 picked for 203.0.113.9)."""
    eth2 = link(5, "eth2")
    host = HostNet(
        (LO, ETH, eth2),
        (Address(2, ip("10.1.0.5"), 24), Address(5, ip("10.2.0.5"), 24)),
        (Route(net("10.1.0.0/24"), 2, None), Route(net("10.2.0.0/24"), 5, None),
         Route(net("0.0.0.0/0"), 2, None), Route(net("203.0.113.0/24"), 5, ip("10.2.0.1"))),
    )  # fmt: skip
    assert picked("can_reach:203.0.113.9", host) == "eth2"
    result = resolve(parse_interface("can_reach:8.8.8.8"), host)
    assert isinstance(result, Resolved) and result.link.name == "eth1"
    assert result.why == "device route 0.0.0.0/0 (table main)"


def test_a_more_specific_gateway_route_inside_a_connected_subnet_wins() -> None:
    """What the kernel picks when the IP is not bound here: the /25 via eno1, not eth1's /24
    (eip-guard took the connected subnet first)."""
    host = with_routes(Route(net("10.0.0.128/25"), 4, ip("192.168.9.1")))
    result = resolve(parse_interface("can_reach:10.0.0.200"), host)
    assert isinstance(result, Resolved) and result.link.name == "eno1"
    assert result.why == "gateway route 10.0.0.128/25 via 192.168.9.1 (table main)"
    assert picked("can_reach:10.0.0.9", host) == "eth1"


def test_a_device_route_that_cannot_answer_says_route_not_subnet() -> None:
    tun = link(5, "tun0", mac="")
    host = HostNet((LO, ETH, MGMT, tun), HOST.addresses,
                   (*HOST.routes[:2], Route(net("0.0.0.0/0"), 5, None), DEFAULT))  # fmt: skip
    reason = unresolved("can_reach:8.8.8.8", host)
    assert reason.startswith(
        "the kernel routes 8.8.8.8 through a device of this node that cannot answer (tun0 "
        "(0.0.0.0/0)); a gateway route would answer on another segment, so none is used"
    )
    assert "subnet" not in reason


def test_a_device_route_is_held_back_like_a_gateway_route() -> None:
    """The IP is on tun0's subnet; ``default dev eno1`` is another segment (it was taken, as a
    "connected subnet", before the hold was weighed)."""
    tun = link(5, "tun0", mac="")
    host = HostNet(
        (LO, ETH, MGMT, tun),
        (*HOST.addresses, Address(5, ip("10.77.0.1"), 24)),
        (*HOST.routes[:2], Route(net("10.77.0.0/24"), 5, None), Route(net("0.0.0.0/0"), 4, None)),
    )
    reason = unresolved("can_reach:10.77.0.9", host)
    assert reason.startswith(
        "10.77.0.9 is on a subnet of this node whose device cannot answer (tun0 (10.77.0.0/24)); "
        "a device route would answer on another segment"
    )


def test_a_multipath_route_takes_its_first_next_hop_and_says_so() -> None:
    hops = (2, 4)
    host = with_routes(
        Route(net("203.0.113.0/24"), 2, ip("10.0.0.1"), multipath=hops),
        Route(net("203.0.113.0/24"), 4, ip("192.168.9.1"), multipath=hops),
    )
    result = resolve(parse_interface("can_reach:203.0.113.9"), host)
    assert isinstance(result, Resolved) and result.link.name == "eth1"
    assert result.why == (
        "gateway route 203.0.113.0/24 via 10.0.0.1 (table main); a multipath route over "
        "eth1, eno1: eip-guard takes the first next hop it can answer on, while the kernel "
        "hashes each destination to one of them ('ip route get' may name another)"
    )


@pytest.mark.parametrize(
    ("code", "says"),
    [(errno.EINVAL, "blackhole route: the kernel drops traffic to 10.0.0.9 ('Invalid argument')"),
     (errno.EHOSTUNREACH, "unreachable route: the kernel refuses 10.0.0.9 ('No route to host')"),
     (errno.EACCES, "prohibit route: the kernel refuses 10.0.0.9 ('Permission denied')"),
     (errno.ENETUNREACH, "no route: no table the kernel's rules consult routes 10.0.0.9 (a "
                         "throw route may have ended a table's lookup), or an unreachable rule "
                         "refuses it ('Network is unreachable')")],
)  # fmt: skip
def test_route_get_errors_name_the_route_type(code: int, says: str) -> None:
    answer = RouteAnswer(None, "error: whatever the kernel said", 0, code)
    nic, why = describe_route_get(ip("10.0.0.9"), answer, HOST)
    assert nic is None
    assert why == f"{says}; OpenELB's speaker fails too (its RouteGet returns this error)"
    other = RouteAnswer(None, "error: Bad address", 0, errno.EFAULT)
    assert describe_route_get(ip("10.0.0.9"), other, HOST) == (None, "no NIC (error: Bad address)")


def test_route_get_says_when_policy_routing_chose_another_table() -> None:
    nic, why = describe_route_get(ip("10.0.0.9"), RouteAnswer(2, "unicast", 51820), HOST)
    assert nic == "eth1"
    assert (
        why == "unicast route in table 51820; policy routing: the kernel's rules chose table 51820"
    )
    assert describe_route_get(ip("10.0.0.9"), RouteAnswer(2, "unicast", 254), HOST) == (
        "eth1",
        "unicast route in table main",
    )


def test_no_carrier_is_not_down_and_ports_name_their_master() -> None:
    lost = link(2, "eth1", up=False, no_carrier=True)
    blue = link(7, "blue", kind="vrf")
    port = link(8, "eth8", master=7)
    stray = link(9, "eth9", master=99)
    host = HostNet((LO, lost, link(5, "eth5", up=False), blue, port, stray), (), ())
    assert unresolved("eth1", host) == (
        "NIC eth1 has no carrier (set up, but no cable or peer); the speaker cannot answer on it"
    )
    assert unresolved("eth5", host).startswith("NIC eth5 is down;")
    assert unresolved("eth8", host).startswith("NIC eth8 is a port of blue (a VRF);")
    assert unresolved("eth9", host).startswith(
        "NIC eth9 is a port of another device (bond, bridge or VRF);"
    )


# Policy routing: the kernel's rules choose the table (a probe saw eip-guard read main only).

MAIN, DEFAULT_TABLE = 254, 253


def rules(*extra: Rule) -> tuple[Rule, ...]:
    """``extra`` before the main and default tables' rules, as ``ip rule add`` puts them."""
    return (*extra, Rule(32766, 4, "lookup", MAIN), Rule(32767, 4, "lookup", DEFAULT_TABLE))


def with_rules(*extra: Rule, routes: tuple[Route, ...] = ()) -> HostNet:
    return HostNet(HOST.links, HOST.addresses, (*HOST.routes, *routes), rules=rules(*extra))


VIA_ETH1_IN_100 = Route(net("0.0.0.0/0"), 2, ip("10.0.0.1"), table=100)


def test_a_rule_before_main_chooses_its_table() -> None:
    host = with_rules(Rule(100, 4, "lookup", 100), routes=(VIA_ETH1_IN_100,))
    result = resolve(parse_interface("can_reach:8.8.8.8"), host)
    assert isinstance(result, Resolved) and result.link.name == "eth1", result
    assert result.why == "gateway route 0.0.0.0/0 via 10.0.0.1 (table 100, chosen by rule 100)"
    # A table with no route for the IP: the kernel goes on to the next rule (main).
    assert picked("can_reach:192.168.9.7", with_rules(Rule(100, 4, "lookup", 101))) == "eno1"


def test_a_to_rule_and_an_inverted_one() -> None:
    to = Rule(100, 4, "lookup", 100, dst=net("198.18.0.0/15"))
    host = with_rules(to, routes=(VIA_ETH1_IN_100,))
    assert picked("can_reach:198.18.3.4", host) == "eth1"
    assert picked("can_reach:8.8.8.8", host) == "eno1"  # not to 198.18.0.0/15: main
    inverted = with_rules(Rule(100, 4, "lookup", 100, dst=to.dst, invert=True),
                          routes=(VIA_ETH1_IN_100,))  # fmt: skip
    assert picked("can_reach:198.18.3.4", inverted) == "eno1"
    assert picked("can_reach:8.8.8.8", inverted) == "eth1"


def test_rules_a_plain_lookup_never_meets_are_passed_over() -> None:
    """A source rule, a fwmark rule, ... (``plain`` False): RouteGet has no source or mark;
    with ``not``, the rule matches it."""
    host = with_rules(Rule(100, 4, "lookup", 100, plain=False), routes=(VIA_ETH1_IN_100,))
    assert picked("can_reach:8.8.8.8", host) == "eno1"
    inverted = with_rules(Rule(100, 4, "lookup", 100, plain=False, invert=True),
                          routes=(VIA_ETH1_IN_100,))  # fmt: skip
    assert picked("can_reach:8.8.8.8", inverted) == "eth1"


def test_the_local_table_is_never_looked_up_whatever_its_rule() -> None:
    """The #331 trap under policy routing: an IP bound here, with a VRF-style rule order
    (local moved to 1000): the table of the rule before it still decides."""
    host = with_rules(
        Rule(500, 4, "lookup", 100), Rule(1000, 4, "lookup", 255), routes=(VIA_ETH1_IN_100,)
    )
    assert picked("can_reach:10.0.0.50", host) == "eth1"
    assert picked("can_reach:192.168.9.7", host) == "eth1"  # table 100 comes before main


def test_suppress_prefixlength_and_throw_go_on_to_later_rules() -> None:
    """``lookup main suppress_prefixlength 0`` (WireGuard's wg-quick) ignores main's default
    route: the next rule's table decides; a throw route leaves its table the same way."""
    wg = (Rule(100, 4, "lookup", MAIN, suppress_prefixlen=0), Rule(200, 4, "lookup", 100))
    host = with_rules(*wg, routes=(VIA_ETH1_IN_100,))
    assert picked("can_reach:8.8.8.8", host) == "eth1"
    assert picked("can_reach:192.168.9.7", host) == "eno1"  # a /24 is not suppressed
    thrown = with_rules(
        Rule(100, 4, "lookup", 100),
        routes=(Route(net("8.0.0.0/8"), 0, None, 0, "throw", table=100), VIA_ETH1_IN_100),
    )
    assert picked("can_reach:8.8.8.8", thrown) == "eno1"  # main's default route
    assert picked("can_reach:9.9.9.9", thrown) == "eth1"


def test_a_null_rule_refuses_the_ip_and_goto_skips_rules() -> None:
    host = with_rules(Rule(100, 4, "unreachable", dst=net("198.18.0.0/15")))
    reason = unresolved("can_reach:198.18.3.4", host)
    assert reason.startswith(
        "the kernel drops traffic to 198.18.3.4: its routing rule 100 is unreachable (it "
        "answers 'Network is unreachable'), so OpenELB's speaker fails there too"
    )
    jump = with_rules(
        Rule(100, 4, "goto", goto=300), Rule(200, 4, "lookup", 100), Rule(300, 4, "nop"),
        routes=(VIA_ETH1_IN_100,),
    )  # fmt: skip
    assert picked("can_reach:8.8.8.8", jump) == "eno1"  # rule 200 jumped over


def test_a_table_whose_routes_cannot_answer_is_not_left_for_main() -> None:
    """The kernel stops at the first table that routes the IP: when its NIC cannot answer,
    main's routes (another segment) are not used instead."""
    tun = link(9, "wg0", mac="", noarp=True)
    host = HostNet(
        (*HOST.links, tun), HOST.addresses,
        (*HOST.routes, Route(net("0.0.0.0/0"), 9, None, table=100)),
        rules=rules(Rule(100, 4, "lookup", 100)),
    )  # fmt: skip
    reason = unresolved("can_reach:8.8.8.8", host)
    assert reason.startswith(
        "the kernel routes 8.8.8.8 through a device of this node that cannot answer (wg0 "
        "(0.0.0.0/0))"
    ), reason
    none = with_rules(Rule(100, 4, "lookup", 100), routes=(VIA_ETH1_IN_100,))
    gone = HostNet(none.links, none.addresses, (VIA_ETH1_IN_100,), rules=none.rules)
    assert picked("can_reach:8.8.8.8", gone) == "eth1"
    nothing = HostNet(none.links, none.addresses, (), rules=none.rules)
    assert unresolved("can_reach:8.8.8.8", nothing).startswith(
        "no route of the main table reaches 8.8.8.8"
    )


def test_the_route_an_ipv6_binding_adds_is_not_the_way_to_the_ip() -> None:
    """``ip -6 address add X/128 dev lo`` (kube-vip in BGP mode) puts ``X dev lo`` in the main
    table: eip-guard took it for the kernel's way to X and refused the gateway route."""
    vip = ip("2001:db8:9::7")
    host = HostNet(
        HOST.links,
        (Address(2, ip("2001:db8:1::5"), 64),),
        (Route(net("2001:db8:1::/64"), 2, None, 256), Route(net("::/0"), 2, ip("fe80::1"), 1024),
         Route(net("2001:db8:9::7/128"), 1, None, 256)),
        bound={vip: (1,)},
    )  # fmt: skip
    assert picked("can_reach:2001:db8:9::7", host) == "eth1"
    unbound = HostNet(host.links, host.addresses, host.routes)  # a route someone added
    assert "lo (2001:db8:9::7/128) is the loopback device" in unresolved(
        "can_reach:2001:db8:9::7", unbound
    )


def test_a_multipath_route_over_one_device_is_no_choice_of_nic() -> None:
    """Two gateways behind eth1: the message said "a multipath route over eth1, eth1 ...
    ('ip route get' may name another)", while every next hop is eth1."""
    hops = (2, 2)
    host = with_routes(
        Route(net("203.0.113.0/24"), 2, ip("10.0.0.1"), multipath=hops),
        Route(net("203.0.113.0/24"), 2, ip("10.0.0.2"), multipath=hops),
    )
    result = resolve(parse_interface("can_reach:203.0.113.9"), host)
    assert isinstance(result, Resolved) and result.link.name == "eth1"
    assert result.why == "gateway route 203.0.113.0/24 via 10.0.0.1 (table main)"


def test_ipv6_router_preference_ranks_routes_of_one_metric() -> None:
    """Two routers advertise on two NICs: two RA-learned default routes, one metric. The
    kernel takes the higher preference (``pref high``), whatever the dump's order; a lower
    metric still wins first (tests/agent/test_ipv6_netns.py checks it against the kernel)."""
    six = (Address(2, ip("2001:db8:1::5"), 64), Address(4, ip("2001:db8:2::5"), 64))
    medium = Route(net("::/0"), 2, ip("fe80::1"), 1024)
    high = Route(net("::/0"), 4, ip("fe80::2"), 1024, pref="high")
    for routes in ((medium, high), (high, medium)):
        host = HostNet(HOST.links, six, routes)
        found = resolve(parse_interface("can_reach:2001:db8:ffff::1"), host)
        assert isinstance(found, Resolved) and found.link.name == "eno1", found
        assert found.why == "gateway route ::/0 via fe80::2 pref high (table main)"
    low_metric = Route(net("::/0"), 2, ip("fe80::1"), 100, pref="low")
    assert picked("can_reach:2001:db8:ffff::1", HostNet(HOST.links, six, (high, low_metric))) == (
        "eth1"
    )
