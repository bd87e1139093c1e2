"""Live mode against kmock's Kubernetes emulator over real HTTP: Leases and membership,
watches, the node report annotation and Warning Events."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes import client

from app.agent.election import elect
from app.agent.pyroute2_netlink import Pyroute2Netlink
from app.agent.runner import Agent, Settings
from app.cli.agent_run import LiveSource, _live, run_agent
from app.cli.main import parser
from app.core.facts import FactKind
from app.core.inventory import build
from app.core.labels import EXCLUDE_LABEL, NODE_REPORT_ANNOTATION
from app.kube import agent_api as agent_api_module
from app.kube.agent_api import AgentApi, KubeError, Writes, make_client
from app.kube.agent_leases import Held, lease_body, lease_name, live_seen, next_seen_expiry, observe
from app.kube.agent_source import LiveCluster
from app.kube.rest import MERGE_PATCH
from app.sources.manifest import dns_subdomain
from tests.kmock_harness import EIPS, FakeApi, Writer, rbac_grants, running
from tests.support import eventually

from .lab import CAN_REACH4, SUBNET4, Lab, NoNics
from .test_agent_chart import render


def agent_chart_grants() -> set[tuple[str, str, str]]:
    objs = render({"agent": {"enabled": True}})
    return rbac_grants(r for o in objs if o["kind"] in ("Role", "ClusterRole") for r in o["rules"])


def agent_api(emulator: FakeApi, namespace: str = "eip-guard") -> AgentApi:
    return AgentApi(make_client(server=emulator.url), namespace, timeout=5)


LEASES = "coordination.k8s.io/v1/leases"


@pytest.fixture
def emulator() -> Iterator[FakeApi]:
    with running() as emu:
        emu.put(
            "v1/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"namespace": "shop", "name": "web"},
                "spec": {"externalTrafficPolicy": "Cluster"},
            },
        )
        emu.put("discovery.k8s.io/v1/endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"namespace": "shop", "name": "web-1",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "endpoints": [{"nodeName": "node1", "addresses": ["10.1.0.1"]}]})  # fmt: skip
        yield emu


def eip(used: dict[str, str], interface: str = f"can_reach:{CAN_REACH4}") -> dict[str, Any]:
    return {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": "pool", "uid": "uid-pool"},
            "spec": {"address": f"{SUBNET4}.100-{SUBNET4}.120", "protocol": "layer2",
                     "interface": interface},
            "status": {"used": used}}  # fmt: skip


def test_lease_liveness_follows_renewals_seen_not_clocks() -> None:
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    fresh = lease_body("a", "ns", 6, wall - timedelta(seconds=5))
    stale = lease_body("b", "ns", 6, wall - timedelta(seconds=7))
    foreign = dict(fresh, metadata={"name": "kube-scheduler", "labels": {}})
    # First sight: the clocks say which Leases have run out already.
    seen = observe(None, [fresh, stale, foreign], 100.0, wall)  # the first list
    assert live_seen(seen, 100.0) == {"a"}
    assert next_seen_expiry(seen, 100.0) == 106.0  # six seconds from when it was seen
    # Unchanged in the next list: live until six seconds after it was first seen.
    later = observe(seen, [fresh, stale], 105.0, wall + timedelta(seconds=5))
    assert live_seen(later, 105.0) == {"a"} and live_seen(later, 106.0) == frozenset()
    # Renewed (a new renewTime), by a node whose clock is 30 s behind, or after this node's
    # clock jumped 30 s ahead: live all the same, from when the renewal was seen.
    behind = lease_body("a", "ns", 6, wall - timedelta(seconds=30))
    renewed = [behind, lease_body("b", "ns", 6, wall)]
    jumped = observe(later, renewed, 107.0, wall + timedelta(seconds=40))
    assert live_seen(jumped, 107.0) == {"a", "b"} and live_seen(jumped, 113.0) == frozenset()
    # A Lease that appears after the first list was just written: live from when it is
    # seen, however far behind its holder's clock (a node restarting after giving its
    # Lease up counted as dead until its next renewal, after its own warm-up).
    rejoined = lease_body("c", "ns", 6, wall - timedelta(seconds=30))
    later_seen = observe(jumped, [rejoined], 108.0, wall + timedelta(seconds=41))
    assert live_seen(later_seen, 108.0) == {"c"}


def test_a_lease_name_is_valid_and_one_per_node_whatever_the_node_names_length() -> None:
    # Node names are DNS subdomains of up to 253 characters, and so must a Lease's name be:
    # the prefix and a name of 238 or more were cut at 253, so two long node names alike up
    # to there shared one Lease (each renewal took it from the other), and a cut ending in
    # "." or "-" is no DNS subdomain (the API server refuses the create: 422).
    base = "n" * 230
    names = [
        "node1",
        "n" * 237,  # fits exactly: kept as it is
        base + ".a" * 10 + "x",  # 251 characters
        base + ".a" * 10 + "y",
        base + "." + "b" * 22,  # the cut would end in "."
        "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61,  # 253
    ]
    leases = [lease_name(n) for n in names]
    assert leases[:2] == ["eip-guard-agent-node1", "eip-guard-agent-" + "n" * 237]
    assert len(set(leases)) == len(names)
    for name in leases:
        assert len(name) <= 253 and dns_subdomain(name), name
    # The others find the holder's node by the Lease's holderIdentity, as for any node.
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    seen = observe(None, [lease_body(n, "ns", 6, wall) for n in names], 100.0, wall)
    assert live_seen(seen, 100.0) == set(names)


def test_a_lease_speaks_for_the_node_it_is_named_for_and_for_our_duration_at_most() -> None:
    # From a security review: 30 Leases written once, with a duration of 2**31-1, were live
    # a year later and won every IP, which nobody then answered for; and one Lease could
    # speak for any node.
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    ghost = lease_body("ghost", "ns", 2**31 - 1, wall)
    impostor = lease_body("x", "ns", 6, wall)
    impostor["spec"] = {**impostor["spec"], "holderIdentity": "node1"}  # Lease of x, for node1
    seen = observe(None, [ghost, impostor], 100.0, wall, longest=6)
    assert set(seen) == {"ghost"}  # the impostor speaks for nobody
    assert live_seen(seen, 105.0) == {"ghost"} and live_seen(seen, 106.0) == frozenset()


def test_leases_renew_and_expire(emulator: FakeApi) -> None:
    logs: list[str] = []
    stop_one, stop_two = threading.Event(), threading.Event()
    one = LiveCluster(
        agent_api(emulator), "node1", logs.append, renew=0.2, duration=1, watch_seconds=1
    )
    two = LiveCluster(
        agent_api(emulator), "node2", logs.append, renew=0.2, duration=1, watch_seconds=1
    )
    try:
        one.start(stop_one)
        two.start(stop_two)
        eventually(lambda: one.members() == {"node1", "node2"}, what="both live")
        lease = emulator.get(LEASES, "eip-guard",
                             "eip-guard-agent-node2")  # fmt: skip
        assert lease["spec"]["holderIdentity"] == "node2"
        assert lease["spec"]["leaseDurationSeconds"] == 1
        stop_two.set()  # node2's agent dies: its Lease is no longer renewed
        eventually(lambda: one.members() == {"node1"}, what="node2 drops out")
        assert two.members() == {"node1"}, "an agent that cannot renew fences itself"
    finally:
        stop_one.set()
        stop_two.set()
    assert not [line for line in logs if "Lease" in line], logs


def test_a_clock_stepped_ahead_does_not_make_the_others_dead(emulator: FakeApi) -> None:
    # node1's clock jumped 30 s ahead (an NTP step): judged by its clock, node2's Lease ran
    # out long ago and node1 took every IP while node2 kept announcing its own.
    stop = threading.Event()

    def stepped() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=30)

    ahead = LiveCluster(
        agent_api(emulator), "node1", print, renew=0.2, duration=1, watch_seconds=1, clock=stepped
    )
    two = LiveCluster(agent_api(emulator), "node2", print, renew=0.2, duration=1, watch_seconds=1)
    try:
        ahead.start(stop)
        two.start(stop)
        eventually(lambda: ahead.members() == {"node1", "node2"}, what="node1 sees node2 live")
        eventually(lambda: two.members() == {"node1", "node2"}, what="node2 sees node1 live")
        for _ in range(10):  # two Lease durations: node2 stays live for node1 throughout
            assert ahead.members() == {"node1", "node2"}
            threading.Event().wait(0.2)
    finally:
        stop.set()


def test_a_joining_agent_warms_up_until_the_others_see_it(emulator: FakeApi) -> None:
    stop = threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", print, renew=0.2, duration=1, watch_seconds=1)
    two = LiveCluster(agent_api(emulator), "node2", print, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop)
        eventually(lambda: one.members() == {"node1"}, what="node1 counts itself")
        two.start(stop)
        eventually(lambda: "node2" in one.members(), what="node1 sees node2's Lease")
        seen_by_one_first = not two.self_live()
        eventually(two.self_live, what="node2 counts itself after its warm-up")
        assert seen_by_one_first, "node2 counted itself before node1 could see its Lease"
        assert two.members() == {"node1", "node2"}
    finally:
        stop.set()


def test_bad_lease_timing_is_refused(emulator: FakeApi) -> None:
    for renew, duration in ((6, 6), (3, 6), (0, 6)):  # 3 of 6: dropped before each renewal
        with pytest.raises(ValueError, match=r"must be under half the Lease duration \(6 s\)"):
            LiveCluster(agent_api(emulator), "n", print, renew=renew, duration=duration)
    LiveCluster(agent_api(emulator), "n", print, renew=2.9, duration=6)


def test_watches_follow_the_cluster(emulator: FakeApi) -> None:
    emulator.put(EIPS, eip({f"{SUBNET4}.101": "shop/web"}))
    emulator.put(
        "v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node3", "labels": {EXCLUDE_LABEL: ""}},
        },
    )
    emulator.put("v1/nodes", {"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": "node4", "labels": {"zone": "a"}},
                              "status": {"conditions": [
                                  {"type": "Ready", "status": "False", "reason": "KubeletDown"},
                                  {"type": "MemoryPressure", "status": "False"}],
                                  "images": [{"names": ["x"], "sizeBytes": 1}]}})  # fmt: skip
    stop = threading.Event()
    cluster = LiveCluster(
        agent_api(emulator), "node1", print, renew=0.2, duration=1, watch_seconds=1
    )
    try:
        cluster.start(stop)
        eventually(lambda: not cluster.waiting() and bool(cluster.objects()), what="first lists")
        kinds = sorted(o["kind"] for o in cluster.objects())
        # No Service: a Cluster-policy one never sways the election.
        assert kinds == ["Eip", "EndpointSlice", "Node", "Node"]
        # What the agent's Warning Events on an Eip name, from the trimmed copy it keeps.
        assert (cluster.eip_uid("pool"), cluster.eip_uid("nope")) == ("uid-pool", "")
        (kept_slice,) = [o for o in cluster.objects() if o["kind"] == "EndpointSlice"]
        assert kept_slice["metadata"] == {
            "name": "web-1",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"},
        }
        assert kept_slice["endpoints"] == [{"nodeName": "node1"}]  # ready: no condition kept
        # Of each Node: its name, the exclude label, and the conditions OpenELB reads.
        kept_nodes = sorted(
            (o for o in cluster.objects() if o["kind"] == "Node"),
            key=lambda o: str(o["metadata"]["name"]),
        )
        assert [dict(o) for o in kept_nodes] == [
            {"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": "node3", "labels": {EXCLUDE_LABEL: ""}},
             "status": {"conditions": []}},
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node4"},
             "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        ]  # fmt: skip
        # A change arrives through the watch.
        custom = client.CustomObjectsApi(cluster.api.api)
        custom.patch_cluster_custom_object(
            "network.kubesphere.io", "v1alpha2", "eips", "pool",
            {"status": {"used": {f"{SUBNET4}.102": "shop/api"}}},
            _content_type=MERGE_PATCH,
        )  # fmt: skip

        def has_both() -> bool:
            pools = [o for o in cluster.objects() if o["kind"] == "Eip"]
            return len(pools) == 1 and f"{SUBNET4}.102" in pools[0]["status"]["used"]

        eventually(has_both, what="the patched Eip")

        # A Service that turns Local is kept (its name is all the election needs).
        client.CoreV1Api(cluster.api.api).patch_namespaced_service(
            "web",
            "shop",
            {"spec": {"externalTrafficPolicy": "Local"}},
            _content_type=MERGE_PATCH,
        )

        def local_service() -> list[Any]:
            return [o["metadata"] for o in cluster.objects() if o["kind"] == "Service"]

        eventually(lambda: local_service() == [{"name": "web", "namespace": "shop"}],
                   what="the Service turned Local")  # fmt: skip
    finally:
        stop.set()


def test_a_node_object_deleted_under_its_agent_hands_over_without_two_answerers(
    emulator: FakeApi,
) -> None:
    # A machine whose Node was deleted may still run its agent and renew its Lease: OpenELB
    # lists the Nodes, so it is no candidate (a probe saw it win IPs here). node2's agent
    # gives its IP up when it sees the deletion; node1 takes it only after settling, so the
    # two never both claim it (before, each acted at its next look).
    ip = next(ip for n in range(100, 121) for ip in [f"{SUBNET4}.{n}"]
              if elect(ip, ("node1", "node2")) == "node2")  # fmt: skip
    emulator.put(EIPS, eip({ip: "shop/web"}, interface="eth0"))
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    for name in ("node1", "node2"):
        emulator.put("v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                  "metadata": {"name": name}, "status": ready})  # fmt: skip
    stop = threading.Event()
    agents = {}
    for name in ("node1", "node2"):
        cluster = LiveCluster(agent_api(emulator), name, print, renew=0.2, duration=1,
                              watch_seconds=1)  # fmt: skip
        cluster.start(stop)
        agents[name] = Agent(Settings(name, 0.05, settle=cluster.warm_up), LiveSource(cluster),
                             NoNics(), lambda _: None)  # fmt: skip

    def claims() -> set[str]:
        found = set()
        for name, agent in agents.items():
            current = agent.tick()
            if current is not None and any(f"won {ip}" in p for p in current.problems):
                found.add(name)
        assert len(found) <= 1, found  # never two answerers
        return found

    try:
        eventually(lambda: claims() == {"node2"}, what="node2 wins its IP")
        client.CoreV1Api(agent_api(emulator).api).delete_node("node2")
        eventually(lambda: claims() == {"node1"}, what="node1 takes it over")
        for _ in range(10):  # and keeps it
            assert claims() == {"node1"}
    finally:
        stop.set()


def test_members_read_the_nodes_while_their_watch_changes_them(emulator: FakeApi) -> None:
    # members() runs on every tick while the Node watch's thread adds and removes Nodes: when
    # it read the store's keys it raised "dictionary changed size during iteration" (a
    # review's case), which ended the agent's loop without giving its Lease up.
    cluster = LiveCluster(agent_api(emulator), "node1", print, renew=0.2, duration=1)
    stream = "nodes"  # the Node watch's store
    for i in range(5000):
        cluster.upsert(stream, ("", f"n{i}"), {"metadata": {"name": f"n{i}"}})
    stop = threading.Event()

    def churn() -> None:
        i = 5000
        while not stop.is_set():
            cluster.upsert(stream, ("", f"n{i}"), {"metadata": {"name": f"n{i}"}})
            cluster.remove(stream, ("", f"n{i - 5000}"))
            i += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch inside any read, as often as can be
    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        for _ in range(300):
            cluster.members()
    finally:
        stop.set()
        worker.join(10)
        sys.setswitchinterval(switch)
    assert cluster.members() == frozenset()  # no Lease listed: nobody, whatever the Nodes


def test_kube_errors_are_one_line(emulator: FakeApi) -> None:
    api = agent_api(emulator)
    with pytest.raises(KubeError, match=r"^annotate Node ghost: HTTP 404"):
        api.annotate_node("ghost", "k", "v")
    dead = AgentApi(api.api, "eip-guard", timeout=1)
    dead.api.configuration.host = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(KubeError, match=r"^list Leases in eip-guard: "):
        dead.list_leases()


def test_agent_reports_its_node_and_warns_about_the_trap(emulator: FakeApi, lab: Lab) -> None:
    """The whole live path on node1 of the lab, report-only: real kernel, real HTTP."""
    emulator.put("v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                 "metadata": {"name": "node1"}})  # fmt: skip
    emulator.put(EIPS, eip({f"{SUBNET4}.101": "shop/web"}))
    logs: list[str] = []
    api = agent_api(emulator)
    stop = threading.Event()
    cluster = LiveCluster(api, "node1", logs.append, renew=0.2, duration=1, watch_seconds=1)

    def report(text: str) -> bool:
        api.annotate_node("node1", NODE_REPORT_ANNOTATION, text)
        return True

    def warn(binding: Any) -> None:
        api.warn_eip(binding.eip, "uid-pool", "node1", "CanReachBoundLocally", binding.message)

    netlink = Pyroute2Netlink(lab.ns["node1"])
    agent = Agent(Settings("node1"), LiveSource(cluster), netlink, logs.append,
                  report=report, warn=warn)  # fmt: skip
    try:
        cluster.start(stop)

        def announced() -> bool:
            current = agent.tick()
            return current is not None and bool(current.announcements)

        eventually(announced, what="node1 elects itself")
        assert any(f"would announce (report-only) {SUBNET4}.101 on ens3" in x for x in logs)
        node = emulator.get("v1/nodes", None, "node1")
        text = node["metadata"]["annotations"][NODE_REPORT_ANNOTATION]
        report_json = json.loads(text)
        assert [i["name"] for i in report_json["interfaces"]] == ["ens3"]  # no kube-ipvs0
        inventory = build([node.raw])
        assert inventory.count(FactKind.NODE_SUBNET) == 2  # the v4 and v6 subnets of ens3
        events = emulator.objects("v1/events")
        assert len(events) == 1
        event = events[0]
        assert event["type"] == "Warning" and event["reason"] == "CanReachBoundLocally"
        assert event["involvedObject"] == {
            "apiVersion": "network.kubesphere.io/v1alpha2",
            "kind": "Eip",
            "name": "pool",
            "uid": "uid-pool",
        }
        assert "kube-ipvs0" in event["message"]
        agent.tick()
        assert len(emulator.objects("v1/events")) == 1  # once per appearance, not per tick
        stop.set()
        cluster.release()  # a graceful stop gives the Lease up
        assert emulator.objects(LEASES) == []
        # Least privilege: the chart's agent RBAC grants exactly what this whole path used.
        assert emulator.rbac_used() == agent_chart_grants()
    finally:
        stop.set()


class FlakyApi(AgentApi):
    """The agent's real API client over kmock, with the Lease list made to fail or hang, and
    a record of which threads called it."""

    def __init__(self, emulator: FakeApi) -> None:
        base = agent_api(emulator)
        super().__init__(base.api, base.namespace, timeout=base.timeout)
        self.list_fails = False
        self.released = threading.Event()
        self.released.set()  # cleared: every Lease call hangs until it is set again
        self.callers: set[tuple[str, str]] = set()  # (call, thread)
        self.lists = 0
        self.renewed: list[float] = []  # when each renewal call returned (monotonic)
        self.waiting = 0  # renewals held by ``released``

    def renew_lease(
        self,
        node: str,
        duration: int,
        now: datetime | None = None,
        *,
        create: Callable[[], bool] = lambda: True,
        version: str | None = None,
    ) -> Mapping[str, Any]:
        self.callers.add(("renew", threading.current_thread().name))
        self.waiting += 1
        self.released.wait()
        self.waiting -= 1
        written = super().renew_lease(node, duration, now, create=create, version=version)
        self.renewed.append(time.monotonic())
        return written

    def delete_lease(self, node: str, held: Held | None = None) -> None:
        self.released.wait()
        super().delete_lease(node, held)

    def list_leases(self) -> list[Any]:
        self.callers.add(("list", threading.current_thread().name))
        self.lists += 1
        self.released.wait()
        if self.list_fails:
            raise KubeError("list Leases in eip-guard: HTTP 500 Internal Server Error")
        return super().list_leases()


def test_a_failing_lease_list_keeps_the_members_last_seen(emulator: FakeApi) -> None:
    # Each node renews its own Lease but cannot list the others (throttled, a 500): aging
    # them out on the stale list made every node take every IP.
    logs: list[str] = []
    stop_one, stop_two = threading.Event(), threading.Event()
    flaky = FlakyApi(emulator)
    one = LiveCluster(flaky, "node1", logs.append, renew=0.2, duration=1, watch_seconds=1)
    two = LiveCluster(agent_api(emulator), "node2", print, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop_one)
        two.start(stop_two)
        eventually(lambda: one.members() == {"node1", "node2"}, what="both live")
        flaky.list_fails = True
        lists_seen = len([line for line in logs if "HTTP 500" in line])
        eventually(lambda: any("HTTP 500" in line for line in logs), what="the list failing")
        for _ in range(15):  # 3 s: three Lease durations with no list that works
            assert one.members() == {"node1", "node2"}
            threading.Event().wait(0.2)
        assert len([line for line in logs if "HTTP 500" in line]) == lists_seen + 1  # logged once
        stop_two.set()  # node2 dies while node1 cannot see it: kept until a list shows it
        threading.Event().wait(1.5)
        assert one.members() == {"node1", "node2"}
        # node2's Lease ran out in the last list node1 has: each tick would ask for a list
        # at once, hammering an API server that throttles. Lists stay at the renew pace.
        lists = flaky.lists
        for _ in range(40):  # 40 ticks, 2 s: ten renew intervals
            one.members()
            threading.Event().wait(0.05)
        assert flaky.lists - lists <= 12
        flaky.list_fails = False
        eventually(lambda: one.members() == {"node1"}, what="node2 drops out once listed")
        assert "Leases: listing works again" in logs
    finally:
        stop_one.set()
        stop_two.set()


def test_an_agent_whose_lists_fail_from_its_start_never_counts_itself_alone(
    emulator: FakeApi,
) -> None:
    # A probe restarted one agent while the Lease lists failed: after its warm-up it counted
    # itself the only live node, took every IP over the nodes answering them, and was ready.
    stop_one, stop_two = threading.Event(), threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", print, renew=0.2, duration=1, watch_seconds=1)
    flaky = FlakyApi(emulator)
    flaky.list_fails = True
    two = LiveCluster(flaky, "node2", print, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop_one)
        two.start(stop_two)
        eventually(lambda: one.members() == {"node1", "node2"}, what="node1 sees both")
        for _ in range(10):  # 2 s: past node2's warm-up (0.5 s), renewing all along
            assert two.members() == frozenset()
            threading.Event().wait(0.2)
        flaky.list_fails = False
        eventually(lambda: two.members() == {"node1", "node2"}, what="node2 counts, listed")
    finally:
        stop_one.set()
        stop_two.set()


def test_members_never_call_the_api_so_fencing_never_waits(emulator: FakeApi) -> None:
    stop_one, stop_two = threading.Event(), threading.Event()
    hung = FlakyApi(emulator)
    one = LiveCluster(hung, "node1", print, renew=0.2, duration=1, watch_seconds=1)
    two = LiveCluster(agent_api(emulator), "node2", print, renew=0.2, duration=1, watch_seconds=1)

    def tick() -> frozenset[str] | None:
        """members() as the agent's tick thread calls it; None if it is still blocked."""
        found: list[frozenset[str]] = []
        thread = threading.Thread(target=lambda: found.append(one.members()), name="tick")
        thread.start()
        thread.join(5)  # a bound for a hang, far above any answer that does not wait
        return found[0] if found else None

    try:
        one.start(stop_one)
        two.start(stop_two)
        eventually(lambda: tick() == frozenset({"node1", "node2"}), what="both live")
        hung.released.clear()  # the API server stops answering node1's Lease calls
        stop_two.set()  # and node2's Lease runs out meanwhile: node1 would list again
        # node1 fences itself once its own Lease may have run out for the others, and keeps
        # node2 as last seen (it cannot list): each answer comes while the API hangs.
        eventually(lambda: tick() == frozenset({"node2"}), what="node1 fences itself")
        # Only the Lease threads call the API, each its own call: a slow renewal does not
        # hold back the list a failover waits for.
        assert hung.callers == {("renew", "lease"), ("list", "leases")}
    finally:
        hung.released.set()
        stop_one.set()
        stop_two.set()


