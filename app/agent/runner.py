"""The agent's loop: read the cluster and the kernel, plan, speak, report. Imperative shell.

Where the cluster comes from is a :class:`ClusterSource`: a snapshot file (static mode)
or the Kubernetes API with per-node Leases (live mode, built in ``app.kube``). Side
effects a live agent has on the cluster (node report, Events) are callables passed in.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from app.agent.claims import Claims, NodeStates
from app.agent.election import (
    Assignment,
    ClusterView,
    Elector,
    ViewMaker,
    node_states,
    score,
)
from app.agent.frames import Nic, mac_bytes
from app.agent.health import Status
from app.agent.netlink import HostNet, Netlink, NetlinkError
from app.agent.plan import (
    Announcement,
    LocalBinding,
    Plan,
    by_can_reach_ip,
    local_bindings,
    node_report,
    plan,
)
from app.agent.speaker import Speaker, Target
from app.core.addresses import IP
from app.sources.errors import InputError
from app.sources.files import SNAPSHOT_SUFFIXES, load_objects

Log = Callable[[str], None]


# Devices that hold every Service IP on every node at once (kube-proxy's IPVS dummy,
# kube-router's): a can_reach IP bound there is bound on all nodes, and every agent made its
# own Event of it, a thousand Events of one Eip on a thousand nodes.
EVERY_NODE_DEVICES = ("kube-ipvs0", "kube-dummy-if")
EVENT_REPORTERS = 3  # members that record the Event of such a binding


def records_event(node: str, binding: LocalBinding, members: frozenset[str]) -> bool:
    """Whether ``node`` records the Warning Event of ``binding`` (it logs it and counts it in
    its metrics whatever this says): a binding on a device of its own, always; one on a
    device that binds it on every node, only when ``node`` is among the
    :data:`EVENT_REPORTERS` members scoring lowest for it (the election's hash of the Eip and
    IP; ``node`` counted among them whether or not the members hold it yet)."""
    if not members or not all(d.startswith(EVERY_NODE_DEVICES) for d in binding.devices):
        return True
    key = f"{binding.eip}#{binding.ip}"
    own = score(node, key)
    ahead = sum(1 for other in members if other != node and score(other, key) < own)
    return ahead < EVENT_REPORTERS


class SourceError(Exception):
    """The cluster could not be read this time; the agent keeps its last good view."""


class ClusterSource(Protocol):
    def objects(self) -> Sequence[Mapping[str, Any]]:
        """Every object the agent reads: the same sequence object while nothing changed, so
        the agent makes its view of the cluster again only after a change (at 50,000 Eips
        and 100,000 EndpointSlices a view read whole takes about 2 s of CPU; a tick comes
        every 0.5 s). A changed object is a new object, never one edited in place: the view
        reads again only those (``ViewMaker``)."""
        ...

    def members(self) -> frozenset[str]:
        """Live nodes (this one included)."""
        ...


Stamp = tuple[int, int, int, int, int]


def _stamp(st: os.stat_result) -> Stamp:
    """What tells a file's versions apart without reading it. Not the mtime alone: a rewrite
    within one timestamp tick, or one whose writer restores the mtime (``cp -p``, ``rsync
    -t``, ``touch -r``), keeps it. The change time is the kernel's, a new file (written and
    renamed over, as kubectl and editors do) has a new inode, and the size is one more check
    for a rewrite in place."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class SnapshotSource:
    """Static mode: objects from snapshot files, re-read when a file changes."""

    def __init__(
        self,
        paths: Sequence[Path],
        node: str,
        members: Sequence[str] | None,
        log: Log | None = None,
    ) -> None:
        self._paths, self._node, self._members = tuple(paths), node, members
        self._log = log
        self._stamp: tuple[tuple[str, Stamp], ...] | None = None
        self._objects: Sequence[Mapping[str, Any]] = ()
        # The named Nodes of self._objects, read once per snapshot, and whether ours is one.
        self._nodes: tuple[object, frozenset[str]] = (None, frozenset())
        self._own_missing = False
        # The stamp of the files when they last failed to load, and why.
        self._failed: tuple[tuple[tuple[str, Stamp], ...] | None, str] = (None, "")

    def _stamps(self) -> tuple[tuple[str, Stamp], ...]:
        """Each snapshot file (files inside directories too) with its ``_stamp``."""
        stamps: list[tuple[str, Stamp]] = []
        for path in self._paths:
            file = path
            try:
                if path.is_dir():
                    # Only the files the snapshot is read from: a stray dangling symlink
                    # beside them (an editor's lock, say) made the agent refuse to start,
                    # saying the directory could not be read.
                    for file in sorted(path.rglob("*")):
                        if file.suffix in SNAPSHOT_SUFFIXES:
                            stamps.append((str(file), _stamp(file.stat())))
                    continue
                st = path.stat()
            except OSError as exc:
                raise SourceError(f"{file}: cannot read: {exc.strerror or exc}") from exc
            if not stat.S_ISREG(st.st_mode):
                # Re-read on every change, a FIFO would block the agent (and its answers)
                # until some writer came.
                raise SourceError(f"{path}: not a regular file")
            stamps.append((str(path), _stamp(st)))
        return tuple(stamps)

    def objects(self) -> Sequence[Mapping[str, Any]]:
        stamp = self._stamps()
        if stamp == self._failed[0]:
            # Not read again until it changes: a big YAML snapshot left truncated (its writer
            # died) took 0.8 s per 4 MiB to refuse, on every look, while the speaker waited.
            raise SourceError(self._failed[1])
        if stamp != self._stamp:
            try:
                self._objects = load_objects(*self._paths)
            except InputError as exc:
                self._failed = (stamp, str(exc))
                raise SourceError(str(exc)) from exc
            self._stamp, self._failed = stamp, (None, "")
        return self._objects

    def members(self) -> frozenset[str]:
        """``--members`` or else every Node of the snapshot; a running agent is live."""
        objects = self.objects()
        if self._nodes[0] is not objects:
            # As the view reads Nodes (a hand-written snapshot's `metadata: x` raised here and
            # ended the agent); a Node without a name is no member ("None" or "" was one).
            self._nodes = (objects, node_states(objects)[0] - {""})
            self._note_own_node(self._nodes[1])
        if self._members is not None:
            return frozenset(self._members) | {self._node}
        return self._nodes[1] | {self._node}

    def _note_own_node(self, nodes: frozenset[str]) -> None:
        """Says when the snapshot has Nodes but not ours: the election leaves a member
        without a Node out (as OpenELB lists the Nodes), so the agent answered for nothing
        without a word, a typo in --node-name included. As live mode says it."""
        missing = bool(nodes) and self._node not in nodes
        if self._log is not None and missing != self._own_missing:
            if missing:
                self._log(f"no Node named {self._node} in the snapshot (--node-name is not "
                          "its name?): this node answers for no IP until it is there")  # fmt: skip
            else:
                self._log(f"Node {self._node} is in the snapshot again")
        self._own_missing = missing


