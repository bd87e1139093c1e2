"""Live mode: the cluster as the agent sees it, kept current by watches, and the live
members from per-node Leases. Structurally an ``app.agent.runner.ClusterSource``.

The watches are the webhook's reflector (``app.kube.reflector``: bookmarks, 410 re-list,
backoff, resume); the agent keeps a trimmed copy of each object, so a node holds little even
in a large cluster."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from app.core.eips import EIP_ANNOTATIONS, EIP_SPEC_FIELDS, own, shared
from app.core.fields import as_mapping, as_str
from app.core.labels import EXCLUDE_LABEL, NODE_REPORT_ANNOTATION, SERVICE_NAME_LABEL
from app.kube.agent_api import AgentApi, KubeError, conflict
from app.kube.agent_leases import (
    Held,
    Seen,
    held,
    lease_name,
    live_seen,
    micro_time,
    next_seen_expiry,
    observe,
)
from app.kube.live import not_ready_reason
from app.kube.metrics import KubeMetrics
from app.kube.reflector import Key, Reflector, object_key
from app.kube.resources import EIPS, ENDPOINTSLICES, NODES, SERVICES, Stream
from app.kube.settings import WatchSettings

Log = Callable[[str], None]
# Told what this node's own Node carries as its node report: the annotation's text ("" when
# it has none), or None while the Node does not exist.
OwnNode = Callable[[str | None], None]
Kept = Mapping[str, Any]
Keep = Callable[[Mapping[str, Any]], Kept | None]


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta}


def _copy(value: Any, copy: Callable[[str], str] = shared) -> Any:
    return copy(value) if type(value) is str else value


def _pairs(flat: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(flat[0::2], flat[1::2], strict=True))


class _Kept(Mapping[str, Any]):
    """A kept object held as fields and read as the slimmed object it stands for: equal to
    one kept again from the same object by its fields, and to its dict as a Mapping."""

    __slots__ = ()

    def _fields(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):  # a replayed or unchanged object: compare the fields
            return self._fields() == other._fields()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # equal to a dict, which has none

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._fields()!r}"


class KeptEip(_Kept):
    """What the agent keeps of an Eip, read as the slimmed object it stands for
    (``apiVersion``, ``kind``, ``metadata`` with name, uid and the annotations eip-guard
    reads, ``spec`` with the fields ``Eip.from_object`` reads, ``status.used``) but held as
    fields and flat tuples: kept as those dicts, an Eip took about 1.4 KB (70 MB for 50,000).
    The parts are made when read, which the agent does once per change of the Eip."""

    __slots__ = ("annotations", "api_version", "name", "spec", "uid", "used")

    def __init__(
        self, api_version: str, name: str, uid: str, *, annotations: tuple[Any, ...],
        spec: tuple[Any, ...], used: tuple[Any, ...],
    ) -> None:  # fmt: skip
        self.api_version, self.name, self.uid = api_version, name, uid
        self.annotations, self.spec, self.used = annotations, spec, used  # flat: k, v, k, v...

    def __getitem__(self, key: str) -> Any:
        if key == "kind":
            return "Eip"
        if key == "apiVersion":
            return self.api_version
        if key == "metadata":
            meta: dict[str, Any] = {"name": self.name}
            if self.uid:
                meta["uid"] = self.uid
            if self.annotations:
                meta["annotations"] = _pairs(self.annotations)
            return meta
        if key == "spec":
            return _pairs(self.spec)
        if key == "status" and self.used:
            return {"used": _pairs(self.used)}
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("apiVersion", "kind", "metadata", "spec", "status")[: 5 if self.used else 4])

    def __len__(self) -> int:
        return 5 if self.used else 4

    def _fields(self) -> tuple[Any, ...]:
        return (self.api_version, self.name, self.uid, self.annotations, self.spec, self.used)


def keep_eip(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the agent reads of an Eip, as copies: its name and uid (the uid for the Warning
    Events it records on the Eip), what ``Eip.from_object`` reads and ``status.used``. A
    kubectl-applied Eip also carries its whole JSON in an annotation, and its status
    counters and labels are read by no one here. Empty parts are left out."""
    meta = as_mapping(obj.get("metadata"))
    annotations = as_mapping(meta.get("annotations"))
    spec = as_mapping(obj.get("spec"))
    used = as_mapping(as_mapping(obj.get("status")).get("used"))
    return KeptEip(
        shared(as_str(obj.get("apiVersion"))) or EIPS.api_version,
        own(as_str(meta.get("name"))),
        own(as_str(meta.get("uid"))) if meta.get("uid") else "",
        annotations=tuple(
            x for k in EIP_ANNOTATIONS if k in annotations for x in (k, _copy(annotations[k]))
        ),
        spec=tuple(
            x
            for k in EIP_SPEC_FIELDS
            if k in spec
            for x in (k, _copy(spec[k], own if k == "address" else shared))
        ),
        used=tuple(x for ip, u in used.items() for x in (own(str(ip)), _copy(u, own))),
    )