def test_an_agent_back_from_a_lapse_warms_up_again(emulator: FakeApi) -> None:
    # Cut off from the API, an agent fences itself and the others take its IPs. When a
    # renewal gets through again (a call that hung all along, say), it must not count
    # itself before the others can have listed its Lease anew: it did at once, and two
    # nodes answered for its IPs until the others saw it.
    stop = threading.Event()
    api = FlakyApi(emulator)
    one = LiveCluster(api, "node1", print, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        api.released.clear()  # every Lease call hangs from here
        eventually(lambda: not one.self_live(), what="node1 fences itself")
        threading.Event().wait(0.5)
        renewals = len(api.renewed)
        api.released.set()  # the hung renewal returns
        eventually(lambda: len(api.renewed) > renewals, what="a renewal through again")
        back = api.renewed[renewals]
        eventually(one.self_live, what="node1 counts itself again")
        counted = time.monotonic()
        assert counted - back >= one.warm_up
    finally:
        api.released.set()
        stop.set()


def test_a_released_lease_hands_over_at_the_next_list_not_when_it_runs_out(
    emulator: FakeApi,
) -> None:
    # A Lease of 30 s: without the release, node2 would count for node1 for 30 s after it
    # stopped answering, and its IPs would be dark that long.
    stop_one, stop_two = threading.Event(), threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", print, renew=0.5, duration=30, watch_seconds=1)
    logs: list[str] = []
    two = LiveCluster(agent_api(emulator), "node2", logs.append, renew=0.5, duration=30,
                      watch_seconds=1)  # fmt: skip
    try:
        one.start(stop_one)
        two.start(stop_two)
        eventually(lambda: one.members() == {"node1", "node2"}, what="both live")
        stop_two.set()
        two.release()
        assert "Lease given up: the others take over at their next list" in logs
        eventually(lambda: one.members() == {"node1"}, what="node1 sees node2 gone")
    finally:
        stop_one.set()
        stop_two.set()


def test_release_is_bounded_and_a_late_renewal_does_not_make_the_lease_again(
    emulator: FakeApi,
) -> None:
    logs: list[str] = []
    stop = threading.Event()
    api = FlakyApi(emulator)
    one = LiveCluster(api, "node1", logs.append, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        api.released.clear()  # the API server stops answering: renewals and the delete hang
        eventually(lambda: ("renew", "lease") in api.callers and api.waiting > 0,
                   what="a renewal in flight")  # fmt: skip
        stop.set()
        one.release(within=0.5)
        assert logs[-1] == (
            "Lease not given up (no answer within 0.5 s); the others take over when it runs out"
        )
        # A renewal in flight that reaches the server after the Lease is gone must not make
        # it again: deleted meanwhile (by the delete, late), it stays deleted.
        agent_api(emulator).delete_lease("node1")
        api.released.set()
        threading.Event().wait(0.5)
        assert emulator.objects(LEASES) == []
    finally:
        api.released.set()
        stop.set()


class SlowCreate(AgentApi):
    """The real client over kmock, its Lease creates held (a slow API server) until
    ``go`` is set; ``creating`` is set once one is held."""

    def __init__(self, emulator: FakeApi) -> None:
        base = agent_api(emulator)
        super().__init__(base.api, base.namespace, timeout=base.timeout)
        self.creating, self.go = threading.Event(), threading.Event()

    def call(self, what: str, method: str, where: str, **kwargs: Any) -> Any:
        if what.startswith("create Lease"):
            self.creating.set()
            self.go.wait(10)
        return super().call(what, method, where, **kwargs)


def test_a_create_in_flight_at_the_stop_does_not_make_the_lease_after_the_release(
    emulator: FakeApi,
) -> None:
    # The first renewal found no Lease (404) and created it; a stop came while that create
    # was on its way, and the delete, reaching the API server first, found nothing ("Lease
    # given up"): the create then made the Lease, which the others counted for a Lease
    # duration, the stopped node's IPs dark meanwhile.
    logs: list[str] = []
    stop = threading.Event()
    api = SlowCreate(emulator)
    one = LiveCluster(api, "node1", logs.append, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop)
        eventually(api.creating.is_set, what="a create in flight")
        stop.set()
        threading.Timer(0.3, api.go.set).start()  # the create arrives while release() waits
        one.release(within=2)
        threading.Event().wait(0.3)
        assert emulator.objects(LEASES) == []
        assert logs[-1] == "Lease given up: the others take over at their next list"
    finally:
        api.go.set()
        stop.set()


def lease_of(emulator: FakeApi, node: str) -> dict[str, Any] | None:
    found = [o for o in emulator.objects(LEASES) if o["metadata"]["name"] == lease_name(node)]
    return found[0] if found else None


def test_a_pod_replaced_while_it_stops_never_deletes_its_successors_lease(
    emulator: FakeApi,
) -> None:
    # kubectl delete --force: the DaemonSet starts a new pod on the node while the old one
    # is still stopping. Both renew eip-guard-agent-node1; the old one's release deleted it,
    # the new one's included: the others took node1's IPs at their next list while the new
    # pod, its renewals good, still answered for them (two answerers until it made the
    # Lease again).
    old_logs: list[str] = []
    stop_old, stop_new = threading.Event(), threading.Event()
    old = LiveCluster(agent_api(emulator), "node1", old_logs.append, renew=0.2, duration=2,
                      watch_seconds=1)  # fmt: skip
    new_logs: list[str] = []
    new = LiveCluster(agent_api(emulator), "node1", new_logs.append, renew=0.2, duration=2,
                      watch_seconds=1)  # fmt: skip
    try:
        old.start(stop_old)
        eventually(old.self_live, what="the old pod counts itself")
        new.start(stop_new)
        eventually(new.self_live, what="the new pod counts itself")
        # The old one stands back: it does not write over the new one's renewals.
        superseded = (
            "another agent renews Lease eip-guard/eip-guard-agent-node1 (a new pod of this "
            "node while this one stops, or two agents given the node name node1): this one "
            "leaves it to that one and stops counting itself"
        )
        eventually(lambda: superseded in old_logs, what="the old one superseded")
        eventually(lambda: not old.self_live(), what="the old one fenced")
        before = lease_of(emulator, "node1")
        assert before is not None
        stop_old.set()
        old.release()
        after = lease_of(emulator, "node1")
        assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
        assert old_logs[-1] == (
            "Lease not given up (another agent renews it); the others take over when it runs out"
        )
        assert new.self_live() and not any("renewing" in line for line in new_logs)
        stop_new.set()
        new.release()  # the new one gives up its own, at its stop
        assert lease_of(emulator, "node1") is None
        assert new_logs[-1] == "Lease given up: the others take over at their next list"
    finally:
        stop_old.set()
        stop_new.set()


def test_a_release_deletes_only_the_lease_as_this_agent_last_wrote_it(emulator: FakeApi) -> None:
    # A renewal by another writer between our last one and our release (its first, before
    # we could see it): the delete's preconditions (our uid and resourceVersion) refuse it.
    logs: list[str] = []
    stop = threading.Event()
    api = FlakyApi(emulator)
    one = LiveCluster(api, "node1", logs.append, renew=0.2, duration=2, watch_seconds=1)
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        api.released.clear()  # our renewals held from here
        eventually(lambda: api.waiting > 0, what="a renewal held")
        agent_api(emulator).renew_lease("node1", 2)  # a new pod's first renewal
        stop.set()
        threading.Timer(0.3, api.released.set).start()
        one.release(within=2)
        assert lease_of(emulator, "node1") is not None
        assert logs[-1] == (
            "Lease not given up (another agent renews it); the others take over when it runs out"
        )
    finally:
        api.released.set()
        stop.set()


class OddDelete(AgentApi):
    """The real client over kmock, its delete raising what no test foresaw (the library's
    ConfigException for an empty token file read at a refresh, a bug)."""

    def __init__(self, emulator: FakeApi) -> None:
        base = agent_api(emulator)
        super().__init__(base.api, base.namespace, timeout=base.timeout)

    def delete_lease(self, node: str, held: Held | None = None) -> None:
        raise RuntimeError("a bug")


def test_a_release_that_fails_unexpectedly_says_why_without_a_traceback(
    emulator: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only a KubeError was caught: anything else ended the delete's thread with a traceback
    # on stderr, and the log said "no answer within 4 s" at once.
    logs: list[str] = []
    stop = threading.Event()
    one = LiveCluster(OddDelete(emulator), "node1", logs.append, renew=0.2, duration=1,
                      watch_seconds=1)  # fmt: skip
    one.release()  # before any renewal: no Lease of ours to delete
    assert logs == [
        "Lease not given up (this agent never renewed it); the others take over when it runs out"
    ]
    try:
        one.start(stop)
        eventually(lambda: lease_of(emulator, "node1") is not None, what="the Lease made")
    finally:
        stop.set()
    one.release()
    assert logs[-1] == (
        "Lease not given up (deleting our Lease failed: RuntimeError('a bug')); the others "
        "take over when it runs out"
    )
    assert "Traceback" not in capsys.readouterr().err


def test_a_lease_that_appears_later_counts_whatever_its_holders_clock_says(
    emulator: FakeApi,
) -> None:
    # node2 gave its Lease up and starts again, its clock 30 s behind. Judged by the clocks
    # its new Lease had run out already, so node1 counted node2 only after its next
    # renewal, which came after node2's own warm-up: both answered node2's IPs meanwhile.
    stop = threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", print, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop)
        eventually(lambda: one.members() == {"node1"}, what="node1 alone")
        behind = datetime.now(UTC) - timedelta(seconds=30)
        lease = lease_body("node2", "eip-guard", 1, behind)
        agent_api(emulator).call("create", "POST",
                                 "/apis/coordination.k8s.io/v1/namespaces/eip-guard/leases",
                                 body=lease)  # fmt: skip
        eventually(lambda: one.members() == {"node1", "node2"}, what="node2 counted when seen")
        # Never renewed: gone a Lease duration after it was seen.
        eventually(lambda: one.members() == {"node1"}, what="node2 run out")
    finally:
        stop.set()


def test_sigterm_gives_the_lease_up(emulator: FakeApi) -> None:
    agent = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "agent", "--live", "--server", emulator.url,
         "--node-name", "node9", "--speaker", "off", "--namespace", "eip-guard"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        eventually(lambda: emulator.objects(LEASES), what="the agent's Lease")
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, out
    assert "Lease given up" in out and out.rstrip().endswith("stopped")
    assert emulator.objects(LEASES) == []


def test_a_bug_in_a_tick_still_gives_the_lease_up(
    emulator: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception out of the agent's loop (a bug) ends the process with its traceback, but
    gives the Lease up first: the others take the node's IPs at their next list instead of
    a Lease duration later."""

    def tick(self: Agent) -> None:
        eventually(lambda: emulator.objects(LEASES), what="the agent's Lease")
        raise RuntimeError("a bug in a tick")

    monkeypatch.setattr(Agent, "tick", tick)
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # pytest's own handlers stay
    argv = ["agent", "--live", "--server", emulator.url, "--node-name", "node9",
            "--speaker", "off", "--namespace", "eip-guard"]  # fmt: skip
    with pytest.raises(RuntimeError, match="a bug in a tick"):
        run_agent(parser().parse_args(argv))
    assert emulator.objects(LEASES) == []


def test_a_renewal_puts_back_the_label_the_others_select_by(emulator: FakeApi) -> None:
    stop = threading.Event()
    api = FlakyApi(emulator)
    one = LiveCluster(api, "node1", print, renew=0.2, duration=1, watch_seconds=1)
    lease = "eip-guard-agent-node1"

    def label() -> Any:
        try:
            found = emulator.get(LEASES, "eip-guard", lease)
        except KeyError:  # not made yet
            return None
        return (found.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/component")

    try:
        one.start(stop)
        eventually(lambda: label() == "eip-guard-agent", what="the Lease made")
        api.released.clear()  # no renewal while the label is edited away by hand
        edit = {"metadata": {"labels": {"app.kubernetes.io/component": None}}}
        agent_api(emulator).call("edit", "PATCH", f"/apis/coordination.k8s.io/v1/namespaces/"
                                 f"eip-guard/leases/{lease}", body=edit,
                                 content_type=MERGE_PATCH)  # fmt: skip
        assert label() is None  # out of every agent's list, while it counts itself
        api.released.set()
        eventually(lambda: label() == "eip-guard-agent", what="the label back")
    finally:
        api.released.set()
        stop.set()


def test_writes_never_hold_the_caller_and_the_report_is_retried_latest_first() -> None:
    logs: list[str] = []
    writes = Writes(logs.append, retry=0.05)
    stop = threading.Event()
    gate = threading.Event()
    written: list[str] = []
    failures = iter([True, False, False, False])

    def write(text: str) -> None:
        gate.wait()  # a hung API server
        if next(failures):
            raise KubeError("annotate Node node1: HTTP 503 Service Unavailable")
        written.append(text)

    writes.start(stop)
    try:
        writes.report(lambda: write("first"))  # returns at once although the write hangs
        writes.event(lambda: write("an event"))
        writes.report(lambda: write("second"))  # replaces "first" if not taken yet
        gate.set()
        eventually(lambda: "second" in written, what="the latest report written")
        assert logs == ["annotate Node node1: HTTP 503 Service Unavailable"]
        assert written.count("second") == 1
    finally:
        stop.set()


def test_a_refused_report_is_tried_again_after_a_growing_wait() -> None:
    # Refused by RBAC or the agents' policy, a thousand nodes retrying every 2 s were 500
    # writes a second for good (a review's finding).
    logs: list[str] = []
    waited: list[float] = []

    stop = threading.Event()

    class Recorded(Writes):
        def _backoff(self) -> float:
            waited.append(super()._backoff())
            if len(waited) >= 16:
                stop.set()
            return 0.0

    writes = Recorded(logs.append, retry=0.05, rand=lambda: 1.0)

    def refused() -> None:
        raise KubeError("annotate Node node1: HTTP 403 Forbidden")

    writes.report(refused)
    writes._run(stop)  # in this thread: every wait is recorded, none is slept
    assert waited[:4] == [0.05, 0.1, 0.2, 0.4]
    assert waited[-1] == Writes.MAX_RETRY  # doubling, capped
    assert logs == ["annotate Node node1: HTTP 403 Forbidden"]  # said once


def test_events_are_not_held_back_by_a_refused_reports_backoff() -> None:
    # The report refused for good (the agents' policy where the node-name claim is off)
    # backs off up to 5 minutes, and every Event waited out that backoff with it.
    logs: list[str] = []
    writes = Writes(logs.append, retry=0.2, rand=lambda: 1.0)
    stop = threading.Event()
    tries: list[float] = []
    written: list[float] = []

    def refused() -> None:
        tries.append(time.monotonic())
        raise KubeError("annotate Node node1: HTTP 403 Forbidden")

    writes.start(stop)
    try:
        writes.report(refused)
        eventually(lambda: len(tries) >= 4, what="four refusals")  # the next waits 1.6 s
        sent = time.monotonic()
        writes.event(lambda: written.append(time.monotonic()))
        eventually(lambda: written, what="the Event written")
        assert written[0] - sent < 0.5
        assert len(tries) == 4  # and the report still waits its turn
    finally:
        stop.set()


def test_writes_survive_a_bug_put_the_report_first_and_say_when_events_are_dropped() -> None:
    logs: list[str] = []
    writes = Writes(logs.append, retry=0.05)
    stop = threading.Event()
    done: list[str] = []
    writes.event(lambda: done.append("event"))
    writes.report(lambda: done.append("report"))
    writes.event(lambda: (_ for _ in ()).throw(RuntimeError("a bug")))
    writes.start(stop)
    try:
        eventually(lambda: len(done) == 2, what="both written")
        assert done == ["report", "event"]  # the report first, the Events after it
        eventually(lambda: any("RuntimeError('a bug')" in line for line in logs), what="logged")
        writes.report(lambda: done.append("again"))  # the thread is still there
        eventually(lambda: "again" in done, what="written after the bug")
    finally:
        stop.set()
    full = Writes(logs.append, retry=0.05)  # never started: nothing is taken
    for _ in range(Writes.MAX_EVENTS + 2):
        full.event(lambda: None)
    assert logs.count("an Event dropped: 1000 wait for the API server") == 1


def odd_lease(holder: str, **spec: Any) -> dict[str, Any]:
    """An agent's Lease as anyone may write it (kubectl apply, a tool, a bug): the API server
    checks the types and that leaseDurationSeconds is positive, no more."""
    lease = lease_body(holder, "eip-guard", 1, datetime.now(UTC))
    lease["spec"] = {**lease["spec"], **spec}
    return lease


def test_a_lease_renewed_in_the_year_9999_neither_kills_the_listing_nor_counts(
    emulator: FakeApi,
) -> None:
    # renewTime 9999-12-31T23:59:59.999999Z is a valid MicroTime. Judging it by the clocks
    # at the first list added the duration to it (OverflowError), which ended the thread
    # that lists the Leases: the agent never counted itself (dark and not ready for good,
    # the traceback on stderr only), and any agent restarting met the same Lease.
    emulator.put(LEASES, odd_lease("node2", renewTime="9999-12-31T23:59:59.999999Z"))
    emulator.put(LEASES, odd_lease("node3", renewTime="0001-01-01T00:00:00.000000Z"))
    emulator.put(LEASES, odd_lease("node4", renewTime=None))
    stop = threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", print, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop)
        # node2, never renewed, counts for its duration from when it was seen and then never
        # again; node3 ran out long ago; node4 has no renewal at all.
        eventually(lambda: one.members() == {"node1"}, what="node1 alone")
        for _ in range(5):
            assert one.members() == {"node1"}
            threading.Event().wait(0.2)
    finally:
        stop.set()


class JunkLeases(AgentApi):
    """The real client over kmock, its first Lease lists answering an item no test foresaw."""

    def __init__(self, emulator: FakeApi, junk: int) -> None:
        base = agent_api(emulator)
        super().__init__(base.api, base.namespace, timeout=base.timeout)
        self.junk = junk

    def list_leases(self) -> list[Any]:
        leases = super().list_leases()
        if self.junk > 0:
            self.junk -= 1
            return [*leases, {"metadata": "junk"}]
        return leases


def test_a_bug_in_reading_the_leases_is_said_once_and_the_listing_goes_on(
    emulator: FakeApi,
) -> None:
    # Any exception but a KubeError ended the thread that lists the Leases: the agent kept
    # its members as last listed for good (a node that died later counted for ever, one
    # that joined never did), with nothing in its log.
    logs: list[str] = []
    stop = threading.Event()
    one = LiveCluster(JunkLeases(emulator, junk=5), "node1", logs.append, renew=0.2,
                      duration=1, watch_seconds=1)  # fmt: skip
    try:
        one.start(stop)
        eventually(lambda: one.members() == {"node1"}, what="node1 counts itself, listed")
        assert "Leases: listing works again" in logs
        said = [line for line in logs if line.startswith("listing the Leases: AttributeError")]
        assert len(said) == 1, logs
    finally:
        stop.set()


def live_args(emulator: FakeApi) -> argparse.Namespace:
    """The live-mode flags ``_live`` reads, as ``eip-guard agent --live`` parses them."""
    return argparse.Namespace(kubeconfig=None, context=None, server=emulator.url,
                              namespace="eip-guard", lease_renew=0.2, lease_duration=1,
                              no_node_report=False)  # fmt: skip


def test_the_node_report_comes_back_when_the_node_loses_it(emulator: FakeApi) -> None:
    # The agent wrote its report when the text changed, and only then: a Node deleted and
    # made again (kubectl delete node, then the kubelet registering it within PodGC's 40 s,
    # so the agent's pod lives on), or the annotation edited away, stayed without it until
    # the node's network changed: the webhook lacked that node's subnets and gateways.
    emulator.put("v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}})
    stop = threading.Event()
    logs: list[str] = []
    live, report, _ = _live(live_args(emulator), "node1", logs.append, stop)
    agent = Agent(Settings("node1", 0.05), live, NoNics(), logs.append, report=report)
    writer = Writer(emulator)

    def annotation() -> Any:
        try:
            node = emulator.get("v1/nodes", None, "node1")
        except KeyError:
            return None
        return (node.get("metadata", {}).get("annotations") or {}).get(NODE_REPORT_ANNOTATION)

    def ticked(check: Callable[[], Any]) -> Callable[[], Any]:
        def tick_then_check() -> Any:
            agent.tick()
            time.sleep(0.05)
            return check()

        return tick_then_check

    try:
        live.cluster.start(stop)
        text = eventually(ticked(annotation), what="the report written")
        writer.delete("Node", "node1")
        eventually(ticked(lambda: not any(o["kind"] == "Node" for o in live.objects())),
                   what="the agent sees its Node gone")  # fmt: skip
        writer.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}})
        eventually(ticked(lambda: annotation() == text), what="the report on the new Node")
        writer.patch(
            {
                "kind": "Node",
                "metadata": {"name": "node1", "annotations": {NODE_REPORT_ANNOTATION: None}},
            }
        )
        eventually(ticked(lambda: annotation() == text), what="the report back after an edit")
        assert logs.count("the node report is gone from this Node: writing it again") == 2, logs
        # And the agent said why it answered for nothing meanwhile (it said nothing at all).
        gone = ("no Node named node1 (deleted, or --node-name is not its name): this node "
                "answers for no IP until it exists")  # fmt: skip
        assert logs.count(gone) == 1 and logs.count("Node node1 exists again") == 1, logs
    finally:
        stop.set()
        writer.close()


def test_a_node_made_again_gets_its_report_at_once_however_long_the_backoff(
    emulator: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A report that changed while the Node was gone failed (404) and backed off, doubling
    # up to 5 minutes: the Node made again then waited out that backoff without its report
    # (the README says "writes it again at once").
    longest = lambda failures, base, cap, rand: min(cap, base * 2 ** (failures - 1))  # noqa: E731
    monkeypatch.setattr(agent_api_module, "backoff_delay", longest)  # no jitter: each wait whole
    stop = threading.Event()
    logs: list[str] = []
    live, report, _ = _live(live_args(emulator), "node1", logs.append, stop)
    writer = Writer(emulator)
    attempts = emulator.requests("PATCH", "/api/v1/nodes/node1")

    def annotation() -> Any:
        try:
            node = emulator.get("v1/nodes", None, "node1")
        except KeyError:
            return None
        return (node.get("metadata", {}).get("annotations") or {}).get(NODE_REPORT_ANNOTATION)

    try:
        live.cluster.start(stop)
        eventually(lambda: not live.cluster.waiting(), what="listed, with no Node node1")
        assert report is not None
        report('{"interfaces":[],"gateways":[]}')
        # Five refusals (0.2 + 0.4 + 0.8 + 1.6 s apart): the next try waits 3.2 s.
        eventually(lambda: emulator.requests("PATCH", "/api/v1/nodes/node1") >= attempts + 5,
                   what="the write refused five times")  # fmt: skip
        writer.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}})
        made = time.monotonic()
        eventually(annotation, what="the report on the new Node")
        assert time.monotonic() - made < 1.5
    finally:
        stop.set()
        writer.close()


def test_a_missing_namespace_or_a_refused_write_says_what_the_api_server_said(
    emulator: FakeApi,
) -> None:
    # "create Lease eip-guard/eip-guard-agent-node1: HTTP 404 Not Found" was all an admin
    # got for an agent started in a namespace that does not exist (run by hand, where the
    # default is eip-guard), and "HTTP 403 Forbidden" for a missing grant: the API server's
    # Status says which, and the agent dropped it.
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                 "reason": "Forbidden", "message": 'nodes "node1" is forbidden: User '
                 '"system:serviceaccount:eip-guard:agent" cannot patch resource "nodes" in API '
                 'group "" at the cluster scope'}  # fmt: skip
    emulator.call(lambda: emulator.km.absent_namespaces.add("eip-guard"))
    emulator.put("v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}})
    nodes = kmock.resource("v1/nodes")
    emulator.call(lambda: emulator.km[kmock.action.UPDATE, nodes] << 403 << forbidden)
    logs: list[str] = []
    stop = threading.Event()
    api = agent_api(emulator)
    one = LiveCluster(api, "node1", logs.append, renew=0.2, duration=1, watch_seconds=1)
    try:
        one.start(stop)
        eventually(lambda: any("create Lease" in line for line in logs), what="the failure")
        (said,) = [line for line in logs if "create Lease" in line]
        assert said == (
            "create Lease eip-guard/eip-guard-agent-node1: HTTP 404 Not Found: namespaces "
            '"eip-guard" not found (create that namespace, or give the agents\' own with '
            "--namespace)"
        )
        with pytest.raises(KubeError) as refused:
            api.annotate_node("node1", NODE_REPORT_ANNOTATION, "{}")
        assert str(refused.value) == (
            'annotate Node node1: HTTP 403 Forbidden: nodes "node1" is forbidden: User '
            '"system:serviceaccount:eip-guard:agent" cannot patch resource "nodes" in API '
            'group "" at the cluster scope'
        )
        threading.Event().wait(1)  # five renewals: the same failure, said once
        assert [line for line in logs if "create Lease" in line] == [said], logs
        assert one.members() == frozenset()  # no Lease: never counts itself
    finally:
        stop.set()


def test_an_agent_whose_node_name_names_no_node_says_so(emulator: FakeApi) -> None:
    # --node-name with a typo (or a Node deleted): the agent renewed its Lease, counted
    # itself and answered for nothing (OpenELB's candidates are the Nodes), without a word.
    emulator.put("v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"}})
    logs: list[str] = []
    stop = threading.Event()
    one = LiveCluster(agent_api(emulator), "nod1", logs.append, renew=0.2, duration=1,
                      watch_seconds=1)  # fmt: skip
    said = ("no Node named nod1 (deleted, or --node-name is not its name): this node answers "
            "for no IP until it exists")  # fmt: skip
    try:
        one.start(stop)
        eventually(lambda: said in logs, what="the missing Node said")
        eventually(one.self_live, what="renewing all the same")
        assert logs.count(said) == 1
    finally:
        stop.set()


@pytest.mark.parametrize("history", ["kept", "compacted"])
def test_watches_cut_resume_with_what_they_missed_or_list_again(
    emulator: FakeApi, history: str
) -> None:
    """The agent's watches lose their connection while a Node is deleted and the Eip is
    modified. A real API server replays those changes to a watch resumed from its last
    resourceVersion (no list); if its history is gone (compacted), it answers 410 Expired
    and the agent lists again. Either way the agent ends up with the cluster as it is."""
    emulator.put(EIPS, eip({f"{SUBNET4}.101": "shop/web"}))
    for name in ("node1", "node2"):
        emulator.put("v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    stop = threading.Event()
    cluster = LiveCluster(agent_api(emulator), "node1", print, renew=0.2, duration=1)
    writer = Writer(emulator)

    def held() -> tuple[set[str], set[str]]:
        objs = cluster.objects()
        nodes = {str(o["metadata"]["name"]) for o in objs if o["kind"] == "Node"}
        used = {ip for o in objs if o["kind"] == "Eip" for ip in o["status"]["used"]}
        return nodes, used

    try:
        cluster.start(stop)
        eventually(lambda: not cluster.waiting(), what="first lists")
        assert held() == ({"node1", "node2"}, {f"{SUBNET4}.101"})
        paths = ("/api/v1/nodes", "/apis/network.kubesphere.io/v1alpha2/eips")
        lists = {p: emulator.lists(p) for p in paths}
        eventually(lambda: emulator.stall() >= 2, what="the watches to silence")
        writer.delete("Node", "node2")
        used = {f"{SUBNET4}.101": None, f"{SUBNET4}.102": "a/b"}  # None: merge-patched away
        writer.patch({"kind": "Eip", "metadata": {"name": "pool"}, "status": {"used": used}})
        time.sleep(0.2)  # sent to the silent connections: lost
        assert held() == ({"node1", "node2"}, {f"{SUBNET4}.101"})
        if history == "compacted":
            emulator.compact()
        emulator.cut()
        eventually(lambda: held() == ({"node1"}, {f"{SUBNET4}.102"}), what="the changes missed")
        relisted = 1 if history == "compacted" else 0
        assert {p: emulator.lists(p) for p in paths} == {p: n + relisted for p, n in lists.items()}
    finally:
        stop.set()
        writer.close()
