"""``LiveInventory``: the ``InventorySource`` of a live cluster.

Reflector threads write small per-object extracts into per-stream dicts under a short lock,
noting which objects changed. One rebuild thread, woken by a change and rate-limited
(``coalesce``: at most one rebuild per interval, so a burst of events costs one rebuild),
makes a new immutable ``Inventory`` outside the lock and publishes it with one reference
assignment. It makes it from the last one and the changed extracts (``inventory.update``:
milliseconds), or assembles it whole from every extract (about a second at 100,000
Services) after a relist, for ConfigMaps and kube-vip values to resolve, for many changes,
and at least every ``WHOLE_EVERY`` seconds. ``current()`` and ``readiness()`` read
published values only: a request never takes the lock, never waits on a writer and never
sees a half-applied change.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from kubernetes import client

from app.core.inventory import (
    DEFAULT_OPTIONS,
    EMPTY,
    MAX_CHANGES,
    Inventory,
    Options,
    Resolver,
    assemble,
    first_lines,
    update,
)
from app.core.sources import Readiness
from app.kube.metrics import KubeMetrics
from app.kube.reflector import Held, Key, Reflector, backoff_delay, holder
from app.kube.resources import Stream
from app.kube.settings import WatchSettings

log = logging.getLogger("eip_guard.kube")

# Under constant change an inventory is still assembled whole this often: kube-vip names are
# resolved again (DNS), as every rebuild did before rebuilds patched.
WHOLE_EVERY = 300.0
# A source's failure is logged when it starts or changes, and again this often while it
# lasts: every retry (each 30 s at most, for each source) said it, ~2,500 lines a day each.
SAY_AGAIN_EVERY = 600.0


@dataclass(frozen=True, slots=True)
class Published:
    """What readers see; replaced whole, never changed."""

    inventory: Inventory = field(default_factory=Inventory)
    generation: int = 0  # bumps on every rebuild
    complete: bool = False  # every stream's first list is in ``inventory``
    eip_uids: Mapping[str, str] = field(default_factory=dict)  # Eip name -> metadata.uid
    whole: bool = True  # assembled from every extract, not updated from the last inventory


def _matters(held: Held | None) -> bool:
    """Whether an object adds anything to the inventory (most kube-system Pods do not):
    their churn then costs no rebuild."""
    return held is not None and (held.extract != EMPTY or bool(held.uid))


def not_ready_reason(waiting: Iterable[str], problems: Mapping[str, str]) -> str:
    """Why /readyz fails, in words: which sources have not listed yet, and what blocks them,
    each cause said once (an API server out of reach holds up every source: one line, not
    eight, in /readyz and in the answer kubectl prints)."""
    waiting = sorted(waiting)
    if not waiting:
        return "assembling the inventory from the first lists"
    held: dict[str, list[str]] = {}  # a cause, without the source's name -> what it holds up
    for name in waiting:
        if problems.get(name):
            held.setdefault(problems[name].removeprefix(f"{name}: "), []).append(name)
    head = f"waiting for the first list of {', '.join(waiting)}"
    if len(held) == 1 and len(next(iter(held.values()))) == len(waiting):
        return f"{head}: {next(iter(held))}"
    parts = [head]
    for cause, names in held.items():
        parts.append(cause if problems[names[0]] == cause else f"{', '.join(names)}: {cause}")
    return "; ".join(parts)


def _patched(
    last: Published, changes: list[tuple[Held | None, Held | None]], complete: bool
) -> Published | None:
    """``last`` after ``changes``, updated rather than assembled (None when it cannot be)."""
    changes = [(was, now) for was, now in changes if was != now]
    gone = [was.extract for was, _ in changes if was is not None]
    new = [now.extract for _, now in changes if now is not None]
    inventory = update(last.inventory, gone, new)
    if inventory is None:
        return None
    if inventory is last.inventory and complete == last.complete:
        return last  # nothing the rules read changed: no new inventory, and no audit for it
    # The proxy's copy is its dict's (dict(proxy) reads 50,000 uids one by one: 15 ms).
    uids = cast("MappingProxyType[str, str]", last.eip_uids).copy()
    for was, now in changes:
        if was is not None and was.extract.eip is not None:
            uids.pop(was.extract.eip.name, None)
        if now is not None and now.extract.eip is not None:
            uids[now.extract.eip.name] = now.uid
    generation = last.generation + 1
    return Published(inventory, generation, complete, MappingProxyType(uids), whole=False)


class LiveInventory:
    def __init__(
        self,
        api: client.ApiClient,
        streams: Iterable[Stream],
        metrics: KubeMetrics,
        *,
        options: Options = DEFAULT_OPTIONS,
        resolve: Resolver | None = None,
        settings: WatchSettings | None = None,
        coalesce: float = 0.2,
    ) -> None:
        self._streams = tuple(streams)
        self._metrics, self._resolve, self._coalesce = metrics, resolve, coalesce
        self._stop = threading.Event()
        # Guards _stores, _gaps, _changed, _whole, _listed, _problems, _said, and the writes of
        # _published and _readiness; held briefly.
        self._lock = threading.Lock()
        self._stores: dict[str, dict[Key, Held]] = {s.name: {} for s in self._streams}
        # Changed since the last rebuild read the stores: (stream, key) -> what it read then
        # (None: nothing). Empty, and not written, while _whole: the next rebuild reads
        # everything.
        self._changed: dict[tuple[str, Key], Held | None] = {}
        self._whole = True
        self._last_whole = float("-inf")
        self._listed: set[str] = set()
        self._problems: dict[str, str] = {}
        self._gaps: dict[str, str] = {}  # optional streams that may not be read -> their gap
        self._dirty = threading.Event()
        self._published = Published()
        self._readiness = Readiness(False, not_ready_reason(self._stores, {}))
        self._listeners: list[Callable[[], None]] = []
        self._threads: list[threading.Thread] = []
        self._told: frozenset[str] = frozenset()  # problems of the inventory last logged
        self._said: dict[str, tuple[str, float]] = {}  # a source's failure last logged, when
        settings = self._settings = settings or WatchSettings()
        keep = holder(options)
        self._reflectors = [
            Reflector(s, api, self, keep=keep, metrics=metrics, settings=settings, stop=self._stop)
            for s in self._streams
        ]

    # --- InventorySource: readers -------------------------------------------------------

    def current(self) -> Inventory:
        return self._published.inventory

    def readiness(self) -> Readiness:
        return self._readiness

    @property
    def published(self) -> Published:
        return self._published

    @property
    def changes_pending(self) -> bool:
        """A change the next rebuild will pick up (set by writers, cleared by the rebuild)."""
        return self._dirty.is_set()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (quickly, from the rebuild thread) after each new inventory."""
        self._listeners.append(listener)

    # --- Sink: writers (reflector threads) -------------------------------------------------

    def replace(self, stream: str, items: dict[Key, Held], gap: str = "") -> None:
        with self._lock:
            # A list that finds what is held already (an API without ServiceCIDRs, asked
            # again every few minutes: still none) changes nothing: no whole rebuild, no
            # new inventory and no audit of every Eip for it.
            same = (
                stream in self._listed
                and items == self._stores[stream]
                and gap == self._gaps.get(stream, "")
            )
            if not same:
                self._stores[stream] = items
                if gap:
                    self._gaps[stream] = gap
                else:
                    self._gaps.pop(stream, None)
                # A relist, or a gap that comes or goes: whatever changed, read everything
                # (an inventory patched keeps the gaps of the last one).
                self._whole = True
            self._listed.add(stream)
            self._refresh_readiness()
        self._metrics.objects.labels(stream).set(len(items))
        if not same:
            self._dirty.set()

    def upsert(self, stream: str, key: Key, held: Held) -> None:
        with self._lock:
            store = self._stores[stream]
            before = store.get(key)
            if before == held:  # a replayed ADDED, a status heartbeat: nothing the rules see
                return
            store[key] = held
            self._note_change(stream, key, before)
            size = len(store)
        self._metrics.objects.labels(stream).set(size)
        if _matters(before) or _matters(held):
            self._dirty.set()

    def remove(self, stream: str, key: Key) -> None:
        with self._lock:
            store = self._stores[stream]
            before = store.pop(key, None)
            if before is None:
                return
            self._note_change(stream, key, before)
            size = len(store)
        self._metrics.objects.labels(stream).set(size)
        if _matters(before):
            self._dirty.set()

    def _note_change(self, stream: str, key: Key, before: Held | None) -> None:  # lock held
        # Not while the next rebuild reads everything anyway: until every first list is in
        # (a missing Eip CRD: days), every Pod or Service name ever watched was kept here.
        if not self._whole:
            self._changed.setdefault((stream, key), before)

    def problem(self, stream: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            said = self._said.get(stream)
            if text:
                self._problems[stream] = text
                tell = said is None or said[0] != text or now - said[1] >= SAY_AGAIN_EVERY
                if tell:
                    self._said[stream] = (text, now)
            else:
                self._problems.pop(stream, None)
                self._said.pop(stream, None)
                tell = False
            self._refresh_readiness()
        if tell:
            log.warning("%s", text)
        elif not text and said is not None:
            log.info("%s: in sync again", stream)

    def _all_listed(self) -> bool:  # with the lock held
        return len(self._listed) == len(self._stores)

    def _refresh_readiness(self) -> None:  # with the lock held
        if not self._published.complete:
            waiting = [name for name in self._stores if name not in self._listed]
            self._readiness = Readiness(False, not_ready_reason(waiting, self._problems))

    # --- the rebuild thread ---------------------------------------------------------------

    def rebuild(self) -> Published:
        """Make and publish a new inventory from the extracts held now."""
        self._dirty.clear()  # before the copy: a change after it sets it again
        last = self._published
        started = time.thread_time()
        try:
            published = None
            with self._lock:
                whole = (
                    self._whole
                    or not last.complete
                    or len(self._changed) > MAX_CHANGES
                    or time.monotonic() - self._last_whole >= WHOLE_EVERY
                )
                changes = None if whole else self._take_changes()
                complete = self._all_listed()
            if changes is not None:
                try:
                    published = _patched(last, changes, complete)
                except Exception:  # a bug in the patch must not leave the inventory stale
                    self._metrics.rebuild_failures.labels("changes").inc()
                    log.exception("patching the inventory failed; assembling it whole")
            if published is None:  # or the patch could not be made: read everything
                published = self._assembled(last)
                self._last_whole = time.monotonic()
        except BaseException:
            with self._lock:  # the changes taken are lost to the next patch
                self._whole = True
            raise
        how = "whole" if published.whole else "changes"
        self._metrics.rebuild_seconds.labels(how).inc(time.thread_time() - started)
        if published is last:
            return last
        # Under the lock, as _refresh_readiness reads and writes them: a source's problem
        # said while the first complete inventory was published could otherwise put back
        # "not ready" after "ready", for good on a quiet cluster (no other rebuild comes).
        with self._lock:
            became_ready = published.complete and not self._readiness.ready
            self._published = published
            if published.complete:
                self._readiness = Readiness(True)
        if became_ready:
            inventory = published.inventory
            eips = len(published.eip_uids)
            log.info("inventory ready: %d fact(s), %d Eip(s)", inventory.fact_count, eips)
        if published.complete:
            self._tell(published.inventory)
        self._metrics.ready.set(1 if published.complete else 0)
        self._metrics.rebuilds.inc()
        for listener in self._listeners:
            listener()
        return published

    def _tell(self, inventory: Inventory) -> None:
        """Logs what ``inventory`` could not read or check that the last one logged did not
        say (once, not on every rebuild), and counts it all in a gauge, for alerts. Before
        every first list is in, a missing kind only means its list has not come yet, so
        incomplete inventories are never told."""
        self._metrics.problems.labels("not_checked").set(len(inventory.gaps))
        self._metrics.problems.labels("ignored").set(len(inventory.notes))
        lines = inventory.problems
        new = [line for line in lines if line not in self._told]
        self._told = frozenset(lines)
        for line in first_lines(new):
            log.warning("cluster: %s", line)

    def _take_changes(self) -> list[tuple[Held | None, Held | None]]:  # with the lock held
        """(what the last inventory holds, what the store holds now) for each change."""
        changed, self._changed = self._changed, {}
        return [(was, self._stores[stream].get(key)) for (stream, key), was in changed.items()]

    def _assembled(self, last: Published) -> Published:
        with self._lock:  # every extract, and the changes so far with them
            held = [h for store in self._stores.values() for h in store.values()]
            gaps = [self._gaps[name] for name in self._stores if name in self._gaps]
            self._changed, self._whole = {}, False
            complete = self._all_listed()
        inventory = assemble((h.extract for h in held), self._resolve, gaps)
        uids = {h.extract.eip.name: h.uid for h in held if h.extract.eip is not None}
        return Published(inventory, last.generation + 1, complete, MappingProxyType(uids))

    def _rebuild_loop(self) -> None:
        last = float("-inf")
        failures = 0  # in a row: the wait before trying again grows
        while not self._stop.is_set():
            if not self._dirty.wait(timeout=5.0) or self._stop.is_set():
                continue  # stop() sets _dirty too: it wakes this thread at once
            # Until every source has listed once nothing is served from the inventory (not
            # ready), so partial ones were wasted work: 5 rebuilds instead of 1 at 30,000
            # Services. The last first list sets _dirty again; clearing under the lock keeps
            # it from slipping in between the test and the clear.
            with self._lock:
                if not self._all_listed():
                    self._dirty.clear()
                    continue
            wait = last + self._coalesce - time.monotonic()
            if wait > 0 and self._stop.wait(wait):  # let the burst finish: one rebuild for it
                break
            try:
                self.rebuild()
                failures = 0
            except Exception:  # a bug must not stop the inventory from ever updating again
                failures += 1
                self._metrics.rebuild_failures.labels("whole").inc()
                s = self._settings
                delay = backoff_delay(failures, s.backoff_base, s.backoff_cap, random.random)
                log.exception(
                    "rebuilding the inventory failed; keeping the previous one, "
                    "trying again in %.1f s",
                    delay,
                )
                # Not only after the next event: a quiet cluster may send none for hours.
                self._dirty.set()
                if self._stop.wait(delay):
                    break
            last = time.monotonic()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> LiveInventory:
        for r in self._reflectors:
            t = threading.Thread(target=r.run, name=f"eip-guard watch {r.name}", daemon=True)
            self._threads.append(t)
        self._threads.append(
            threading.Thread(target=self._rebuild_loop, name="eip-guard rebuild", daemon=True)
        )
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._dirty.set()
        for r in self._reflectors:
            r.interrupt()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
