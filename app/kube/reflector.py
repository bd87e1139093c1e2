"""List then watch one stream (one resource in one namespace), forever, in a thread of its own.

Why threads and the synchronous client rather than ``kubernetes.aio``: the synchronous
``Watch`` is the one whose 410/bookmark/timeout semantics domain.md section 6 documents, a
thread per stream keeps a slow or failing stream from stalling the others, and nothing here
ever runs on the webhook's event loop (requests only read the published inventory).

The loop, as client-go's reflector does it:
- list (paged), remember the list's resourceVersion, replace what the sink holds of the stream
  (what that is per object, the caller's ``keep`` decides: the webhook keeps an extract, the
  node agent a trimmed copy);
- watch from there with bookmarks, ``timeout_seconds`` (the server ends the watch: we loop)
  and a client read timeout a little longer (a silently dead connection raises instead of
  hanging forever);
- 410 Gone (an ApiException or an ERROR event with code 410): list again;
- any other failure: wait an exponential backoff with full jitter, then resume the watch from
  the last resourceVersion (or list, if we never listed). No busy loop: every retry waits,
  except the first re-list after a 410.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from app.core.eips import own, shared
from app.core.inventory import Extract, Options, extract
from app.kube.metrics import KubeMetrics
from app.kube.resources import (
    GONE,
    Lister,
    Stream,
    UnreadableAnswer,
    describe_failure,
    forbidden_gap,
    list_all,
)
from app.kube.settings import WatchSettings

log = logging.getLogger("eip_guard.kube")

Key = tuple[str, str]  # (namespace or "", name): the identity of an object within its stream
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Held:
    """All we keep of one object: its extract (and, for Eips, the uid Events must name)."""

    extract: Extract
    uid: str = ""


def backoff_delay(failures: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(n-1))]."""
    if failures <= 0:
        return 0.0
    return float(rand() * min(cap, base * 2 ** min(failures - 1, 30)))


def object_key(obj: Mapping[str, Any]) -> Key:
    # Copies, not the parsed strings: a key outlives the page of the list it came from, and
    # one surviving string per memory page keeps the whole parsed list resident.
    meta = obj.get("metadata") or {}
    return (shared(str(meta.get("namespace") or "")), own(str(meta.get("name") or "")))


