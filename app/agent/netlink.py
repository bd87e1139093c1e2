"""What the agent reads from the kernel, as plain values, and the ``Netlink`` seam.

The pure parts (resolution, node report) work on a :class:`HostNet` snapshot; only
:mod:`app.agent.pyroute2_netlink` talks to the kernel. Tests of the pure parts build
``HostNet`` values by hand; tests of the kernel side use real network namespaces.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.core.addresses import IP, Network
from app.core.interfaces import EXCLUDED_PREFIXES

MAIN_TABLE = 254


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    kind: str  # IFLA_INFO_KIND: "" for plain NICs, else "veth", "bridge", "dummy", "bond", ...
    mac: str  # "aa:bb:cc:dd:ee:ff"
    up: bool  # administratively up and carrier present (IFF_UP and IFF_LOWER_UP)
    master: int | None  # index of the bond, bridge or VRF this NIC is a port of
    noarp: bool  # IFF_NOARP: the NIC does no neighbour resolution
    loopback: bool  # IFF_LOOPBACK
    no_carrier: bool = False  # set up (IFF_UP) but no carrier (no IFF_LOWER_UP): not "down"
    # The kernel takes IPv6 here: not disable_ipv6, MTU not below 1280, IPv6 in the kernel.
    ipv6: bool = True


def own_nic(link: Link) -> bool:
    """Whether ``link`` may be the node's network: not the loopback, not a virtual device of
    kube-proxy, the CNI or containers (whose addresses are Service or pod IPs by the
    thousand)."""
    return (
        not link.loopback
        and link.name != "lo"
        and link.kind != "dummy"  # what holds Service IPs, whatever a proxy names it
        and not link.name.startswith(EXCLUDED_PREFIXES)
    )


@dataclass(frozen=True, slots=True)
class Address:
    index: int  # link index
    ip: IP
    prefixlen: int

    def __str__(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


NULL_ROUTES = ("blackhole", "unreachable", "prohibit", "throw")  # route types with no device


@dataclass(frozen=True, slots=True)
class Route:
    """A route of the main table, or of a table a routing rule looks up (``Rule``): unicast
    (one per next hop of a multipath route), or a null route (``NULL_ROUTES``: oif 0), which
    makes the kernel refuse the IPs it holds."""

    dst: Network
    oif: int
    gateway: IP | None  # None for a route straight on the device (a connected subnet, ...)
    metric: int = 0
    type: str = "unicast"
    multipath: tuple[int, ...] = ()  # every next hop's device, when this is one of several
    table: int = MAIN_TABLE
    # IPv6's router preference (RFC 4191: "low", "medium", "high"), which the
    # kernel weighs among routes of one prefix and metric (RA-learned default routes).
    pref: str = "medium"


RULE_ACTIONS = ("lookup", "goto", "nop", "blackhole", "unreachable", "prohibit")


@dataclass(frozen=True, slots=True)
class Rule:
    """A routing policy rule (``ip rule``), as far as a lookup of a destination alone (what
    ``ip route get <IP>`` and OpenELB's RouteGet ask: no source, no mark, from ``lo``) meets
    it. ``plain``: its other selectors (from, fwmark, iif, oif, uidrange, ipproto, ports, tos,
    l3mdev) match such a lookup (``from all``, ``iif lo``, ...); ``invert`` is ``not``."""

    priority: int
    version: int  # 4 or 6
    action: str  # one of RULE_ACTIONS
    table: int = 0  # for "lookup"
    dst: Network | None = None  # ``to``; None for all
    plain: bool = True
    invert: bool = False
    suppress_prefixlen: int = -1  # ``suppress_prefixlength``: -1 for none
    goto: int = 0  # the priority a "goto" rule jumps to


# The rules of a kernel nobody configured: local (skipped: never consulted), main, default.
DEFAULT_RULES = tuple(
    Rule(pref, version, "lookup", table)
    for version in (4, 6)
    for pref, table in ((32766, MAIN_TABLE), (32767, 253))
)


@dataclass(frozen=True, slots=True)
class RouteAnswer:
    """What the kernel's RouteGet (``ip route get``) answers: OpenELB's whole method."""

    oif: int | None
    type: str  # "unicast", "local", ..., or "error: <why>" when the kernel refused
    table: int
    error: int = 0  # the errno of a refusal (EINVAL for a blackhole route, ...)


@dataclass(frozen=True, slots=True)
class HostNet:
    links: tuple[Link, ...]
    addresses: tuple[Address, ...]  # of the node's own NICs only (``own_nic``)
    routes: tuple[Route, ...]  # main table, and the tables of ``rules`` but local
    # Probed IPs (the agent's can_reach IPs) -> the links where each is bound, () if none.
    bound: Mapping[IP, tuple[int, ...]] = field(default_factory=dict)
    rules: tuple[Rule, ...] = DEFAULT_RULES  # both families, in the kernel's order

    def link(self, index: int | None) -> Link | None:
        return next((lk for lk in self.links if lk.index == index), None)

    def by_name(self, name: str) -> Link | None:
        return next((lk for lk in self.links if lk.name == name), None)

    def addresses_of(self, index: int) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.index == index)

    def bound_on(self, ip: IP) -> tuple[Link, ...]:
        """Links on which ``ip`` is bound (the kernel then routes it to ``lo``): the probed
        answer (any device, ``kube-ipvs0`` included), then the own NICs' addresses."""
        indexes = dict.fromkeys(self.bound.get(ip, ()))
        indexes.update(dict.fromkeys(a.index for a in self.addresses if a.ip == ip))
        found = (self.link(index) for index in indexes)
        return tuple(lk for lk in found if lk is not None)


class NetlinkError(Exception):
    """The kernel refused a netlink request; the message says which and why."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code  # the kernel's errno, 0 when it sent none


class Netlink(Protocol):
    def host(self, probe: Collection[IP] = ()) -> HostNet:
        """Links, own NICs' addresses, rules, the routes of the tables they look up (never
        the local table), and where each ``probe`` IP is bound."""
        ...

    def route_get(self, ip: IP) -> RouteAnswer: ...
