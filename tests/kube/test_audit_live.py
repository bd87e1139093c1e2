"""The background audit against kmock: a violation that appears later, and one Event for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from app.kube.auditor import REASON, Finding, KubeEvents
from app.kube.config import api_client
from app.kube.resources import rbac_rules
from tests.core.objects import eip, node, service
from tests.kmock_harness import EIPS as EIPS_RESOURCE
from tests.kmock_harness import FakeApi, Writer, rbac_grants
from tests.kube.harness import SETTINGS, Cluster
from tests.support import eventually

EVENTS = "v1/events"


def guard_events(api: FakeApi) -> list[dict[str, object]]:
    return [e for e in api.objects(EVENTS) if e.get("reason") == REASON]


def test_a_violation_introduced_later_records_exactly_one_event(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    pool = eip("pool", "192.168.50.10-192.168.50.20", interface="can_reach:10.0.0.50")
    pool["metadata"]["uid"] = "u-1"
    writer.create(pool)
    writer.create(node("n1", "10.0.0.1"))
    cluster = cluster_factory()
    cluster.ready()
    auditor = cluster.live.auditor
    assert auditor is not None
    eventually(lambda: auditor.passes >= 1, "a first audit pass")
    assert guard_events(api) == []  # clean when it was created

    # Later, a Service is given the can_reach IP as an externalIP (IPVS binds it: the trap).
    writer.create(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.50",)))
    events = eventually(lambda: guard_events(api), "a Warning Event on the Eip")
    assert len(events) == 1
    event = events[0]
    assert event["type"] == "Warning"
    assert event["involvedObject"] == {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "name": "pool",
        "uid": "u-1",
    }
    assert "can-reach-service-ip" in str(event["message"])
    assert "10.0.0.50" in str(event["message"])
    assert cluster.metric("eip_guard_audit_violations", rule="can-reach-service-ip") == 1

    # More passes, triggered by unrelated changes and by hand: still one Event, one POST.
    passes = auditor.passes
    writer.create(node("n2", "10.0.0.2"))
    writer.create(node("n3", "10.0.0.3"))
    eventually(lambda: auditor.passes >= passes + 1, "audit passes after more changes")
    for _ in range(3):
        result = auditor.run_once()
        assert result is not None
        assert result.violating == 1
        assert result.recorded == ()
    assert len(guard_events(api)) == 1
    assert api.requests("POST", "/api/v1/namespaces/default/events") == 1

    # Fixed: the gauge drops back to zero.
    writer.delete("Service", "web", "default")
    eventually(
        lambda: cluster.metric("eip_guard_audit_violations", rule="can-reach-service-ip") == 0,
        "the gauge cleared after the fix",
    )


def test_an_event_that_exists_already_is_refreshed_by_a_merge_patch(api: FakeApi) -> None:
    """A restarted replica meets its own Event (409 AlreadyExists) and moves its
    lastTimestamp instead: one PATCH, the Event otherwise as it was."""
    events = KubeEvents(api_client(host=api.url), instance="replica-1")
    finding = Finding("pool", "u-1", ("can-reach-node-ip",), "eip-guard audit: ...", "pool.abc")
    events.record(finding)
    first = guard_events(api)
    assert [e["lastTimestamp"] for e in first] == [first[0]["firstTimestamp"]]
    api.put(EVENTS, {**first[0], "lastTimestamp": "2020-01-01T00:00:00Z"})  # an old one

    events.record(finding)  # 409 AlreadyExists: refreshed instead
    events.record(Finding("pool-2", "u-2", ("can-reach-node-ip",), "...", "pool-2.abc"))

    # The calls share one pooled connection.
    assert api.connections() == 1
    path = "/api/v1/namespaces/default/events"
    assert api.requests("POST", path) == 3
    assert api.requests("PATCH", f"{path}/pool.abc") == 1
    (event,) = [e for e in guard_events(api) if e["message"] == "eip-guard audit: ..."]
    assert str(event["lastTimestamp"]) > "2020-01-01T00:00:00Z" and event["count"] == 1


def test_without_the_audit_there_is_no_audit_gauge_and_no_event(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    # A gauge at 0 would tell a dashboard "no violating Eip" when nobody looked.
    writer.create(eip("pool", "192.168.50.10-192.168.50.20", interface="can_reach:10.0.0.1"))
    writer.create(node("n1", "10.0.0.1"))
    cluster = cluster_factory(replace(SETTINGS, audit=False))
    cluster.ready()
    assert cluster.live.auditor is None
    names = {family.name for family in cluster.registry.collect()}
    assert "eip_guard_audit_violations" not in names
    assert "eip_guard_inventory_ready" in names  # the rest of live mode's metrics are there
    assert guard_events(api) == []


def test_live_mode_uses_exactly_the_rbac_it_declares(
    api: FakeApi, cluster_factory: Callable[..., Cluster]
) -> None:
    """Every request of live mode (each watch, the audit's Event, a restarted replica's
    refresh of it) against the RBAC the chart grants and the README shows (rbac_rules)."""
    pool = eip("pool", "192.168.50.10-192.168.50.20", interface="can_reach:10.0.0.1")
    pool["metadata"]["uid"] = "u-1"
    api.put(EIPS_RESOURCE, pool)  # stored directly: a test's own writes are no request of ours
    api.put("v1/nodes", node("n1", "10.0.0.1"))
    for _ in range(2):  # the second meets the first one's Event: 409, then a PATCH
        cluster = cluster_factory()
        cluster.ready()
        auditor = cluster.live.auditor
        assert auditor is not None
        eventually(lambda: guard_events(api), "a Warning Event on the Eip")
        eventually(lambda: auditor.passes, "an audit pass")  # noqa: B023 (waited for here)
        cluster.close()
    meta = guard_events(api)[0]["metadata"]
    assert isinstance(meta, dict)
    name = meta["name"]
    assert api.requests("PATCH", f"/api/v1/namespaces/default/events/{name}") == 1
    assert api.rbac_used() == rbac_grants(rbac_rules())
