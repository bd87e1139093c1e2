"""A Kubernetes API stand-in over real HTTP: kmock's emulator, plus a TCP proxy we can break.

The one kmock harness of the suite: the webhook's live mode (tests/kube), the node agent's
(tests/agent; its lab also runs it as a process in a network namespace, ``python -m
tests.kmock_harness HOST PORT SEED``, see ``serve``) and self-managed certificates
(tests/pki, with an emulator subclass that keeps resourceVersions) run against it.

kmock (an aiohttp server) keeps objects in memory and serves list, watch, create, patch and
delete; ``PagedEmulator`` adds pages (``limit``, ``continue``) to its lists, and the
resourceVersions of kube-apiserver's watch cache (kmock has none, and replays every object as
ADDED at the start of each watch, so a resumed watch never sees what it missed):
- one global counter: every create, update and delete takes the next resourceVersion, stamped
  in the object's ``metadata.resourceVersion`` (a DELETED event's object: the last state with
  the deletion's); a list answers the current one in its ``metadata.resourceVersion``;
- a bounded history of events per resource: a watch from resourceVersion N gets exactly the
  events after N, then the live ones; a watch with none (or "0") gets the current state as
  synthetic ADDED events first; an N older than the history (``history_size``, or
  ``compact``) is answered an ERROR event 410 Expired "too old resource version", and the
  watch ends, as a real API server does;
- ``labelSelector`` and ``fieldSelector`` on lists and watches (``tests.kmock_selectors``):
  a selector the API server refuses is answered 400 BadRequest; a watch sends an object that
  stops matching as DELETED (its last matching state, at the change's resourceVersion) and
  one that starts matching as ADDED, as the watch cache does;
- a watch ends, cleanly, at its ``timeoutSeconds``; with ``allowWatchBookmarks=true`` it
  sends BOOKMARK events (the watched kind, nothing but ``metadata.resourceVersion``: the
  current one, which may be no event's of this resource) as the watch cache does: once per
  ``bookmark_every`` seconds (a minute) and 2 s before the watch's end, when that is later
  than its start.
What it cannot do, we script:
- 410 Gone on demand: a kmock reaction on the next watch request of one resource (``gone_once``);
- a connection cut mid-watch, and a silently dead connection: a small asyncio TCP proxy in
  front of kmock (``cut``, ``stall``), so the client sees real socket behaviour;
- a change the watcher misses: a kmock storage edit without a watch event (``silently_delete``).

kmock runs on its own event loop in a thread; the code under test uses the synchronous
client in threads of its own, as in production.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import itertools
import json
import signal
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import aiobus, rendering
from kubernetes import client

from app.kube.rest import MERGE_PATCH
from tests.kmock_selectors import Match, SelectorError, selection, supported_fields

RESOURCES: dict[str, tuple[str, bool]] = {  # "group/version/plural" -> (kind, namespaced)
    "v1/nodes": ("Node", False),
    "v1/services": ("Service", True),
    "v1/pods": ("Pod", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/events": ("Event", True),
    "coordination.k8s.io/v1/leases": ("Lease", True),
    "discovery.k8s.io/v1/endpointslices": ("EndpointSlice", True),
    "apps/v1/daemonsets": ("DaemonSet", True),
    "apps/v1/deployments": ("Deployment", True),
    "networking.k8s.io/v1/servicecidrs": ("ServiceCIDR", False),
    "network.kubesphere.io/v1alpha2/eips": ("Eip", False),
    "crd.projectcalico.org/v1/ippools": ("IPPool", False),
    "cilium.io/v2/ciliumnodes": ("CiliumNode", False),
}
EIPS = "network.kubesphere.io/v1alpha2/eips"
SERVICECIDRS = "networking.k8s.io/v1/servicecidrs"
CALICO_IPPOOLS = "crd.projectcalico.org/v1/ippools"
CILIUMNODES = "cilium.io/v2/ciliumnodes"
# Custom resources by kind: (group, version, plural), all cluster-scoped.
CUSTOM = {
    "Eip": ("network.kubesphere.io", "v1alpha2", "eips"),
    "IPPool": ("crd.projectcalico.org", "v1", "ippools"),
    "CiliumNode": ("cilium.io", "v2", "ciliumnodes"),
}


@attrs.define(kw_only=True)
class PagedEmulator(kmock.KubernetesEmulator):
    """kmock's emulator answering lists in pages, as a real API server does with ``limit``
    and ``continue`` (kmock itself returns every object at once), and refusing a PATCH whose
    body does not fit its Content-Type. The first page's request
    takes the list, as a real API server takes a snapshot at one resourceVersion; the token
    names that list and the offset of the next page."""

    _lists: dict[str, tuple[str, list[Any]]] = attrs.field(factory=dict, init=False)  # by id
    _ids: Any = attrs.field(factory=lambda: itertools.count(1), init=False)
    # Namespaces that do not exist: a create in one is refused as a real API server does
    # (kmock itself has no namespaces and stores anything).
    absent_namespaces: set[str] = attrs.field(factory=set, init=False)
    # One-shot answers a real API server gives and kmock does not (a 429 with Retry-After,
    # a continue token that expired): each is asked in turn, the first to answer is spent.
    scripted: list[Callable[[rendering.Request], aiohttp.web.Response | None]] = attrs.field(
        factory=list, init=False
    )
    # The bearer tokens accepted (None: any): others are refused 401, as an expired one is.
    tokens: set[str] | None = attrs.field(default=None, init=False)
    # The watch cache: the last resourceVersion given, and the last events of each resource
    # (resourceVersion, event); a watch from before ``_floor`` is answered 410.
    history_size: int = attrs.field(default=1000, init=False)
    rv: int = attrs.field(default=1, init=False)  # never 0 on a real one (its own objects)
    _history: dict[Any, collections.deque[_Change]] = attrs.field(factory=dict, init=False)
    _floor: dict[Any, int] = attrs.field(factory=dict, init=False)  # by resource
    _compacted: int = attrs.field(default=0, init=False)  # every resource's floor
    # Bookmarks: at most this long apart (the watch cache's bookmarkFrequency), and this
    # long before a watch's timeoutSeconds runs out.
    bookmark_every: float = attrs.field(default=60.0, init=False)
    bookmark_before_end: float = attrs.field(default=2.0, init=False)
    # The open watches' queues of (resourceVersion, event, previous state) by resource, fed
    # as each change is recorded; and each object's last recorded state: a selector's watch
    # tells "stopped matching" from "changed" by it.
    _watchers: dict[Any, set[asyncio.Queue[_Change]]] = attrs.field(factory=dict, init=False)
    _last: dict[Any, dict[str, Any]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock announces every change on a bus per resource, under its lock: stamp and
        # record each there, so the order of resourceVersions is the order of changes.
        self._buses = _Buses(self)

    def record(self, resource: Any, event: dict[str, Any]) -> dict[str, Any]:
        """A change kmock made: the next resourceVersion, stamped in the stored object (not
        for a deletion) and in a copy of the event, which the history keeps."""
        self.rv += 1
        obj = copy.deepcopy(event["object"])
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(self.rv)
        key = (resource, meta.get("namespace"), meta.get("name"))
        if event["type"] != "DELETED" and key in self.objects and not self.objects[key].deleted:
            stored = self.objects[key]
            last = stored.last.raw
            stored.history[-1] = {**last, "metadata": {**last["metadata"], **meta}}
        stamped = {"type": event["type"], "object": obj}
        prev = None if event["type"] == "ADDED" else self._last.get(key)
        if event["type"] == "DELETED":
            self._last.pop(key, None)
        else:
            self._last[key] = obj
        change = (self.rv, stamped, prev)
        events = self._history.setdefault(resource, collections.deque())
        events.append(change)
        while len(events) > self.history_size:
            self._floor[resource] = events.popleft()[0]
        for queue in self._watchers.get(resource, ()):
            queue.put_nowait(change)
        return stamped

    def floor(self, resource: Any) -> int:
        """The oldest resourceVersion a watch of ``resource`` can start from."""
        return max(self._floor.get(resource, 0), self._compacted)

    def compact(self) -> None:
        """Forget every event so far (as etcd's compaction): a watch from an older
        resourceVersion than the current one is answered 410."""
        self._history.clear()
        self._compacted = self.rv

    async def store(self, resource: Any, obj: dict[str, Any]) -> None:
        """Store an object as is, a write as any other (a watch event, a resourceVersion)."""
        meta = obj.get("metadata") or {}
        key = (resource, meta.get("namespace"), meta["name"])
        async with self._lock:
            kind = "MODIFIED" if key in self.objects and not self.objects[key].deleted else "ADDED"
            self.objects[key] = copy.deepcopy(obj)
            await self._buses[resource].put({"type": kind, "object": self.objects[key].raw})

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if self.tokens is not None:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if sent not in self.tokens:
                return _status(401, "Unauthorized", "Unauthorized")
        for answer in list(self.scripted):
            response = answer(request)
            if response is not None:
                self.scripted.remove(answer)
                return response
        if request.action in (kmock.action.LIST, kmock.action.WATCH) and request.resource:
            try:
                self._selection(request)
            except SelectorError as exc:
                return _status(400, "BadRequest", str(exc))
        if request.action == kmock.action.CREATE and request.namespace in self.absent_namespaces:
            return _status(404, "NotFound", f'namespaces "{request.namespace}" not found')
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            # Every object gets a uid from a real API server (kmock gives none); one given
            # by the test is kept, so that fixtures can name theirs.
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
        refused = self._precondition_refusal(request)
        if refused is not None:
            return refused
        # kmock merges any PATCH body; a real API server reads it by its Content-Type, and
        # takes no strategic merge patch (the client's default for a dict) on a CRD.
        if request.method == kmock.method.PATCH:
            refusal = _patch_refusal(request)
            if refusal is not None:
                return refusal
        return await super()._handle(request)

    def _precondition_refusal(self, request: rendering.Request) -> aiohttp.web.Response | None:
        """kube-apiserver's optimistic concurrency, which kmock lacks: a DELETE whose
        ``preconditions`` name another uid or resourceVersion, and a PATCH carrying another
        ``metadata.resourceVersion``, are refused 409 Conflict and change nothing. A missing
        object is left to kmock (404)."""
        data, resource, name = request.data, request.resource, request.name
        if resource is None or name is None or not isinstance(data, dict):
            return None
        if request.action == kmock.action.DELETE:
            wanted = data.get("preconditions") or {}
        elif request.action == kmock.action.UPDATE:
            wanted = {"resourceVersion": (data.get("metadata") or {}).get("resourceVersion")}
        else:
            return None
        key = (resource, request.namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        meta = self.objects[key].raw.get("metadata") or {}
        what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        cannot = f'Operation cannot be fulfilled on {what} "{name}": '
        if request.action == kmock.action.UPDATE:
            if wanted["resourceVersion"] in (None, meta.get("resourceVersion")):
                return None
            return _status(409, "Conflict", cannot + "the object has been modified; please "
                           "apply your changes to the latest version and try again")  # fmt: skip
        for key_, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if wanted.get(key_) is not None and wanted[key_] != meta.get(key_):
                have = meta.get(key_, "")
                why = f"{label} in precondition: {wanted[key_]}, {label} in object meta: {have}"
                return _status(409, "Conflict", f"{cannot}Precondition failed: {why}")
        return None

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        limit = request.params.get("limit", "")
        token = request.params.get("continue", "")
        if not limit.isdigit() or int(limit) <= 0:
            return await self._snapshot(request)
        if token:
            list_id, _, offset = token.partition(":")
            rv, items = self._lists[list_id]
            start = int(offset)
            answer: dict[str, Any] = {"metadata": {"resourceVersion": rv}}
        else:
            first = await self._snapshot(request)
            if not isinstance(first, dict):
                return first
            answer, items, start = first, first["items"], 0
            list_id = str(next(self._ids))
            self._lists[list_id] = (first["metadata"]["resourceVersion"], items)
        end = start + int(limit)
        answer["items"] = items[start:end]
        if end < len(items):
            answer["metadata"] = {**answer["metadata"], "continue": f"{list_id}:{end}"}
        else:
            del self._lists[list_id]  # a list abandoned half-way stays: a test's lifetime
        return answer

    def _selection(self, request: rendering.Request) -> Match:
        """What the request's label and field selectors pick (SelectorError: a 400)."""
        resource = request.resource
        assert resource is not None  # a list or watch is of a resource
        group, plural = resource.group or "", resource.plural or ""
        info = self.resources[resource] if resource in self.resources else None  # noqa: SIM401
        custom = group not in BUILT_IN_GROUPS
        namespaced = getattr(info, "namespaced", None) is not False  # unknown: namespaced
        fields = supported_fields(group, plural, custom=custom, namespaced=namespaced)
        return selection(request.params, fields)

    async def _snapshot(self, request: rendering.Request) -> rendering.Payload:
        """kmock's list, at the resourceVersion it was taken at, of what its selectors pick."""
        answer = await super()._serve_list(request)
        # No await since kmock let go of its lock: no change can have come in between.
        if isinstance(answer, dict):
            answer["metadata"] = {**answer.get("metadata", {}), "resourceVersion": str(self.rv)}
            if request.params.get("labelSelector") or request.params.get("fieldSelector"):
                picks = self._selection(request)
                answer["items"] = [o for o in answer["items"] if picks(o)]
        return answer

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""  # the headers, at once (kmock's own watch does the same)
        resource, since = request.resource, request.params.get("resourceVersion", "")
        assert resource is not None  # a watch is of a resource
        picks = self._selection(request)  # a bad selector was answered 400 in _handle
        loop = asyncio.get_running_loop()
        began = loop.time()
        seconds = request.params.get("timeoutSeconds", "")
        deadline = began + int(seconds) if seconds.isdigit() and int(seconds) > 0 else None
        # A query flag as the API server converts it: anything but "", "0", "false", "no".
        flag = request.params.get("allowWatchBookmarks", "").lower()
        bookmarks = flag not in ("", "0", "false", "no")
        queue: asyncio.Queue[_Change] = asyncio.Queue()
        watchers = self._watchers.setdefault(resource, set())
        async with self._lock:  # writers hold it too: nothing falls between backlog and queue
            if since in ("", "0"):  # the current state, as synthetic ADDED events
                start = self.rv
                backlog: list[_Change] = [
                    (start, {"type": "ADDED", "object": obj.raw}, None)
                    for (res, _ns, _name), obj in self.objects.items()
                    if res == resource and not obj.deleted
                ]
            elif not since.isdigit():
                error = _watch_error(400, "BadRequest", f"invalid resourceVersion {since!r}")
                backlog, start = [(0, error, None)], -1
            elif int(since) < self.floor(resource):
                reason = f"too old resource version: {since} ({self.floor(resource)})"
                backlog, start = [(0, _watch_error(410, "Expired", reason), None)], -1
            else:
                start = int(since)
                backlog = [c for c in self._history.get(resource, ()) if c[0] > start]
            watchers.add(queue)
        try:
            sent = start  # the resourceVersion the client has seen up to
            for change in backlog:
                event = _as_seen(request, picks, change)
                if event is not None:
                    sent = max(sent, change[0])
                    yield event
            if start < 0:
                return  # an ERROR event ends the watch
            mark = self._next_bookmark(began, deadline) if bookmarks else None
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return  # the server ends the watch at its timeoutSeconds, cleanly
                wake = min((t for t in (deadline, mark) if t is not None), default=None)
                try:
                    change = await asyncio.wait_for(
                        queue.get(), None if wake is None else max(0.0, wake - now)
                    )
                except TimeoutError:
                    if mark is not None and loop.time() >= mark:
                        # Every change so far is in the queue, which is empty: the current
                        # resourceVersion is past everything this watch may still send.
                        if self.rv > sent:
                            sent = self.rv
                            yield self._bookmark(resource)
                        mark = self._next_bookmark(loop.time(), deadline)
                    continue
                event = _as_seen(request, picks, change) if change[0] > start else None
                if event is not None:
                    sent = max(sent, change[0])
                    yield event
        finally:
            watchers.discard(queue)

    def _bookmark(self, resource: Any) -> dict[str, Any]:
        """A BOOKMARK as the watch cache sends it: an object of the watched kind with nothing
        but the current resourceVersion."""
        # Not .get(): kmock makes an entry for a resource it is asked about.
        info = self.resources[resource] if resource in self.resources else None  # noqa: SIM401
        api_version = "/".join(p for p in (resource.group, resource.version) if p)
        meta = {"resourceVersion": str(self.rv)}
        obj = {
            "kind": getattr(info, "kind", None) or "",
            "apiVersion": api_version,
            "metadata": meta,
        }
        return {"type": "BOOKMARK", "object": obj}

    def _next_bookmark(self, now: float, deadline: float | None) -> float | None:
        """When the watch cache sends a watcher its next bookmark (cacheWatcher's
        nextBookmarkTime): a minute on, or before its end if sooner; never past its end."""
        at = now + self.bookmark_every
        if deadline is not None:
            at = min(at, deadline - self.bookmark_before_end)
        return at if at > now else None


_Change = tuple[int, dict[str, Any], dict[str, Any] | None]  # (rv, event, previous state)


class _Buses(dict[Any, "aiobus.Bus[Any]"]):
    """kmock's buses of change events by resource, each stamping and recording its events."""

    def __init__(self, emulator: PagedEmulator) -> None:
        super().__init__()
        self.emulator = emulator

    def __missing__(self, resource: Any) -> aiobus.Bus[Any]:
        bus = _RecordingBus(self.emulator, resource)
        self[resource] = bus
        return bus


class _RecordingBus(aiobus.Bus[Any]):
    def __init__(self, emulator: PagedEmulator, resource: Any) -> None:
        super().__init__()
        self._emulator, self._resource = emulator, resource

    async def put(self, *items: Any) -> None:
        await super().put(*(self._emulator.record(self._resource, item) for item in items))


def _as_seen(request: rendering.Request, picks: Match, change: _Change) -> dict[str, Any] | None:
    """The event a watch of this request's namespace, name and selectors sees of a change,
    or None (kmock's rule for the namespace and name; the watch cache's for selectors)."""
    rv, event, prev = change
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        return event
    meta = obj.get("metadata") or {}
    if (request.namespace is not None and meta.get("namespace") != request.namespace) or (
        request.name is not None and meta.get("name") != request.name
    ):
        return None
    if event["type"] == "DELETED":
        return event if picks(obj) else None
    # A MODIFIED of an object never recorded (put in kmock's storage directly): was in.
    was_in = picks(prev) if prev is not None else event["type"] == "MODIFIED"
    if picks(obj):
        return {"type": "MODIFIED" if was_in else "ADDED", "object": obj}
    if prev is None or not was_in:
        return None
    # Stopped matching: DELETED, with the state it was selected in, at this change's version.
    last = copy.deepcopy(prev)
    last.setdefault("metadata", {})["resourceVersion"] = str(rv)
    return {"type": "DELETED", "object": last}


def _watch_error(code: int, reason: str, message: str) -> dict[str, Any]:
    """A watch's failure as a real API server streams it (HTTP 200, then this event)."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "code": code, "reason": reason, "message": message}  # fmt: skip
    return {"type": "ERROR", "object": status}


STRATEGIC_MERGE = "application/strategic-merge-patch+json"
PATCH_TYPES = {  # what a real API server reads a PATCH body as, by its Content-Type
    "application/json-patch+json": list,  # JSON Patch: a list of operations
    MERGE_PATCH: dict,
    STRATEGIC_MERGE: dict,
}
BUILT_IN_GROUPS = {"", "apps", "coordination.k8s.io", "discovery.k8s.io", "networking.k8s.io"}


def _patch_refusal(request: rendering.Request) -> aiohttp.web.Response | None:
    """The API server's answer to a PATCH it cannot read, else None (kmock merges it)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    content_type = headers.get("content-type", "").partition(";")[0].strip()
    shape = PATCH_TYPES.get(content_type)
    custom = request.resource is not None and request.resource.group not in BUILT_IN_GROUPS
    if shape is None or (custom and content_type == STRATEGIC_MERGE):
        # Custom resources have no patch strategy: the API server takes no strategic merge.
        code, reason = 415, f"the server does not support patch type {content_type!r} here"
    elif not isinstance(request.data, shape):
        code, reason = 400, f"a {content_type} body must be a JSON {shape.__name__}"
    elif shape is list:
        code, reason = 415, "the stand-in applies merge patches only, not JSON Patch"
    else:
        return None
    return _status(code, "BadRequest" if code == 400 else "UnsupportedMediaType", reason)


def _status(
    code: int, reason: str, message: str, headers: Mapping[str, str] | None = None
) -> aiohttp.web.Response:
    """A failure as a real API server answers it: a Status object."""
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
              "reason": reason, "message": message}  # fmt: skip
    return aiohttp.web.json_response(status, status=code, headers=headers)


