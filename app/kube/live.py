"""``LiveInventory``: the ``InventorySource`` of a live cluster.

Reflector threads write small per-object extracts into per-stream dicts under a short lock.
One rebuild thread, woken by a change and rate-limited (``coalesce``: at most one rebuild per
interval, so a burst of events costs one rebuild), copies the extracts out, assembles a new
immutable ``Inventory`` outside the lock and publishes it with one reference assignment.
``current()`` and ``readiness()`` read published values only: a request never takes the lock,
never waits on a writer and never sees a half-applied change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from kubernetes import client

from app.core.inventory import (
    DEFAULT_OPTIONS,
    EMPTY,
    Inventory,
    Options,
    Resolver,
    assemble,
)
from app.core.sources import Readiness
from app.kube.metrics import KubeMetrics
from app.kube.reflector import Held, Key, Reflector, holder
from app.kube.resources import Stream
from app.kube.settings import WatchSettings

log = logging.getLogger("eip_guard.kube")


@dataclass(frozen=True, slots=True)
class Published:
    """What readers see; replaced whole, never changed."""

    inventory: Inventory = field(default_factory=Inventory)
    generation: int = 0  # bumps on every rebuild
    complete: bool = False  # every stream's first list is in ``inventory``
    eip_uids: Mapping[str, str] = field(default_factory=dict)  # Eip name -> metadata.uid


def _matters(held: Held | None) -> bool:
    """Whether an object adds anything to the inventory (most kube-system Pods do not):
    their churn then costs no rebuild."""
    return held is not None and (held.extract != EMPTY or bool(held.uid))


def not_ready_reason(waiting: Iterable[str], problems: Mapping[str, str]) -> str:
    """Why /readyz fails, in words: which sources have not listed yet, and what blocks them."""
    waiting = sorted(waiting)
    if not waiting:
        return "assembling the inventory from the first lists"
    parts = [f"waiting for the first list of {', '.join(waiting)}"]
    parts += [problems[name] for name in waiting if problems.get(name)]
    return "; ".join(parts)


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
        self._lock = threading.Lock()  # guards _stores, _listed, _problems; held briefly
        self._stores: dict[str, dict[Key, Held]] = {s.name: {} for s in self._streams}
        self._listed: set[str] = set()
        self._problems: dict[str, str] = {}
        self._dirty = threading.Event()
        self._published = Published()
        self._readiness = Readiness(False, not_ready_reason(self._stores, {}))
        self._listeners: list[Callable[[], None]] = []
        self._threads: list[threading.Thread] = []
        settings = settings or WatchSettings()
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

    def replace(self, stream: str, items: dict[Key, Held]) -> None:
        with self._lock:
            self._stores[stream] = items
            self._listed.add(stream)
            self._refresh_readiness()
        self._metrics.objects.labels(stream).set(len(items))
        self._dirty.set()

    def upsert(self, stream: str, key: Key, held: Held) -> None:
        with self._lock:
            store = self._stores[stream]
            before = store.get(key)
            if before == held:  # a replayed ADDED, a status heartbeat: nothing the rules see
                return
            store[key] = held
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
            size = len(store)
        self._metrics.objects.labels(stream).set(size)
        if _matters(before):
            self._dirty.set()

    def problem(self, stream: str, text: str) -> None:
        if text:
            log.warning("%s", text)
        with self._lock:
            if text:
                self._problems[stream] = text
            else:
                self._problems.pop(stream, None)
            self._refresh_readiness()

    def _all_listed(self) -> bool:  # with the lock held
        return len(self._listed) == len(self._stores)

    def _refresh_readiness(self) -> None:  # with the lock held
        if not self._published.complete:
            waiting = [name for name in self._stores if name not in self._listed]
            self._readiness = Readiness(False, not_ready_reason(waiting, self._problems))

    # --- the rebuild thread ---------------------------------------------------------------

    def rebuild(self) -> Published:
        """Assemble and publish a new inventory from the extracts held now."""
        self._dirty.clear()  # before the copy: a change after it sets it again
        with self._lock:
            held = [h for store in self._stores.values() for h in store.values()]
            complete = self._all_listed()
        inventory = assemble((h.extract for h in held), self._resolve)
        uids = {h.extract.eip.name: h.uid for h in held if h.extract.eip is not None}
        published = Published(
            inventory, self._published.generation + 1, complete, MappingProxyType(uids)
        )
        self._published = published
        if complete:
            if not self._readiness.ready:
                log.info("inventory ready: %d fact(s), %d Eip(s)", inventory.fact_count, len(uids))
            self._readiness = Readiness(True)
        self._metrics.ready.set(1 if complete else 0)
        self._metrics.rebuilds.inc()
        for listener in self._listeners:
            listener()
        return published

    def _rebuild_loop(self) -> None:
        last = float("-inf")
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
            except Exception:  # a bug must not stop the inventory from ever updating again
                log.exception("rebuilding the inventory failed; keeping the previous one")
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