def _name_only(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Name and namespace, as copies (``object_key``): what is kept of the many Services and
    EndpointSlices holds no string of the parsed list."""
    namespace, name = object_key(obj)
    return {"name": name, "namespace": namespace}


def keep_service(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # Only a Service with externalTrafficPolicy Local changes the election (election.py):
    # the others are not kept at all, and a switch away from Local removes the kept one.
    if (obj.get("spec") or {}).get("externalTrafficPolicy") != "Local":
        return None
    return {"apiVersion": "v1", "kind": "Service", "metadata": _name_only(obj),
            "spec": {"externalTrafficPolicy": "Local"}}  # fmt: skip


_ENDPOINTS: dict[str, dict[str, Any]] = {}  # node name -> its one endpoint
_ENDPOINTS_KEPT = 65_536  # nodes, more than a cluster has; then the table starts over


def _ready_endpoint(node: str) -> dict[str, Any]:
    """``{"nodeName": node}``, one per node, shared by every slice naming it (a dict per
    endpoint took 45 MB for 100,000 slices of two endpoints). Kept objects are only read; a
    plain dict keeps the readers' fast path (``as_mapping``)."""
    found = _ENDPOINTS.get(node)
    if found is None:
        if len(_ENDPOINTS) >= _ENDPOINTS_KEPT:
            _ENDPOINTS.clear()
        found = _ENDPOINTS[node] = {"nodeName": node}
    return found


class KeptSlice(_Kept):
    """What the agent keeps of an EndpointSlice, read as the slimmed object it stands for
    (``apiVersion``, ``kind``, ``metadata`` with name, namespace and the Service label, and
    one ``{"nodeName"}`` endpoint per node with a ready endpoint) but held as four fields:
    kept as those dicts, a slice took about 900 bytes (90 MB for 100,000), now about 250.
    The parts are made when read, which the agent does once per change of the slice."""

    __slots__ = ("name", "namespace", "nodes", "service")

    def __init__(self, namespace: str, name: str, service: str | None, nodes: tuple[str, ...]):
        self.namespace, self.name, self.service, self.nodes = namespace, name, service, nodes

    def __getitem__(self, key: str) -> Any:
        if key == "kind":
            return "EndpointSlice"
        if key == "apiVersion":
            return "discovery.k8s.io/v1"
        if key == "metadata":
            meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
            if self.service is not None:
                meta["labels"] = {SERVICE_NAME_LABEL: self.service}
            return meta
        if key == "endpoints":
            return [_ready_endpoint(n) for n in self.nodes]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("apiVersion", "kind", "metadata", "endpoints"))

    def __len__(self) -> int:
        return 4

    def _fields(self) -> tuple[str, str, str | None, tuple[str, ...]]:
        return (self.namespace, self.name, self.service, self.nodes)