def resource_version(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""


def holder(options: Options) -> Callable[[dict[str, Any]], Held]:
    """The webhook's ``keep``: an object's extract (and, for an Eip, its uid)."""

    def held(obj: dict[str, Any]) -> Held:
        ex = extract(obj, options)
        uid = own(str((obj.get("metadata") or {}).get("uid") or "")) if ex.eip is not None else ""
        return Held(ex, uid)

    return held


class Sink(Protocol[T]):
    """Where a reflector puts what it keeps of each object (``LiveInventory``, the agent's
    ``LiveCluster``). ``problem`` is a failure in one line, or "" once it is over: the sink
    reports it (log, readiness) as its program does. ``replace`` with a ``gap``: an optional
    stream eip-guard may not list (403), held empty; the gap (what goes unchecked, and the
    grant that ends it) lasts until a list replaces it."""

    def replace(self, stream: str, items: dict[Key, T], gap: str = "") -> None: ...
    def upsert(self, stream: str, key: Key, held: T) -> None: ...
    def remove(self, stream: str, key: Key) -> None: ...
    def problem(self, stream: str, text: str) -> None: ...


SHORT_WATCH_SECONDS = 1.0  # a watch ended sooner, with no event, is a failure (as client-go)


def _relist_why(exc: Exception) -> str | None:
    """Why to list again rather than resume, or None: the resourceVersion to resume from is
    too old (410), or newer than the server knows (504 "Too large resource version": an etcd
    restored from a backup, an API server behind the others). One place for both, however
    the error came (a list, or a watch's ERROR event raised by the client or by us)."""
    status = getattr(exc, "status", None)
    if status == GONE:
        return "resourceVersion too old (410 Gone)"
    if status == 504 and "too large resource version" in str(getattr(exc, "reason", "")).lower():
        return "resourceVersion newer than the server's (too large)"
    return None


class _Watch(watch.Watch):
    """The client's Watch, telling a blank line (nothing: client-go skips it) from a line
    that is no JSON (the client's None for both; the loop ends the watch on None)."""

    def unmarshal_event(self, data: str, return_type: Any) -> Any:
        if not data or data.isspace():
            return {"type": None}  # no raw_object: the loop skips it
        return super().unmarshal_event(data, return_type)  # type: ignore[no-untyped-call]


class _ShortWatch(Exception):
    def __str__(self) -> str:
        return (
            f"the watch ended within {SHORT_WATCH_SECONDS:g} s with no event; "
            "watching again after a backoff"
        )


class Reflector(Generic[T]):
    def __init__(
        self,
        stream: Stream,
        api: client.ApiClient,
        sink: Sink[T],
        *,
        keep: Callable[[dict[str, Any]], T | None],  # None: nothing worth keeping of it
        metrics: KubeMetrics,
        settings: WatchSettings,
        stop: threading.Event,
        rand: Callable[[], float] = random.random,
        lister: Lister | None = None,  # default: the stream's API call (tests pass their own)
    ) -> None:
        self.stream, self.sink, self.metrics = stream, sink, metrics
        self.settings, self._keep, self._stop, self._rand = settings, keep, stop, rand
        self._lister = lister if lister is not None else stream.lister(api)
        self._server: str = api.configuration.host  # named when an error does not
        self._watch: watch.Watch | None = None
        self._progressed = False
        self.rv: str | None = None  # where the next watch starts; None: list first
        self.name = stream.name
        metrics.source(self.name)

    def kept(self, obj: dict[str, Any]) -> T | None:
        obj.setdefault("apiVersion", self.stream.resource.api_version)
        obj.setdefault("kind", self.stream.resource.kind)
        return self._keep(obj)

    def _keyed(self, obj: dict[str, Any]) -> tuple[Key, T] | None:
        # The key first: what keep copies of the name next is then the same copy (own()).
        key = object_key(obj)
        kept = self.kept(obj)
        return None if kept is None else (key, kept)

    def interrupt(self) -> None:
        """Unblock a watch read at once (the owner has set ``stop``)."""
        w = self._watch
        if w is not None:
            w.stop()  # type: ignore[no-untyped-call]

    def run(self) -> None:
        failures = 0  # consecutive failures, for the backoff
        while not self._stop.is_set():
            self._progressed = False
            try:
                if self.rv is None:
                    self.rv = self._list()
                    if self.rv is None:  # an optional resource this server does not offer
                        self._stop.wait(self.settings.absent_retry)
                        continue
                began = time.monotonic()
                self._watch_once()  # until the server ends the watch: then watch again
                if self._progressed or time.monotonic() - began >= SHORT_WATCH_SECONDS:
                    failures = 0
                    self.sink.problem(self.name, "")
                    self._synced()
                    continue
                # Ended at once with nothing: a proxy or server cutting watches. Watching
                # again at once made thousands of requests a second.
                raise _ShortWatch
            except Exception as exc:
                if self._stop.is_set():
                    break
                if self._progressed:  # it worked for a while: start the backoff over
                    failures = 0
                why = _relist_why(exc)
                if why is not None:
                    # After a watch that worked, re-list at once; 410s in a row back off.
                    self.rv = None
                    self.metrics.restarts.labels(self.name).inc()
                    log.info("%s: %s: listing again", self.name, why)
                    delay = self._backoff(failures)
                    failures += 1
                else:  # resume from the last event handled (self.rv), or list if none
                    self.metrics.errors.labels(self.name).inc()
                    if self.rv is not None:
                        self.metrics.restarts.labels(self.name).inc()
                    if self.rv is not None and getattr(exc, "status", None) == 404:
                        # The resource went away under its watch (an API turned off, a CRD
                        # deleted): resuming would keep what was held for ever. The list
                        # says what is true: absent (optional: held empty) or an error.
                        self.rv = None
                    said = (
                        f"{self.name}: {exc}"
                        if isinstance(exc, _ShortWatch)
                        else describe_failure(self.stream, exc, server=self._server)
                    )
                    self.sink.problem(self.name, said)
                    failures += 1
                    delay = self._backoff(failures)
            self._stop.wait(delay)

    def _backoff(self, failures: int) -> float:
        s = self.settings
        return backoff_delay(failures, s.backoff_base, s.backoff_cap, self._rand)

    def _synced(self) -> None:
        self.metrics.last_sync.labels(self.name).set(time.time())

    def _list(self) -> str | None:
        try:
            pairs, rv = list_all(self.stream, self._lister, self.settings.list_timeout, self._keyed)
        except ApiException as exc:
            if exc.status == 404 and self.stream.resource.optional:
                self.sink.replace(self.name, {})
                self.sink.problem(self.name, "")
                self._synced()  # known absent is in sync: an alert on a stale source must not fire
                log.info("%s: not offered by this API server (404); asking again later", self.name)
                return None
            if exc.status == 403 and self.stream.resource.optional:
                # Held empty and said as a gap, so the replica gets ready without it (a role
                # copied from an older README kept every replica not ready, and under
                # failurePolicy Fail no Eip could be applied). Then a failure as any other:
                # logged, counted, listed again after a backoff (a grant added later is
                # read then, with no restart).
                self.sink.replace(self.name, {}, gap=forbidden_gap(self.stream.resource))
            raise
        items = dict(pairs)
        self.sink.replace(self.name, items)
        self.sink.problem(self.name, "")
        self._synced()
        log.info("%s: listed %d object(s) at resourceVersion %r", self.name, len(items), rv)
        return rv

    def _watch_once(self) -> None:
        """One watch request from ``self.rv``, until the server ends it.

        ``self.rv`` advances only after an event is handled: a failure resumes there.
        """
        w = _Watch()  # type: ignore[no-untyped-call]
        self._watch = w
        if self._stop.is_set():  # stop() may have run before _watch was set
            return
        s = self.settings
        # Between the timeout and twice it, as client-go's reflector: the watches of many
        # replicas (and sources) started together do not all end, and come back, together.
        seconds = int(s.timeout_seconds * (1 + self._rand()))
        stream = w.stream(  # type: ignore[no-untyped-call]
            self._lister,
            resource_version=self.rv,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _request_timeout=(s.connect_timeout, seconds + s.read_grace),
        )
        held_count = 0
        try:
            for event in stream:
                if not isinstance(event, dict):  # the client's None for a line not JSON
                    raise UnreadableAnswer("the watch sent a line that is no JSON event")
                kind = event.get("type")
                obj = event.get("raw_object")
                if not isinstance(obj, dict):
                    continue
                if kind == "ERROR":  # Watch raises these itself when timeout_seconds is set
                    reason = f"{obj.get('reason')}: {obj.get('message')}"  # as the client
                    raise ApiException(status=obj.get("code"), reason=reason)
                if kind == "DELETED":
                    self.sink.remove(self.name, object_key(obj))
                elif kind in ("ADDED", "MODIFIED"):
                    keyed = self._keyed(obj)
                    if keyed is None:  # e.g. a label it was selected by is gone
                        self.sink.remove(self.name, object_key(obj))
                    else:
                        self.sink.upsert(self.name, *keyed)
                self.rv = resource_version(obj) or self.rv  # BOOKMARK: only this
                self._progressed = True
                held_count += kind != "BOOKMARK"
                self._synced()
        finally:
            self._watch = None
            if held_count:
                log.debug("%s: %d event(s) in this watch", self.name, held_count)
