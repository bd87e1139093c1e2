"""What this node should do now, pure: which IPs to announce on which NIC, what to warn
about, and the node report the webhook reads (annotation ``eip-guard.io/network``)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.agent.election import Assignment
from app.agent.netlink import HostNet, own_nic
from app.agent.resolve import Resolved, resolve
from app.core.addresses import IP, Network
from app.core.eips import Eip
from app.core.interfaces import CanReach

NONE: Mapping[str, IP] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Announcement:
    ip: IP
    eip: str
    nic: str
    why: str  # why this NIC


@dataclass(frozen=True)
class Plan:
    announcements: tuple[Announcement, ...] = ()
    problems: tuple[str, ...] = ()  # assignments won but not announced, and why
    notes: tuple[str, ...] = ()  # announced, but something looks wrong
    # Each won IP's text, parsed: handed to the next plan() so that it parses only new ones.
    parsed: Mapping[str, IP] = field(default_factory=dict, compare=False, repr=False)

    def by_nic(self) -> dict[str, frozenset[IP]]:
        found: dict[str, set[IP]] = {}
        for a in self.announcements:
            found.setdefault(a.nic, set()).add(a.ip)
        return {nic: frozenset(ips) for nic, ips in found.items()}


def plan(won: Iterable[Assignment], host: HostNet, parsed: Mapping[str, IP] = NONE) -> Plan:
    """What to announce, and where, for the assignments this node won (``election.mine``).
    ``parsed``: IPs parsed before (the last plan's ``parsed``), not parsed again."""
    ips: dict[str, IP] = {}
    announcements: list[Announcement] = []
    problems: list[str] = []
    notes: list[str] = []
    resolved: dict[str, Any] = {}
    taken = _taken(host)
    subnets = _subnets(host)  # once per plan, not once per announcement
    for assignment in won:
        eip = assignment.eip
        if eip.name not in resolved:
            resolved[eip.name] = resolve(eip.interface, host)
        where = resolved[eip.name]
        ip = parsed.get(assignment.ip)
        if ip is None:
            ip = ipaddress.ip_address(assignment.ip)  # the election keeps only plain IPs
        ips[assignment.ip] = ip
        if ip in taken:
            # A pool over the node network handed out the gateway or a node's address: to
            # answer for it is to take its traffic from the whole segment.
            problems.append(
                f"Eip {eip.name}: won {ip} but will not answer for it: it is {taken[ip]}, "
                "whose traffic answering would take; leave it out of the Eip's pool"
            )
            continue
        if not isinstance(where, Resolved):
            problems.append(f"Eip {eip.name}: won {ip} but cannot announce it: {where.reason}")
            continue
        if ip.version == 6 and not where.link.ipv6:
            problems.append(f"Eip {eip.name}: won {ip} but will not announce it: "
                            f"{ipv6_off(where.link.name)}")  # fmt: skip
            continue
        announcements.append(Announcement(ip, eip.name, where.link.name, where.why))
        if not any(ip in network for network in subnets.get(where.link.index, ())):
            # OpenELB (since v0.6) refuses this case; we answer, but say why nobody may ask.
            notes.append(
                f"Eip {eip.name}: {ip} lies in no subnet of {where.link.name}, so hosts on "
                "that link may never ask for it by ARP/NDP; check the Eip's interface"
            )
    return Plan(tuple(announcements), tuple(problems), tuple(notes), ips)


def ipv6_off(nic: str) -> str:
    """Why no IPv6 Eip is announced on ``nic``, whose IPv6 the kernel has off."""
    return (
        f"IPv6 is off on {nic} (net.ipv6.conf.{nic}.disable_ipv6=1, an MTU below 1280, or "
        "no IPv6 in the kernel), so the kernel drops the IPv6 traffic that answering NDP "
        f"would draw there; turn IPv6 on for {nic} or point the Eip's interface at a NIC "
        "with IPv6"
    )


def _subnets(host: HostNet) -> dict[int, tuple[Network, ...]]:
    """The subnets of each NIC's addresses, by link index: each address parsed once (at
    20,000 announcements, parsing them again for each took 0.3 s of every tick)."""
    found: dict[int, list[Network]] = {}
    for address in host.addresses:
        network = ipaddress.ip_interface((address.ip, address.prefixlen)).network
        found.setdefault(address.index, []).append(network)
    return {index: tuple(networks) for index, networks in found.items()}


def _taken(host: HostNet) -> dict[IP, str]:
    """The IPs this node must never answer for: its NICs' own addresses and its routes'
    gateways (Service IPs bound on kube-ipvs0 are no NIC's: those are the Eips' to answer)."""
    taken: dict[IP, str] = {
        r.gateway: "a gateway of this node's routes" for r in host.routes if r.gateway is not None
    }
    for link in host.links:
        if own_nic(link):
            for address in host.addresses_of(link.index):
                taken[address.ip] = f"an address of this node's {link.name}"
    return taken


@dataclass(frozen=True, slots=True)
class LocalBinding:
    """An Eip whose can_reach IP is bound on this node right now: the #331 trap, live."""

    eip: str
    ip: IP
    devices: tuple[str, ...]

    @property
    def message(self) -> str:
        return (
            f"can_reach:{self.ip} of Eip {self.eip} is bound on this node "
            f"({', '.join(self.devices)}), so 'ip route get {self.ip}' answers lo and "
            "OpenELB's speaker fails with 'invalid interface lo' at its next restart. "
            "Use an IP that nodes reach but nothing binds, such as the gateway."
        )


def by_can_reach_ip(eips: Iterable[Eip]) -> dict[IP, tuple[str, ...]]:
    """The layer2 Eips with ``can_reach``, by that IP: the IPs the agent asks the kernel
    about on every tick (``Netlink.host``'s probe), each with the Eips naming it."""
    found: dict[IP, list[str]] = {}
    for eip in eips:
        if eip.speaks_layer2 and isinstance(eip.interface, CanReach):
            found.setdefault(eip.interface.ip, []).append(eip.name)
    return {ip: tuple(names) for ip, names in found.items()}


def local_bindings(by_ip: Mapping[IP, Sequence[str]], host: HostNet) -> tuple[LocalBinding, ...]:
    """The Eips whose ``can_reach`` IP is bound on this node (``by_can_reach_ip``, probed in
    ``host``): one look per distinct IP, however many Eips name it."""
    found = []
    for ip, names in by_ip.items():
        devices = tuple(lk.name for lk in host.bound_on(ip))
        if devices:
            found += [LocalBinding(name, ip, devices) for name in names]
    return tuple(found)


@dataclass(frozen=True)
class NodeReport:
    """The JSON the webhook reads from the Node (see app.core.extraction._node_report)."""

    interfaces: tuple[Mapping[str, Any], ...] = ()
    gateways: tuple[str, ...] = ()

    def to_json(self) -> str:
        body = {"interfaces": list(self.interfaces), "gateways": list(self.gateways)}
        return json.dumps(body, separators=(",", ":"), sort_keys=True)


def node_report(host: HostNet) -> NodeReport:
    """The node's own network: NICs (no loopback, no virtual devices, whose addresses are
    Service or pod IPs by the thousand) with their addresses, and the default gateways."""
    interfaces = []
    for link in sorted(host.links, key=lambda lk: lk.name):
        if not own_nic(link):
            continue
        interfaces.append(
            {
                "name": link.name,
                "mac": link.mac,
                "up": link.up,
                "addresses": [str(a) for a in host.addresses_of(link.index)],
            }
        )
    gateways = sorted(
        {str(r.gateway) for r in host.routes if r.dst.prefixlen == 0 and r.gateway is not None}
    )
    return NodeReport(tuple(interfaces), tuple(gateways))
