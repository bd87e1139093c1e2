"""Which NIC an Eip's ``spec.interface`` means on this node, pure over a :class:`HostNet`.

``can_reach:<IP>`` follows the routes of the main table in the kernel's order (longest
prefix, then lowest metric) and never the ``local`` table, so an IP bound on this node (by
kube-proxy on ``kube-ipvs0``, by kube-vip, as a node address) cannot send us to ``lo`` as it
sends OpenELB's RouteGet (openelb issue #331). Virtual devices and NICs that cannot answer
ARP/NDP are skipped, as MetalLB's speaker skips them; a null route (blackhole, unreachable,
prohibit, throw) the kernel would take ends the search, as it ends the kernel's.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from ipaddress import ip_network
from typing import NamedTuple

from app.agent.netlink import MAIN_TABLE, HostNet, Link, Route, RouteAnswer
from app.core.addresses import IP, special_kind_of_key, special_route
from app.core.interfaces import (
    BadInterface,
    CanReach,
    InterfaceSpec,
    NicName,
    NoInterface,
    never_answering,
    nic_name_problem,
)

TABLES = {254: "main", 255: "local", 253: "default"}
LOCAL_TABLE = 255
MASTER_KINDS = {"bond": "a bond", "bridge": "a bridge", "vrf": "a VRF", "team": "a team"}


def spec_problem(spec: InterfaceSpec) -> str | None:
    """Why ``spec`` is wrong on any node (exit 2 for ``resolve``), or None: what needs no
    look at this node's network."""
    if isinstance(spec, NoInterface):
        return "spec.interface is empty: name a NIC or write can_reach:<IP>"
    if isinstance(spec, BadInterface):
        return spec.reason
    if isinstance(spec, NicName):
        return nic_name_problem(spec.name)
    special = special_kind_of_key(spec.key)
    if special is not None:  # the default route would "reach" it: say what the webhook says
        return f"{spec.ip} is {special}: {special_route(special)}"
    return None


def unusable(link: Link, host: HostNet) -> str | None:
    """Why the speaker cannot answer on ``link``, or None when it can."""
    if link.loopback:
        return "is the loopback device"
    by_name = never_answering(link.name)  # the webhook's interface-name rule says the same
    if by_name is not None:
        return by_name
    if link.kind == "dummy":
        return "is a dummy device"
    if not link.up:
        return "has no carrier (set up, but no cable or peer)" if link.no_carrier else "is down"
    if link.master is not None:
        master = host.link(link.master)
        kind = MASTER_KINDS.get(master.kind, "") if master else ""
        return (
            f"is a port of {master.name if master else 'another device'} "
            f"({kind or 'bond, bridge or VRF'})"
        )
    if link.noarp:
        return "has NOARP set"
    if link.mac.count(":") != 5:  # a tun device, or another link with no Ethernet address
        return "has no Ethernet MAC address to answer with"
    return None


@dataclass(frozen=True, slots=True)
class Resolved:
    link: Link
    why: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    reason: str
    bad_spec: bool = False  # the spec itself is wrong (not this node's network)


Resolution = Resolved | Unresolved


def _route_text(route: Route) -> str:
    if route.type != "unicast":
        metric = f" metric {route.metric}" if route.metric else ""
        return f"{route.type} {route.dst}{metric}"
    via = f" via {route.gateway}" if route.gateway is not None else ""
    return f"{route.dst}{via}"


class _Held(NamedTuple):
    """A device that cannot answer, on the kernel's way to the IP: its rank (``_rank``), and
    whether the route is a subnet of its own (else a route such as ``default dev tun0``)."""

    rank: tuple[int, int]
    subnet: bool


def _by_routes(ip: IP, host: HostNet) -> Resolution:
    """The first route in the kernel's order whose NIC can answer. A null route the kernel
    takes ends it; so does one met past the routes skipped, as the kernel would take it were
    those gone."""
    ranked = sorted(
        (r for r in host.routes if r.dst.version == ip.version and ip in r.dst), key=_rank
    )
    if ranked and ranked[0].type != "unicast":
        return Unresolved(_refused(ip, ranked[0]))
    skipped: list[str] = []
    passed: dict[str, _Held] = {}
    for route in ranked:
        if route.type != "unicast":
            return _not_found(ip, host, passed, skipped, route)
        link = host.link(route.oif)
        if link is None:
            continue
        why_not = unusable(link, host)
        if why_not is None:
            held = _held(ip, host, passed, _rank(route))
            return _answer_on(ip, route, link, host, held=held, skipped=skipped)
        skipped.append(f"{link.name} ({_route_text(route)}) {why_not}")
        if route.gateway is None:  # the kernel sends the IP out of that device itself
            passed[f"{link.name} ({route.dst})"] = _Held(_rank(route), _connected(route, host))
    return _not_found(ip, host, passed, skipped, None)


