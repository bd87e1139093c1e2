"""The one place that talks netlink (never by parsing ``ip`` output): links, addresses,
routing rules, routes, ``route get`` and the local binding of an IP, read here by hand
(pyroute2 only opens the socket in a named network namespace).

Under kube-proxy's IPVS mode ``kube-ipvs0`` holds every Service IP, and the local table a
route for each. pyroute2 parses each message in Python at about 0.27 ms and filters a dump
only after reading it whole: 20,000 Service IPs took 5.5 s of CPU on every tick. Read by
hand, and with the kernel sending only the node's own NICs' addresses and the routes of the
main table and of the tables the rules look up (never the local table), a tick reads a few
messages per NIC and one per link, whatever the Service count; whether a ``can_reach`` IP
is bound here is one ``route get fibmatch`` each.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

from pyroute2.netns import create_socket

from app.agent.netlink import (
    MAIN_TABLE,
    NULL_ROUTES,
    Address,
    HostNet,
    Link,
    NetlinkError,
    Route,
    RouteAnswer,
    Rule,
    own_nic,
)
from app.core.addresses import IP, Network

IFF_UP, IFF_LOOPBACK, IFF_NOARP, IFF_LOWER_UP = 0x1, 0x8, 0x80, 0x10000
RTN_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 5: "multicast", 6: "blackhole",
             7: "unreachable", 8: "prohibit", 9: "throw"}  # fmt: skip
RTN_UNICAST = 1
# What the agent reads of a table: unicast routes, and the null routes that make the
# kernel refuse an IP (blackhole, unreachable, prohibit, throw).
_READ_TYPES = {RTN_UNICAST, *(n for n, name in RTN_TYPES.items() if name in NULL_ROUTES)}


NETLINK_ROUTE, SOL_NETLINK, NETLINK_GET_STRICT_CHK = 0, 270, 12
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE, RTM_GETROUTE = 20, 22, 24, 26
RTM_NEWRULE, RTM_GETRULE = 32, 34
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_INFO_KIND = 1, 3, 10, 18, 1
IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS = 29, 1 << 3
IFLA_AF_SPEC, IFLA_INET6_CONF = 26, 2  # a link's per-family data; IPv6's devconf (s32 each)
DEVCONF_DISABLE_IPV6 = 26  # net.ipv6.conf.<nic>.disable_ipv6, in IFLA_INET6_CONF
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_DADFAILED = 0x08  # another host on the link holds the address: the kernel never binds it
RTA_PREF = 20  # an IPv6 route's router preference (RFC 4191), RA-learned routes' above all
ROUTER_PREFERENCES = {0: "medium", 1: "high", 3: "low"}  # its two bits
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
RTA_VIA, RTA_NH_ID = 18, 30  # a gateway of the other family; a nexthop object's id
RTM_NEWNEXTHOP, RTM_GETNEXTHOP = 104, 106
NHA_ID, NHA_GROUP, NHA_BLACKHOLE, NHA_OIF, NHA_GATEWAY = 1, 2, 4, 5, 6
RTM_F_FIB_MATCH = 0x2000  # a route get answers the route it matched, with its device
# An IPv4 route get answers table main whatever table the rules chose, unless asked for the
# real one (IPv6 always says it, and refuses the flag: EINVAL).
RTM_F_LOOKUP_TABLE = 0x1000
RT_TABLE_COMPAT = 252  # rtm_table of a route whose table id needs RTA_TABLE
LOCAL_TABLE = 255  # never read: under IPVS it holds a route per Service IP
# fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags
_RULE = struct.Struct("=BBBBBBBBI")
FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_GOTO, FRA_PRIORITY, FRA_FWMARK = 1, 2, 3, 4, 6, 10
FRA_TUN_ID, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_FWMASK, FRA_OIFNAME = 12, 14, 15, 16, 17
FRA_L3MDEV, FRA_UID_RANGE, FRA_IP_PROTO, FRA_SPORT_RANGE, FRA_DPORT_RANGE = 19, 20, 22, 23, 24
FR_ACTIONS = {1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
FIB_RULE_INVERT = 0x2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol,
# scope, type, flags
_NEXTHOP = struct.Struct("=HBBi")  # rtnexthop: length, flags, hops, ifindex
_NHMSG = struct.Struct("=BBBBI")  # nhmsg: family, scope, protocol, reserved, flags
_NH_GROUP = struct.Struct("=IBBH")  # nexthop_grp: id, weight, reserved
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


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _ipv6_on(attrs: dict[int, bytes]) -> bool:
    """Whether the kernel takes IPv6 on the link: it has IPv6 data (none when IPv6 is off in
    the kernel, or the MTU is below 1280) and ``disable_ipv6`` is 0. Otherwise the kernel
    drops every IPv6 packet it receives there."""
    spec = attrs.get(IFLA_AF_SPEC)
    inet6 = _attrs(spec, 0, len(spec)).get(socket.AF_INET6) if spec else None
    if inet6 is None:
        return False
    conf = _attrs(inet6, 0, len(inet6)).get(IFLA_INET6_CONF, b"")
    at = DEVCONF_DISABLE_IPV6 * 4
    return len(conf) < at + 4 or struct.unpack_from("=i", conf, at)[0] == 0


def _link(data: bytes, start: int, end: int) -> list[Link]:
    _family, _type, index, flags, _ = _IFINFO.unpack_from(data, start)
    attrs = _attrs(data, start + _IFINFO.size, end)
    info = attrs.get(IFLA_LINKINFO)
    kind = _attrs(info, 0, len(info)).get(IFLA_INFO_KIND, b"") if info else b""
    master = attrs.get(IFLA_MASTER)
    return [
        Link(
            index=index,
            name=_text(attrs.get(IFLA_IFNAME, b"")),
            kind=_text(kind),
            mac=attrs.get(IFLA_ADDRESS, b"").hex(":"),
            up=bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP),
            master=_U32.unpack(master[:4])[0] if master else None,
            noarp=bool(flags & IFF_NOARP),
            loopback=bool(flags & IFF_LOOPBACK),
            no_carrier=bool(flags & IFF_UP) and not flags & IFF_LOWER_UP,
            ipv6=_ipv6_on(attrs),
        )
    ]


def _address(data: bytes, start: int, end: int) -> list[Address]:
    # IFA_LOCAL is this host's address on point-to-point links (IFA_ADDRESS the peer there).
    _family, prefixlen, flags, _, index = _IFADDR.unpack_from(data, start)
    attrs = _attrs(data, start + _IFADDR.size, end)
    every = _U32.unpack(attrs[IFA_FLAGS][:4])[0] if IFA_FLAGS in attrs else flags
    if every & IFA_F_DADFAILED:
        # Duplicate address detection failed: another host on the link holds it, and the
        # kernel never binds it here (``ip route get`` never says lo), nor routes it from
        # here. Read as this node's, the webhook denied can_reach at it (the gateway, when a
        # node was given the gateway's address by mistake).
        return []
    ip = _ip(attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS, b""))
    return [] if ip is None else [Address(index, ip, prefixlen)]


def _addresses_of(links: Collection[int]) -> Callable[[bytes, int, int], list[Address]]:
    """``_address`` for the addresses of ``links`` only, others skipped after the header."""

    def read(data: bytes, start: int, end: int) -> list[Address]:
        if _IFADDR.unpack_from(data, start)[4] not in links:
            return []
        return _address(data, start, end)

    return read


def _gateway(attrs: dict[int, bytes]) -> IP | None:
    """RTA_GATEWAY, or RTA_VIA (an IPv4 route through an IPv6 gateway): missing it, a route
    through a gateway read as a connected subnet and won over the right one."""
    via = attrs.get(RTA_VIA)
    return _ip(via[2:]) if via else _ip(attrs.get(RTA_GATEWAY, b""))


# A route through a nexthop object (``ip route ... nhid N``): its network, metric, the id,
# whose devices a nexthop dump gives (without compat mode the route carries none), and table.
_Pending = tuple[Network, int, int, int]


def _routes_in(tables: Collection[int]) -> Callable[[bytes, int, int], list[Route | _Pending]]:
    """``_route`` for the routes of ``tables`` only (never the local table)."""

    def read(data: bytes, start: int, end: int) -> list[Route | _Pending]:
        return _route(data, start, end, tables)

    return read


def _route(
    data: bytes, start: int, end: int, tables: Collection[int] = (MAIN_TABLE,)
) -> list[Route | _Pending]:
    """The unicast routes of ``tables``, one per next hop of a multipath route, and their null
    routes (a route through a blackhole nexthop object is dumped as a blackhole route)."""
    family, dst_len, _, _, table, _, _, kind, _ = _RTMSG.unpack_from(data, start)
    if kind not in _READ_TYPES or table == LOCAL_TABLE:
        return []  # the local table (every Service IP under IPVS) is skipped here, unread
    if family not in (socket.AF_INET, socket.AF_INET6):
        return []
    if table not in tables and table != RT_TABLE_COMPAT:
        return []
    attrs = _attrs(data, start + _RTMSG.size, end)
    if RTA_TABLE in attrs:
        table = _U32.unpack(attrs[RTA_TABLE][:4])[0]
    if table not in tables:
        return []
    zero = "0.0.0.0" if family == socket.AF_INET else "::"
    dst = _ip(attrs.get(RTA_DST, b""))
    network: Network = ipaddress.ip_network(f"{dst or zero}/{dst_len}")
    metric = _U32.unpack(attrs[RTA_PRIORITY][:4])[0] if RTA_PRIORITY in attrs else 0
    raw_pref = attrs.get(RTA_PREF)  # IPv6 only; the kernel stores low, medium or high
    pref = ROUTER_PREFERENCES.get(raw_pref[0], "medium") if raw_pref else "medium"
    if kind != RTN_UNICAST:  # its device (lo for IPv6) is none the kernel sends through
        return [Route(network, 0, None, metric, RTN_TYPES[kind], table=table)]
    pairs: list[tuple[int, IP | None]] = []
    hops = attrs.get(RTA_MULTIPATH)
    if hops:
        pos = 0
        while pos + _NEXTHOP.size <= len(hops):
            size, _, _, oif = _NEXTHOP.unpack_from(hops, pos)
            if size < _NEXTHOP.size:
                break
            pairs.append((oif, _gateway(_attrs(hops, pos + _NEXTHOP.size, pos + size))))
            pos += _aligned(size)
    elif RTA_OIF in attrs:
        pairs.append((_U32.unpack(attrs[RTA_OIF][:4])[0], _gateway(attrs)))
    elif RTA_NH_ID in attrs:
        return [(network, metric, _U32.unpack(attrs[RTA_NH_ID][:4])[0], table)]
    return [*_routes_of(network, metric, pairs, table, pref)]


def _routes_of(
    network: Network,
    metric: int,
    hops: list[tuple[int, IP | None]],
    table: int,
    pref: str = "medium",
) -> list[Route]:
    """One route per next hop, each naming every hop's device when there are several."""
    devices = tuple(oif for oif, _ in hops) if len(hops) > 1 else ()
    return [
        Route(network, oif, gw, metric, multipath=devices, table=table, pref=pref)
        for oif, gw in hops
    ]


