"""Pure parts of live mode: backoff, readiness words, Event naming and dedup, stream layout."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from app.core.addresses import parse_key
from app.core.facts import FactKind
from app.core.inventory import Inventory, Options, assemble, build, extract
from app.core.rules import audit
from app.core.sources import Readiness
from app.core.verdict import Verdict
from app.kube import config, live, rest
from app.kube.auditor import event_body, event_name, findings, violations_by_rule
from app.kube.config import api_client
from app.kube.live import LiveInventory, not_ready_reason
from app.kube.metrics import AuditMetrics, KubeMetrics
from app.kube.reflector import Held, backoff_delay, holder, object_key
from app.kube.resources import (
    EIPS,
    NODES,
    PAGE,
    PODS,
    SERVICECIDRS,
    SERVICES,
    Stream,
    list_all,
    rbac_rules,
    streams,
)
from app.kube.rest import unreachable, why
from app.kube.settings import WatchSettings, namespaces
from tests.conftest import ROOT
from tests.core.objects import eip, kube_vip_pod, service
from tests.core.test_inventory_update import canonical
from tests.kmock_harness import FakeApi, kubeconfig

README = (ROOT / "README.md").read_text()


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0, max_value=1))
def test_backoff_is_bounded_by_the_cap_and_grows(failures: int, r: float) -> None:
    delay = backoff_delay(failures, 0.5, 30.0, lambda: r)
    assert 0 <= delay <= 30.0
    assert delay == r * min(30.0, 0.5 * 2 ** (failures - 1))


def test_no_failure_means_no_wait() -> None:
    assert backoff_delay(0, 0.5, 30.0, lambda: 1.0) == 0.0


def test_not_ready_reason_names_waiting_sources_and_their_problems() -> None:
    reason = not_ready_reason(["nodes", "eips"], {"eips": "the Eip CRD is not installed"})
    assert reason == "waiting for the first list of eips, nodes; the Eip CRD is not installed"
    assert not_ready_reason([], {}) == "assembling the inventory from the first lists"
    # One cause holding up every source is said once; others are named with their sources.
    down = "cannot reach the API server at 10.0.0.1:6443 (NewConnectionError: refused)"
    every = {name: f"{name}: {down}; retrying" for name in ("eips", "nodes", "services")}
    assert not_ready_reason(every, every) == (
        f"waiting for the first list of eips, nodes, services: {down}; retrying"
    )
    mixed = {**every, "eips": "the Eip CRD is not installed"}
    assert not_ready_reason(mixed, mixed) == (
        "waiting for the first list of eips, nodes, services; the Eip CRD is not installed; "
        f"nodes, services: {down}; retrying"
    )


def test_an_api_server_out_of_reach_is_said_in_one_short_line() -> None:
    # urllib3's MaxRetryError repeats the URL and nests the cause in two reprs (2,400
    # characters for eight sources reached kubectl); the host, port and cause remain.
    pool = urllib3.HTTPSConnectionPool("10.0.0.1", 6443)
    cause = urllib3.exceptions.NewConnectionError(
        urllib3.connection.HTTPSConnection("10.0.0.1", 6443),
        "Failed to establish a new connection: [Errno 111] Connection refused",
    )
    exc = urllib3.exceptions.MaxRetryError(pool, "/api/v1/nodes?limit=500", cause)
    assert unreachable(exc) == (
        "cannot reach the API server at 10.0.0.1:6443 (NewConnectionError: Failed to establish "
        "a new connection: [Errno 111] Connection refused)"
    )
    assert unreachable(ConnectionResetError("reset")) == (
        "cannot reach the API server (ConnectionResetError: reset)"
    )
    # The agent's Lease and report calls, the audit's Events and the certificate Secret say
    # their failures through why(): the same short line, not the reprs.
    assert why(exc) == unreachable(exc)
    assert why(ConnectionResetError("reset")) == unreachable(ConnectionResetError("reset"))
    assert why(ValueError("not JSON")) == "not JSON"


def test_streams_cover_kube_vip_namespaces_and_the_pool_configmap_namespace() -> None:
    names = [s.name for s in streams(("kube-system", "kube-vip"), Options(("pools", "kubevip")))]
    assert names == [
        "nodes", "eips", "services", "servicecidrs", "ippools", "ciliumnodes",
        "pods/kube-system", "pods/kube-vip",
        "daemonsets/kube-system", "daemonsets/kube-vip",
        "deployments/kube-system", "deployments/kube-vip",
        "configmaps/kube-system", "configmaps/kube-vip", "configmaps/pools",
    ]  # fmt: skip


def test_namespace_flags_accept_repeats_and_commas() -> None:
    assert namespaces(None) == ("kube-system",)
    assert namespaces(["a,b", "b", " c "]) == ("a", "b", "c")


def _inventory(external_ip: str) -> tuple[dict[str, str], dict[str, Verdict]]:
    objects = [
        {
            "apiVersion": "network.kubesphere.io/v1alpha2",
            "kind": "Eip",
            "metadata": {"name": "pool", "uid": "u1"},
            "spec": {"address": "192.168.1.10-192.168.1.20", "protocol": "layer2",
                     "interface": "can_reach:10.0.0.50"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.1", "externalIPs": [external_ip]},
        },
    ]  # fmt: skip
    verdicts = audit(build(objects))
    return {"pool": "u1"}, dict(verdicts)


def test_findings_dedup_key_is_stable_and_follows_the_messages() -> None:
    uids, verdicts = _inventory("10.0.0.50")
    first = findings(verdicts, uids)
    again = findings(verdicts, uids)
    assert list(first) == list(again) and len(first) == 1
    (finding,) = first.values()
    assert finding.eip == "pool" and finding.rules == ("can-reach-service-ip",)
    # Another Eip uid (deleted and re-created) or other violations: another Event.
    assert event_name("pool", "u2", ("m",)) != event_name("pool", "u1", ("m",))
    assert event_name("pool", "u1", ("a", "b")) == event_name("pool", "u1", ("b", "a"))
    assert event_name("pool", "u1", ("a",)) != event_name("pool", "u1", ("a", "b"))
    _, clean = _inventory("10.0.0.51")
    assert findings(clean, uids) == {}


@pytest.mark.parametrize("cut", ["-", ".", "-."])
def test_an_event_name_is_a_dns_subdomain_however_a_long_eip_name_is_cut(cut: str) -> None:
    """The API server refuses (422) an Event whose name is no DNS subdomain: an Eip name
    (up to 253 characters) cut at 200 after a "-" or "." gave one."""
    eip_name = "a" * (200 - len(cut)) + cut + "b" * 40
    name = event_name(eip_name, "u1", ("m",))
    label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    assert len(name) <= 253 and re.fullmatch(rf"{label}(\.{label})*", name), name


def test_violation_counts_by_rule_include_zeroes() -> None:
    _, verdicts = _inventory("10.0.0.50")
    counts = violations_by_rule(verdicts)
    assert counts["can-reach-service-ip"] == 1
    assert counts["address-overlap"] == 0


def test_event_body_is_a_core_v1_warning_on_the_eip() -> None:
    uids, verdicts = _inventory("10.0.0.50")
    (finding,) = findings(verdicts, uids).values()
    body = event_body(finding, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "pod-1")
    assert body["metadata"] == {"name": finding.event_name, "namespace": "default"}
    assert body["reason"] == "EipGuardViolation" and body["type"] == "Warning"
    assert body["firstTimestamp"] == "2026-01-02T03:04:05Z"
    assert body["involvedObject"]["uid"] == "u1"
    assert len(body["message"]) <= 1024


def test_readme_rbac_snippet_is_exactly_what_live_mode_uses() -> None:
    section = README.split("### RBAC", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    role = yaml.safe_load(snippet)
    assert role["kind"] == "ClusterRole"
    assert role["rules"] == rbac_rules()
    # and every resource a stream reads is granted list/watch
    granted = {
        (group, res)
        for rule in role["rules"]
        if rule["verbs"] == ["list", "watch"]
        for group in rule["apiGroups"]
        for res in rule["resources"]
    }
    for stream in streams(("kube-system",), Options()):
        group = stream.resource.api_version.rpartition("/")[0]
        assert (group, stream.resource.plural) in granted, stream.name


def test_objects_that_add_nothing_cost_no_rebuild() -> None:
    """kube-system Pod churn (not kube-vip) must not rebuild the inventory each time."""
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no thread is started
    try:
        source = LiveInventory(api, [Stream(PODS, "kube-system")], KubeMetrics(CollectorRegistry()))
        plain = Held(extract({"kind": "Pod", "metadata": {"name": "coredns"}, "spec": {}}))
        source.upsert("pods/kube-system", ("kube-system", "coredns"), plain)
        source.remove("pods/kube-system", ("kube-system", "coredns"))
        assert not source.changes_pending
        vip = kube_vip_pod("kube-vip", [{"name": "address", "value": "10.0.0.9"}])
        source.upsert("pods/kube-system", ("kube-system", "kube-vip"), Held(extract(vip)))
        assert source.changes_pending
        published = source.rebuild()
        assert not source.changes_pending
        assert published.generation == 1 and not published.complete  # never listed
        assert not source.readiness().ready
        source.remove("pods/kube-system", ("kube-system", "kube-vip"))
        assert source.changes_pending
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_a_change_patches_the_last_inventory_and_a_relist_reads_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the first whole inventory, watch events update it (milliseconds) instead of
    assembling every extract again (a second at 100,000 Services); what is published is
    what assembling everything would give. A relist, kube-vip values or a change the last
    inventory cannot have seen make the next one whole."""
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no thread is started
    registry = CollectorRegistry()
    source = LiveInventory(api, [Stream(SERVICES), Stream(EIPS)], KubeMetrics(registry))
    try:

        def held(obj: dict[str, Any]) -> Held:
            return Held(extract(obj), "uid-" + obj["metadata"]["name"])

        def key(obj: dict[str, Any]) -> tuple[str, str]:
            return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

        web, db = service("web", cluster_ip="10.96.0.10"), service("db", cluster_ip="10.96.0.11")
        pool = eip("pool", "192.168.0.0/28", used={"192.168.0.1": "default/web"})
        source.replace("services", {key(o): held(o) for o in (web, db)})
        source.replace("eips", {key(pool): held(pool)})
        first = source.rebuild()
        assert first.whole and first.complete

        def expected() -> dict[str, Any]:
            with source._lock:
                every = [h.extract for st in source._stores.values() for h in st.values()]
            return canonical(assemble(every))

        moved = service("web", cluster_ip="10.96.0.20", ingress=("192.168.0.1",))
        source.upsert("services", key(moved), held(moved))
        source.remove("services", key(db))
        spare = service("spare", cluster_ip="10.96.0.30")
        source.upsert("services", key(spare), held(spare))
        source.upsert("services", key(spare), held(service("spare", cluster_ip="10.96.0.31")))
        renamed = eip("pool", "192.168.0.0/28", used={"192.168.0.2": "default/spare"})
        source.upsert("eips", key(renamed), Held(extract(renamed), "uid-new"))
        second = source.rebuild()
        assert not second.whole and second.generation == 2
        assert canonical(second.inventory) == expected()
        assert dict(second.eip_uids) == {"pool": "uid-new"}
        assert second.inventory.eips["pool"].used == ("192.168.0.2",)
        cpu = "eip_guard_inventory_rebuild_cpu_seconds_total"
        assert (registry.get_sample_value(cpu, {"how": "changes"}) or 0) > 0

        source.replace("services", {key(web): held(web)})  # a relist
        assert source.rebuild().whole
        vip = service("vip", cluster_ip="10.96.0.40")
        source.upsert("services", key(vip), held(vip))
        assert not source.rebuild().whole
        # A removal the last inventory cannot have seen: the patch fails, everything is read.
        with source._lock:
            source._changed[("services", ("default", "ghost"))] = held(
                service("ghost", cluster_ip="10.96.0.50")
            )
        source._dirty.set()
        third = source.rebuild()
        assert third.whole and canonical(third.inventory) == expected()
        # A literal kube-vip VIP is a fact like any other; a name is resolved (DNS, or a
        # ConfigMap) against every object: whole.
        literal = kube_vip_pod("kube-vip", [{"name": "address", "value": "10.0.0.9"}])
        source.upsert("services", ("kube-system", "kube-vip"), Held(extract(literal)))
        assert not source.rebuild().whole
        named = kube_vip_pod("kube-vip", [{"name": "address", "value": "vip.example.com"}])
        source.upsert("services", ("kube-system", "kube-vip"), Held(extract(named)))
        assert source.rebuild().whole
        # A patch that fails (a bug) is not the end of the change: the same rebuild reads
        # everything, and the metric counts the failure.
        late = service("late", cluster_ip="10.96.0.60")
        source.upsert("services", key(late), held(late))
        failures = "eip_guard_inventory_rebuild_failures_total"
        with monkeypatch.context() as patch:
            patch.setattr(live, "update", _broken)
            fourth = source.rebuild()
        assert fourth.whole and canonical(fourth.inventory) == expected()
        assert fourth.inventory.at(FactKind.SERVICE_IP, parse_key("10.96.0.60"))
        assert registry.get_sample_value(failures, {"how": "changes"}) == 1
        assert registry.get_sample_value(failures, {"how": "whole"}) == 0
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_what_the_cluster_lacks_is_logged_once_when_complete(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A live cluster without Services (or a value that cannot be read) must reach the logs,
    once, and not while the first lists are still coming in."""
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no thread is started
    registry = CollectorRegistry()
    source = LiveInventory(api, [Stream(SERVICES), Stream(EIPS)], KubeMetrics(registry))
    caplog.set_level("WARNING", logger="eip_guard.kube")

    def gauge(kind: str) -> float | None:
        return registry.get_sample_value("eip_guard_inventory_problems", {"kind": kind})

    try:
        source.replace("eips", {("", "pool"): Held(extract(eip("pool", "192.168.0.0/28")))})
        assert not source.rebuild().complete
        assert caplog.messages == []  # the Services' list has not come: nothing to say yet
        odd = service("odd", external_ips=("10.96.0.300",))
        source.replace("services", {("default", "odd"): Held(extract(odd))})
        assert source.rebuild().complete
        said = list(caplog.messages)
        assert len(said) == 3 and all(m.startswith("cluster: ") for m in said)
        assert "not checked: node IPs" in said[0] and "Service IPs" in said[1]
        assert "ignored '10.96.0.300'" in said[2]
        assert (gauge("not_checked"), gauge("ignored")) == (2, 1)
        source.rebuild()
        assert caplog.messages == said  # the same problems: said once
        web = service("web", cluster_ip="10.96.0.10")
        source.upsert("services", ("default", "web"), Held(extract(web)))
        source.remove("services", ("default", "odd"))
        source.rebuild()
        assert caplog.messages == said  # problems that went say nothing
        assert (gauge("not_checked"), gauge("ignored")) == (1, 0)
        source.remove("services", ("default", "web"))
        source.rebuild()
        assert caplog.messages[3:] == [said[1]]  # and come back when they come back
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _broken(*_: Any) -> None:
    raise RuntimeError("a bug in update")


def test_a_failed_rebuild_is_tried_again_without_waiting_for_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebuild that fails keeps the last inventory, and the rebuild thread tries again
    after a backoff: in a quiet cluster no later event would ever ask it to."""
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no reflector is started
    registry = CollectorRegistry()
    fast = WatchSettings(backoff_base=0.01, backoff_cap=0.05)
    source = LiveInventory(
        api, [Stream(SERVICES)], KubeMetrics(registry), settings=fast, coalesce=0.0
    )
    calls = []

    def flaky(*args: Any, **kwargs: Any) -> Inventory:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("a bug in assemble")
        return assemble(*args, **kwargs)

    monkeypatch.setattr(live, "assemble", flaky)
    web = service("web", cluster_ip="10.96.0.10")
    source.replace("services", {("default", "web"): Held(extract(web))})  # the only event
    loop = threading.Thread(target=source._rebuild_loop, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while not source.published.complete and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.published.complete and source.readiness().ready
        assert source.current().at(FactKind.SERVICE_IP, parse_key("10.96.0.10"))
        failures = "eip_guard_inventory_rebuild_failures_total"
        assert registry.get_sample_value(failures, {"how": "whole"}) == 2
        assert len(calls) == 3
    finally:
        source.stop()
        loop.join(5)
        api.close()  # type: ignore[no-untyped-call]


def test_every_live_metric_is_in_the_readme() -> None:
    registry = CollectorRegistry()
    KubeMetrics(registry)
    AuditMetrics(registry)
    table = README.split("**Metrics** (on `/metrics`, next to the webhook's):", 1)[1]
    table = table.split("\n\n", 2)[1]
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{name}` |" in table, name


class _Page:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def release_conn(self) -> None:
        pass


def test_a_list_is_kept_page_by_page() -> None:
    """Each page goes through ``keep`` before the next is asked for, so only one page of
    parsed objects is ever held; ``continue`` tokens are followed; None is left out."""
    pages = [
        {"metadata": {"continue": "p2"}, "items": [service_obj("a"), service_obj("b")]},
        {"metadata": {"continue": "p3"}, "items": [service_obj("c")]},
        {"metadata": {"resourceVersion": "42"}, "items": [service_obj("skip")]},
    ]
    happened: list[str] = []

    def lister(**kwargs: Any) -> _Page:
        happened.append(f"list {kwargs.get('_continue')} limit={kwargs['limit']}")
        asked = sum(h.startswith("list") for h in happened)
        return _Page(json.dumps(pages[asked - 1]).encode())

    def keep(obj: dict[str, Any]) -> str | None:
        name = obj["metadata"]["name"]
        happened.append(f"keep {name} {obj['kind']}")
        return None if name == "skip" else name

    stream = next(s for s in streams(("kube-system",), Options()) if s.name == "services")
    kept, rv = list_all(stream, lister, (1.0, 1.0), keep)
    assert kept == ["a", "b", "c"] and rv == "42"
    assert happened == [
        f"list None limit={PAGE}",
        "keep a Service",  # the kind a real API server leaves out of list items is added
        "keep b Service",
        f"list p2 limit={PAGE}",
        "keep c Service",
        f"list p3 limit={PAGE}",
        "keep skip Service",
    ]


def test_what_live_mode_keeps_holds_no_string_of_the_parsed_page() -> None:
    """One surviving string per memory page kept a whole parsed list resident (RSS 468 MB
    at 100,000 Services instead of 300): keys and uids are copies."""
    parsed = json.loads(json.dumps(eip_obj("pool-a", "u-1")))
    key = object_key(parsed)
    assert key == ("", "pool-a") and key[1] is not parsed["metadata"]["name"]
    held = holder(Options())(parsed)
    assert held.uid == "u-1" and held.uid is not parsed["metadata"]["uid"]
    svc = json.loads(json.dumps(service_obj("web")))
    ns, name = object_key(svc)
    assert (ns, name) == ("default", "web")
    assert ns is not svc["metadata"]["namespace"] and name is not svc["metadata"]["name"]


def service_obj(name: str) -> dict[str, Any]:
    # As list items come from a real API server: no apiVersion, no kind.
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"clusterIP": "None"}}


def eip_obj(name: str, uid: str) -> dict[str, Any]:
    obj = eip(name, "192.168.1.0/30")
    obj["metadata"]["uid"] = uid
    return obj


def test_rest_paths_follow_the_api_conventions() -> None:
    assert rest.path("v1", "nodes") == "/api/v1/nodes"
    assert (
        rest.path("v1", "events", "default", "pool.1a")
        == "/api/v1/namespaces/default/events/pool.1a"
    )
    assert rest.path(EIPS.api_version, "eips") == "/apis/network.kubesphere.io/v1alpha2/eips"
    assert rest.path("apps/v1", "daemonsets", "kube-system") == (
        "/apis/apps/v1/namespaces/kube-system/daemonsets"
    )
    assert rest.path("v1", "secrets", "a b", "c/d") == "/api/v1/namespaces/a%20b/secrets/c%2Fd"


def test_a_lister_takes_the_generated_list_arguments_only() -> None:
    lister = Stream(PODS, "kube-system").lister(api_client(host="http://127.0.0.1:1"))
    with pytest.raises(TypeError, match="unknown list parameter"):
        lister(label_selectr="x")
    with pytest.raises(TypeError, match="raw response"):
        lister(_preload_content=True)


def test_rest_calls_encode_queries_and_raise_api_errors_as_the_client_does(api: FakeApi) -> None:
    client = api_client(host=api.url)
    lister = Stream(NODES, label_selector="a=b,c in (d)").lister(client)
    response = lister(limit=2, watch=False, _request_timeout=5)
    assert json.loads(response.data)["items"] == []
    response.release_conn()
    (request,) = api.call(lambda: [dict(r.url.query) for r in list(api.km)])
    assert request == {"labelSelector": "a=b,c in (d)", "limit": "2", "watch": "false"}
    with pytest.raises(ApiException) as missing:
        rest.request(client, "GET", rest.path("v1", "nodes", name="nope"))
    assert missing.value.status == 404


def test_changes_are_not_kept_while_the_next_inventory_is_assembled_whole() -> None:
    """Until every source has listed (a missing Eip CRD: for days) the next inventory is
    assembled from every extract, so no change is worth remembering: each Service or Pod
    name ever watched was, and the memory grew with the churn."""
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no thread is started
    try:
        source = LiveInventory(
            api, [Stream(SERVICES), Stream(EIPS)], KubeMetrics(CollectorRegistry())
        )
        source.replace("services", {})  # the Eips never list
        for i in range(100):
            churned = service(f"job-{i}", cluster_ip=f"10.96.1.{i + 1}")
            source.upsert("services", ("default", f"job-{i}"), Held(extract(churned)))
            source.remove("services", ("default", f"job-{i}"))
        assert source._changed == {}
        # Once a whole inventory has read the stores, changes are what the next one patches.
        source.replace("eips", {})
        assert source.rebuild().complete
        web = service("web", cluster_ip="10.96.0.10")
        source.upsert("services", ("default", "web"), Held(extract(web)))
        assert list(source._changed) == [("services", ("default", "web"))]
        patched = source.rebuild()
        assert not patched.whole
        assert patched.inventory.at(FactKind.SERVICE_IP, parse_key("10.96.0.10"))
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_a_kubeconfig_token_file_is_read_again_when_rotated(
    api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubeconfig user with a ``tokenFile`` (a projected service account token, rotated
    about every hour): the library read it once, so after a rotation every list and watch
    was refused (401) until a restart. In-cluster, the library reads its token again itself."""
    monkeypatch.setattr(config, "TOKEN_FILE_SECONDS", 0.0, raising=False)
    token = tmp_path / "token"
    token.write_text("first")
    path = kubeconfig(tmp_path / "kubeconfig", api.url, user={"tokenFile": str(token)})
    client = api_client(str(path))
    try:
        stream = Stream(NODES)
        list_all(stream, stream.lister(client), (5.0, 5.0), lambda obj: obj)
        token.write_text("second")
        list_all(stream, stream.lister(client), (5.0, 5.0), lambda obj: obj)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    sent = api.call(lambda: [r.headers.get("Authorization") for r in list(api.km)])
    assert sent == ["Bearer first", "Bearer second"]


def test_connections_to_the_api_server_are_kept_alive_as_client_go_does() -> None:
    """A watch on a quiet resource sends nothing for minutes: without TCP keepalive an idle
    timeout on the way (a NAT, an AWS NLB: 350 s) dropped it silently, and nothing was
    noticed before the read timeout (up to 630 s)."""
    client = api_client(host="http://127.0.0.1:9")
    try:
        pool = client.rest_client.pool_manager.connection_from_url("http://127.0.0.1:9")
        options = pool.conn_kw.get("socket_options") or []
        assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in options
        assert (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30) in options
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_a_problem_said_while_the_first_inventory_is_published_leaves_it_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A source's problem (or its relist) refreshes the not-ready reason under the lock while
    the rebuild thread publishes the first complete inventory: the reason, computed from the
    inventory before, was written after "ready", and stayed (on a quiet cluster no other
    rebuild comes to set it again: /readyz failed for hours)."""
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no thread is started
    try:
        source = LiveInventory(api, [Stream(NODES)], KubeMetrics(CollectorRegistry()))
        source.replace("nodes", {})
        assembling, go = threading.Event(), threading.Event()
        real_reason = live.not_ready_reason

        def slow_assemble(*args: Any) -> Inventory:
            assembling.set()
            go.wait(5)
            return assemble(*args)

        rebuild = threading.Thread(target=source.rebuild)

        def reason_meanwhile(*args: Any) -> str:
            go.set()  # the rebuild publishes now, while this reflector holds the lock
            rebuild.join(0.5)
            return real_reason(*args)

        monkeypatch.setattr(live, "assemble", slow_assemble)
        monkeypatch.setattr(live, "not_ready_reason", reason_meanwhile)
        rebuild.start()
        assert assembling.wait(5)
        source.problem("nodes", "")  # e.g. a watch that ended cleanly
        rebuild.join(5)
        assert source.published.complete
        assert source.readiness() == Readiness(True)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_a_list_that_finds_what_is_held_makes_no_new_inventory() -> None:
    """An API server without ServiceCIDRs (before Kubernetes 1.33) is asked again every
    absent_retry (5 minutes): each empty answer assembled the inventory whole (a second at
    100,000 Services) and audited every Eip, on a cluster where nothing changed."""
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no thread is started
    try:
        source = LiveInventory(
            api, [Stream(SERVICES), Stream(SERVICECIDRS)], KubeMetrics(CollectorRegistry())
        )
        web = {("default", "web"): Held(extract(service("web", cluster_ip="10.96.0.10")))}
        source.replace("services", web)
        source.replace("servicecidrs", {})
        first = source.rebuild()
        assert first.complete and not source.changes_pending
        source.replace("servicecidrs", {})  # still none
        source.replace("services", dict(web))  # a relist (410) that finds the same
        assert not source.changes_pending
        moved = service("web", cluster_ip="10.96.0.11")
        source.replace("services", {("default", "web"): Held(extract(moved))})
        assert source.changes_pending
        second = source.rebuild()
        assert second.whole and second.generation == first.generation + 1
        assert second.inventory.at(FactKind.SERVICE_IP, parse_key("10.96.0.11"))
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_a_lasting_failure_is_logged_when_it_starts_changes_and_every_ten_minutes(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API server out of reach was one warning per retry and source (every 30 s each,
    forever); the failure is said once, again when it changes or every SAY_AGAIN_EVERY, and
    its end is said too. The error counter still counts every retry."""
    caplog.set_level("INFO", logger="eip_guard.kube")
    api = api_client(host="http://127.0.0.1:9")  # never contacted: no thread is started
    try:
        source = LiveInventory(api, [Stream(NODES)], KubeMetrics(CollectorRegistry()))
        down = "nodes: cannot reach the API server (ConnectionRefusedError); retrying"
        for _ in range(5):
            source.problem("nodes", down)
        source.problem("nodes", "nodes: the API answers 503 Service Unavailable; retrying")
        source.problem("nodes", "")
        source.problem("nodes", "")
        source.problem("nodes", down)
        monkeypatch.setattr(live, "SAY_AGAIN_EVERY", 0.0, raising=False)
        source.problem("nodes", down)
        assert not source.readiness().ready
        assert "nodes: cannot reach" in source.readiness().reason  # always the latest
    finally:
        api.close()  # type: ignore[no-untyped-call]
    assert [(r.levelname, r.getMessage()[:22]) for r in caplog.records] == [
        ("WARNING", "nodes: cannot reach th"),
        ("WARNING", "nodes: the API answers"),
        ("INFO", "nodes: in sync again"),
        ("WARNING", "nodes: cannot reach th"),
        ("WARNING", "nodes: cannot reach th"),
    ]


def _with_user(path: Path, url: str, user: dict[str, Any], **cluster: Any) -> Path:
    """A kubeconfig to ``url`` whose user and cluster fields are these."""
    doc = yaml.safe_load(kubeconfig(path, url).read_text())
    doc["users"][0]["user"] = user
    doc["clusters"][0]["cluster"].update(cluster)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_an_exec_plugin_that_fails_is_said_and_logs_nothing_else(tmp_path: Path) -> None:
    """The library logged the failure with logging.error on the root logger (configuring
    logging for the whole process: urllib3's retries printed too) and went on without
    credentials, so the error blamed the network. A process of its own: in pytest the root
    logger has handlers already."""
    plugin = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/no/plugin"}
    path = _with_user(tmp_path / "kubeconfig", "http://127.0.0.1:9", {"exec": plugin})
    done = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "audit", "--kubeconfig", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr  # one line, nothing logged besides
    assert "exec plugin '/no/plugin' failed: " in done.stderr and "No such file" in done.stderr


def test_an_exec_plugin_that_works_gives_its_token(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    status = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": "from-the-plugin"},
    }
    plugin.write_text(f"#!/bin/sh\necho '{json.dumps(status)}'\n")
    plugin.chmod(0o755)
    exec_ = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
    path = _with_user(tmp_path / "kubeconfig", "http://127.0.0.1:9", {"exec": exec_})
    client = api_client(str(path))
    try:
        assert client.configuration.api_key["BearerToken"] == "Bearer from-the-plugin"
    finally:
        client.close()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("cluster", "scheme"),
    [
        ({}, "http"),
        ({"insecure-skip-tls-verify": True}, "https"),
        ({"certificate-authority-data": "Y2E="}, "https"),
    ],
)
def test_a_server_without_a_scheme_gets_client_gos(
    tmp_path: Path, cluster: dict[str, Any], scheme: str
) -> None:
    """``server: 10.0.0.1:6443``: https when the cluster has a CA or skips verification (the
    library read the CA only for a server starting with https), else http, as client-go
    does; urllib3 warned of a URL without a scheme."""
    path = _with_user(tmp_path / "kubeconfig", "10.0.0.1:6443", {"token": "t"}, **cluster)
    client = api_client(str(path))
    try:
        assert client.configuration.host == f"{scheme}://10.0.0.1:6443"
        if "certificate-authority-data" in cluster:
            assert client.configuration.ssl_ca_cert  # the CA read, into a file
    finally:
        client.close()  # type: ignore[no-untyped-call]
