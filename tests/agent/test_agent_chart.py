"""The agent's templates (charts/eip-guard/templates/agent-*.yaml) on Helm's own engine.

Every `agent:` value is in values.yaml and the chart's closed schema, so these render the
chart exactly as a user's `helm install` would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from app.kube import agent_api
from tests.conftest import ROOT

CHART = ROOT / "charts" / "eip-guard"


def render(values: dict[str, Any], chart: Path = CHART) -> list[dict[str, Any]]:
    with helm_python.Chart.load(str(chart)) as loaded:
        out = loaded.render(values, name="eip-guard", namespace="eip-guard")
    return [
        doc
        for path, text in sorted(out.items())
        if "/agent-" in path
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def test_off_by_default() -> None:
    assert render({}) == []


def test_report_only_by_default_without_privileges() -> None:
    objs = render({"agent": {"enabled": True}})
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "Role", "Role",
                     "RoleBinding", "RoleBinding", "ServiceAccount"]  # fmt: skip
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    container = pod["containers"][0]
    assert container["args"][:3] == ["agent", "--live", "--speaker=off"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "POD_NAMESPACE": "metadata.namespace"}


def test_rbac_is_what_the_agent_calls() -> None:
    objs = render({"agent": {"enabled": True}})
    role = next(
        o for o in objs if o["kind"] == "Role" and not o["metadata"]["name"].endswith("-events")
    )
    lease_verbs = ["list", "create", "patch", "delete"]
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": lease_verbs}
    ]
    cluster = next(o for o in objs if o["kind"] == "ClusterRole")
    granted = {(g, r): set(rule["verbs"]) for rule in cluster["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}  # fmt: skip
    assert granted == {
        ("network.kubesphere.io", "eips"): {"list", "watch"},
        ("", "services"): {"list", "watch"},
        ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
        ("", "nodes"): {"list", "watch", "patch"},
    }
    # Events only where the agent writes them: a Role in that namespace, not cluster-wide.
    events = next(
        o for o in objs if o["kind"] == "Role" and o["metadata"]["name"].endswith("-events")
    )
    assert events["metadata"]["namespace"] == agent_api.EVENT_NAMESPACE
    assert events["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    assert all("*" not in json.dumps(rule) for rule in cluster["rules"] + role["rules"])


def test_speaker_on_adds_only_net_raw() -> None:
    values = {"agent": {"enabled": True, "speaker": "on", "leaseRenewSeconds": 10,
                        "leaseDurationSeconds": 30, "intervalSeconds": 5}}  # fmt: skip
    ds = next(o for o in render(values) if o["kind"] == "DaemonSet")
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["agent", "--live", "--speaker=on", "--lease-renew=10",
                                 "--lease-duration=30", "--interval=5", "--probe-port=9477",
                                 "--probe-address=127.0.0.1"]  # fmt: skip
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({"leaseRenewSeconds": 6, "leaseDurationSeconds": 6}, "must be under half"),
        ({"leaseRenewSeconds": 4, "leaseDurationSeconds": 6}, "must be under half"),
        ({"leaseRenewSeconds": 3, "leaseDurationSeconds": 6}, "must be under half"),
        ({"intervalSeconds": 0}, "intervalSeconds"),
        ({"probePort": 0}, "probePort"),
        ({"probePort": 65536}, "probePort"),
        # The node's ports under 1024 need CAP_NET_BIND_SERVICE: every agent would crash.
        ({"probePort": 80}, "agent.probePort \\(80\\) is under 1024"),
        ({"probePort": 1023, "speaker": "on"}, "agent.probePort \\(1023\\) is under 1024"),
        ({"podMonitor": {"enabled": True}}, 'agent.probeAddress "127.0.0.1" is the node\'s'),
        ({"podMonitor": {"enabled": True}, "probeAddress": "::1"}, "is the node's loopback"),
        (
            {"podMonitor": {"enabled": True, "scrapeTimeout": "1m"}, "probeAddress": ""},
            "scrapeTimeout \\(1m\\) exceeds its interval \\(30s\\)",
        ),
        ({"podMonitor": {"enabled": True, "every": "1m"}}, "every"),
    ],
)
def test_bad_agent_values_fail_the_render(agent: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render({"agent": {"enabled": True, **agent}})


def _container(values: dict[str, Any]) -> dict[str, Any]:
    ds = next(o for o in render(values) if o["kind"] == "DaemonSet")
    container: dict[str, Any] = ds["spec"]["template"]["spec"]["containers"][0]
    return container


def test_kubelet_probes_the_agent_on_the_loopback_by_default() -> None:
    container = _container({"agent": {"enabled": True}})
    assert container["args"][-2:] == ["--probe-port=9477", "--probe-address=127.0.0.1"]
    assert container["ports"] == [{"name": "http-probe", "containerPort": 9477, "protocol": "TCP"}]
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["httpGet"] == {"host": "127.0.0.1", "path": "/healthz", "port": "http-probe"}
    assert ready["httpGet"] == {"host": "127.0.0.1", "path": "/readyz", "port": "http-probe"}
    # Three misses of a 10 s probe: a loop stuck for 30 s (health.STUCK_AFTER_SECONDS) and
    # then 30 s more is restarted.
    assert (live["periodSeconds"], live["failureThreshold"]) == (10, 3)


@pytest.mark.parametrize("address", ["", "0.0.0.0", "::"])
def test_an_agent_on_every_address_is_probed_on_the_pods_ip(address: str) -> None:
    container = _container({"agent": {"enabled": True, "probeAddress": address, "probePort": 9555}})
    assert container["args"][-2:] == ["--probe-port=9555", f"--probe-address={address}"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-probe"}


def test_a_pod_monitor_scrapes_the_agents_when_asked() -> None:
    assert not [o for o in render({"agent": {"enabled": True}}) if o["kind"] == "PodMonitor"]
    monitor_values = {"enabled": True, "labels": {"release": "prom"}}
    values = {"agent": {"enabled": True, "probeAddress": "", "podMonitor": monitor_values}}
    [monitor] = [o for o in render(values) if o["kind"] == "PodMonitor"]
    ds = next(o for o in render(values) if o["kind"] == "DaemonSet")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        ds["spec"]["template"]["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/component"] == "agent"
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http-probe" and endpoint["path"] == "/metrics"