def keep_slice(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    # The election reads the Service a slice belongs to and the nodes with a ready endpoint
    # (absent means ready): each such node once. An endpoint not ready, or on no node, puts
    # no node among the candidates, so it is not kept.
    labels = (obj.get("metadata") or {}).get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL)
    nodes: dict[str, None] = {}
    for e in obj.get("endpoints") or []:
        node = e.get("nodeName") if isinstance(e, Mapping) else None
        if node and (e.get("conditions") or {}).get("ready") is not False:
            nodes[shared(str(node))] = None  # a few node names, repeated
    namespace, name = object_key(obj)
    return KeptSlice(namespace, name, None if service is None else own(str(service)), tuple(nodes))


# The Node conditions the election reads (OpenELB's util.NodeReady).
NODE_CONDITIONS = ("Ready", "NetworkUnavailable")


def keep_node(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """Of each Node, what the election reads: its name, the exclude label, and the status of
    its Ready and NetworkUnavailable conditions. Nothing else, so that a status heartbeat
    or an image list that changes keeps an equal object (upsert then changes nothing)."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    kept_meta: dict[str, Any] = {"name": own(str(meta.get("name") or ""))}
    if EXCLUDE_LABEL in labels:
        kept_meta["labels"] = {EXCLUDE_LABEL: ""}
    conditions = [
        {"type": _copy(c.get("type")), "status": _copy(c.get("status"))}
        for c in ((obj.get("status") or {}).get("conditions") or [])
        if isinstance(c, Mapping) and c.get("type") in NODE_CONDITIONS
    ]
    return {"apiVersion": "v1", "kind": "Node", "metadata": kept_meta,
            "status": {"conditions": conditions}}  # fmt: skip


NODES_STREAM = Stream(NODES).name
WATCHES: tuple[tuple[Stream, Keep], ...] = (
    (Stream(EIPS), keep_eip),
    (Stream(SERVICES), keep_service),
    (Stream(ENDPOINTSLICES), keep_slice),
    (Stream(NODES), keep_node),
)


# A graceful stop gives the Lease up within this: the chart's grace period is 10 s.
RELEASE_SECONDS = 4.0
# Another Lease counts for at most this many times our own duration, whatever it says: a
# Lease written once with a duration of years won IPs for good; a rollout that changes the
# duration (the agents of a release share one) stays well within it.
LONGEST_LEASE_FACTOR = 10
# The renewTimes of unanswered renewals kept to know our own again: 8 minutes of failing
# renewals at 2 s. One lost before that and found by a 409 is taken for a rival's, which
# costs a Lease duration of darkness after so long an outage, no more.
SENT_KEPT = 256


class LiveCluster:
    def __init__(
        self,
        api: AgentApi,
        node: str,
        log: Log,
        *,
        renew: float = 2.0,
        duration: int = 6,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watch_seconds: int = WatchSettings().timeout_seconds,
        own_node: OwnNode | None = None,
    ) -> None:
        # An agent drops itself duration - renew seconds after its last renewal (self_live):
        # renewing any slower than that, it would drop itself between every two renewals.
        if not 0 < renew < duration - renew:
            raise ValueError(f"the renew interval ({renew:g} s) must be under half the Lease "
                             f"duration ({duration} s): an agent stops counting itself "
                             f"duration - renew seconds after its last renewal, so it must "
                             f"renew sooner than that")  # fmt: skip
        self.api, self.node, self._log = api, node, log
        self._own_node = own_node
        self._own_report: str | None = None  # the report on our Node as last seen ...
        self._own_seen = False  # ... once seen (or seen absent)
        self._own_key: Key = ("", node)
        self.renew, self.duration, self._clock = renew, duration, clock
        self.settings = WatchSettings(timeout_seconds=watch_seconds, connect_timeout=api.timeout)
        self._lock = threading.Lock()  # guards the stores, problems and Leases; held briefly
        self._stores: dict[str, dict[Key, Kept]] = {}
        self._objects: list[Kept] | None = None  # every kept object; None after a change
        self._problems: dict[str, str] = {}
        self._seen: dict[str, Seen] = {}  # each agent's last renewal as seen in the lists
        self._listed_at: float | None = None  # when the Leases were last listed (monotonic)
        self._list_now = threading.Event()  # members() asks the lease thread to list again
        self._list_failed = False  # the last list failed: asking again at once would hammer
        self._lease_problems: dict[str, str] = {}  # renewing/listing -> the last error logged
        # Monotonic time of our last good renewal; None before it, and once superseded
        self._renewed_at: float | None = None
        # When our renewals (re)started to count, first or after a lapse (monotonic)
        self._joined_at: float | None = None
        # Others list the Leases once per renewal: wait that long (and a margin) after our
        # Lease first appears before we count, so a joining node never speaks over the node
        # that still thinks an IP is its own.
        self.warm_up = renew + max(renew / 2, 1.0)
        self._idle = threading.Event()  # clear while a renewal (or create) is in flight
        self._idle.set()
        self._held: Held | None = None  # our Lease as we last wrote it
        # Another agent of our node renews our Lease (a new pod while this one stops): its
        # renewTime and when we first saw it (monotonic). We leave the Lease to it, fenced,
        # until it goes unrenewed for the duration it states.
        self._rival: tuple[str, float] | None = None
        # The renewTimes of our renewals sent since one was last answered: one whose answer
        # was lost (a timeout) may have been written, and is ours when a 409 then finds it,
        # however many failed after it. Bounded: the API server down for long, the oldest go.
        self._sent: deque[str] = deque(maxlen=SENT_KEPT)

    def start(self, stop: threading.Event) -> None:
        metrics = KubeMetrics(CollectorRegistry())  # the agent serves no metrics (yet)
        for stream, keeper in WATCHES:
            keep = self._keep_node if stream.name == NODES_STREAM else keeper
            reflector = Reflector(stream, self.api.api, self, keep=keep, metrics=metrics,
                                  settings=self.settings, stop=stop)  # fmt: skip
            threading.Thread(target=reflector.run, name=f"watch {stream.name}", daemon=True).start()
        for target, name in ((self._keep_lease, "lease"), (self._keep_listing, "leases")):
            threading.Thread(target=target, args=(stop,), name=name, daemon=True).start()

    def release(self, within: float = RELEASE_SECONDS) -> None:
        """After ``stop`` and once this node no longer answers: delete our Lease, so the
        others take our IPs at their next list (a renew interval), not when it runs out
        (up to a Lease duration and a renew interval of darkness on every rollout).

        At most ``within`` seconds, whatever the API server does (the pod's grace period
        is short): past that the others wait for the Lease to run out, as after a kill.
        """
        done: list[str] = []
        until = time.monotonic() + within

        def give_up() -> None:
            # A renewal or create sent before the stop and reaching the API server after
            # the delete would make the Lease again, or renew it past the delete's
            # preconditions: it goes first.
            with self._lock:  # a renewal that saw no stop has cleared _idle by now
                pass
            self._idle.wait(max(0.0, until - time.monotonic()))
            with self._lock:
                ours, rival, sent = self._held, self._rival, {*self._sent}
                renewed = self._renewed_at is not None
            if ours is None:
                if rival:
                    done.append("another agent renews it")
                elif renewed:  # found gone by a refused renewal: nothing of ours to delete
                    done.append("")
                else:
                    done.append("this agent never renewed it")
                return
            try:
                try:
                    self.api.delete_lease(self.node, ours)
                except KubeError as exc:
                    if not conflict(exc):
                        raise
                    # Written since: by our renewal whose answer was lost, or an edit that
                    # left our renewTime (a label by hand), it is still ours to give up; by
                    # another agent of this node, its Lease, not ours to delete.
                    now = self.api.read_lease(self.node)
                    if now is None:
                        done.append("")  # gone already
                        return
                    if held(now).renew_time not in sent | {ours.renew_time}:
                        done.append("another agent renews it")
                        return
                    self.api.delete_lease(self.node, held(now))
                done.append("")
            except KubeError as exc:
                done.append("another agent renews it" if conflict(exc) else str(exc))
            except Exception as exc:  # a bug, the library's ConfigException: said, not a traceback
                done.append(f"deleting our Lease failed: {exc!r}")

        deleting = threading.Thread(target=give_up, name="release", daemon=True)
        deleting.start()
        deleting.join(max(0.0, until - time.monotonic()))
        if done == [""]:
            self._log("Lease given up: the others take over at their next list")
        else:
            why = done[0] if done else f"no answer within {within:g} s"
            self._log(f"Lease not given up ({why}); the others take over when it runs out")

    # --- Sink of the reflectors (their threads) --------------------------------------------

    def _keep_node(self, obj: Mapping[str, Any]) -> Kept:
        """``keep_node``, and of our own Node the node report it carries: the election keeps
        none of it, but a Node made again (deleted, then registered again by its kubelet
        while this pod lives on) or a report edited away must get it written again."""
        kept = keep_node(obj)
        if kept["metadata"]["name"] == self.node:
            annotations = as_mapping(as_mapping(obj.get("metadata")).get("annotations"))
            self._own_node_seen(as_str(annotations.get(NODE_REPORT_ANNOTATION)))
        return kept

    def _own_node_seen(self, report: str | None) -> None:
        """Says when our Node is missing (OpenELB lists the Nodes: this node then answers
        for nothing, which it did without a word, a typo in --node-name included) and when
        it is back, and tells ``own_node`` of each change after the first sight: at a start
        the first report may still be on its way."""
        with self._lock:
            first, before = not self._own_seen, self._own_report
            if not first and report == before:
                return
            self._own_seen, self._own_report = True, report
        if report is None:
            self._log(f"no Node named {self.node} (deleted, or --node-name is not its name): "
                      "this node answers for no IP until it exists")  # fmt: skip
        elif before is None and not first:
            self._log(f"Node {self.node} exists again")
        if self._own_node is not None and not first:
            self._own_node(report)

    def replace(self, stream: str, items: dict[Key, Kept], gap: str = "") -> None:
        # ``gap``: never given, as the agent reads no optional resource.
        with self._lock:
            self._stores[stream] = items
            self._objects = None
        if stream == NODES_STREAM and self._own_key not in items:
            self._own_node_seen(None)

    def upsert(self, stream: str, key: Key, held: Kept) -> None:
        with self._lock:
            store = self._stores.setdefault(stream, {})
            if store.get(key) == held:  # a replayed ADDED, a status heartbeat: no change
                return
            store[key] = held
            self._objects = None

    def remove(self, stream: str, key: Key) -> None:
        with self._lock:
            if self._stores.setdefault(stream, {}).pop(key, None) is not None:
                self._objects = None
        if stream == NODES_STREAM and key == self._own_key:
            self._own_node_seen(None)

    def problem(self, stream: str, text: str) -> None:
        with self._lock:
            before = self._problems.pop(stream, "")
            if text:
                self._problems[stream] = text
        if text and text != before:  # once per problem, not once per retry
            self._log(text)

    # --- what the agent reads ---------------------------------------------------------------

    def waiting(self) -> list[str]:
        """The watches whose first list has not arrived yet."""
        with self._lock:
            return self._waiting()

    def _waiting(self) -> list[str]:  # with the lock held
        return [s.name for s, _ in WATCHES if s.name not in self._stores]

    def _keep_lease(self, stop: threading.Event) -> None:
        """Renew our Lease every ``renew`` seconds. The API calls of the agent block their
        own threads only: never the tick's, which must fence in time however long a call
        hangs (self_live)."""

        def create() -> bool:
            # Once stopping, a renewal still in flight must not make the Lease again after
            # release() deleted it; one that went out before the stop is waited for by it.
            return not stop.is_set()

        while not stop.is_set():
            started = time.monotonic()
            try:
                with self._lock:
                    if stop.is_set():
                        break
                    self._idle.clear()
                try:
                    anew = self._renew_once(create)
                finally:
                    self._idle.set()
                ended = time.monotonic()
                with self._lock:
                    last = self._renewed_at
                    if anew or last is None or ended - last >= self.duration - self.renew:
                        # The first renewal, the first since we fenced ourselves, or one
                        # that made the Lease again (deleted meanwhile): the others may have
                        # seen our Lease gone and taken our IPs, so count ourselves again
                        # only once they can have listed it anew (from when the call ended:
                        # a call can hang for many seconds).
                        self._joined_at = ended
                    self._renewed_at = started
                self._note_lease_problem("renewing", "")
            except KubeError as exc:
                self._note_lease_problem("renewing", str(exc))
            except Exception as exc:  # a bug must not end the thread: we would fence for good
                self._note_lease_problem("renewing", f"renewing our Lease failed: {exc!r}")
            stop.wait(max(0.0, self.renew - (time.monotonic() - started)))

    def _superseded(self) -> KubeError:
        return KubeError(
            f"another agent renews Lease {self.api.namespace}/{lease_name(self.node)} (a new "
            f"pod of this node while this one stops, or two agents given the node name "
            f"{self.node}): this one leaves it to that one and stops counting itself"
        )

    def _renew_once(self, create: Callable[[], bool]) -> bool:
        """One renewal, as client-go's leader election renews: conditional on the
        resourceVersion we last wrote. Written since by someone else: an edit that left our
        renewTime (a label by hand) is renewed over; another agent's renewal is left alone
        (a KubeError: we fence at once) until that agent has not renewed for a Lease
        duration. True when the Lease written is not the one we held (made again)."""
        with self._lock:
            ours, rival = self._held, self._rival
        if rival is not None:
            lease = self.api.read_lease(self.node)
            if lease is not None:
                spec = lease.get("spec") or {}
                text, now = str(spec.get("renewTime") or ""), time.monotonic()
                if text != rival[0]:
                    rival = (text, now)
                # By that Lease's duration, as the others judge it (capped as they cap it):
                # by ours, a rollout raising it had the old pod take the Lease back between
                # two of the new one's renewals.
                theirs = spec.get("leaseDurationSeconds")
                if not isinstance(theirs, int) or isinstance(theirs, bool) or theirs <= 0:
                    theirs = self.duration
                if now - rival[1] < min(theirs, LONGEST_LEASE_FACTOR * self.duration):
                    with self._lock:
                        self._rival, self._renewed_at = rival, None
                    raise self._superseded()
                ours = held(lease)  # it stopped renewing: ours again
            else:
                ours = None
        version = ours.version if ours is not None else None
        now_wall = self._clock()
        with self._lock:
            self._sent.append(micro_time(now_wall))
            sent = {*self._sent}
        try:
            written = self.api.renew_lease(self.node, self.duration, now_wall, create=create,
                                           version=version)  # fmt: skip
        except KubeError as exc:
            if not conflict(exc):
                raise
            lease = self.api.read_lease(self.node)
            if lease is None:
                with self._lock:
                    self._held = None  # deleted meanwhile: the next renewal makes it
                raise
            now_held = held(lease)
            mine = sent | {ours.renew_time} if ours is not None else sent
            if now_held.renew_time not in mine:
                with self._lock:
                    self._held, self._rival = None, (now_held.renew_time, time.monotonic())
                    self._renewed_at = None  # fenced at once: that agent speaks for the node
                raise self._superseded() from exc
            # Changed, not renewed by another (its label edited, say, or our renewal whose
            # answer was lost): still ours, renewed over.
            written = self.api.renew_lease(self.node, self.duration, now_wall, create=create,
                                           version=now_held.version)  # fmt: skip
        now_held = held(written)
        with self._lock:
            self._held, self._rival = now_held, None
            self._sent.clear()
        return ours is None or now_held.uid != ours.uid

    def _keep_listing(self, stop: threading.Event) -> None:
        """List the Leases every ``renew`` seconds, and at once when members() asks (a Lease
        ran out: failover waits neither for the next round nor for our own renewal)."""
        while not stop.is_set():
            started = time.monotonic()
            self._list_now.clear()
            try:
                leases = self.api.list_leases()
                answered = time.monotonic()
                with self._lock:
                    first = self._listed_at is None
                    self._seen = observe(
                        None if first else self._seen,
                        leases,
                        answered,
                        self._clock(),
                        # Not our own duration: a rollout changing it (6 s to 30 s) would
                        # count the new agents dead between their renewals.
                        longest=LONGEST_LEASE_FACTOR * self.duration,
                    )
                    # Renewals are dated when seen (the latest they can have happened), and
                    # the others judged as of when we asked (the snapshot is no older): a
                    # slow answer must not age out a node whose later renewals it misses.
                    self._listed_at, self._list_failed = started, False
                self._note_lease_problem("listing", "")
            except Exception as exc:
                # A bug too (a Lease no test foresaw) must not end the thread: the members
                # would stay as last listed for good, with nodes long dead among them.
                why = str(exc) if isinstance(exc, KubeError) else f"listing the Leases: {exc!r}"
                self._list_failed = True  # members() waits for the next round: no hammering
                self._note_lease_problem("listing", why)
            while not stop.is_set() and not self._list_now.is_set():
                left = started + self.renew - time.monotonic()
                if left <= 0:
                    break
                self._list_now.wait(min(left, 0.1))

    def _note_lease_problem(self, doing: str, problem: str) -> None:
        """Each Lease error logged once, and its end."""
        with self._lock:
            before = self._lease_problems.get(doing, "")
            self._lease_problems[doing] = problem
        if problem and problem != before:
            self._log(problem)
        elif not problem and before:
            self._log(f"Leases: {doing} works again")

    def objects(self) -> Sequence[Kept]:
        with self._lock:
            waiting = self._waiting()
            if waiting:
                raise KubeError(not_ready_reason(waiting, self._problems))
            if self._objects is None:  # the same list until something changes (runner.py)
                self._objects = [obj for store in self._stores.values() for obj in store.values()]
            return self._objects

    def eip_uid(self, name: str) -> str:
        """The uid of Eip ``name`` as last seen ("" when unknown): a Warning Event names it."""
        with self._lock:
            kept = self._stores.get(Stream(EIPS).name, {}).get(("", name))
        return as_str(as_mapping((kept or {}).get("metadata")).get("uid"))

    def self_live(self) -> bool:
        """Warm-up, then fencing: count ourselves once others can have seen our Lease, and
        stop before they see it run out."""
        with self._lock:  # the two as one renewal left them
            renewed, joined, listed = self._renewed_at, self._joined_at, self._listed_at
        now = time.monotonic()
        if renewed is None or joined is None or now - joined < self.warm_up:
            return False
        if listed is None:
            # Not before the others' Leases are known: counting itself alone, a node starting
            # while the lists fail or are slow took every IP over the nodes answering them.
            return False
        return now - renewed < self.duration - self.renew

    def members(self) -> frozenset[str]:
        """The live agents as of the last list of the Leases, and ourselves while our own
        renewals hold (self_live). Never calls the API.

        Others are judged at the moment of that list, not now: their renewals since are
        unseen, and aging them out on a list that failed (throttled, a 500) would make every
        node take every IP. A Lease that ran out since the list is looked at again (the
        listing thread lists at once), so failover takes the Lease duration after the list
        that saw the last renewal (at most a renew interval after it) plus about a tick;
        while lists fail, membership stays as last seen.
        """
        with self._lock:
            seen, listed = self._seen, self._listed_at
        live: set[str] = set()
        if listed is not None:
            soonest = next_seen_expiry(seen, listed)
            if soonest is not None and soonest <= time.monotonic() and not self._list_failed:
                self._list_now.set()
            live = set(live_seen(seen, listed)) - {self.node}
        if self.self_live():
            live.add(self.node)
        return frozenset(live)