def _network(ip: IP, prefixlen: int) -> Network:
    return ipaddress.ip_network(f"{ip}/{prefixlen}", strict=False)


def _rule(data: bytes, start: int, end: int) -> list[Rule]:
    """A routing rule, and whether its selectors other than ``to`` match a lookup of a
    destination alone, as ``ip route get`` and OpenELB's RouteGet make it: source 0.0.0.0 or
    none for IPv6, mark 0, uid 0 (root), from ``lo``, no output device, protocol, ports, tos
    or VRF."""
    family, dst_len, src_len, tos, table, _, _, action, flags = _RULE.unpack_from(data, start)
    if family not in (socket.AF_INET, socket.AF_INET6) or action not in FR_ACTIONS:
        return []
    attrs = _attrs(data, start + _RULE.size, end)

    def u32(kind: int, default: int = 0) -> int:
        raw = attrs.get(kind)
        return _U32.unpack(raw[:4])[0] if raw and len(raw) >= 4 else default

    dst = _ip(attrs.get(FRA_DST, b""))
    uids = attrs.get(FRA_UID_RANGE, b"")
    first_uid = _U32.unpack(uids[:4])[0] if len(uids) >= 8 else 0
    zero = "0.0.0.0" if family == socket.AF_INET else "::"
    src = _ip(attrs.get(FRA_SRC, b""))
    # IPv4 matches a source prefix against 0.0.0.0, the source of a lookup alone; IPv6 only
    # against a source given, and RouteGet gives none (fib6_rule_match).
    any_source = (
        src_len == 0
        or src is None
        or (family == socket.AF_INET and int(_network(src, src_len).network_address) == 0)
    )
    plain = (
        any_source
        and tos == 0
        and u32(FRA_FWMARK) & u32(FRA_FWMASK, 0xFFFFFFFF if FRA_FWMARK in attrs else 0) == 0
        and _text(attrs.get(FRA_IIFNAME, b"lo")) == "lo"
        and FRA_OIFNAME not in attrs
        and not attrs.get(FRA_L3MDEV, b"\0")[0]  # a VRF's table, for its devices only
        and first_uid == 0
        and not any(attrs.get(FRA_TUN_ID, b""))  # a 64-bit id
        and not attrs.get(FRA_IP_PROTO, b"\0")[0]
        and FRA_SPORT_RANGE not in attrs
        and FRA_DPORT_RANGE not in attrs
    )
    return [
        Rule(
            priority=u32(FRA_PRIORITY),
            version=4 if family == socket.AF_INET else 6,
            action=FR_ACTIONS[action],
            table=u32(FRA_TABLE, table),
            dst=_network(dst or ipaddress.ip_address(zero), dst_len) if dst_len else None,
            plain=plain,
            invert=bool(flags & FIB_RULE_INVERT),
            suppress_prefixlen=struct.unpack("=i", attrs[FRA_SUPPRESS_PREFIXLEN][:4])[0]
            if FRA_SUPPRESS_PREFIXLEN in attrs
            else -1,
            goto=u32(FRA_GOTO),
        )
    ]


