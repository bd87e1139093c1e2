"""Who announces which IP, pure: OpenELB's election, over plain Kubernetes objects.

For each IP in ``status.used`` of each layer2 Eip, among the live members (minus nodes
labelled ``node.kubernetes.io/exclude-from-external-load-balancers``), the node with the lowest
``sha256(nodeName + "#" + ip)`` wins. When every Service sharing the IP has
``externalTrafficPolicy: Local``, only nodes with a ready endpoint of one of them are
candidates; otherwise only nodes OpenELB deems ready (``util.NodeReady``: no ``Ready``
condition other than True, no ``NetworkUnavailable`` other than False).

Only ``protocol: layer2`` Eips are spoken for: OpenELB's ``vip`` protocol runs keepalived,
which binds the IP and does its own VRRP election; answering ARP for it as well would
make two speakers for one IP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.addresses import AddressError, ip_key, parse_ip, quoted, special_kind_of_key
from app.core.eips import Eip, is_eip
from app.core.fields import as_list, as_mapping, as_str
from app.core.labels import EXCLUDE_LABEL, SERVICE_NAME_LABEL

SPOKEN_PROTOCOLS = ("layer2",)


@dataclass(frozen=True, slots=True)
class Assignment:
    """One IP of a layer2 Eip that OpenELB handed out, and the Services using it."""

    eip: Eip
    ip: str
    services: tuple[str, ...]  # "namespace/name"
    also: tuple[Eip, ...] = ()  # other Eips whose status lists the same IP

    @property
    def eips(self) -> tuple[Eip, ...]:
        return (self.eip, *self.also)


@dataclass(frozen=True)
class ClusterView:
    assignments: tuple[Assignment, ...] = ()  # one per IP, whatever Eips list it
    eips: tuple[Eip, ...] = ()  # every Eip, for the local-binding warnings
    nodes: frozenset[str] = frozenset()  # Node objects seen
    excluded: frozenset[str] = frozenset()  # nodes with the exclude label
    local_services: frozenset[str] = frozenset()  # externalTrafficPolicy: Local
    # Local Service -> nodes with a ready endpoint (other Services need none)
    ready_nodes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # status.used entries never announced, and why
    unfit: frozenset[str] = frozenset()  # Nodes not Ready, or NetworkUnavailable


def score(node: str, ip: str) -> bytes:
    return hashlib.sha256(f"{node}#{ip}".encode()).digest()


def elect(ip: str, candidates: Iterable[str]) -> str | None:
    """The node with the lowest sha256(node + "#" + ip), or None without candidates."""
    return min(candidates, key=lambda node: score(node, ip), default=None)


def _assignments(eip: Eip, obj: Mapping[str, Any]) -> tuple[list[Assignment], list[str]]:
    """The IPs of ``status.used`` to announce, each in its one canonical text (the election
    hashes the text: "2001:DB8::1" and "2001:db8::1" elected two nodes for one IP), and why
    the others are not: status is written by whoever may patch it, and an IP outside the
    pool (a node's own address), a broadcast or a zoned one must never be answered for."""
    if eip.protocol not in SPOKEN_PROTOCOLS or eip.disabled:
        return [], []
    used = as_mapping(as_mapping(obj.get("status")).get("used"))
    found, ignored = [], []
    for raw, users in sorted(used.items(), key=lambda item: str(item[0])):
        why = f"Eip {eip.name}: status.used {quoted(str(raw))} is not announced"
        try:
            ip = parse_ip(str(raw))
        except AddressError as exc:
            ignored.append(f"{why}: {exc}")
            continue
        key = ip_key(ip)
        special = special_kind_of_key(key)
        if special is not None:
            ignored.append(f"{why}: it is {special}")
        elif eip.address is None or not eip.address.contains(key):
            ignored.append(f"{why}: it lies outside spec.address {quoted(eip.address_text)}")
        else:
            services = tuple(s for s in as_str(users).split(";") if s)
            found.append(Assignment(eip, str(ip), services))
    return found, ignored


# What one object adds to a view, read once: ("eip", Eip, its assignments), ("node", name,
# excluded, unfit), ("local", "ns/name") or ("ready", ns, service, nodes); None for nothing.
_Part = tuple[Any, ...] | None
_MISSING: Any = object()


def _part(obj: Mapping[str, Any]) -> _Part:
    kind, meta = obj.get("kind"), as_mapping(obj.get("metadata"))
    if is_eip(obj):
        eip = Eip.from_object(obj)
        return ("eip", eip, *_assignments(eip, obj))
    name, ns = as_str(meta.get("name")), as_str(meta.get("namespace"))
    if kind == "Node":
        return ("node", name, EXCLUDE_LABEL in as_mapping(meta.get("labels")), not _ready(obj))
    if kind == "Service":
        if as_mapping(obj.get("spec")).get("externalTrafficPolicy") == "Local":
            return ("local", f"{ns}/{name}")
        return None
    if kind == "EndpointSlice":
        service = as_str(as_mapping(meta.get("labels")).get(SERVICE_NAME_LABEL))
        nodes = []
        for endpoint in map(as_mapping, as_list(obj.get("endpoints"))):
            node = as_str(endpoint.get("nodeName"))
            # A missing `ready` condition means ready (discovery.k8s.io/v1).
            if node and as_mapping(endpoint.get("conditions")).get("ready") is not False:
                nodes.append(node)
        return ("ready", ns, service, tuple(nodes)) if nodes else None
    return None


def _ready(node: Mapping[str, Any]) -> bool:
    """OpenELB's ``util.NodeReady``: a ``Ready`` condition other than True, or a
    ``NetworkUnavailable`` other than False (a broken network plugin), makes a node unfit to
    answer for Services; a Node without those conditions is taken as ready."""
    for condition in map(as_mapping, as_list(as_mapping(node.get("status")).get("conditions"))):
        kind, status = condition.get("type"), condition.get("status")
        if (kind == "Ready" and status != "True") or (
            kind == "NetworkUnavailable" and status != "False"
        ):
            return False
    return True


def node_states(objects: Iterable[Mapping[str, Any]]) -> tuple[frozenset[str], frozenset[str]]:
    """The Nodes of ``objects``, and those OpenELB deems not ready (``ClusterView.nodes`` and
    ``unfit``), read without making a view: the agent reads them on every change, however
    long its views wait (runner.VIEW_SHARE), so that the election hears of a change in time."""
    nodes, unfit = set(), set()
    for obj in objects:
        if obj.get("kind") == "Node":
            name = as_str(as_mapping(obj.get("metadata")).get("name"))
            nodes.add(name)
            if not _ready(obj):
                unfit.add(name)
    return frozenset(nodes), frozenset(unfit)


def _join(parts: Iterable[_Part]) -> ClusterView:
    by_ip: dict[str, Assignment] = {}
    ignored: list[str] = []
    eips: list[Eip] = []
    nodes: set[str] = set()
    excluded: set[str] = set()
    unfit: set[str] = set()
    local: set[str] = set()
    slices: list[tuple[str, str, tuple[str, ...]]] = []
    for part in parts:
        if part is None:
            continue
        what = part[0]
        if what == "eip":
            eips.append(part[1])
            ignored += part[3]
            for a in part[2]:
                held = by_ip.setdefault(a.ip, a)
                if held is not a:  # one IP in two Eips' status: one election, all its Services
                    by_ip[a.ip] = _merged(held, a)
        elif what == "ready":
            slices.append(part[1:])
        elif what == "node":
            nodes.add(part[1])
            if part[2]:
                excluded.add(part[1])
            if part[3]:
                unfit.add(part[1])
        elif what == "local":
            local.add(part[1])
    # Ready nodes matter only for Services with externalTrafficPolicy Local (_candidates):
    # kept for every Service, they were a fifth of a big view.
    ready: dict[str, set[str]] = {}
    for ns, name, ready_nodes in slices:
        service = f"{ns}/{name}"
        if service in local:
            ready.setdefault(service, set()).update(ready_nodes)
    for a in by_ip.values():
        if len(a.eips) > 1:
            names = ", ".join(sorted(e.name for e in a.eips))
            ignored.append(f"{a.ip} is in status.used of Eips {names}: one node announces it")
    return ClusterView(
        tuple(by_ip.values()),
        tuple(eips),
        frozenset(nodes),
        frozenset(excluded),
        frozenset(local),
        {k: frozenset(v) for k, v in ready.items()},
        tuple(ignored),
        frozenset(unfit),
    )


def _merged(held: Assignment, other: Assignment) -> Assignment:
    """One assignment for an IP that two Eips list: the Eip first by name gives the NIC, on
    every node alike; the Services of both decide who may announce."""
    every = sorted((*held.eips, *other.eips), key=lambda e: e.name)
    services = tuple(sorted(set(held.services) | set(other.services)))
    return Assignment(every[0], held.ip, services, tuple(every[1:]))


def cluster_view(objects: Iterable[Mapping[str, Any]]) -> ClusterView:
    """The view of a list of objects, read whole (each Eip parsed once: read twice, a view
    of 50,000 Eips took 1 s more)."""
    return _join(_part(obj) for obj in objects)


class ViewMaker:
    """``cluster_view``, made again after a change from what changed: an object's part is
    read once and kept while the same object (by identity) is in the list.

    The agent's live source swaps a kept object for a new one on every change and never
    edits one in place; a source that hands new objects every time (a snapshot file read
    again) just gets views read whole. 50,000 Eips and 100,000 EndpointSlices took 2-3 s of
    CPU per view read whole, and take 0.1-0.2 s after a change, for about 140 bytes per
    object kept here.
    """

    def __init__(self) -> None:
        self._objects: Sequence[Mapping[str, Any]] = ()
        self._parts: dict[int, _Part] = {}  # id of each object of self._objects -> its part

    def view(self, objects: Sequence[Mapping[str, Any]]) -> ClusterView:
        # Every object of the last list is alive (held in self._objects), so an object of
        # this list whose id is a key is that very object.
        before, parts = self._parts, {}
        for obj in objects:
            key = id(obj)
            part = before.get(key, _MISSING)
            parts[key] = _part(obj) if part is _MISSING else part
        self._objects, self._parts = objects, parts
        return _join(parts.values())


def candidates(assignment: Assignment, members: Iterable[str], view: ClusterView) -> set[str]:
    return set(candidates_of(assignment, *_eligible(view, members), view))


def _eligible(view: ClusterView, members: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The live members that may announce at all (not excluded), and those of them OpenELB
    deems ready. Made once for every assignment."""
    live = frozenset(members) - view.excluded
    return live, (live - view.unfit if view.unfit else live)


def candidates_of(
    assignment: Assignment, live: frozenset[str], fit: frozenset[str], view: ClusterView
) -> frozenset[str]:
    """``candidates`` from the eligible members (``_eligible``). As OpenELB's speaker
    manager: a Service with ``externalTrafficPolicy: Local`` wants the nodes with its ready
    endpoints, any other the ready nodes."""
    if assignment.services and all(s in view.local_services for s in assignment.services):
        with_endpoints = set().union(*(view.ready_nodes.get(s, ()) for s in assignment.services))
        return live & with_endpoints
    return fit


def winners(view: ClusterView, members: Iterable[str]) -> dict[str, str | None]:
    """IP -> announcing node (None when no node qualifies)."""
    member_set = frozenset(members)
    return {a.ip: elect(a.ip, candidates(a, member_set, view)) for a in view.assignments}


def mine(view: ClusterView, members: Iterable[str], node: str) -> tuple[Assignment, ...]:
    """The assignments this node announces: those where ``elect`` would choose it.

    Asked on every tick. A node loses an IP as soon as one candidate scores lower, which with
    uniform hashes comes after a few scores, so only the IPs it wins cost a score per
    candidate (2,000 IPs among 300 nodes: 0.6 s when every IP scored every node).
    """
    live, fit = _eligible(view, members)
    return tuple(a for a in view.assignments if _wins(a, candidates_of(a, live, fit, view), node))


def _wins(assignment: Assignment, among: frozenset[str], node: str) -> bool:
    return node in among and beats(node, assignment.ip, among)


def beats(node: str, ip: str, others: Iterable[str]) -> bool:
    """Whether ``node`` scores lower for ``ip`` than every one of ``others`` (itself among
    them or not): the election's one comparison, for ``mine`` and for ``Claims``. No hash
    is made when there is no other (``Claims`` asks for every IP it holds)."""
    own = b""
    for other in others:
        if other != node:
            own = own or score(node, ip)
            if score(other, ip) <= own:
                return False
    return True


class Elector:
    """``mine`` for one node, again after a change, from what changed: the answer for an
    assignment is kept while it is the same object (``ViewMaker`` keeps the assignments of
    unchanged Eips) and it has the same candidates. 50,000 layer2 IPs among 1,000 members
    took 0.5-0.7 s of CPU per election, and take 0.13 s after an Eip changed.
    """

    def __init__(self, node: str) -> None:
        self._node = node
        self._fit: frozenset[str] = frozenset()
        # id of each assignment of the last election -> (it, its candidates, whether won)
        self._answers: dict[int, tuple[Assignment, frozenset[str], bool]] = {}

    def mine(self, view: ClusterView, members: Iterable[str]) -> tuple[Assignment, ...]:
        live, fit = _eligible(view, members)
        if fit == self._fit:
            fit = self._fit  # the same object: most candidate sets are this very one
        before: dict[int, tuple[Assignment, frozenset[str], bool]] = self._answers
        answers: dict[int, tuple[Assignment, frozenset[str], bool]] = {}
        won = []
        for a in view.assignments:
            among = candidates_of(a, live, fit, view)
            held = before.get(id(a))
            # All the fit members are compared by identity only: equal sets of 1,000
            # members compared for every IP would cost more than electing again.
            if (
                held is not None
                and held[0] is a
                and (held[1] is among or (among is not fit and held[1] == among))
            ):
                wins = held[2]
            else:
                wins = _wins(a, among, self._node)
            answers[id(a)] = (a, among, wins)
            if wins:
                won.append(a)
        self._fit, self._answers = fit, answers
        return tuple(won)
