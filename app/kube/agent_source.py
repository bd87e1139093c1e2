"""Live mode: the cluster as the agent sees it, kept current by watches, and the live
members from per-node Leases. Structurally an ``app.agent.runner.ClusterSource``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from app.kube.agent_api import AgentApi, KubeError
from app.kube.agent_leases import live_nodes, next_expiry
from app.kube.agent_watch import WATCH_SECONDS, Reflector

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
Log = Callable[[str], None]


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta}


def keep_eip(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"apiVersion": obj.get("apiVersion") or "network.kubesphere.io/v1alpha2",
            "kind": "Eip", "metadata": _meta(obj), "spec": obj.get("spec") or {},
            "status": obj.get("status") or {}}  # fmt: skip


def keep_service(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec") or {}
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(obj),
            "spec": {"externalTrafficPolicy": spec.get("externalTrafficPolicy")}}  # fmt: skip


def keep_slice(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    endpoints = [
        {"nodeName": e.get("nodeName"), "conditions": e.get("conditions") or {}}
        for e in obj.get("endpoints") or []
    ]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": _meta(obj), "endpoints": endpoints}  # fmt: skip


def keep_excluded_node(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # The selector asks the server for these only; checked again in case it did not filter.
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if EXCLUDE_LABEL not in labels:
        return None
    return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(obj)}


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
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        if not 0 < renew < duration:
            raise ValueError(f"the renew interval ({renew} s) must be shorter than the Lease "
                             f"duration ({duration} s)")  # fmt: skip
        self.api, self.node, self._log = api, node, log
        self.renew, self.duration, self._clock = renew, duration, clock
        custom, core = client.CustomObjectsApi(api.api), client.CoreV1Api(api.api)
        discovery = client.DiscoveryV1Api(api.api)
        w = watch_seconds
        self.reflectors = (
            Reflector(api, "Eips", custom.list_cluster_custom_object,
                      ("network.kubesphere.io", "v1alpha2", "eips"), keep_eip, log, w),
            Reflector(api, "Services", core.list_service_for_all_namespaces, (),
                      keep_service, log, w),
            Reflector(api, "EndpointSlices", discovery.list_endpoint_slice_for_all_namespaces,
                      (), keep_slice, log, w),
            Reflector(api, "excluded Nodes", core.list_node, (), keep_excluded_node, log, w,
                      label_selector=EXCLUDE_LABEL),
        )  # fmt: skip
        self._lock = threading.Lock()
        self._leases: list[Mapping[str, Any]] = []
        self._listed_at: datetime | None = None
        self._renewed_at: float | None = None  # monotonic time of our last good renewal
        self._joined_at: float | None = None  # monotonic time of our first good renewal
        # Others list the Leases once per renewal: wait that long (and a margin) after our
        # Lease first appears before we count, so a joining node never speaks over the node
        # that still thinks an IP is its own.
        self.warm_up = renew + max(renew / 2, 1.0)

    def start(self, stop: threading.Event) -> None:
        for reflector in self.reflectors:
            reflector.start(stop)
        threading.Thread(target=self._keep_lease, args=(stop,), name="lease", daemon=True).start()

    def _keep_lease(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.api.renew_lease(self.node, self.duration, self._clock())
                self._renewed_at = started
                if self._joined_at is None:
                    self._joined_at = started
                self._list_leases()
            except KubeError as exc:
                self._log(str(exc))
            stop.wait(max(0.0, self.renew - (time.monotonic() - started)))

    def _list_leases(self) -> None:
        leases = self.api.list_leases()
        with self._lock:
            self._leases, self._listed_at = leases, self._clock()

    def objects(self) -> Sequence[Mapping[str, Any]]:
        waiting = [r.what for r in self.reflectors if not r.synced.is_set()]
        if waiting:
            raise KubeError(f"waiting for the first list of {', '.join(waiting)}")
        return [obj for r in self.reflectors for obj in r.items()]

    def self_live(self) -> bool:
        """Warm-up, then fencing: count ourselves once others can have seen our Lease, and
        stop before they see it run out."""
        renewed, joined, now = self._renewed_at, self._joined_at, time.monotonic()
        if renewed is None or joined is None or now - joined < self.warm_up:
            return False
        if now - renewed >= self.duration - self.renew:
            self._joined_at = None  # after a lapse, warm up again once renewals resume
            return False
        return True

    def members(self) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            leases, listed = self._leases, self._listed_at
        if listed is not None:
            soonest = next_expiry(leases, listed)
            if soonest is not None and soonest <= now:
                # A Lease ran out since the last list: look again before declaring it dead,
                # so failover takes the Lease duration plus one tick, not another renewal.
                try:
                    self._list_leases()
                    with self._lock:
                        leases = self._leases
                except KubeError as exc:
                    self._log(str(exc))
        live = set(live_nodes(leases, now)) - {self.node}
        if self.self_live():
            live.add(self.node)
        return frozenset(live)