# Under constant change (the EndpointSlices of a busy cluster) a view would be made on every
# tick: after one that took t seconds, the next waits until t / VIEW_SHARE has passed.
VIEW_SHARE = 0.25


@dataclass(frozen=True)
class Settings:
    node: str
    interval: float = 0.5  # seconds between looks at the cluster and the kernel
    # A bound on how late the agents act on each watch (claims.Claims): a change that may
    # move an IP waits this long. Live mode uses the Lease warm-up, the same bound.
    settle: float = 3.0


def targets(current: Plan, host: HostNet) -> dict[str, Target]:
    found = {}
    for name, ips in current.by_nic().items():
        link = host.by_name(name)
        if link is None:
            continue
        found[name] = Target(name, link.index, Nic(mac_bytes(link.mac)), ips)
    return found


def _words(a: Announcement) -> tuple[str, str, str]:
    """The order announcements are logged in."""
    return (str(a.ip), a.nic, f"Eip {a.eip}, NIC by {a.why}")


class Agent:
    def __init__(
        self,
        settings: Settings,
        source: ClusterSource,
        netlink: Netlink,
        log: Log,
        *,
        speaker: Speaker | None = None,
        report: Callable[[str], bool] | None = None,
        warn: Callable[[LocalBinding], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self._source, self._netlink, self._log = settings, source, netlink, log
        self._clock = clock
        self._view_due = float("-inf")  # no new view before this (VIEW_SHARE)
        self._speaker = speaker
        self._report, self._warn = report, warn
        self._view = ClusterView()
        self._views = ViewMaker()  # reads again only the objects that changed
        self._elector = Elector(settings.node)  # scores again only the assignments that did
        # What this node wins it answers for only when it wins it on every mix of what it saw
        # over the settle time (claims.Claims): agents see changes at different moments.
        self._claims = Claims(settings.node, settings.settle)
        self._wins: tuple[Assignment, ...] = ()  # won at the last election, claimed or not
        self._won_states: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        # The Nodes, and the unfit ones, of the objects last read while a view of them waits.
        self._states_of: tuple[object, tuple[frozenset[str], frozenset[str]]] | None = None
        self._last_read: Sequence[Mapping[str, Any]] | None = None
        # Of the view: layer2 Eips with can_reach by that IP, asked of the kernel every tick.
        self._by_ip: dict[IP, tuple[str, ...]] = {}
        self._bound: tuple[object, ...] | None = None  # what the last bindings were made of
        self._views_made = 0
        self._seen: Sequence[Mapping[str, Any]] | None = None  # what self._view was made of
        self._won: tuple[Assignment, ...] = ()  # what this node won, of the view and members:
        self._won_view: ClusterView | None = None
        self._won_members: frozenset[str] | None = None
        # The last plan and what it was made of (the won assignments, the view's ignored Eips
        # and the host): made again, with the speaker's update, only after a change.
        # At 20,000 won IPs a plan, its targets and their logs took 0.35 s of every tick, and
        # the speaker answered nothing meanwhile.
        self._planned: tuple[tuple[Assignment, ...], tuple[str, ...], HostNet, Plan] | None = None
        self._announced: set[Announcement] = set()
        self._announced_by_nic: dict[str, int] = {}
        self._problems: set[str] = set()
        self._bindings: set[LocalBinding] = set()
        self._members: frozenset[str] = frozenset()  # nobody until the first good read
        self._error: str | None = None
        self._last_logged: str | None = None
        self._last_reported: str | None = None
        self._looks = self._cluster_errors = self._kernel_errors = 0
        self._kernel_error: str | None = None
        self._view_seconds = 0.0
        # What the probe server reads: replaced whole after each look, never edited.
        self.status = Status(clock(), settings.interval, speaker=speaker is not None)

    def tick(self) -> Plan | None:
        """One look at the cluster and the kernel; returns the plan it acted on."""
        current = self._look()
        self._looks += 1
        self.status = self._status()
        return current

    def _status(self) -> Status:
        speaker = self._speaker
        return Status(
            started=self.status.started,
            interval=self.settings.interval,
            looks=self._looks,
            last_look=self._clock(),
            last_look_unix=time.time(),
            viewed=self._seen is not None,
            cluster_error=self._error,
            cluster_errors=self._cluster_errors,
            kernel_error=self._kernel_error,
            kernel_errors=self._kernel_errors,
            member=self.settings.node in self._members,
            members=len(self._members),
            speaker=speaker is not None,
            announced=self._announced_by_nic,
            problems=len(self._problems),
            bound_locally=len(self._bindings),
            replies=0 if speaker is None else speaker.replies,
            drops={} if speaker is None else dict(speaker.drops),
            view_seconds=self._view_seconds,
        )

    def _look(self) -> Plan | None:
        # Keep the last view or members when one cannot be read: an API blip must not make
        # every node announce. Members are read on their own, so fencing never waits.
        error = None
        viewed = None  # when this tick began a new view
        try:
            objects = self._source.objects()
            self._last_read = objects
            now = self._clock()
            if objects is not self._seen and now >= self._view_due:
                viewed = now
                self._view, self._seen = self._views.view(objects), objects
                self._by_ip = by_can_reach_ip(self._view.eips)
                self._views_made += 1
        except SourceError as exc:
            error = f"cannot read the cluster, keeping the last view: {exc}"
        try:
            self._members = self._source.members()
        except SourceError as exc:
            error = error or f"cannot read the members, keeping the last ones: {exc}"
        self._note_error(error)
        if error is not None:
            self._cluster_errors += 1
        members = self._members
        states = nodes, unfit = self._node_states()
        absent = members - nodes if nodes else frozenset()  # no news of Nodes: none absent
        if (
            self._view is not self._won_view
            or members != self._won_members
            or states != self._won_states
        ):
            # Elected again only when the view, the members or the Nodes' states changed,
            # not on every tick.
            view = self._view if unfit == self._view.unfit else replace(self._view, unfit=unfit)
            wins = self._elector.mine(view, members - absent if absent else members)
            if self._seen is not None:  # a view read: no news before (a first read failing)
                # The Nodes as such, not the absent members: a Node back while its node is
                # no member (in its Lease's warm-up) is a change, however it joins later.
                self._claims.seen(
                    self._view,
                    NodeStates(nodes, self._view.excluded, unfit),
                    members,
                    self._clock(),
                )
            self._wins, self._won = wins, self._claims.claimed(wins, self._clock())
            self._won_view, self._won_members, self._won_states = self._view, members, states
        elif self._clock() >= self._claims.due:  # an IP's wait is over
            self._won = self._claims.claimed(self._wins, self._clock())
        if viewed is not None:  # the next view waits in proportion to this one and its election
            self._view_seconds = self._clock() - viewed
            self._view_due = viewed + self._view_seconds / VIEW_SHARE
        try:
            host = self._netlink.host(self._by_ip.keys())
        except NetlinkError as exc:
            if str(exc) != self._kernel_error:  # said once, not on every look
                self._log(str(exc))
            self._kernel_error, self._kernel_errors = str(exc), self._kernel_errors + 1
            if self._planned is not None:  # IPs lost meanwhile stop at once all the same
                self._plan(self._planned[2])  # on the node as last read
            return None
        if self._kernel_error is not None:
            self._log("reading this node's links again")
            self._kernel_error = None
        current = self._plan(host)
        # Made again only when the view or a probed IP's devices changed: 50,000 Eips naming
        # one can_reach IP made 50,000 bindings on every tick.
        devices = (tuple(lk.index for lk in host.bound_on(ip)) for ip in self._by_ip)
        bound = (self._views_made, *devices)  # a count: comparing views compares every Eip
        if bound != self._bound:
            self._bound = bound
            self._note_bindings(local_bindings(self._by_ip, host))
        text = node_report(host).to_json()
        if text != self._last_logged:
            self._last_logged = text
            self._log(f"node report: {text}")
        # Written again on the next tick when it failed: the report callback says so.
        if self._report is not None and text != self._last_reported and self._report(text):
            self._last_reported = text
        return current

    def _plan(self, host: HostNet) -> Plan:
        """The plan for what this node won on ``host``, acted on: made again only when the
        won assignments (compared by identity first: a new view keeps the assignments of
        unchanged Eips), the view's ignored Eips (logged with the plan's problems) or the
        host changed, or the speaker has something to try again."""
        last = self._planned
        speaker = self._speaker
        won, ignored = self._won, self._view.ignored
        if (
            last is not None
            and (last[0] is won or last[0] == won)
            and last[1] == ignored
            and last[2] == host
            and (speaker is None or not speaker.retrying)
        ):
            return last[3]
        current = plan(won, host, last[3].parsed if last is not None else {})
        if speaker is not None:
            speaker.update(targets(current, host))
        self._note_changes(current)  # after the update: "announce" means answering now
        self._planned = (won, ignored, host, current)
        return current

    def _node_states(self) -> tuple[frozenset[str], frozenset[str]]:
        """The Nodes, and the unfit ones, to elect with (a member without a Node is left out:
        a machine whose Node was deleted may run on, and OpenELB lists the Nodes), from the
        objects last read even while a view of them waits (VIEW_SHARE): the settle time
        bounds how late agents may hear of a change, and a view of 50,000 Eips can wait
        seconds. Nothing before the first view, nor from a view without Nodes (a snapshot)."""
        if self._seen is None:
            return frozenset(), frozenset()
        nodes, unfit = self._view.nodes, self._view.unfit
        objects = self._last_read
        if objects is not None and objects is not self._seen:
            if self._states_of is None or self._states_of[0] is not objects:
                self._states_of = (objects, node_states(objects))
            nodes, unfit = self._states_of[1]
        return nodes, unfit

    def _note_error(self, error: str | None) -> None:
        if error != self._error and error is not None:
            self._log(error)
        elif error is None and self._error is not None:
            self._log("reading the cluster again")
        self._error = error

    def _note_changes(self, current: Plan) -> None:
        verb = "announce" if self._speaker is not None else "would announce (report-only)"
        shown = current.announcements
        if self._speaker is not None:  # what answers, not what was planned: a NIC may fail
            answering = self._speaker.announced()
            shown = tuple(a for a in shown if a.ip in answering.get(a.nic, ()))
        # Compared as they are; only what changed is put in words (at 20,000 IPs, making
        # the words of every one took 40 ms).
        now = set(shown)
        for a in sorted(now - self._announced, key=_words):
            self._log(f"{verb} {a.ip} on {a.nic} (Eip {a.eip}, NIC by {a.why})")
        for a in sorted(self._announced - now, key=_words):
            self._log(f"stop announcing {a.ip} on {a.nic}")
        self._announced = now
        by_nic: dict[str, int] = {}
        for a in now:
            by_nic[a.nic] = by_nic.get(a.nic, 0) + 1
        self._announced_by_nic = by_nic  # replaced, never edited: a Status holds it
        found = set(current.problems) | set(current.notes) | set(self._view.ignored)
        for problem in sorted(found - self._problems):
            self._log(problem)
        self._problems = found

    def _note_bindings(self, bindings: Sequence[LocalBinding]) -> None:
        for binding in bindings:
            if binding not in self._bindings:
                self._log(f"warning: {binding.message}")
                if self._warn is not None and records_event(
                    self.settings.node, binding, self._members
                ):
                    self._warn(binding)
        self._bindings = set(bindings)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.tick()
                until = time.monotonic() + self.settings.interval
                if self._speaker is not None:
                    while not stop.is_set() and time.monotonic() < until:
                        self._speaker.serve(min(until, time.monotonic() + 0.2))
                else:
                    stop.wait(self.settings.interval)
        finally:
            if self._speaker is not None:
                self._speaker.close()
