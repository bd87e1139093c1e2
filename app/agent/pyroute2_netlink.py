"""The one place that talks netlink, through pyroute2 (never by parsing ``ip`` output)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

from app.agent.netlink import MAIN_TABLE, Address, HostNet, Link, NetlinkError, Route, RouteAnswer
from app.core.addresses import IP, Network

IFF_UP, IFF_LOOPBACK, IFF_NOARP, IFF_LOWER_UP = 0x1, 0x8, 0x80, 0x10000
RTN_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 5: "multicast", 6: "blackhole",
             7: "unreachable", 8: "prohibit", 9: "throw"}  # fmt: skip
RTN_UNICAST = 1


def _link(msg: Any) -> Link:
    flags = int(msg["flags"])
    info = msg.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info is not None else None
    return Link(
        index=int(msg["index"]),
        name=str(msg.get("IFLA_IFNAME")),
        kind=str(kind or ""),
        mac=str(msg.get("IFLA_ADDRESS") or ""),
        up=bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP),
        master=msg.get("IFLA_MASTER"),
        noarp=bool(flags & IFF_NOARP),
        loopback=bool(flags & IFF_LOOPBACK),
    )


def _address(msg: Any) -> Address | None:
    # IFA_LOCAL is the address of this host on point-to-point links; IFA_ADDRESS elsewhere.
    text = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
    if not text:
        return None
    return Address(int(msg["index"]), ipaddress.ip_address(text), int(msg["prefixlen"]))


def _routes(msg: Any) -> list[Route]:
    if msg.get("RTA_TABLE", msg["table"]) != MAIN_TABLE or msg["type"] != RTN_UNICAST:
        return []
    family = socket.AF_INET if msg["family"] == socket.AF_INET else socket.AF_INET6
    zero = "0.0.0.0" if family == socket.AF_INET else "::"
    dst: Network = ipaddress.ip_network(f"{msg.get('RTA_DST') or zero}/{msg['dst_len']}")
    metric = int(msg.get("RTA_PRIORITY") or 0)
    hops = msg.get("RTA_MULTIPATH")
    if hops:  # one route per next hop of a multipath route
        pairs = [(hop["oif"], hop.get("RTA_GATEWAY")) for hop in hops]
    else:
        pairs = [(msg.get("RTA_OIF"), msg.get("RTA_GATEWAY"))]
    found = []
    for oif, gateway in pairs:
        if oif is None:
            continue
        gw: IP | None = ipaddress.ip_address(gateway) if gateway else None
        found.append(Route(dst, int(oif), gw, metric))
    return found


class Pyroute2Netlink:
    """:class:`app.agent.netlink.Netlink` over pyroute2: this network namespace, or a named
    one (``ip netns`` name) for tools and tests."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self._netns) if self._netns else IPRoute()

    def host(self) -> HostNet:
        try:
            with self._ipr() as ipr:
                links = tuple(_link(m) for m in ipr.get_links())
                addresses = tuple(a for a in map(_address, ipr.get_addr()) if a is not None)
                routes = tuple(
                    r
                    for family in (socket.AF_INET, socket.AF_INET6)
                    for m in ipr.get_routes(family=family, table=MAIN_TABLE)
                    for r in _routes(m)
                )
        except (Pyroute2Error, OSError) as exc:
            raise NetlinkError(f"cannot read links, addresses and routes: {exc}") from exc
        return HostNet(links, addresses, routes)

    def route_get(self, ip: IP) -> RouteAnswer:
        try:
            with self._ipr() as ipr:
                answers = ipr.route("get", dst=str(ip))
        except (Pyroute2Error, OSError) as exc:
            return RouteAnswer(None, f"error: {exc}", 0)
        if not answers:
            return RouteAnswer(None, "none", 0)
        msg = answers[0]
        return RouteAnswer(
            msg.get("RTA_OIF"),
            RTN_TYPES.get(int(msg["type"]), str(msg["type"])),
            int(msg.get("RTA_TABLE") or msg["table"]),
        )
