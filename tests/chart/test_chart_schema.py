"""values.schema.json: every default passes, every unknown key or wrong type fails."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest

from tests.chart.rendering import SCENARIOS, RenderFn, one


def test_defaults_and_every_scenario_pass(chart: helm_python.Chart) -> None:
    chart.validate_schema(chart.values)
    for values, _ in SCENARIOS.values():
        chart.validate_schema(chart.merge_values(values))


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "unknown top-level key": ({"replicas": 3}, "replicas"),
    "unknown nested key": ({"webhook": {"timeout": 5}}, "timeout"),
    "unknown key deep down": ({"certificates": {"self": {"secret": "x"}}}, "secret"),
    "string for an integer": ({"replicaCount": "2"}, "replicaCount"),
    "zero replicas": ({"replicaCount": 0}, "replicaCount"),
    "timeout over 30 s": ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
    "unknown failure policy": ({"webhook": {"failurePolicy": "Deny"}}, "failurePolicy"),
    "unknown cert mode": ({"certificates": {"mode": "auto"}}, "mode"),
    "unknown rule action": ({"policy": {"rules": {"address-overlap": "block"}}}, "rules"),
    "unknown rule id": ({"policy": {"rules": {"no-such-rule": "warn"}}}, "no-such-rule"),
    "deny for the rule that only warns": (
        {"policy": {"rules": {"can-reach-unknown-subnet": "deny"}}},
        "can-reach-unknown-subnet",
    ),
    "string for a boolean": ({"policy": {"allowOverrides": "yes"}}, "allowOverrides"),
    "bad admission-policy toggle": ({"validatingAdmissionPolicy": {"enabled": "on"}}, "enabled"),
    "port out of range": ({"webhook": {"probePort": 70000}}, "probePort"),
    "configmap without namespace": ({"inventory": {"kubeVip": {"configMap": "kv"}}}, "configMap"),
    # The webhook would read kube-system anyway, with no RoleBinding there.
    "no kube-vip namespace": ({"inventory": {"kubeVip": {"namespaces": []}}}, "namespaces"),
    "non-string node selector": ({"nodeSelector": {"a": 1}}, "nodeSelector"),
    "bad duration": ({"certificates": {"certManager": {"duration": "1y"}}}, "duration"),
    "caBundle not base64": ({"certificates": {"external": {"caBundle": "-----BEGIN"}}}, "caBundle"),
    "unknown agent key": ({"agent": {"enabled": True, "noSuchKey": "x"}}, "noSuchKey"),
    "digest that is no sha256": ({"image": {"digest": "latest"}}, "digest"),
    "digest given as the tag": ({"image": {"tag": "sha256:" + "a" * 64}}, "tag"),
    "name override that is no DNS label": ({"nameOverride": "Bad_Name."}, "nameOverride"),
    "fullname override starting with a digit": ({"fullnameOverride": "1abc"}, "fullnameOverride"),
    "fraction in a Prometheus duration": (
        {"metrics": {"serviceMonitor": {"interval": "1.5m"}}},
        "interval",
    ),
    "microseconds in a cert-manager duration": (
        {"certificates": {"certManager": {"renewBefore": "500us"}}},
        "renewBefore",
    ),
    "memory in a unit Kubernetes lacks": ({"resources": {"limits": {"memory": "512MB"}}}, "memory"),
    "API server address without a prefix": (
        {"networkPolicy": {"egress": {"apiServer": {"cidrs": ["10.0.0.1"]}}}},
        "cidrs",
    ),
    # The API server refuses a NetworkPolicy whose ipBlock is no CIDR (Go's ParseCIDR:
    # octets up to 255, no leading zero), and the agent cannot listen on such an address.
    "API server address out of range": (
        {"networkPolicy": {"egress": {"apiServer": {"cidrs": ["999.0.0.1/32"]}}}},
        "cidrs",
    ),
    "API server address with a leading zero": (
        {"networkPolicy": {"egress": {"apiServer": {"cidrs": ["10.0.0.01/32"]}}}},
        "cidrs",
    ),
    "API server IPv6 address with one colon": (
        {"networkPolicy": {"egress": {"apiServer": {"cidrs": ["fd00:/64"]}}}},
        "cidrs",
    ),
    "agent probe address out of range": ({"agent": {"probeAddress": "256.0.0.1"}}, "probeAddress"),
    # Label values and names the API server refuses: a failed install (or GitOps sync)
    # instead of a clear error at render time. Keys: the templates, which say where.
    "pod label value with a space": ({"podLabels": {"team": "net ops"}}, "podLabels"),
    "pod label value over 63 characters": ({"podLabels": {"team": "a" * 64}}, "podLabels"),
    "node selector value ending in a dash": ({"nodeSelector": {"zone": "a-"}}, "nodeSelector"),
    "ServiceMonitor label value with a slash": (
        {"metrics": {"serviceMonitor": {"labels": {"release": "kube/prom"}}}},
        "labels",
    ),
    "PodMonitor label value with a space": (
        {"agent": {"podMonitor": {"labels": {"release": "a b"}}}},
        "labels",
    ),
    "priority class that is no DNS name": (
        {"priorityClassName": "High Priority"},
        "priorityClassName",
    ),
    "agent priority class that is no DNS name": (
        {"agent": {"priorityClassName": "Critical"}},
        "priorityClassName",
    ),
    "topology key with a space": ({"topologySpread": {"topologyKey": "a b"}}, "topologyKey"),
    "minAvailable neither count nor percentage": (
        {"podDisruptionBudget": {"minAvailable": "two"}},
        "minAvailable",
    ),
    # 1000000 rendered --lease-duration=1e+06, which the agent refused at start.
    "Lease duration over an hour": (
        {"agent": {"leaseDurationSeconds": 3601}},
        "leaseDurationSeconds",
    ),
    "Lease duration in the millions": (
        {"agent": {"leaseDurationSeconds": 1000000}},
        "leaseDurationSeconds",
    ),
    "Lease renewal over half an hour": (
        {"agent": {"leaseRenewSeconds": 1801}},
        "leaseRenewSeconds",
    ),
    "agent interval over a minute": ({"agent": {"intervalSeconds": 61}}, "intervalSeconds"),
    "agent interval under 0.1 s": ({"agent": {"intervalSeconds": 0.05}}, "intervalSeconds"),
    "a drain past the grace period": (
        {"webhook": {"shutdownDelaySeconds": 61}},
        "shutdownDelaySeconds",
    ),
    "speaker neither on nor off": ({"agent": {"speaker": "yes"}}, "speaker"),
    # A pod's own address is not known in advance: only every address makes sense. The
    # loopback installs and is never ready (the API server and the kubelet call the pod
    # IP); a bracketed or named address stops `eip-guard serve` at start.
    "webhook on the loopback": ({"webhook": {"listenAddress": "127.0.0.1"}}, "listenAddress"),
    "webhook on localhost": ({"webhook": {"listenAddress": "localhost"}}, "listenAddress"),
    "bracketed listen address": ({"webhook": {"listenAddress": "[::]"}}, "listenAddress"),
    # Each stops every agent at start (no such address to listen on): a port is
    # agent.probePort's, an IPv6 address goes without brackets.
    "agent probe address with a port": (
        {"agent": {"probeAddress": "127.0.0.1:9477"}},
        "probeAddress",
    ),
    "bracketed agent probe address": ({"agent": {"probeAddress": "[::1]"}}, "probeAddress"),
    "agent probe address as a URL": (
        {"agent": {"probeAddress": "http://127.0.0.1"}},
        "probeAddress",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_schema_rejects(chart: helm_python.Chart, case: str) -> None:
    values, where = BAD[case]
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.validate_schema(chart.merge_values(values))
    assert where in str(err.value)


@pytest.mark.parametrize("address", ["", "127.0.0.1", "::1", "::", "0.0.0.0", "localhost",
                                     "10.0.0.5", "fd00::1", "::ffff:192.0.2.1"])  # fmt: skip
def test_schema_takes_every_probe_address_the_agent_can_listen_on(
    chart: helm_python.Chart, address: str
) -> None:
    chart.validate_schema(chart.merge_values({"agent": {"probeAddress": address}}))


def test_render_refuses_values_the_schema_rejects(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmError, match="replicas"):
        chart.render({"replicas": 3}, name="eip-guard", namespace="eip-guard")


def _objects(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return []
    found = [(path, node)] if node.get("type") == "object" and "properties" in node else []
    for key, child in (node.get("properties") or {}).items():
        found += _objects(child, f"{path}.{key}")
    return found


def test_every_schema_object_is_closed(chart: helm_python.Chart) -> None:
    schema = chart.schema
    assert schema is not None
    for path, node in _objects(schema):
        # Closed: no other keys, or (a map such as policy.rules) only keys it enumerates.
        names = node.get("propertyNames", {})
        assert node.get("additionalProperties") is False or "enum" in names, path


def test_schema_and_values_yaml_name_the_same_keys(chart: helm_python.Chart) -> None:
    def keys(node: dict[str, Any], values: dict[str, Any], path: str) -> None:
        props = node["properties"]
        assert set(values) <= set(props), f"{path}: values.yaml keys the schema lacks"
        for key in node.get("required", []):
            assert key in values, f"{path}.{key}: required but has no default"
        for key, child in props.items():
            if child.get("type") == "object" and "properties" in child and key in values:
                keys(child, values[key], f"{path}.{key}")

    schema = chart.schema
    assert schema is not None
    keys(schema, chart.values, "$")


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"webhook": {"port": 9443, "probePort": 9443}}, "cannot share a port"),
        ({"podDisruptionBudget": {"minAvailable": 2}}, "keeps all 2 replicas"),
        ({"podDisruptionBudget": {"minAvailable": "51%"}}, "keeps all 2 replicas"),
        ({"replicaCount": 4, "podDisruptionBudget": {"minAvailable": "76%"}}, "keeps all 4"),
        # The API server refuses a Service with two ports alike.
        (
            {"service": {"port": 8080}, "metrics": {"serviceMonitor": {"enabled": True}}},
            "service.port and webhook.probePort are both 8080",
        ),
        # A NetworkPolicy that lets no Prometheus scrape: EipGuardNotReady (absent()) fires.
        (
            {"networkPolicy": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}}},
            "networkPolicy.enabled with metrics.serviceMonitor.enabled needs "
            "networkPolicy.metricsFrom",
        ),
        (
            {"networkPolicy": {"enabled": True}, "metrics": {"prometheusRule": {"enabled": True}}},
            "with metrics.prometheusRule.enabled needs networkPolicy.metricsFrom",
        ),
        # ... and a pod whose memory request exceeds its limit (the defaults merge in).
        ({"resources": {"requests": {"memory": "1Gi"}}}, "resources.requests.memory (1Gi) exceeds"),
        (
            {
                "agent": {
                    "enabled": True,
                    "resources": {"requests": {"memory": 268435457}, "limits": {"memory": "256Mi"}},
                }
            },
            "agent.resources.requests.memory (268435457) exceeds",
        ),
        # cert-manager's webhook refuses these Certificates.
        (
            {"certificates": {"mode": "cert-manager", "certManager": {"duration": "720h"}}},
            "renewBefore (720h) must be shorter than its duration (720h)",
        ),
        (
            {
                "certificates": {
                    "mode": "cert-manager",
                    "certManager": {"duration": "59m", "renewBefore": "10m"},
                }
            },
            "duration (59m) is under 1h",
        ),
        (
            {"certificates": {"mode": "cert-manager", "certManager": {"renewBefore": "4m59s"}}},
            "renewBefore (4m59s) is under 5m",
        ),
        # The Prometheus operator drops such an endpoint: nothing would be scraped.
        (
            {"metrics": {"serviceMonitor": {"enabled": True, "interval": "5s"}}},
            "scrapeTimeout (10s) exceeds its interval (5s)",
        ),
        # A port under 1024 needs CAP_NET_BIND_SERVICE, which the non-root webhook lacks
        # (unless the runtime lowers net.ipv4.ip_unprivileged_port_start): it crash-loops.
        ({"webhook": {"port": 443}}, "webhook.port (443) is under 1024"),
        ({"webhook": {"probePort": 80}}, "webhook.probePort (80) is under 1024"),
        # Label and annotation keys the API server refuses (the schema would say "at ''").
        ({"podLabels": {"my team": "x"}}, 'podLabels: "my team" is no valid key'),
        ({"podAnnotations": {"a/b/c": "x"}}, 'podAnnotations: "a/b/c" is no valid key'),
        ({"podAnnotations": {"example.com/" + "a" * 64: "x"}}, "podAnnotations: "),
        ({"nodeSelector": {"-zone": "a"}}, 'nodeSelector: "-zone" is no valid key'),
        (
            {"agent": {"enabled": True, "nodeSelector": {"a b": "x"}}},
            'agent.nodeSelector: "a b" is no valid key',
        ),
        (
            {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"Example.com/a": "x"}}}},
            'metrics.serviceMonitor.labels: "Example.com/a" is no valid key',
        ),
        (
            {"metrics": {"prometheusRule": {"enabled": True, "labels": {"a:b": "x"}}}},
            'metrics.prometheusRule.labels: "a:b" is no valid key',
        ),
        (
            {
                "agent": {
                    "enabled": True,
                    "probeAddress": "",
                    "podMonitor": {"enabled": True, "labels": {"": "x"}},
                }
            },
            'agent.podMonitor.labels: "" is no valid key',
        ),
        # The selector would no longer match the pods; the policy checksum would stop rolling.
        (
            {"podLabels": {"app.kubernetes.io/component": "x"}},
            "podLabels may not set app.kubernetes.io/component",
        ),
        ({"podAnnotations": {"checksum/policy": "x"}}, "may not set checksum/policy"),
        # `--set replicaCount=null` deletes the key; it rendered `replicas:` empty.
        ({"replicaCount": None}, "replicaCount"),
        ({"agent": None}, "agent"),
    ],
)
def test_values_that_would_break_the_install_fail_the_render(
    render: RenderFn, values: dict[str, Any], says: str
) -> None:
    # Each would install cleanly and then fail: a port clash at start, or a PDB that no
    # eviction can satisfy, which blocks every node drain.
    with pytest.raises(helm_python.HelmError, match=re.escape(says)):
        render(values)


@pytest.mark.parametrize(
    ("replicas", "min_available"), [(2, 1), (2, "50%"), (3, 2), (4, "75%"), (1, 1)]
)
def test_a_disruption_budget_that_leaves_one_replica_to_evict_renders(
    render: RenderFn, replicas: int, min_available: int | str
) -> None:
    values = {"replicaCount": replicas, "podDisruptionBudget": {"minAvailable": min_available}}
    budgets = [o for o in render(values) if o["kind"] == "PodDisruptionBudget"]
    found = [o["spec"]["minAvailable"] for o in budgets]
    assert found == ([min_available] if replicas > 1 else [])


def test_values_at_the_limits_render(render: RenderFn) -> None:
    digest = "sha256:" + "0" * 64
    values = {
        "image": {"repository": "r.example/eip-guard", "tag": "1.2.3", "digest": digest},
        "fullnameOverride": "a" * 63,
        "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1024Mi"}},
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "1m30s",
                                       "scrapeTimeout": "90s"}},
        "certificates": {"mode": "cert-manager",
                         "certManager": {"duration": "1h", "renewBefore": "59m59s"}},
        "networkPolicy": {"enabled": True, "metricsFrom": [{"podSelector": {}}],
                          "egress": {"enabled": True, "apiServer": {
                              "cidrs": ["10.0.0.1/32", "fd00::1/128", "0.0.0.0/0",
                                        "255.255.255.255/32", "::/0", "::ffff:192.0.2.1/128"],
                              "ports": [443]}}},
        "webhook": {"port": 1024, "probePort": 65535},
    }  # fmt: skip
    objs = render(values)
    container = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"r.example/eip-guard:1.2.3@{digest}"
    ca = next(o for o in objs if o["kind"] == "Certificate" and o["spec"].get("isCA"))
    assert len(ca["spec"]["commonName"]) <= 64  # X.509's limit; cert-manager refuses more
    monitor = one(objs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert (monitor["interval"], monitor["scrapeTimeout"]) == ("1m30s", "90s")
