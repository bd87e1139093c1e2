"""The background audit against kmock: a violation that appears later, and one Event for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from app.core.rules import audit
from app.core.verdict import Policy
from app.kube import rest
from app.kube.auditor import (
    EVENT_BURST,
    EVENT_QPS,
    REASON,
    REFRESH_SECONDS,
    Auditor,
    Finding,
    KubeEvents,
    Recorded,
    findings,
    retry_delay,
)
from app.kube.config import api_client
from app.kube.metrics import AuditMetrics
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FailingSink:
    """Event creation forbidden (RBAC without events/create), as the API answers it; or,
    with ``only``, one Eip's Event refused (``status`` 422: invalid) and the others made."""

    def __init__(self, status: int = 403, only: str | None = None) -> None:
        self.attempts, self.status, self.only = 0, status, only

    def record(self, finding: Finding, last: Recorded | None = None) -> Recorded:
        self.attempts += 1
        if self.only is None or finding.eip == self.only:
            reason = "Forbidden" if self.status == 403 else "Invalid"
            raise ApiException(status=self.status, reason=reason)
        return Recorded(1, "2026-01-01T00:00:00Z")


def violating(writer: Writer, names: tuple[str, ...]) -> None:
    """Eips whose can_reach IP is a node's: each violates can-reach-node-ip."""
    writer.create(node("n1", "10.0.0.1"))
    for i, name in enumerate(names):
        writer.create(eip(name, f"192.168.{60 + i}.10-192.168.{60 + i}.20",
                          interface="can_reach:10.0.0.1"))  # fmt: skip


def current_message(cluster: Cluster, name: str) -> str:
    """What the audit would say of Eip ``name`` now."""
    published = cluster.live.source.published
    found = findings(audit(published.inventory), published.eip_uids).values()
    (finding,) = [f for f in found if f.eip == name]
    return finding.message


def events_on(api: FakeApi, name: str) -> list[dict[str, object]]:
    return [e for e in guard_events(api) if e["involvedObject"]["name"] == name]  # type: ignore[index]


