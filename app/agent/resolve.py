"""Which NIC an Eip's ``spec.interface`` means on this node, pure over a :class:`HostNet`.

``can_reach:<IP>`` follows the kernel's routing rules (``ip rule``) to a table, and its
routes in the kernel's order (longest prefix, then lowest metric), but never the ``local``
table, so an IP bound on this node (by kube-proxy on ``kube-ipvs0``, by kube-vip, as a node
address) cannot send us to ``lo`` as it sends OpenELB's RouteGet (openelb issue #331).
Virtual devices and NICs that cannot answer ARP/NDP are skipped, as MetalLB's speaker skips
them; a null route (blackhole, unreachable, prohibit, throw) or rule the kernel would take
ends the search, as it ends the kernel's.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from ipaddress import ip_network
from typing import NamedTuple

from app.agent.netlink import DEFAULT_RULES, MAIN_TABLE, HostNet, Link, Route, RouteAnswer, Rule
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
    pref = f" pref {route.pref}" if route.pref != "medium" else ""
    return f"{route.dst}{via}{pref}"


Rank = tuple[int, int, int]  # see _rank


class _Held(NamedTuple):
    """A device that cannot answer, on the kernel's way to the IP: its rank (``_rank``), and
    whether the route is a subnet of its own (else a route such as ``default dev tun0``)."""

    rank: Rank
    subnet: bool


class _Table(NamedTuple):
    """Where the kernel's rules take a lookup of an IP: a table's routes holding it (ranked),
    and the rule that looked it up."""

    table: int
    ranked: list[Route]
    rule: Rule | None


def _matches(rule: Rule, ip: IP) -> bool:
    found = rule.plain and (rule.dst is None or ip in rule.dst)
    return found != rule.invert


def _lookup(ip: IP, host: HostNet) -> _Table | Unresolved | list[Route]:
    """The kernel's rules for ``ip`` in their order, the ``local`` table skipped: the first
    table holding a route for it (unless that route is ``throw``, or suppressed by
    ``suppress_prefixlength``: the kernel tries the next rule), or a rule refusing it. Else
    the throw routes met (none: no table routes it)."""
    rules = [r for r in host.rules if r.version == ip.version]
    if not rules:  # a kernel without policy routing for the family: main table alone
        rules = [r for r in DEFAULT_RULES if r.version == ip.version]
    routes = _not_of_binding(ip, host)
    thrown: list[Route] = []
    at = 0
    while at < len(rules):
        rule = rules[at]
        at += 1
        if not _matches(rule, ip):
            continue
        if rule.action == "goto":  # to no rule ("unresolved"): the kernel goes on past it
            at = next((i for i, r in enumerate(rules) if r.priority == rule.goto), at)
            continue
        if rule.action in _NULL_EFFECTS:
            return Unresolved(_refused_by_rule(ip, rule))
        if rule.action != "lookup" or rule.table == LOCAL_TABLE:
            continue
        ranked = sorted((r for r in routes if r.table == rule.table and ip in r.dst), key=_rank)
        if not ranked:
            continue
        if ranked[0].type == "throw":
            thrown.append(ranked[0])
            continue
        if ranked[0].dst.prefixlen <= rule.suppress_prefixlen:
            continue
        return _Table(rule.table, ranked, None if _default_rule(rule) else rule)
    return thrown


def _not_of_binding(ip: IP, host: HostNet) -> list[Route]:
    """The routes of ``ip``'s family, but the one its binding here added: an IPv6 address
    (a kube-vip VIP on ``lo``, a Service IP on ``kube-ipvs0`` set up) puts a route to itself
    on its device in the main table, which the kernel would not have were it not bound."""
    bound = {lk.index for lk in host.bound_on(ip)}
    return [
        r for r in host.routes
        if r.dst.version == ip.version
        and not (r.oif in bound and r.gateway is None and r.dst.num_addresses == 1)
    ]  # fmt: skip


def _default_rule(rule: Rule) -> bool:
    return any(rule == default for default in DEFAULT_RULES)


def _by_routes(ip: IP, host: HostNet) -> Resolution:
    """The first route, in the kernel's order, of the table its rules choose, whose NIC can
    answer. A null route the kernel takes ends it; so does one met past the routes skipped,
    as the kernel would take it were those gone."""
    found = _lookup(ip, host)
    if isinstance(found, Unresolved):
        return found
    if isinstance(found, list):
        if found:
            return Unresolved(_refused(ip, found[-1]))
        return _not_found(ip, host, {}, [], None, table=None)
    ranked = found.ranked
    if ranked[0].type != "unicast":
        return Unresolved(_refused(ip, ranked[0]))
    skipped: list[str] = []
    passed: dict[str, _Held] = {}
    for route in ranked:
        if route.type != "unicast":
            return _not_found(ip, host, passed, skipped, route, table=found)
        link = host.link(route.oif)
        if link is None:
            continue
        why_not = unusable(link, host)
        if why_not is None:
            held = _held(ip, host, passed, _rank(route), found.table)
            return _answer_on(ip, route, link, host, held=held, skipped=skipped, table=found)
        skipped.append(f"{link.name} ({_route_text(route)}) {why_not}")
        if route.gateway is None:  # the kernel sends the IP out of that device itself
            passed[f"{link.name} ({route.dst})"] = _Held(_rank(route), _connected(route, host))
    return _not_found(ip, host, passed, skipped, None, table=found)


def _table_name(table: int) -> str:
    return TABLES.get(table, str(table))


def _where(table: _Table) -> str:
    """``table main``, or the table and the rule that chose it."""
    text = f"table {_table_name(table.table)}"
    if table.rule is not None:
        text += f", chosen by rule {table.rule.priority}"
    return text


def _answer_on(
    ip: IP,
    route: Route,
    link: Link,
    host: HostNet,
    *,
    held: dict[str, _Held],
    skipped: list[str],
    table: _Table,
) -> Resolution:
    """``route``'s NIC, unless a device that cannot answer comes first and ``route`` is no
    subnet of ``link``'s own: the kernel reaches the IP through that device (down for now, a
    tunnel), and ``route``'s NIC is on another segment, where answering for the Eip's IPs
    reaches nobody who asks. A less specific subnet of the NIC's own is still its segment."""
    if held and not _connected(route, host):
        return Unresolved(_held_text(ip, held, route, skipped))
    why = f"{_label(route, host)} ({_where(table)}){_multipath_text(route, host)}"
    return Resolved(link, why + _skipped_text(skipped))