@dataclass(eq=False)
class _Conn:
    client_w: asyncio.StreamWriter
    server_w: asyncio.StreamWriter
    stalled: bool = False


@dataclass(eq=False)
class Proxy:
    """Forwards TCP to kmock; ``cut`` resets live connections, ``stall`` silences them."""

    target: tuple[str, int]
    port: int = 0
    conns: set[_Conn] = field(default_factory=set)
    accepted: int = 0  # connections opened through the proxy so far
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # first: a connection accepted after the cut stays open
        self.cut()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except (OSError, asyncio.CancelledError):
            # Cancelled: the loop closing while this connection was being made. Its client
            # socket left unclosed surfaced as a ResourceWarning in a later test's teardown.
            cw.close()
            return
        conn = _Conn(cw, sw)
        self.conns.add(conn)
        self.accepted += 1

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, down: bool) -> None:
            try:
                while data := await r.read(65536):
                    if down and conn.stalled:
                        continue  # a peer that went silent: bytes vanish, the socket stays open
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        try:
            await asyncio.gather(pipe(cr, sw, False), pipe(sr, cw, True))
        except asyncio.CancelledError:
            # The loop is closing with the connection open. Ending here, not cancelled:
            # Python 3.11's start_server callback calls exception() on a cancelled handler
            # task and logs a traceback for nothing.
            pass
        finally:
            self.conns.discard(conn)

    def cut(self) -> int:
        conns = list(self.conns)
        for c in conns:
            c.client_w.transport.abort()
            c.server_w.transport.abort()
        return len(conns)

    def stall(self) -> int:
        for c in self.conns:
            c.stalled = True
        return len(self.conns)