def test_events_follow_the_rules_not_the_message_and_are_refreshed(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    writer.create(node("n1", "10.0.0.1"))
    writer.create(eip("pool-a", "192.168.70.0/28", interface="eth0"))
    writer.create(eip("pool-b", "192.168.70.0/28", interface="eth0"))  # overlaps pool-a
    cluster = cluster_factory(replace(SETTINGS, audit=False))
    cluster.ready()
    clock = Clock()
    auditor = Auditor(cluster.live.source, Policy(), AuditMetrics(CollectorRegistry()),
                      KubeEvents(cluster.client), clock=clock)  # fmt: skip
    first = auditor.run_once()
    assert first is not None and len(first.recorded) == 2
    message = current_message(cluster, "pool-a")
    assert [e["message"] for e in events_on(api, "pool-a")] == [message]

    # A third pool overlaps too: pool-a's message now names two pools; its rules are the
    # same, and so is its Event (the message once made a new Event each time it changed).
    writer.create(eip("pool-c", "192.168.70.8/29", interface="eth0"))
    eventually(lambda: current_message(cluster, "pool-a") != message, "the message changed")
    later = auditor.run_once()
    assert later is not None and len(later.recorded) == 1  # pool-c's own, new
    assert len(events_on(api, "pool-a")) == 1
    assert api.requests("POST", "/api/v1/namespaces/default/events") == 3

    # After the refresh interval the Events are recorded again, with the message as it is
    # now; one the API server let expire (--event-ttl) is made again.
    clock.now += REFRESH_SECONDS
    again = auditor.run_once()
    assert again is not None and len(again.recorded) == 3
    now = current_message(cluster, "pool-a")
    assert [e["message"] for e in events_on(api, "pool-a")] == [now] != [message]
    (gone,) = events_on(api, "pool-a")
    api.silently_delete(EVENTS, "default", str(gone["metadata"]["name"]))  # type: ignore[index]
    assert events_on(api, "pool-a") == []
    clock.now += REFRESH_SECONDS
    auditor.run_once()
    assert [e["message"] for e in events_on(api, "pool-a")] == [now]


def test_events_that_cannot_be_recorded_are_one_line_a_pass_and_back_off(
    api: FakeApi,
    writer: Writer,
    cluster_factory: Callable[..., Cluster],
    caplog: pytest.LogCaptureFixture,
) -> None:
    violating(writer, ("a", "b", "c"))
    cluster = cluster_factory(replace(SETTINGS, audit=False))
    cluster.ready()
    sink, clock, registry = FailingSink(), Clock(), CollectorRegistry()
    metrics = AuditMetrics(registry)
    auditor = Auditor(cluster.live.source, Policy(), metrics, sink, clock=clock)
    with caplog.at_level(logging.WARNING, logger="eip_guard.kube"):
        result = auditor.run_once()
    # One request: the others would meet the same 403 (see the test after next).
    assert result is not None and result.failed == 3 and sink.attempts == 1
    (line,) = [r.getMessage() for r in caplog.records if "Warning Event" in r.getMessage()]
    assert line.startswith("cannot record 3 Warning Event(s), trying again in 20 s; Eip ")
    assert line.endswith(": HTTP 403 Forbidden") and "\n" not in line

    # Before the retry is due, passes still audit (the gauge follows the cluster) but do
    # not try the Events; once due, they do, and the pause doubles.
    writer.create(eip("d", "192.168.69.10-192.168.69.20", interface="can_reach:10.0.0.1"))
    gauge = ("eip_guard_audit_violations", {"rule": "can-reach-node-ip"})
    eventually(lambda: auditor.run_once() and registry.get_sample_value(*gauge) == 4, "d seen")
    assert sink.attempts == 1
    clock.now += 20
    again = auditor.run_once()
    assert again is not None and again.failed == 4 and sink.attempts == 2
    assert [retry_delay(10, n) for n in (1, 2, 3, 4, 5, 6)] == [20, 40, 80, 160, 300, 300]
    assert [retry_delay(0, n) for n in (1, 2, 3)] == [2, 4, 8]  # --audit-interval 0: no loop


def test_a_quiet_cluster_gets_its_events_refreshed_by_the_loop(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    violating(writer, ("pool",))
    cluster = cluster_factory(replace(SETTINGS, audit=False))
    cluster.ready()
    clock, events = Clock(), KubeEvents(cluster.client)
    auditor = Auditor(cluster.live.source, Policy(), AuditMetrics(CollectorRegistry()), events,
                      interval=0.1, clock=clock)  # fmt: skip
    auditor.start()
    try:
        auditor._changed.set()  # as a rebuild does
        eventually(lambda: len(guard_events(api)) == 1, "the Event")
        (event,) = guard_events(api)
        name = event["metadata"]["name"]  # type: ignore[index]
        path = f"/api/v1/namespaces/default/events/{name}"
        assert api.requests("PATCH", path) == 0
        clock.now += REFRESH_SECONDS  # nothing changes in the cluster from here on
        eventually(lambda: api.requests("PATCH", path) == 1, "the Event refreshed")
    finally:
        auditor.stop()


def test_an_event_call_that_is_never_answered_does_not_hang_the_audit(api: FakeApi) -> None:
    """A connection gone silent (a NAT or load balancer that dropped it, an API server
    failed over) held the Event POST, and with it the audit thread, for good: no timeout."""
    events = KubeEvents(api_client(host=api.url), instance="replica-1", timeout=(1.0, 0.5))
    events.record(Finding("pool", "u-1", ("can-reach-node-ip",), "...", "pool.abc"))
    assert api.stall() == 1  # the pooled connection: bytes vanish, the socket stays open
    ended: list[Exception] = []

    def record() -> None:
        try:
            events.record(Finding("pool-2", "u-2", ("can-reach-node-ip",), "...", "pool-2.abc"))
        except Exception as exc:
            ended.append(exc)

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the Event call still waits on a silent connection"
    assert len(ended) == 1 and "timed out" in rest.why(ended[0])


def test_a_refresh_patches_the_event_it_made_and_counts_as_kubectl_shows_it(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    """client-go's recorder patches an Event it knows (count + 1, lastTimestamp, message)
    and creates it only when the patch finds it gone. A refresh was a POST refused with 409,
    then a PATCH that left count at 1: twice the requests, and `kubectl describe eip` showed
    an Event as old as the last refresh, never "(x3 over 1h)"."""
    violating(writer, ("pool",))
    cluster = cluster_factory(replace(SETTINGS, audit=False))
    cluster.ready()
    clock = Clock()
    auditor = Auditor(cluster.live.source, Policy(), AuditMetrics(CollectorRegistry()),
                      KubeEvents(cluster.client), clock=clock)  # fmt: skip
    auditor.run_once()
    (made,) = guard_events(api)
    name = made["metadata"]["name"]  # type: ignore[index]
    posts, path = "/api/v1/namespaces/default/events", f"/api/v1/namespaces/default/events/{name}"
    for n in (2, 3):
        clock.now += REFRESH_SECONDS
        result = auditor.run_once()
        assert result is not None and result.recorded == (name,)
        (event,) = guard_events(api)
        assert event["count"] == n and event["firstTimestamp"] == made["firstTimestamp"]
    assert api.requests("POST", posts) == 1 and api.requests("PATCH", path) == 2

    # Let expire by the API server (--event-ttl): made again, its count and start kept.
    api.silently_delete(EVENTS, "default", str(name))
    clock.now += REFRESH_SECONDS
    auditor.run_once()
    (event,) = guard_events(api)
    assert event["count"] == 4 and event["firstTimestamp"] == made["firstTimestamp"]
    assert api.requests("POST", posts) == 2 and api.requests("PATCH", path) == 3


def test_many_violating_eips_make_their_events_at_a_bounded_rate(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    """5,000 violating Eips made 5,000 POSTs at once (and 10,000 requests at each refresh),
    per replica. Now at most EVENT_BURST at once, then EVENT_QPS a second: the others wait
    for later passes, newly violating Eips before refreshes. The gauge counts them all."""
    names = tuple(f"pool-{i:02d}" for i in range(EVENT_BURST + 15))
    violating(writer, names)
    cluster = cluster_factory(replace(SETTINGS, audit=False))
    eventually(lambda: len(cluster.live.source.published.eip_uids) == len(names), "all Eips")
    clock, registry = Clock(), CollectorRegistry()
    auditor = Auditor(cluster.live.source, Policy(), AuditMetrics(registry),
                      KubeEvents(cluster.client), clock=clock)  # fmt: skip
    first = auditor.run_once()
    assert first is not None and first.violating == len(names)
    assert len(first.recorded) == EVENT_BURST and first.waiting == 15
    gauge = ("eip_guard_audit_violations", {"rule": "can-reach-node-ip"})
    assert registry.get_sample_value(*gauge) == len(names)
    assert auditor.run_once().recorded == ()  # type: ignore[union-attr] # no time passed
    clock.now += 2.0
    second = auditor.run_once()
    assert second is not None and len(second.recorded) == int(2 * EVENT_QPS)
    clock.now += 60.0
    third = auditor.run_once()
    assert third is not None and third.waiting == 0
    assert len(guard_events(api)) == len(names)
    assert api.requests("POST", "/api/v1/namespaces/default/events") == len(names)


def test_a_refusal_for_every_event_costs_one_request_a_pass(
    api: FakeApi, writer: Writer, cluster_factory: Callable[..., Cluster]
) -> None:
    """Without the RBAC grant (403), or any answer that every Event would get alike, the
    rest of the pass is not tried (5,000 Eips made 5,000 refused POSTs every retry); a
    refusal of one Event alone (422) does not hold back the others."""
    violating(writer, ("a", "b", "c"))
    cluster = cluster_factory(replace(SETTINGS, audit=False))
    cluster.ready()
    forbidden = FailingSink()
    auditor = Auditor(cluster.live.source, Policy(), AuditMetrics(CollectorRegistry()),
                      forbidden, clock=Clock())  # fmt: skip
    result = auditor.run_once()
    assert result is not None and result.failed == 3 and forbidden.attempts == 1

    invalid = FailingSink(status=422, only="b")
    auditor = Auditor(cluster.live.source, Policy(), AuditMetrics(CollectorRegistry()),
                      invalid, clock=Clock())  # fmt: skip
    result = auditor.run_once()
    assert result is not None and result.failed == 1 and invalid.attempts == 3
    assert len(result.recorded) == 2