# A nexthop object: its id, then (device, gateway) pairs, or the ids of a group's members,
# and whether it is a blackhole.
_Nexthop = tuple[int, tuple[tuple[int, IP | None], ...], tuple[int, ...], bool]


def _nexthop(data: bytes, start: int, end: int) -> list[_Nexthop]:
    attrs = _attrs(data, start + _NHMSG.size, end)
    if NHA_ID not in attrs:
        return []
    nh_id = _U32.unpack(attrs[NHA_ID][:4])[0]
    group = attrs.get(NHA_GROUP, b"")
    members = tuple(
        _NH_GROUP.unpack_from(group, pos)[0] for pos in range(0, len(group), _NH_GROUP.size)
    )
    oif = attrs.get(NHA_OIF)
    hops = ((_U32.unpack(oif[:4])[0], _ip(attrs.get(NHA_GATEWAY, b""))),) if oif else ()
    return [(nh_id, hops, members, NHA_BLACKHOLE in attrs)]


def _answer(data: bytes, start: int, end: int) -> list[RouteAnswer]:
    """A route get's answer: the device, the route's type and its table."""
    header = _RTMSG.unpack_from(data, start)
    table, kind = header[4], header[7]
    attrs = _attrs(data, start + _RTMSG.size, end)
    oif, table_attr = attrs.get(RTA_OIF), attrs.get(RTA_TABLE)
    return [
        RouteAnswer(
            _U32.unpack(oif[:4])[0] if oif else None,
            RTN_TYPES.get(kind, str(kind)),
            _U32.unpack(table_attr[:4])[0] if table_attr else table,
        )
    ]


