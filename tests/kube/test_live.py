"""LiveInventory against kmock over real HTTP: list, watch, 410, cuts, a missing CRD."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import kmock
import pytest

from app.core.eips import Eip
from app.core.rules import check
from app.core.verdict import Verdict
from app.kube.resources import PAGE
from tests.core.objects import (
    calico_pool,
    cilium_node,
    configmap,
    eip,
    kube_vip_pod,
    node,
    service,
    service_cidr,
)
from tests.kmock_harness import (
    CALICO_IPPOOLS,
    CILIUMNODES,
    EIPS,
    SERVICECIDRS,
    FakeApi,
    Writer,
    running,
)
from tests.kube.harness import FAST, SETTINGS, Cluster, TimedEmulator
from tests.support import eventually

CAN_REACH = "can_reach:10.0.0.9"


def verdict(cluster: Cluster, interface: str = CAN_REACH) -> Verdict:
    candidate = Eip.from_object(
        eip("candidate", "192.168.50.10-192.168.50.20", interface=interface)
    )
    return check(candidate, None, cluster.live.source.current())


def rules(v: Verdict) -> set[str]:
    return {x.rule for x in v.denied_by}


def test_initial_list_then_ready(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    writer.create(node("n1", "10.0.0.9"))
    writer.create(service("web", cluster_ip="10.96.0.10"))
    cluster = cluster_factory()
    assert cluster.ready().reason == ""
    assert rules(verdict(cluster)) == {"can-reach-node-ip"}
    assert cluster.metric("eip_guard_source_objects", source="nodes") == 1
    assert cluster.metric("eip_guard_source_last_sync_timestamp_seconds", source="nodes") > 0
    assert cluster.metric("eip_guard_inventory_ready") == 1


def test_added_modified_deleted_change_the_next_verdict(
    writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory()
    cluster.ready()
    assert verdict(cluster).allowed

    writer.create(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.9",)))  # ADDED
    eventually(lambda: "can-reach-service-ip" in rules(verdict(cluster)), "ADDED Service seen")

    writer.patch(
        {**service("web", cluster_ip="10.96.0.10"), "spec": {"externalIPs": ["10.0.0.77"]}}
    )
    eventually(lambda: verdict(cluster).allowed, "MODIFIED Service seen")  # MODIFIED

    writer.create(node("n1", "10.0.0.9"))
    eventually(lambda: "can-reach-node-ip" in rules(verdict(cluster)), "ADDED Node seen")
    writer.delete("Node", "n1")  # DELETED
    eventually(lambda: verdict(cluster).allowed, "DELETED Node seen")


def test_410_gone_relists_and_the_inventory_is_right(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    writer.create(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.9",)))
    cluster = cluster_factory()
    cluster.ready()
    assert "can-reach-service-ip" in rules(verdict(cluster))
    lists_before = api.lists("/api/v1/services")

    # A deletion the watch never reports, then a watch that answers 410: only a re-list can
    # learn that the Service is gone (resuming the watch would keep the stale extract).
    api.silently_delete("v1/services", "default", "web")
    api.gone_once("v1/services")
    api.cut()
    eventually(lambda: verdict(cluster).allowed, "re-list after 410 dropped the Service")
    lists_after = api.lists("/api/v1/services")
    assert lists_after > lists_before
    assert cluster.metric("eip_guard_source_watch_restarts_total", source="services") >= 1


def test_a_cut_connection_recovers(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory()
    cluster.ready()
    eventually(lambda: api.cut() > 0, "live watch connections to cut")
    writer.create(node("n1", "10.0.0.9"))
    eventually(lambda: "can-reach-node-ip" in rules(verdict(cluster)), "Node seen after a cut")
    eventually(
        lambda: cluster.metric("eip_guard_source_watch_restarts_total", source="nodes") >= 1,
        "the restart counted",
    )


def test_a_silent_dead_connection_is_noticed(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    """Without a client read timeout this watch would wait forever on a silent socket."""
    cluster = cluster_factory()
    cluster.ready()
    eventually(lambda: api.stall() > 0, "live watch connections to silence")
    writer.create(node("n1", "10.0.0.9"))
    eventually(lambda: "can-reach-node-ip" in rules(verdict(cluster)), "Node seen after a stall")
    assert cluster.metric("eip_guard_source_errors_total", source="nodes") >= 1


def test_a_watch_the_server_ends_at_its_timeout_is_resumed_and_no_error() -> None:
    """A real API server ends each watch at its ``timeoutSeconds``, cleanly: watched again at
    once from the last resourceVersion, in sync, not an error nor a restart (kmock itself never
    ends a watch: there the client's read timeout did, counted as an error)."""
    with running(emulator=TimedEmulator) as api:
        cluster = Cluster(api)
        writer = Writer(api)
        try:
            cluster.ready()
            watches = api.requests("GET", "/api/v1/nodes", watch=True)
            # FAST asks for 2 to 4 s: wait for two more watches to end.
            eventually(
                lambda: api.requests("GET", "/api/v1/nodes", watch=True) >= watches + 2,
                "watches ended by the server and watched again",
            )
            writer.create(node("n1", "10.0.0.9"))
            eventually(lambda: "can-reach-node-ip" in rules(verdict(cluster)), "Node seen")
            assert api.lists("/api/v1/nodes") == 1  # resumed, never listed again
            assert cluster.metric("eip_guard_source_errors_total", source="nodes") == 0
            assert cluster.metric("eip_guard_source_watch_restarts_total", source="nodes") == 0
        finally:
            writer.close()
            cluster.close()


def test_missing_eip_crd_keeps_readiness_false_with_a_reason() -> None:
    with running(missing=(EIPS,)) as api:
        cluster = Cluster(api)
        try:
            # Every other source lists; only the Eips wait, and the reason says why.
            reason = eventually(
                lambda: (
                    cluster.live.source.readiness().reason.startswith(
                        "waiting for the first list of eips: "
                    )
                    and cluster.live.source.readiness().reason
                ),
                "a reason naming only the missing Eip CRD",
            )
            assert "the Eip CRD eips.network.kubesphere.io" in reason
            assert "not installed" in reason
            assert not cluster.live.source.readiness().ready
            assert cluster.metric("eip_guard_source_errors_total", source="eips") >= 1
            # It keeps retrying: once the CRD is there, the inventory becomes ready.
            api.call(lambda: api.declare("network.kubesphere.io/v1alpha2/eips", "Eip", False))
            cluster.ready()
        finally:
            cluster.close()


def test_kube_vip_vip_from_a_configmap_in_the_kube_vip_namespace(
    writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    """Pods and ConfigMaps are watched in the kube-vip namespace; assemble joins them."""
    ref = {"configMapKeyRef": {"name": "vip-config", "key": "vip"}}
    writer.create(kube_vip_pod("kube-vip-n1", [{"name": "address", "valueFrom": ref}]))
    cluster = cluster_factory()
    cluster.ready()
    assert verdict(cluster).allowed  # the ConfigMap does not exist yet: nothing known
    writer.create(configmap("vip-config", {"vip": "10.0.0.9"}))
    eventually(lambda: "can-reach-kube-vip" in rules(verdict(cluster)), "VIP from the ConfigMap")
    writer.patch(configmap("vip-config", {"vip": "10.0.0.10"}))
    eventually(lambda: verdict(cluster).allowed, "the VIP moved away")


def test_a_configmap_no_kube_vip_value_reads_makes_no_inventory_and_no_audit(
    writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    # cluster-autoscaler rewrites its status ConfigMap in kube-system every 10 s: each write
    # was a whole assemble and an audit of every Eip (about 1 s of CPU at the xl size).
    status = configmap("cluster-autoscaler-status", {"status": "at 10:00"})
    writer.create(status)
    cluster = cluster_factory()
    cluster.ready()
    source = cluster.live.source
    generation = source.published.generation
    for minute in range(1, 4):
        writer.patch(configmap("cluster-autoscaler-status", {"status": f"at 10:0{minute}"}))
    store = source._stores["configmaps/kube-system"]  # what the watch holds
    key = ("kube-system", "cluster-autoscaler-status")

    def last_write_held() -> bool:
        held = store.get(key)
        kept = held.extract.configmap if held is not None else None
        return kept is not None and kept[2].get("status") == "at 10:03"

    eventually(last_write_held, "the last write watched")
    time.sleep(10 * SETTINGS.coalesce)  # a rebuild it caused would be published by now
    assert source.published.generation == generation


def test_watches_ask_for_bookmarks_and_resume_from_one(
    api: FakeApi, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory()
    cluster.ready()
    first = eventually(lambda: api.watch_params("/api/v1/nodes"), "a watch of nodes")[0]
    assert first["allowWatchBookmarks"] == "true"
    # Spread as client-go spreads them: from the timeout to twice it.
    timeout = cluster.settings.watch.timeout_seconds
    assert timeout <= int(first["timeoutSeconds"]) <= 2 * timeout
    api.bookmark_once("v1/nodes", "4242")
    api.cut()  # the current watch ends; the next one meets the bookmark, then one more
    eventually(
        lambda: any(p.get("resourceVersion") == "4242" for p in api.watch_params("/api/v1/nodes")),
        "a watch that resumes from the bookmark's resourceVersion",
    )
    assert cluster.metric("eip_guard_source_objects", source="nodes") == 0  # no nameless Node


def test_servicecidrs_are_optional_and_picked_up_once_served() -> None:
    with running(missing=(SERVICECIDRS,)) as api:
        cluster = Cluster(api)
        writer = Writer(api)
        try:
            cluster.ready()  # an API server without ServiceCIDRs is no reason to wait
            assert verdict(cluster).allowed
            # The cluster is upgraded: the API now serves them; asked again after a while.
            api.call(lambda: api.declare(SERVICECIDRS, "ServiceCIDR", False))
            writer.create(service_cidr("kubernetes", "10.0.0.0/24"))
            eventually(
                lambda: "can-reach-service-ip" in rules(verdict(cluster)), "the ServiceCIDR seen"
            )
        finally:
            writer.close()
            cluster.close()


def test_calico_pools_and_cilium_nodes_are_watched(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    api.put(CALICO_IPPOOLS, calico_pool("default-ipv4-ippool", "10.0.0.0/24"))
    cluster = cluster_factory()
    cluster.ready()
    v = verdict(cluster)
    assert rules(v) == {"can-reach-pod-cidr"}
    assert "IPPool default-ipv4-ippool (spec.cidr)" in v.denied_by[0].message
    assert cluster.metric("eip_guard_source_objects", source="ippools") == 1
    writer.delete("IPPool", "default-ipv4-ippool")  # DELETED
    eventually(lambda: verdict(cluster).allowed, "the deleted IPPool gone")
    writer.create(cilium_node("n1", pod_cidrs=("10.0.0.0/28",)))  # ADDED
    eventually(lambda: rules(verdict(cluster)) == {"can-reach-pod-cidr"}, "the CiliumNode seen")
    writer.patch(cilium_node("n1", pod_cidrs=("10.0.1.0/28",)))  # MODIFIED
    eventually(lambda: verdict(cluster).allowed, "the CiliumNode's new pod CIDR seen")


def test_absent_cni_crds_are_no_gap_and_are_picked_up_once_installed() -> None:
    # No Calico, no Cilium: their CRDs answer 404. Ready at once, no gap, no problem, and
    # asked again later (absent_retry): a CNI's CRDs installed afterwards are read.
    with running(missing=(CALICO_IPPOOLS, CILIUMNODES)) as api:
        api.put("v1/nodes", node("n1", "10.1.0.5"))
        api.put("v1/services", service("kubernetes", cluster_ip="10.96.0.1"))
        cluster = Cluster(api)
        writer = Writer(api)
        try:
            cluster.ready()
            v = verdict(cluster)
            assert v.allowed and not v.warnings
            inventory = cluster.live.source.current()
            assert not any("ippools" in g or "ciliumnodes" in g for g in inventory.problems)
            assert cluster.metric("eip_guard_source_errors_total", source="ippools") == 0
            api.call(lambda: api.declare(CALICO_IPPOOLS, "IPPool", False))
            writer.create(calico_pool("default-ipv4-ippool", "10.0.0.0/24"))
            eventually(lambda: "can-reach-pod-cidr" in rules(verdict(cluster)), "the IPPool seen")
        finally:
            writer.close()
            cluster.close()


def forbid_lists(api: FakeApi, resource: str) -> threading.Event:
    """Lists of ``resource`` answer 403 while the returned event is set (clear it: granted)."""
    refused = threading.Event()
    refused.set()
    status = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "no"}

    def answer() -> Any:
        return status if refused.is_set() else NotImplemented  # NotImplemented: kmock's own

    api.call(lambda: api.km[kmock.action.LIST, kmock.resource(resource)] << 403 << answer)
    return refused


IPPOOLS_GAP = (
    "eip-guard: not checked: pod ranges in Calico IPPools "
    "(RBAC: grant list and watch on ippools.crd.projectcalico.org)"
)


def test_a_forbidden_cni_crd_degrades_to_a_gap_until_granted(
    api: FakeApi, writer: Writer, caplog: pytest.LogCaptureFixture
) -> None:
    # A ClusterRole copied from an older README has no ippools rule: the replica must not
    # stay not ready (failurePolicy Fail: no Eip could be applied) for an optional source.
    caplog.set_level(logging.INFO, logger="eip_guard.kube")
    api.put("v1/nodes", node("n1", "10.1.0.5"))
    api.put("v1/services", service("kubernetes", cluster_ip="10.96.0.1"))
    api.put(CALICO_IPPOOLS, calico_pool("default-ipv4-ippool", "10.0.0.0/24"))
    refused = forbid_lists(api, CALICO_IPPOOLS)
    cluster = Cluster(api)
    try:
        cluster.ready()
        v = verdict(cluster)
        assert v.allowed  # the pool could not be read: allowed, and said so
        assert v.warnings == (IPPOOLS_GAP,)  # whole: within a kubectl warning's length
        inventory = cluster.live.source.current()
        assert inventory.gaps == (IPPOOLS_GAP.removeprefix("eip-guard: not checked: "),)
        assert cluster.metric("eip_guard_inventory_problems", kind="not_checked") == 1
        eventually(
            lambda: cluster.metric("eip_guard_source_errors_total", source="ippools") >= 3,
            "the list retried after a backoff",
        )
        told = [r for r in caplog.records if r.levelno == logging.WARNING]
        grant = [r for r in told if "grant list and watch on ippools" in r.getMessage()]
        assert len([r for r in grant if r.getMessage().startswith("ippools: ")]) == 1  # once
        assert any(r.getMessage() == f"cluster: {IPPOOLS_GAP[11:]}" for r in told)
        # An inventory patched after an event keeps the gap.
        writer.create(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.9",)))
        eventually(lambda: "can-reach-service-ip" in rules(verdict(cluster)), "the Service seen")
        assert not cluster.live.source.published.whole
        assert IPPOOLS_GAP in verdict(cluster).warnings
        writer.delete("Service", "web", "default")
        eventually(lambda: verdict(cluster).allowed, "the Service gone")

        refused.clear()  # the grant is added: read at the next retry, no restart
        eventually(lambda: "can-reach-pod-cidr" in rules(verdict(cluster)), "the IPPool read")
        assert not cluster.live.source.current().gaps
        assert not [w for w in verdict(cluster).warnings if "not checked" in w]
        assert cluster.metric("eip_guard_inventory_problems", kind="not_checked") == 0
        assert any(r.getMessage() == "ippools: in sync again" for r in caplog.records)
    finally:
        cluster.close()


def test_forbidden_servicecidrs_and_ciliumnodes_are_gaps_not_a_wait(api: FakeApi) -> None:
    # ServiceCIDRs are as optional: a Kubernetes upgrade to 1.33 turns their 404 into a 403
    # for a role without the rule, and restarted replicas stayed not ready.
    forbid_lists(api, SERVICECIDRS)
    forbid_lists(api, CILIUMNODES)
    api.put("v1/nodes", node("n1", "10.1.0.5"))
    api.put("v1/services", service("kubernetes", cluster_ip="10.96.0.1"))
    cluster = Cluster(api)
    try:
        cluster.ready()
        assert verdict(cluster).warnings == (
            "eip-guard: not checked: Service ranges in ServiceCIDRs "
            "(RBAC: grant list and watch on servicecidrs.networking.k8s.io)",
            "eip-guard: not checked: pod CIDRs in CiliumNodes "
            "(RBAC: grant list and watch on ciliumnodes.cilium.io)",
        )
        assert cluster.metric("eip_guard_inventory_problems", kind="not_checked") == 2
    finally:
        cluster.close()


def test_a_slow_source_does_not_hold_up_the_others(
    api: FakeApi, cluster_factory: Callable[..., Cluster]
) -> None:
    release = api.hold_next_list("v1/services")
    try:
        # A long read timeout: the held list must stay held for as long as the test looks.
        cluster = cluster_factory(replace(SETTINGS, watch=replace(FAST, read_grace=60.0)))
        source = cluster.live.source
        eventually(
            lambda: source.readiness().reason == "waiting for the first list of services",
            "every source but the held one listed",
        )
        assert cluster.metric("eip_guard_source_last_sync_timestamp_seconds", source="nodes") > 0
        assert not source.readiness().ready
        # No inventory is built from the sources listed so far: nothing is served from it.
        time.sleep(10 * SETTINGS.coalesce)
        assert cluster.metric("eip_guard_inventory_rebuilds_total") == 0
    finally:
        release()
    cluster.ready()
    assert cluster.metric("eip_guard_inventory_rebuilds_total") == 1  # one, once all listed


def test_a_big_list_comes_in_pages_and_every_page_counts(
    api: FakeApi, cluster_factory: Callable[..., Cluster]
) -> None:
    """More Services than one page holds: the reflector asks page by page (``limit``,
    ``continue``), as kubectl does, and the inventory has every Service of every page."""
    total = 2 * PAGE + 7
    ips = [f"10.96.{i // 250}.{i % 250 + 1}" for i in range(total)]
    for i, ip in enumerate(ips):
        api.put("v1/services", service(f"s{i}", cluster_ip=ip))
    cluster = cluster_factory()
    cluster.ready()
    assert api.lists("/api/v1/services") == 3
    assert cluster.metric("eip_guard_source_objects", source="services") == total
    for ip in (ips[0], ips[PAGE], ips[-1]):  # one from each page
        assert "can-reach-service-ip" in rules(verdict(cluster, f"can_reach:{ip}"))


def _resume_scene(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> tuple[Cluster, dict[str, int]]:
    """Two Nodes and a Service in the inventory, then changes its watches never receive: their
    connections go silent (bytes dropped, as a dead peer), a Node is deleted, one is added and
    the Service modified. Returns live mode, and the lists made so far by path."""
    writer.create(node("n1", "10.0.0.9"))
    writer.create(node("n2", "10.0.0.2"))
    writer.create(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.9",)))
    cluster = cluster_factory()
    cluster.ready()
    held = cluster.live.source._stores
    eventually(lambda: set(held["nodes"]) == {("", "n1"), ("", "n2")}, "both Nodes held")
    assert "can-reach-node-ip" in rules(verdict(cluster))
    assert web_has(cluster, "10.0.0.9")
    lists = {p: api.lists(p) for p in ("/api/v1/nodes", "/api/v1/services")}
    eventually(lambda: api.stall() > 0, "live watch connections to silence")
    writer.delete("Node", "n1")  # DELETED
    writer.create(node("n3", "10.0.0.3"))  # ADDED
    writer.patch(  # MODIFIED
        {**service("web", cluster_ip="10.96.0.10"), "spec": {"externalIPs": ["10.0.0.77"]}}
    )
    time.sleep(0.2)  # the events are written to the silent connections, and lost
    assert "can-reach-node-ip" in rules(verdict(cluster)) and web_has(cluster, "10.0.0.9")
    return cluster, lists


def web_has(cluster: Cluster, ip: str) -> bool:
    """Whether the Service default/web, as held, has this IP."""
    held = cluster.live.source._stores["services"].get(("default", "web"))
    keys = {key for _kind, key, _src in held.extract.point_triples()} if held else set()
    return int(ipaddress.ip_address(ip)) in keys


def _in_sync(cluster: Cluster) -> bool:
    held = cluster.live.source._stores
    return (
        set(held["nodes"]) == {("", "n2"), ("", "n3")}
        and verdict(cluster).allowed  # n1 is gone
        and web_has(cluster, "10.0.0.77")
        and not web_has(cluster, "10.0.0.9")
    )


def test_a_cut_watch_resumes_where_it_stopped_and_gets_what_it_missed(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    """A real API server replays, from the resourceVersion a watch resumes at, every change
    made after it: the deletion, the addition and the modification the cut watch missed,
    with no list (the stand-in used to replay the objects that exist as ADDED to every watch,
    so a resume could never learn of a deletion)."""
    cluster, lists = _resume_scene(api, writer, cluster_factory)
    api.cut()
    eventually(lambda: _in_sync(cluster), "the resumed watches caught up")
    assert {p: api.lists(p) for p in lists} == lists  # resumed, never listed again
    resumed = api.watch_params("/api/v1/nodes")[1:]
    assert resumed and all(p["resourceVersion"].isdigit() for p in resumed)


def test_a_watch_resumed_past_the_servers_history_lists_again(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    """The history is gone (etcd compacted it): the resumed watch is answered 410 Expired,
    and only a new list can learn what was missed."""
    cluster, lists = _resume_scene(api, writer, cluster_factory)
    api.compact()
    api.cut()
    eventually(lambda: _in_sync(cluster), "the inventory listed again")
    assert all(api.lists(p) == n + 1 for p, n in lists.items())
    assert cluster.metric("eip_guard_source_watch_restarts_total", source="nodes") >= 1