def _answer_on(
    ip: IP, route: Route, link: Link, host: HostNet, *, held: dict[str, _Held], skipped: list[str]
) -> Resolution:
    """``route``'s NIC, unless a device that cannot answer comes first and ``route`` is no
    subnet of ``link``'s own: the kernel reaches the IP through that device (down for now, a
    tunnel), and ``route``'s NIC is on another segment, where answering for the Eip's IPs
    reaches nobody who asks. A less specific subnet of the NIC's own is still its segment."""
    if held and not _connected(route, host):
        return Unresolved(_held_text(ip, held, route, skipped))
    why = f"{_label(route, host)} (table main){_multipath_text(route, host)}"
    return Resolved(link, why + _skipped_text(skipped))


def _not_found(
    ip: IP, host: HostNet, passed: dict[str, _Held], skipped: list[str], stop: Route | None
) -> Unresolved:
    """No NIC: every route was passed over, or the walk ``stop``-ped at a null route."""
    held = _held(ip, host, passed, None)
    if held:
        return Unresolved(_held_text(ip, held, None, skipped))
    beyond = ""
    if stop is not None:
        beyond = f" (past the routes skipped, the kernel's next, {_route_text(stop)}, refuses it)"
    return Unresolved(
        f"no route of the main table reaches {ip} through a usable NIC{beyond}"
        f"{_skipped_text(skipped)}"
    )


def _connected(route: Route, host: HostNet) -> bool:
    """A route straight on the device to the subnet of one of its own addresses (the kernel's
    prefix route): not a device route such as ``default dev tun0`` or ``10.0.0.0/8 dev wg0``,
    which is no subnet of the device's own and ranks with the gateway routes."""
    return route.gateway is None and any(
        ip_network(f"{a}", strict=False) == route.dst for a in host.addresses_of(route.oif)
    )


def _label(route: Route, host: HostNet) -> str:
    if route.gateway is not None:
        return f"gateway route {_route_text(route)}"
    if _connected(route, host):
        return f"connected subnet {route.dst}"
    return f"device route {route.dst}"  # no gateway, and no subnet of its own


def _multipath_text(route: Route, host: HostNet) -> str:
    if not route.multipath:
        return ""
    names = ", ".join(lk.name if (lk := host.link(i)) else f"#{i}" for i in route.multipath)
    return (
        f"; a multipath route over {names}: eip-guard takes the first next hop it can answer "
        "on, while the kernel hashes each destination to one of them ('ip route get' may name "
        "another)"
    )


def _refused(ip: IP, route: Route) -> str:
    """Why no NIC serves ``ip`` when the kernel's choice for it is the null ``route``."""
    todo = (
        "point can_reach at an IP this node routes through the Eip's NIC (its gateway, or a "
        "host on its subnet)"
    )
    if route.type == "throw":
        return (
            f"the main table's route for {ip} is {_route_text(route)}: the kernel leaves the "
            "main table for the tables of later rules (by default none routes it: 'Network "
            "is unreachable'); eip-guard reads the main table only, so it names no NIC, and "
            f"OpenELB's speaker fails unless another table routes it; {todo}"
        )
    return (
        f"the kernel drops traffic to {ip}: the main table's route for it is "
        f"{_route_text(route)} ({_NULL_EFFECTS.get(route.type, 'it refuses it')}), so "
        f"OpenELB's speaker fails there too (its RouteGet gets an error); {todo}"
    )


_NULL_EFFECTS = {
    "blackhole": "it discards what is sent there",
    "unreachable": "it answers 'No route to host'",
    "prohibit": "it answers 'Permission denied'",
}


def _rank(route: Route) -> tuple[int, int]:
    """How the kernel prefers a route, lowest first: longest prefix, then lowest metric."""
    return (-route.dst.prefixlen, route.metric)