def _through_nexthop(
    pending: _Pending, found: _Nexthop | None, nexthops: dict[int, _Nexthop]
) -> list[Route]:
    """The routes of ``pending`` through the nexthop object ``found`` (a group: its members)."""
    network, metric, _, table = pending
    members = [nexthops.get(m) for m in found[2]] if found and found[2] else [found]
    if any(nh is not None and nh[3] for nh in members):  # the kernel dumps these as blackhole
        return [Route(network, 0, None, metric, "blackhole", table=table)]
    return _routes_of(network, metric, [hop for nh in members if nh for hop in nh[1]], table)


T = TypeVar("T")
# The dump of the main table's routes, every type (the kernel filters by the header's fields).
MAIN_ROUTES = _RTMSG.pack(0, 0, 0, 0, MAIN_TABLE, 0, 0, 0, 0)


def _table_dump(table: int) -> bytes:
    """The dump of one table's routes (RTA_TABLE: ids past 255 do not fit the header)."""
    return (
        _RTMSG.pack(0, 0, 0, 0, min(table, RT_TABLE_COMPAT), 0, 0, 0, 0)
        + _ATTR.pack(_ATTR.size + 4, RTA_TABLE)
        + _U32.pack(table)
    )


# A kernel booted without IPv6 (ipv6.disable=1) has no IPv6 lookup and refuses the question
# (EOPNOTSUPP): nothing is bound there either, and the IPv4 Eips must still be planned.
_NOT_LOCAL = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ESRCH, errno.EACCES, errno.EINVAL,
              errno.EAGAIN, errno.EOPNOTSUPP, errno.EAFNOSUPPORT)  # fmt: skip


