"""The one place that talks netlink (never by parsing ``ip`` output): links and ``route get``
through pyroute2, the address and route dumps read here by hand.

pyroute2 parses each message in Python at about 0.27 ms and filters a dump only after
reading it whole, and under kube-proxy's IPVS mode ``kube-ipvs0`` holds every Service IP
(the local table a route for each): 2,000 addresses took 0.43 s and 20,000 took 5.5 s of
CPU on every tick. Read by hand, an address takes about 5 µs and a local route is skipped
after its header.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error
from pyroute2.netns import create_socket

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


NETLINK_ROUTE = 0
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 22, 24, 26
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
RT_TABLE_COMPAT = 252  # rtm_table of a route whose table id needs RTA_TABLE
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol,
# scope, type, flags
_NEXTHOP = struct.Struct("=HBBi")  # rtnexthop: length, flags, hops, ifindex
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_U32 = struct.Struct("=I")


def _aligned(n: int) -> int:
    return (n + 3) & ~3


def _attrs(data: bytes, pos: int, end: int) -> dict[int, bytes]:
    """The attributes (rtattr) between ``pos`` and ``end``, by type (inlined: this runs for
    every address of the node, tens of thousands under IPVS)."""
    found = {}
    unpack = _ATTR.unpack_from
    while pos + 4 <= end:
        size, attr = unpack(data, pos)
        if size < 4:
            break
        found[attr] = data[pos + 4 : pos + size]
        pos += (size + 3) & ~3
    return found


def _ip(raw: bytes) -> IP | None:
    return ipaddress.ip_address(raw) if len(raw) in (4, 16) else None


def _address(data: bytes, start: int, end: int) -> list[Address]:
    # IFA_LOCAL is this host's address on point-to-point links (IFA_ADDRESS the peer there).
    _family, prefixlen, _, _, index = _IFADDR.unpack_from(data, start)
    attrs = _attrs(data, start + _IFADDR.size, end)
    ip = _ip(attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS, b""))
    return [] if ip is None else [Address(index, ip, prefixlen)]


def _route(data: bytes, start: int, end: int) -> list[Route]:
    """The main table's unicast routes; one per next hop of a multipath route."""
    family, dst_len, _, _, table, _, _, kind, _ = _RTMSG.unpack_from(data, start)
    if kind != RTN_UNICAST or table not in (MAIN_TABLE, RT_TABLE_COMPAT):
        return []  # the local table (every Service IP under IPVS) is skipped here, unread
    if family not in (socket.AF_INET, socket.AF_INET6):
        return []
    attrs = _attrs(data, start + _RTMSG.size, end)
    if RTA_TABLE in attrs and _U32.unpack(attrs[RTA_TABLE][:4])[0] != MAIN_TABLE:
        return []
    zero = "0.0.0.0" if family == socket.AF_INET else "::"
    dst = _ip(attrs.get(RTA_DST, b""))
    network: Network = ipaddress.ip_network(f"{dst or zero}/{dst_len}")
    metric = _U32.unpack(attrs[RTA_PRIORITY][:4])[0] if RTA_PRIORITY in attrs else 0
    pairs: list[tuple[int, IP | None]] = []
    hops = attrs.get(RTA_MULTIPATH)
    if hops:
        pos = 0
        while pos + _NEXTHOP.size <= len(hops):
            size, _, _, oif = _NEXTHOP.unpack_from(hops, pos)
            if size < _NEXTHOP.size:
                break
            inner = _attrs(hops, pos + _NEXTHOP.size, pos + size)
            pairs.append((oif, _ip(inner.get(RTA_GATEWAY, b""))))
            pos += _aligned(size)
    elif RTA_OIF in attrs:
        pairs.append((_U32.unpack(attrs[RTA_OIF][:4])[0], _ip(attrs.get(RTA_GATEWAY, b""))))
    return [Route(network, oif, gw, metric) for oif, gw in pairs]


T = TypeVar("T")


def _dump(
    netns: str | None,
    request: int,
    body: bytes,
    reply: int,
    read: Callable[[bytes, int, int], list[T]],
) -> tuple[T, ...]:
    """One netlink dump (``request`` with ``body``), each ``reply`` message read by ``read``."""
    found: list[T] = []
    with create_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        header = _HEADER.pack(_HEADER.size + len(body), request, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
        sock.send(header + body)
        while True:
            data, offset = sock.recv(1 << 20), 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, _seq, _port = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size or offset + length > len(data):
                    raise NetlinkError(f"a truncated netlink message ({length} bytes)")
                if kind == NLMSG_DONE:
                    return tuple(found)
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                    raise NetlinkError(os.strerror(code or errno.EIO))
                if kind == reply:
                    found += read(data, offset + _HEADER.size, offset + length)
                offset += _aligned(length)


def dump_addresses(netns: str | None = None) -> tuple[Address, ...]:
    """Every address of every link, both families, in this network namespace or a named one."""
    return _dump(netns, RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0), RTM_NEWADDR, _address)


def dump_routes(netns: str | None = None) -> tuple[Route, ...]:
    """The main table's unicast routes, both families."""
    body = _RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0)
    return _dump(netns, RTM_GETROUTE, body, RTM_NEWROUTE, _route)


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
            addresses = dump_addresses(self._netns)
            routes = dump_routes(self._netns)
        except (Pyroute2Error, OSError, NetlinkError) as exc:
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
