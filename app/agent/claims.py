"""When a node answers for the IPs it wins: only once no other agent can still see another
winner (``Claims``), since agents read each watch with a lag of their own and a view can be
a mix that never was. Pure, like the election it sits on (``app.agent.election``)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from app.agent.election import Assignment, ClusterView, beats, candidates_of


class NodeStates(NamedTuple):
    """What the election reads of the Nodes: their names (none: no news of Nodes, so no member
    is left out for want of one), those with the exclude label and those OpenELB deems not
    ready (``ClusterView`` has them; the agent reads names and conditions even while a view
    waits, ``node_states``)."""

    nodes: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()
    unfit: frozenset[str] = frozenset()


_NO_NODES = NodeStates()


class Claims:
    """Which of the IPs this node wins it answers for: those it wins on every mix of what it
    saw of their inputs within the last ``settle`` seconds.

    Agents read each watch (Nodes, Eips, Services, EndpointSlices) with a lag of their own,
    so a view can be a mix that never was: one watch read new, another old. Of what decides
    an IP's winner, other than the members, every value this agent saw from its last look
    at least ``settle`` ago until now is kept: the IP's Services (status.used), each
    Service's policy and, while Local, its ready nodes, the Nodes' names and conditions, and
    the exclude labels. An IP is answered when this node wins it on every combination of
    those values, each taken from any moment, with the members of now; one it stops winning
    it gives up at once. So what is won with nothing of its inputs changed within ``settle``
    is answered at once; a change that cannot move the IP from this node (another node's
    endpoint or condition, a node it beats turning NotReady, an Eip's other fields) keeps it
    answered; one that could waits until the values before it are ``settle`` old. Taken as
    moving any winner: an IP new to the view or back in it (another agent may have seen it
    under other Services), a Service turning Local or back (its ready nodes are kept only
    while it is Local), and the first view (no past to trust). What changes only the members
    is taken at once: a member that left was fenced by its Lease, one that joined waited the
    Lease's warm-up.

    The guarantee: no two agents answer for one IP at one moment, as long as (1) each acts on
    what each watch said less than ``settle`` before (its watch's lag, a view that waits,
    runner.VIEW_SHARE, and the time to its next look, counted together), (2) each sees every
    state of each watch that decides an IP's winner (one that lasts less than the time
    between two of an agent's views, or that a watch skips when it lists again, may never
    be seen by it) and (3) each counts itself a member only while the others read its Lease
    as live (live mode: the warm-up, and fencing before the Lease runs out). Proof: let A
    and B answer at t, and T = t - settle. The last look of A at least ``settle`` before its
    decision read each watch as it was at T or before, its last look as it was after T (1);
    having missed no state in between (2), A saw each watch's state at T. So A wins on the
    inputs as they were at T, and so does B. Each counts the other a member (3), so each is
    a candidate of the other's election on those inputs: they cannot both have the lowest
    hash. Neither part can go: an agent acting on a view ``settle`` old sees no change where
    another's has settled, and one that missed a state cannot know of it
    (tests/agent/test_claims.py drives agents with lags up to 2.9 s of a 3 s settle).
    """

    def __init__(self, node: str, settle: float) -> None:
        self.node, self.settle = node, settle
        self.due = math.inf  # when a value seen expires: claimed() is worth asking again then
        self._first: float | None = None  # when the first view came
        self._view: ClusterView | None = None
        self._states = _NO_NODES
        self._members: frozenset[str] = frozenset()
        # What was seen and is no more, with when it changed, kept while recent (settle):
        self._excluded: list[tuple[float, frozenset[str]]] = []
        self._nodes: list[tuple[float, frozenset[str], frozenset[str]]] = []  # nodes, unfit
        self._services: dict[str, list[tuple[float, bool, frozenset[str] | None]]] = {}
        self._ips: dict[str, list[tuple[float, tuple[str, ...] | None]]] = {}  # None: absent
        # One record per look that noted a change, oldest first: when, and which Services
        # and IPs it logged (whether the exclude labels, the Nodes): expiring walks only
        # what expires. Walking every logged Service took 18 ms a view, and 0.2-0.5 s a
        # tick after a burst of 100,000 changed Local Services.
        self._order: deque[_Noted] = deque()

    def seen(
        self, view: ClusterView, states: NodeStates, members: frozenset[str], now: float
    ) -> None:
        """Note what changed since the last view: per IP (new to the view, its Services),
        per Service (its policy, its ready nodes while Local), for every IP (the Nodes'
        ``states``, compared by equality); ``members`` (live, this node among them when it
        counts itself) are only kept."""
        before, old = self._view, self._states
        self._view, self._states, self._members = view, states, members
        if before is None:
            self._first = now
            return
        self._expire(now)
        excluded = states.excluded != old.excluded
        if excluded:
            self._excluded.append((now, old.excluded))
        nodes = states.nodes != old.nodes or states.unfit != old.unfit
        if nodes:
            self._nodes.append((now, old.nodes, old.unfit))
        services: list[str] = []
        ips: list[str] = []
        if view is not before:
            for name in _changed_services(before, view):
                local = name in before.local_services
                ready = before.ready_nodes.get(name, frozenset()) if local else None
                self._services.setdefault(name, []).append((now, local, ready))
                services.append(name)
            held = {a.ip: a for a in before.assignments}
            for a in view.assignments:
                last = held.get(a.ip)
                if last is None:  # new, or back: absent is a value under which nothing is sure
                    self._ips.setdefault(a.ip, []).append((now, None))
                    ips.append(a.ip)
                elif last is not a and last.services != a.services:
                    # only what decides the winner: an Eip's other fields change no election
                    self._ips.setdefault(a.ip, []).append((now, last.services))
                    ips.append(a.ip)
        if excluded or nodes or services or ips:
            self._order.append(_Noted(now, excluded, nodes, tuple(services), tuple(ips)))

    def _expire(self, now: float) -> None:
        """Forget the values replaced ``settle`` ago or more: no other agent acts on them.
        Compared as ``due`` is made (when + settle): ``now - when < settle`` can hold at
        ``now == when + settle`` (1.1 + 3.0 is 4.1, and 4.1 - 1.1 is 2.9999999999999996),
        and a wait ``due`` said was over lasted one more look."""
        order, settle = self._order, self.settle
        if not order or now < order[0].when + settle:
            return
        while order and now >= order[0].when + settle:
            noted = order.popleft()  # the oldest entry of each log it names is its own
            if noted.excluded:
                del self._excluded[0]
            if noted.nodes:
                del self._nodes[0]
            for logs, keys in ((self._services, noted.services), (self._ips, noted.ips)):
                for key in keys:
                    entries = logs[key]
                    if len(entries) == 1:
                        del logs[key]
                    else:
                        del entries[0]

    def claimed(self, won: tuple[Assignment, ...], now: float) -> tuple[Assignment, ...]:
        """Of ``won`` (this node's wins now, on the last view seen with its members), those
        it answers for at ``now``: ``won`` itself when none waits, so that an unchanged
        answer is the same object."""
        settle, view = self.settle, self._view
        if self._first is None or view is None or now < self._first + settle:
            self.due = self._first + settle if self._first is not None and won else math.inf
            return ()
        self._expire(now)
        if not (self._ips or self._services or self._excluded or self._nodes):
            self.due = math.inf
            return won
        sure = _Sure(self, view)
        answered = tuple(a for a in won if sure(a))
        if len(answered) == len(won):
            self.due = math.inf
            return won
        self.due = self._order[0].when + settle  # when the oldest value seen expires
        return answered


class _Noted(NamedTuple):
    """What one look logged (``Claims._order``)."""

    when: float
    excluded: bool
    nodes: bool
    services: tuple[str, ...]
    ips: tuple[str, ...]


class _Sure:
    """Whether a ``Claims``' node wins an assignment on every mix of the values seen: the
    checks on the Nodes made once for all the assignments of one ``claimed``."""

    def __init__(self, claims: Claims, view: ClusterView) -> None:
        # The values seen and replaced within settle: of the Services, of the IPs.
        self.node, self.view, self.services = claims.node, view, claims._services
        self.ips = claims._ips
        members, states = claims._members, claims._states
        node = self.node

        def live(nodes: frozenset[str], excluded: frozenset[str]) -> frozenset[str]:
            return (members & nodes if nodes else members) - excluded

        self.live = live(states.nodes, states.excluded)
        self.fit = self.live - states.unfit if states.unfit else self.live
        self.nodes_changed = bool(claims._excluded or claims._nodes)
        # The Nodes' values seen, each from any time: the names with their conditions (read
        # together), the exclude labels (read with the view, maybe older).
        named = [(states.nodes, states.unfit), *((n, u) for _, n, u in claims._nodes)]
        excluded = [states.excluded, *(x for _, x in claims._excluded)]
        every = [members & n if n else members for n, _ in named]
        self.live_always = all(node in m for m in every) and all(node not in x for x in excluded)
        self.fit_always = self.live_always and all(node not in u for _, u in named)
        if self.nodes_changed:  # who was live or fit in some mix, and is not now
            always_excluded = frozenset.intersection(*excluded)
            live_any = frozenset().union(*every) - always_excluded
            fit_any = frozenset().union(*(m - u for m, (_, u) in zip(every, named, strict=True)))
            self.extra_live = live_any - self.live
            self.extra_fit = (fit_any - always_excluded) - self.fit
        else:
            self.extra_live = self.extra_fit = frozenset()

    def __call__(self, a: Assignment) -> bool:
        node, view, services = self.node, self.view, self.services
        logged = self.ips.get(a.ip, ())
        if not (logged or any(s in services for s in a.services)):
            if not self.nodes_changed:
                return True  # nothing it depends on changed: the view is the only mix
            if not self.live_always:
                return False
            among = candidates_of(a, self.live, self.fit, view)
            if among is self.fit:  # the fit nodes now, and in the Nodes' other states
                if not self.fit_always:
                    return False
                rivals: Iterable[str] = self.extra_fit
            else:  # its ready nodes, live in some state and not now
                rivals = (
                    view.ready_nodes.get(a.services[0], ())
                    if len(a.services) == 1
                    else {n for s in a.services for n in view.ready_nodes.get(s, ())}
                )
                rivals = [n for n in rivals if n in self.extra_live]
            return beats(node, a.ip, rivals)
        uses = [a.services]
        for _, used in logged:
            if used is None:
                return False
            uses.append(used)
        names = {s for used in uses for s in used}
        if not self.live_always:
            return False
        # Each Service's policies and ready nodes seen (None: not kept, it was not Local).
        policies: dict[str, set[bool]] = {}
        readies: dict[str, list[frozenset[str] | None]] = {}
        for s in names:
            local = s in view.local_services
            policies[s] = {local}
            readies[s] = [view.ready_nodes.get(s, frozenset()) if local else None]
            for _, was_local, ready in services.get(s, ()):
                policies[s].add(was_local)
                readies[s].append(ready)
        any_fit = False
        ready_any: set[str] = set()
        for used in uses:
            if not used or any(False in policies[s] for s in used):  # may take the fit nodes
                if not self.fit_always:
                    return False
                any_fit = True
            if used and all(True in policies[s] for s in used):  # may take ready nodes only
                for s in used:
                    for ready in readies[s]:
                        if ready is None:
                            return False  # who had an endpoint then is not known
                        ready_any |= ready
                if not any(all(r is not None and node in r for r in readies[s]) for s in used):
                    return False  # some mix has no endpoint of this node ready
        among = candidates_of(a, self.live, self.fit, view)  # all beaten: it wins now
        others: set[str] = set()
        if any_fit:
            others |= self.extra_fit
            if among is not self.fit:
                others |= self.fit
        others.update(n for n in ready_any if n in self.live or n in self.extra_live)
        others -= among
        return beats(node, a.ip, others)


def _changed_services(before: ClusterView, view: ClusterView) -> frozenset[str]:
    """The Services whose policy (Local or not) or ready nodes differ between two views."""
    if before.local_services is view.local_services and before.ready_nodes is view.ready_nodes:
        return frozenset()
    policy = before.local_services ^ view.local_services
    # The items that differ, in C: 100,000 Local Services compared one by one took 60 ms.
    ready = {s for s, _ in before.ready_nodes.items() ^ view.ready_nodes.items()}
    return frozenset(policy | ready)
