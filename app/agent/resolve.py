"""Which NIC an Eip's ``spec.interface`` means on this node, pure over a :class:`HostNet`.

``can_reach:<IP>`` follows the routes of the main table (connected subnets first, then
gateways) and never the ``local`` table, so an IP bound on this node (by kube-proxy on
``kube-ipvs0``, by kube-vip, as a node address) cannot send us to ``lo`` as it sends
OpenELB's RouteGet (openelb issue #331). Virtual devices and NICs that cannot answer
ARP/NDP are skipped, as MetalLB's speaker skips them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from ipaddress import ip_network

from app.agent.netlink import EXCLUDED_PREFIXES, HostNet, Link, Route, RouteAnswer
from app.core.addresses import IP, quoted, special_kind_of_key, special_route
from app.core.interfaces import BadInterface, CanReach, InterfaceSpec, NicName, NoInterface

TABLES = {254: "main", 255: "local", 253: "default"}
MAX_NIC_NAME = 15  # IFNAMSIZ less the terminating byte
_PLAIN_NIC_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")  # eth0, br-lan, bond0.100: no more to check


def nic_name_problem(name: str) -> str | None:
    """Why ``name`` can never name a NIC, or None.

    Linux refuses (``dev_valid_name``) an empty name, '.' and '..', '/', ':' and whitespace
    in one, and more than 15 bytes. Beyond the kernel: spec.interface is JSON text, so bytes
    that are no UTF-8 (a shell hands them over as surrogates) cannot be in it, and a control
    character, which the kernel would take, is a stray character from a copy, not a name.
    """
    if _PLAIN_NIC_NAME.fullmatch(name) and name not in (".", ".."):
        return None
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return (
            f"{quoted(name)} cannot be a NIC name: it holds bytes that are not UTF-8 text, "
            "and spec.interface is JSON text"
        )
    if size > MAX_NIC_NAME:
        return f"{quoted(name)} cannot be a NIC name: Linux allows {MAX_NIC_NAME} bytes"
    if name in (".", ".."):
        return f"{quoted(name)} cannot be a NIC name: Linux refuses '.' and '..'"
    for char in name:
        if char == "/" or char.isspace():
            what = "'/'" if char == "/" else f"whitespace ({char!r})"
            return f"{quoted(name)} cannot be a NIC name: Linux refuses {what} in one"
        if unicodedata.category(char) == "Cc":
            return (
                f"{quoted(name)} cannot be a NIC name: it holds the control character "
                f"{char!r} (a stray character from a copy?)"
            )
    return None


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
    if link.loopback or link.name == "lo":
        return "is the loopback device"
    prefix = next((p for p in EXCLUDED_PREFIXES if link.name.startswith(p)), None)
    if prefix is not None:
        return f"is a virtual device ({prefix}*) of kube-proxy, the CNI or containers"
    if link.kind == "dummy":
        return "is a dummy device"
    if not link.up:
        return "is down"
    if link.master is not None:
        master = host.link(link.master)
        return f"is a port of {master.name if master else 'another device'} (bond or bridge)"
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
    via = f" via {route.gateway}" if route.gateway is not None else ""
    return f"{route.dst}{via}"


def _by_routes(ip: IP, host: HostNet) -> Resolution:
    matching = [r for r in host.routes if r.dst.version == ip.version and ip in r.dst]
    skipped: list[str] = []
    connected = sorted(
        (r for r in matching if r.gateway is None), key=lambda r: (-r.dst.prefixlen, r.metric)
    )
    gateways = sorted(
        (r for r in matching if r.gateway is not None), key=lambda r: (-r.dst.prefixlen, r.metric)
    )
    found = _first_usable("connected subnet", connected, host, skipped)
    if found is not None:
        return found[0]
    held = _held_subnets(ip, host, connected)
    via = _first_usable("gateway route", gateways, host, skipped)
    if held and (via is None or min(held.values()) <= _rank(via[1])):
        # The kernel reaches the IP through a device that cannot answer (down for now, a
        # tunnel): a gateway route's NIC is on another segment, where answering for the
        # Eip's IPs reaches nobody who asks. Only a more specific gateway route, the
        # kernel's own choice, is still taken.
        return Unresolved(
            f"{ip} is on a subnet of this node whose device cannot answer "
            f"({', '.join(held)}); a gateway route would answer on another segment, so none "
            f"is used{_skipped_text(skipped)}"
        )
    if via is not None:
        return via[0]
    return Unresolved(
        f"no route of the main table reaches {ip} through a usable NIC{_skipped_text(skipped)}"
    )


def _first_usable(
    label: str, routes: list[Route], host: HostNet, skipped: list[str]
) -> tuple[Resolved, Route] | None:
    """The first of ``routes`` whose NIC can answer; the others on the way go to ``skipped``
    (they say why another NIC was picked)."""
    for route in routes:
        link = host.link(route.oif)
        if link is None:
            continue
        why_not = unusable(link, host)
        if why_not is None:
            why = f"{label} {_route_text(route)} (table main)"
            return Resolved(link, why + _skipped_text(skipped)), route
        skipped.append(f"{link.name} ({_route_text(route)}) {why_not}")
    return None


def _rank(route: Route) -> tuple[int, int]:
    """How the kernel prefers a route, lowest first: longest prefix, then lowest metric."""
    return (-route.dst.prefixlen, route.metric)


def _held_subnets(ip: IP, host: HostNet, connected: list[Route]) -> dict[str, tuple[int, int]]:
    """The subnets holding ``ip`` on devices that cannot answer: "name (subnet)" and its
    rank (``_rank``). Every connected route that matched (all were passed over), and the
    addresses of NICs that are down but would otherwise answer (setting a NIC down takes
    its route away; IPv4 addresses stay; ranked as a connected route of metric 0)."""
    found: dict[str, tuple[int, int]] = {}
    for route in connected:
        link = host.link(route.oif)
        if link is not None:
            found[f"{link.name} ({route.dst})"] = _rank(route)
    for address in host.addresses:
        if address.ip.version != ip.version or address.prefixlen == address.ip.max_prefixlen:
            continue  # a single address: no subnet
        subnet = ip_network(f"{address}", strict=False)
        link = host.link(address.index)
        if link is not None and ip in subnet and _down_only(link, host):
            found.setdefault(f"{link.name} ({subnet})", (-address.prefixlen, 0))
    return found


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
    if name is None:
        return None, f"no NIC ({answer.type})"
    table = TABLES.get(answer.table, str(answer.table))
    return name, f"{answer.type} route in table {table}"