class Rtnetlink:
    """One rtnetlink socket for several requests, in this network namespace or a named one.

    Strict checking (Linux 4.20 and later) makes the kernel filter dumps by the header's
    fields (a link's addresses, the main table's routes) instead of sending everything;
    every reader filters as well, so an older kernel gives the same answers."""

    def __init__(self, netns: str | None, *, strict: bool = True) -> None:
        self._sock = create_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._seq = 0
        self.filtering = False  # whether the kernel filters dumps for us
        try:
            self._sock.bind((0, 0))
            if strict:  # off only in tests, to read as on an older kernel
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
                    self.filtering = True
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> Rtnetlink:
        return self

    def __exit__(self, *_: object) -> None:
        self._sock.close()

    def ask(
        self, request: int, body: bytes, reply: int, read: Callable[[bytes, int, int], list[T]],
        *, dump: bool = True, missing: tuple[int, ...] = (),
    ) -> list[T]:  # fmt: skip
        """One request (a dump, or a single get), each ``reply`` message read by ``read``.

        A get is answered by one message or an error; errors in ``missing`` (no route, say)
        are an empty answer, any other raises :class:`NetlinkError`."""
        self._seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        header = _HEADER.pack(_HEADER.size + len(body), request, flags, self._seq, 0)
        self._sock.send(header + body)
        found: list[T] = []
        while True:
            data, offset = self._sock.recv(1 << 20), 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, seq, _port = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size or offset + length > len(data):
                    raise NetlinkError(f"a truncated netlink message ({length} bytes)")
                if seq == self._seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                        if code in missing or (code == 0 and not dump):
                            return found
                        raise NetlinkError(os.strerror(code or errno.EIO), code)
                    if kind == reply:
                        found += read(data, offset + _HEADER.size, offset + length)
                        if not dump:
                            return found
                offset += _aligned(length)

    def links(self) -> tuple[Link, ...]:
        # Without their counters (Linux 5.1 and later): a third of each message.
        mask = _ATTR.pack(_ATTR.size + 4, IFLA_EXT_MASK) + _U32.pack(RTEXT_FILTER_SKIP_STATS)
        return tuple(self.ask(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0) + mask, RTM_NEWLINK, _link))

    def addresses(self, links: Iterable[int] | None = None) -> tuple[Address, ...]:
        """The addresses of ``links`` (indexes), or of every link."""
        if links is None or not self.filtering:
            # One dump of everything, kept for ``links`` only (skipped after the header).
            read = _address if links is None else _addresses_of(frozenset(links))
            return tuple(self.ask(RTM_GETADDR, _IFADDR.pack(0, 0, 0, 0, 0), RTM_NEWADDR, read))
        found: list[Address] = []
        for index in links:  # a dump per link, which the kernel filters
            body = _IFADDR.pack(0, 0, 0, 0, index)
            # A link gone since the link dump has no addresses (some kernels say ENODEV).
            found += self.ask(RTM_GETADDR, body, RTM_NEWADDR, _address, missing=(errno.ENODEV,))
        return tuple(found)

    def rules(self) -> tuple[Rule, ...]:
        """The routing rules of both families, in the kernel's order."""
        return tuple(self.ask(RTM_GETRULE, _RULE.pack(0, 0, 0, 0, 0, 0, 0, 0, 0), RTM_NEWRULE,
                              _rule, missing=(errno.EOPNOTSUPP,)))  # fmt: skip

    def routes(self, tables: Collection[int] = (MAIN_TABLE,)) -> tuple[Route, ...]:
        """The routes of ``tables`` (never the local table): a dump each, which the kernel
        filters, or one dump of every table."""
        wanted = frozenset(tables) - {LOCAL_TABLE}
        if not self.filtering:
            read = self.ask(RTM_GETROUTE, MAIN_ROUTES, RTM_NEWROUTE, _routes_in(wanted))
        else:
            read = self.ask(RTM_GETROUTE, MAIN_ROUTES, RTM_NEWROUTE, _route)
            for table in sorted(wanted - {MAIN_TABLE}):  # a table no route created: ENOENT
                read += self.ask(RTM_GETROUTE, _table_dump(table), RTM_NEWROUTE,
                                 _routes_in(wanted), missing=(errno.ENOENT,))  # fmt: skip
        routes = [r for r in read if isinstance(r, Route)]
        pending = [r for r in read if not isinstance(r, Route)]
        if pending:  # routes through nexthop objects: their devices come from those
            nexthops = {
                nh[0]: nh
                for nh in self.ask(RTM_GETNEXTHOP, _NHMSG.pack(0, 0, 0, 0, 0), RTM_NEWNEXTHOP,
                                   _nexthop, missing=(errno.EOPNOTSUPP, errno.EINVAL))
            }  # fmt: skip
            for route in pending:
                routes += _through_nexthop(route, nexthops.get(route[2]), nexthops)
        return tuple(routes)

    def route_get(
        self, ip: IP, *, flags: int = 0, missing: tuple[int, ...] = ()
    ) -> RouteAnswer | None:
        """The kernel's answer to ``ip route get`` (None for an error in ``missing``)."""
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        packed = ip.packed
        body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, flags)
        body += _ATTR.pack(_ATTR.size + len(packed), RTA_DST) + packed
        answers = self.ask(RTM_GETROUTE, body, RTM_NEWROUTE, _answer, dump=False,
                           missing=missing)  # fmt: skip
        return answers[0] if answers else None

    def bound(self, ip: IP) -> tuple[int, ...]:
        """The device of the local route for ``ip`` (``ip route get fibmatch``): where it is
        bound, or () when it is not bound on this node."""
        # The kernel answers a route it cannot use with an error (no route, unreachable,
        # prohibit, blackhole, throw): none of these is a local route.
        answer = self.route_get(ip, flags=RTM_F_FIB_MATCH, missing=_NOT_LOCAL)
        if answer is None or answer.type != "local" or answer.oif is None:
            return ()
        return (answer.oif,)