class FakeApi:
    def __init__(
        self,
        *,
        missing: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        emulator: Callable[[], Any] = PagedEmulator,
    ) -> None:
        self._missing = missing  # resources this API server does not serve (404)
        self._emulator = emulator  # a kmock.KubernetesEmulator (sub)class
        self._host, self._port = host, port  # where kmock itself listens (``direct_url``)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)
        self.km: Any = None
        self.proxy: Proxy | None = None
        self.direct_url = ""
        self._error: BaseException | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def _run(self) -> None:
        # asyncio.Runner ends the loop as asyncio.run does: tasks still pending (closing the
        # watch streams' async generators) are run to their end first, not destroyed.
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            try:
                runner.run(self._main())
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._ready.set()

    async def _main(self) -> None:
        async with (
            self._emulator() as km,
            kmock.Server(km, host=self._host, port=self._port) as srv,
        ):
            self.km = km
            for name, (kind, namespaced) in RESOURCES.items():
                if name not in self._missing:
                    self.declare(name, kind, namespaced)
            self.proxy = Proxy((srv.host, srv.port))
            await self.proxy.start()
            self.direct_url = f"http://{srv.host}:{srv.port}"
            self._done = asyncio.get_running_loop().create_future()
            self._ready.set()
            await self._done
            await self.proxy.close()
            # Watch streams never end by themselves (aiohttp does not cancel handlers when a
            # client goes away), and the server waits for them on shutdown: end them first.
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def declare(self, name: str, kind: str, namespaced: bool) -> None:
        self.km.resources[name] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)

    def start(self) -> FakeApi:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set_result, None)
        self._thread.join(10)

    @property
    def url(self) -> str:
        """Where the code under test connects: through the proxy."""
        assert self.proxy is not None
        return f"http://127.0.0.1:{self.proxy.port}"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on kmock's loop (its state is not thread-safe) and return its result."""
        assert self._loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # --- scripting --------------------------------------------------------------------------

    def cut(self) -> int:
        assert self.proxy is not None
        return int(self.call(self.proxy.cut))

    def connections(self) -> int:
        """How many connections the code under test has opened so far."""
        assert self.proxy is not None
        proxy = self.proxy
        return int(self.call(lambda: proxy.accepted))

    def stall(self) -> int:
        assert self.proxy is not None
        return int(self.call(self.proxy.stall))

    def gone_once(self, resource: str) -> None:
        """The next watch of ``resource`` answers an ERROR event with code 410, as a real
        API server does for a too old resourceVersion; later watches are served normally."""
        event = {
            "type": "ERROR",
            "object": {
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "code": 410,
                "reason": "Expired",
                "message": "too old resource version: 1 (2)",
            },
        }

        def add() -> None:
            # An iterator, not a tuple: it streams once, then kmock falls through to its
            # default watch for every later request.
            self.km[kmock.action.WATCH, kmock.resource(resource)] << iter([event])

        self.call(add)

    def bookmark_once(self, resource: str, rv: str) -> None:
        """The next watch of ``resource`` sends one BOOKMARK (resourceVersion ``rv``) and ends,
        as a real API server's watch does at its timeout. As a real one, the bookmark is an
        object of the watched kind with nothing but its resourceVersion (no name)."""
        api_version = resource.rpartition("/")[0]
        event = {
            "type": "BOOKMARK",
            "object": {
                "kind": RESOURCES[resource][0],
                "apiVersion": api_version,
                "metadata": {"resourceVersion": rv, "creationTimestamp": None},
            },
        }

        def add() -> None:
            self.km[kmock.action.WATCH, kmock.resource(resource)] << iter([event])

        self.call(add)

    def refuse_next(
        self,
        when: Callable[[rendering.Request], bool],
        code: int,
        reason: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next request ``when`` picks is answered with this Status, once."""

        def answer(request: rendering.Request) -> aiohttp.web.Response | None:
            return _status(code, reason, message, headers) if when(request) else None

        self.call(lambda: self.km.scripted.append(answer))

    def accept_tokens(self, *tokens: str) -> None:
        """Only these bearer tokens are accepted from now on (others: 401)."""
        self.call(lambda: setattr(self.km, "tokens", set(tokens)))

    def hold_next_list(self, resource: str) -> Callable[[], None]:
        """The next list of ``resource`` hangs until the returned function is called (a slow
        API, a stuck aggregated server); then kmock answers it as usual."""
        assert self._loop is not None
        loop = self._loop
        gate: asyncio.Event = self.call(asyncio.Event)

        async def held() -> Any:
            await gate.wait()
            return NotImplemented  # kmock: "not mine", the default list answers this request

        self.call(lambda: self.km[kmock.action.LIST, kmock.resource(resource)] << held)

        def release() -> None:
            loop.call_soon_threadsafe(gate.set)

        return release

    def watch_params(self, path: str) -> list[dict[str, str]]:
        """The query parameters of every watch request kmock served for ``path``."""

        def get() -> list[dict[str, str]]:
            return [
                dict(r.url.query)
                for r in list(self.km)
                if r.url.path == path and r.url.query.get("watch") == "true"
            ]

        return list(self.call(get))

    def silently_delete(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete from kmock's storage without a watch event: a change the watcher missed."""

        def delete() -> None:  # on kmock's loop: its storage is not thread-safe
            self.km.objects[kmock.resource(resource), namespace, name].delete()

        self.call(delete)

    def requests(self, method: str, path: str, *, watch: bool = False) -> int:
        """How many requests kmock served for this method and path (watches or not)."""

        def count() -> int:
            return sum(
                1
                for r in list(self.km)
                if str(r.method.value).upper() == method
                and r.url.path == path
                and (r.url.query.get("watch") == "true") == watch
            )

        return int(self.call(count))

    def served(self) -> int:
        """How many requests kmock has served so far (a mark for ``rbac_used``)."""
        return int(self.call(lambda: len(list(self.km))))

    def rbac_used(self, since: int = 0) -> set[tuple[str, str, str]]:
        """(API group, resource, RBAC verb) of every request kmock served (from the ``since``
        mark on), as the API server's authorizer names them: what a least-privilege role
        must grant, and no more."""

        def served() -> list[tuple[str, str, bool]]:
            return [
                (str(r.method.value).upper(), r.url.path, r.url.query.get("watch") == "true")
                for r in list(self.km)[since:]
            ]

        return {rbac_attributes(*request) for request in self.call(served)}

    def lists(self, path: str) -> int:
        return self.requests("GET", path)

    def put(self, resource: str, obj: dict[str, Any]) -> None:
        """Store an object as is: a write as any other (the next resourceVersion, an ADDED or
        MODIFIED event), without a request the code under test could count."""
        assert self._loop is not None
        store = self.km.store(kmock.resource(resource), obj)
        asyncio.run_coroutine_threadsafe(store, self._loop).result(10)

    def compact(self) -> None:
        """Forget the history of events (etcd's compaction): a watch that resumes from an
        older resourceVersion than the current one is answered 410 Expired."""
        self.call(self.km.compact)

    def resource_version(self) -> int:
        """The API server's current resourceVersion."""
        return int(self.call(lambda: self.km.rv))

    def get(self, resource: str, namespace: str | None, name: str) -> Any:
        """One stored object (kmock's: reads like a dict, ``.raw`` is the plain dict)."""
        return self.call(lambda: self.km.objects[kmock.resource(resource), namespace, name])

    def objects(self, resource: str) -> list[dict[str, Any]]:
        def get() -> list[dict[str, Any]]:
            out = []
            for (res, _ns, _name), obj in self.km.objects.items():
                if res == kmock.resource(resource) and not obj.deleted:
                    out.append(dict(obj.raw))
            return out

        return list(self.call(get))


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[FakeApi]:
    """A started ``FakeApi`` (keyword arguments as for ``FakeApi``), stopped afterwards."""
    api = FakeApi(**kwargs).start()
    try:
        yield api
    finally:
        api.stop()


class Writer:
    """Changes objects over real HTTP, straight to kmock (not through the breakable proxy)."""

    def __init__(self, api: FakeApi) -> None:
        self.client = client.ApiClient(client.Configuration(host=api.direct_url))
        self.core: Any = client.CoreV1Api(self.client)
        self.custom: Any = client.CustomObjectsApi(self.client)
        self.networking: Any = client.NetworkingV1Api(self.client)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    def create(self, obj: dict[str, Any]) -> None:
        kind, ns = obj["kind"], obj["metadata"].get("namespace")
        if kind in CUSTOM:
            self.custom.create_cluster_custom_object(*CUSTOM[kind], obj, _preload_content=False)
        elif kind == "Node":
            self.core.create_node(obj, _preload_content=False)
        elif kind == "Service":
            self.core.create_namespaced_service(ns, obj, _preload_content=False)
        elif kind == "Pod":
            self.core.create_namespaced_pod(ns, obj, _preload_content=False)
        elif kind == "ConfigMap":
            self.core.create_namespaced_config_map(ns, obj, _preload_content=False)
        elif kind == "ServiceCIDR":
            self.networking.create_service_cidr(obj, _preload_content=False)
        else:
            raise ValueError(kind)

    def patch(self, obj: dict[str, Any]) -> None:
        """A merge patch: the client's default for a dict, a strategic merge patch, is
        refused on a custom resource such as an Eip (415)."""
        kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")
        merge = {"_preload_content": False, "_content_type": MERGE_PATCH}
        if kind == "Node":
            self.core.patch_node(name, obj, **merge)
        elif kind == "Service":
            self.core.patch_namespaced_service(name, ns, obj, **merge)
        elif kind in CUSTOM:
            self.custom.patch_cluster_custom_object(*CUSTOM[kind], name, obj, **merge)
        elif kind == "ConfigMap":
            self.core.patch_namespaced_config_map(name, ns, obj, **merge)
        else:
            raise ValueError(kind)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        if kind == "Node":
            self.core.delete_node(name, _preload_content=False)
        elif kind == "Service":
            self.core.delete_namespaced_service(name, namespace, _preload_content=False)
        elif kind in CUSTOM:
            self.custom.delete_cluster_custom_object(*CUSTOM[kind], name, _preload_content=False)
        else:
            raise ValueError(kind)


def kubeconfig(
    path: Path, url: str, context: str = "kmock", user: dict[str, str] | None = None
) -> Path:
    """A kubeconfig whose context points at the stand-in (plain HTTP; ``user``, else a dummy
    token)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": user or {"token": "not-checked"}}],
                "contexts": [{"name": context, "context": {"cluster": "kmock", "user": "tester"}}],
                "current-context": context,
            }
        )
    )
    return path


def serve(host: str, port: int, seed: str) -> None:
    """Run the stand-in until SIGTERM or SIGINT, kmock listening on ``host:port``, seeded from a
    JSON list of ["group/version/plural", object]; prints "ready" once it serves."""
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # delivered to sigwait below
    with running(host=host, port=port) as api, open(seed) as f:
        for resource, obj in json.load(f):
            api.put(resource, obj)
        print("ready", flush=True)
        signal.sigwait(stop)
    sys.exit(0)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])


def rbac_grants(rules: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """The (group, resource, verb) a role's rules grant: what ``rbac_used`` is compared with."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def rbac_attributes(method: str, path: str, watch: bool) -> tuple[str, str, str]:
    """An API path's (group, resource, verb): /api/v1[/namespaces/NS]/RESOURCE[/NAME] or
    /apis/GROUP/VERSION/...; a GET is get, list or watch, as Kubernetes' request info says."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource, named = rest[0], len(rest) > 1
    if method != "GET":
        return group, resource, _VERBS[method]
    return group, resource, "watch" if watch else ("get" if named else "list")