def _not_found(
    ip: IP,
    host: HostNet,
    passed: dict[str, _Held],
    skipped: list[str],
    stop: Route | None,
    *,
    table: _Table | None,
) -> Unresolved:
    """No NIC: every route of ``table`` (None: no table routes ``ip``) was passed over, or
    the walk ``stop``-ped at a null route."""
    held = _held(ip, host, passed, None, MAIN_TABLE if table is None else table.table)
    if held:
        return Unresolved(_held_text(ip, held, None, skipped))
    beyond = ""
    if stop is not None:
        beyond = f" (past the routes skipped, the kernel's next, {_route_text(stop)}, refuses it)"
    if table is None:
        where = _tables_text(ip, host)
    elif table.table == MAIN_TABLE and table.rule is None:
        where = "the main table"
    else:
        where = _where(table)
    return Unresolved(
        f"no route of {where} reaches {ip} through a usable NIC{beyond}{_skipped_text(skipped)}"
    )


def _tables_text(ip: IP, host: HostNet) -> str:
    """The tables the kernel's rules look ``ip`` up in that hold routes: "the main table"
    when that is the only one."""
    tables = dict.fromkeys(
        r.table for r in host.rules
        if r.version == ip.version and r.action == "lookup" and r.table != LOCAL_TABLE
        and _matches(r, ip) and any(route.table == r.table for route in host.routes)
    )  # fmt: skip
    if set(tables) <= {MAIN_TABLE}:
        return "the main table"
    return (
        "the tables the kernel's rules look it up in ("
        + ", ".join(_table_name(t) for t in tables)
        + ")"
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
    """What a multipath route over several devices means (over one device: nothing, the
    kernel's choice among its next hops changes no NIC)."""
    devices = dict.fromkeys(route.multipath)
    if len(devices) < 2:
        return ""
    names = ", ".join(lk.name if (lk := host.link(i)) else f"#{i}" for i in devices)
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
    table = "the main table" if route.table == MAIN_TABLE else f"table {_table_name(route.table)}"
    if route.type == "throw":
        return (
            f"{table}'s route for {ip} is {_route_text(route)}: the kernel leaves {table} for "
            "the tables of later rules, and none of them routes it ('Network is "
            f"unreachable'), so OpenELB's speaker fails there too; {todo}"
        )
    return (
        f"the kernel drops traffic to {ip}: {table}'s route for it is "
        f"{_route_text(route)} ({_NULL_EFFECTS.get(route.type, 'it refuses it')}), so "
        f"OpenELB's speaker fails there too (its RouteGet gets an error); {todo}"
    )


def _refused_by_rule(ip: IP, rule: Rule) -> str:
    return (
        f"the kernel drops traffic to {ip}: its routing rule {rule.priority} is "
        f"{rule.action} ({_RULE_EFFECTS[rule.action]}), so OpenELB's speaker fails there too "
        "(its RouteGet gets an error); point can_reach at an IP this node routes through the "
        "Eip's NIC (its gateway, or a host on its subnet)"
    )


_NULL_EFFECTS = {
    "blackhole": "it discards what is sent there",
    "unreachable": "it answers 'No route to host'",
    "prohibit": "it answers 'Permission denied'",
}
# A rule of these actions answers otherwise than a route of its type (fib4_rule_action).
_RULE_EFFECTS = {**_NULL_EFFECTS, "unreachable": "it answers 'Network is unreachable'"}


# How the kernel weighs an IPv6 router preference (IPV6_DECODE_PREF): higher wins.
_PREFERENCE = {"high": 3, "medium": 2, "low": 1}


def _rank(route: Route) -> Rank:
    """How the kernel prefers a route, lowest first: longest prefix, then lowest metric, then
    (IPv6) highest router preference: two routers advertising on two NICs give two default
    routes of one metric, and the kernel takes the one of higher preference (rt6_select)."""
    return (-route.dst.prefixlen, route.metric, -_PREFERENCE.get(route.pref, 0))


def _held(
    ip: IP, host: HostNet, passed: dict[str, _Held], rank: Rank | None, table: int
) -> dict[str, _Held]:
    """The devices that cannot answer on the kernel's way to ``ip`` before a route of
    ``rank`` (None: any) in ``table``: those of the routes passed over, and (in the main
    table, where a NIC's subnet route lives) the subnets holding ``ip`` of NICs that are down
    but would otherwise answer (setting a NIC down takes its route away; IPv4 addresses stay;
    ranked as a connected route of metric 0)."""
    found = dict(passed)
    for address in host.addresses if table == MAIN_TABLE else ():
        if address.ip.version != ip.version or address.prefixlen == address.ip.max_prefixlen:
            continue  # a single address: no subnet
        subnet = ip_network(f"{address}", strict=False)
        link = host.link(address.index)
        held = _Held((-address.prefixlen, 0, -_PREFERENCE["medium"]), True)
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
        f"table {table}"
    )


# What a route get's error means: the route the kernel met (or none).
_REFUSALS = {
    errno.EINVAL: "blackhole route: the kernel drops traffic to {ip} ('Invalid argument')",
    errno.EHOSTUNREACH: "unreachable route: the kernel refuses {ip} ('No route to host')",
    errno.EACCES: "prohibit route: the kernel refuses {ip} ('Permission denied')",
    errno.ENETUNREACH: (
        "no route: no table the kernel's rules consult routes {ip} (a throw route may have "
        "ended a table's lookup), or an unreachable rule refuses it ('Network is unreachable')"
    ),
}
_SPEAKER_FAILS = "OpenELB's speaker fails too (its RouteGet returns this error)"