def looked_up(rules: Iterable[Rule]) -> set[int]:
    """The tables a lookup of a destination alone may meet: main, and those of the rules that
    can match it (not the local table)."""
    found = {MAIN_TABLE}
    found.update(r.table for r in rules if r.action == "lookup" and (r.plain or r.invert))
    return found - {LOCAL_TABLE, 0}  # 0: no table (an l3mdev rule); a dump of 0 is all


def dump_addresses(netns: str | None = None) -> tuple[Address, ...]:
    """Every address of every link, both families, in this network namespace or a named one."""
    with Rtnetlink(netns) as sock:
        return sock.addresses()


def dump_routes(netns: str | None = None) -> tuple[Route, ...]:
    """The unicast and null routes, both families, of the main table and of the tables the
    routing rules look up."""
    with Rtnetlink(netns) as sock:
        return sock.routes(looked_up(sock.rules()))


class Pyroute2Netlink:
    """:class:`app.agent.netlink.Netlink` over rtnetlink: this network namespace, or a named
    one (``ip netns`` name) for tools and tests."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns

    def host(self, probe: Collection[IP] = ()) -> HostNet:
        try:
            with Rtnetlink(self._netns) as sock:
                links = sock.links()
                addresses = sock.addresses(lk.index for lk in links if own_nic(lk))
                rules = sock.rules()
                routes = sock.routes(looked_up(rules))
                bound = {ip: sock.bound(ip) for ip in probe}
        except (OSError, NetlinkError) as exc:
            raise NetlinkError(f"cannot read links, addresses, rules and routes: {exc}") from exc
        return HostNet(links, addresses, routes, bound, rules)

    def route_get(self, ip: IP) -> RouteAnswer:
        flags = RTM_F_LOOKUP_TABLE if ip.version == 4 else 0
        try:
            with Rtnetlink(self._netns) as sock:
                answer = sock.route_get(ip, flags=flags)
        except NetlinkError as exc:  # a null route, or no route at all: what OpenELB meets
            return RouteAnswer(None, f"error: {exc}", 0, exc.code)
        except OSError as exc:  # no socket (no such netns, ...): no errno of a route
            return RouteAnswer(None, f"error: {exc}", 0)
        return answer or RouteAnswer(None, "none", 0)