def _held(
    ip: IP, host: HostNet, passed: dict[str, _Held], rank: tuple[int, int] | None
) -> dict[str, _Held]:
    """The devices that cannot answer on the kernel's way to ``ip`` before a route of
    ``rank`` (None: any): those of the routes passed over, and the subnets holding ``ip`` of
    NICs that are down but would otherwise answer (setting a NIC down takes its route away;
    IPv4 addresses stay; ranked as a connected route of metric 0)."""
    found = dict(passed)
    for address in host.addresses:
        if address.ip.version != ip.version or address.prefixlen == address.ip.max_prefixlen:
            continue  # a single address: no subnet
        subnet = ip_network(f"{address}", strict=False)
        link = host.link(address.index)
        held = _Held((-address.prefixlen, 0), True)
        if link is None or ip not in subnet or (rank is not None and held.rank > rank):
            continue
        if _down_only(link, host):
            found.setdefault(f"{link.name} ({subnet})", held)
    return found


def _held_text(ip: IP, held: dict[str, _Held], route: Route | None, skipped: list[str]) -> str:
    where = (
        f"{ip} is on a subnet of this node whose device cannot answer"
        if all(h.subnet for h in held.values())
        else f"the kernel routes {ip} through a device of this node that cannot answer"
    )
    other = "a gateway route" if route is None or route.gateway is not None else "a device route"
    return (
        f"{where} ({', '.join(held)}); {other} would answer on another segment, so none is "
        f"used{_skipped_text(skipped)}"
    )


def _down_only(link: Link, host: HostNet) -> bool:
    """Down, and otherwise a NIC the speaker could answer on."""
    return not link.up and unusable(replace(link, up=True), host) is None


def _skipped_text(skipped: list[str]) -> str:
    return f"; skipped: {'; '.join(skipped)}" if skipped else ""


def resolve(spec: InterfaceSpec, host: HostNet) -> Resolution:
    problem = spec_problem(spec)
    if problem is not None:
        return Unresolved(problem, True)
    if isinstance(spec, NicName):
        link = host.by_name(spec.name)
        if link is None:
            names = ", ".join(sorted(lk.name for lk in host.links)) or "none"
            return Unresolved(
                f"no NIC named {spec.name!r} on this node (it has: {names}); nodes whose NICs "
                "have different names need can_reach:<gateway IP>"
            )
        why_not = unusable(link, host)
        if why_not is not None:
            return Unresolved(f"NIC {spec.name} {why_not}; the speaker cannot answer on it")
        return Resolved(link, "named in spec.interface")
    assert isinstance(spec, CanReach)
    return _by_routes(spec.ip, host)


def describe_route_get(ip: IP, answer: RouteAnswer, host: HostNet) -> tuple[str | None, str]:
    """What OpenELB's ``ip route get`` method picks, and a sentence on what follows."""
    link = host.link(answer.oif)
    name = link.name if link is not None else None
    if answer.type == "local" or (link is not None and link.loopback):
        bound = ", ".join(lk.name for lk in host.bound_on(ip)) or "a local address"
        return name or "lo", (
            f"local route: {ip} is bound on this node ({bound}), so the kernel answers "
            f"dev {name or 'lo'}; OpenELB's speaker fails with 'invalid interface lo'"
        )
    if answer.error in _REFUSALS:
        return None, f"{_REFUSALS[answer.error].format(ip=ip)}; {_SPEAKER_FAILS}"
    if name is None:
        return None, f"no NIC ({answer.type})"
    table = TABLES.get(answer.table, str(answer.table))
    if answer.table in (MAIN_TABLE, LOCAL_TABLE):
        return name, f"{answer.type} route in table {table}"
    return name, (
        f"{answer.type} route in table {table}; policy routing: the kernel's rules chose "
        f"table {table}; eip-guard reads the main table only"
    )


# What a route get's error means: the route the kernel met (or none).
_REFUSALS = {
    errno.EINVAL: "blackhole route: the kernel drops traffic to {ip} ('Invalid argument')",
    errno.EHOSTUNREACH: "unreachable route: the kernel refuses {ip} ('No route to host')",
    errno.EACCES: "prohibit route: the kernel refuses {ip} ('Permission denied')",
    errno.ENETUNREACH: (
        "no route: no table the kernel's rules consult routes {ip}, or a throw route ended "
        "the lookup ('Network is unreachable')"
    ),
}
_SPEAKER_FAILS = "OpenELB's speaker fails too (its RouteGet returns this error)"
