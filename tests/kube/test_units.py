"""Pure parts of live mode: backoff, readiness words, Event naming and dedup, stream layout."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from app.core.inventory import Options, build, extract
from app.core.rules import audit
from app.core.verdict import Verdict
from app.kube.auditor import event_body, event_name, findings, violations_by_rule
from app.kube.config import api_client
from app.kube.live import LiveInventory, not_ready_reason
from app.kube.metrics import KubeMetrics
from app.kube.reflector import Held, backoff_delay
from app.kube.resources import PODS, Stream, rbac_rules, streams
from app.kube.settings import namespaces
from tests.conftest import ROOT
from tests.core.objects import kube_vip_pod

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


def test_streams_cover_kube_vip_namespaces_and_the_pool_configmap_namespace() -> None:
    names = [s.name for s in streams(("kube-system", "kube-vip"), Options(("pools", "kubevip")))]
    assert names == [
        "nodes", "eips", "services", "servicecidrs",
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
    # and every resource a stream reads is granted get/list/watch
    granted = {
        (group, res)
        for rule in role["rules"]
        if rule["verbs"] == ["get", "list", "watch"]
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
