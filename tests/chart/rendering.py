"""Render charts/eip-guard with Helm's own engine (helm-python-sdk binds Helm's Go SDK).

``render`` returns the parsed objects of one ``helm template``-like run. Helm capabilities
(``--api-versions``, ``--kube-version``) are not exposed by helm-python-sdk 0.2.2's
``Chart.render``, but its C library takes them in the same JSON options as name and
namespace: ``render_raw`` passes them through (test_chart_render pins that they work).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import helm_python
import yaml
from helm_python import _native

from app.pki.certs import ca_bundle, make_ca

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "eip-guard"
RELEASE, NAMESPACE = "eip-guard", "eip-guard"
# external mode's caBundle: base64 of a PEM certificate, as the chart insists.
EXTERNAL_CA_BUNDLE = ca_bundle(make_ca("eip-guard-test-ca").cert_pem)
VAP_CAPABILITY = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"

Obj = dict[str, Any]
Rendered = dict[str, str]


def render_raw(
    chart: helm_python.Chart,
    values: Mapping[str, Any] | None = None,
    *,
    api_versions: Sequence[str] = (),
    kube_version: str | None = None,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> Rendered:
    """Template path -> rendered text, as `helm template` would print it."""
    if not api_versions and kube_version is None:
        return chart.render(dict(values or {}), name=name, namespace=namespace)
    opts: dict[str, Any] = {"name": name, "namespace": namespace}
    if api_versions:
        opts["api_versions"] = list(api_versions)
    if kube_version is not None:
        opts["kube_version"] = kube_version
    text = _native.call_string(
        "helm_render", chart._raw(), json.dumps(dict(values or {})), json.dumps(opts)
    )
    rendered: Rendered = json.loads(text)
    return rendered


def objects(rendered: Rendered) -> list[Obj]:
    """Every Kubernetes object in the rendered templates (NOTES.txt is not one)."""
    out: list[Obj] = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return out


def by_kind(objs: Sequence[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Sequence[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in by_kind(objs, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def is_hook(obj: Obj) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


RenderFn = Callable[..., list[Obj]]


# Every mode and toggle worth rendering: (values, api_versions).
SCENARIOS: dict[str, tuple[Obj, tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "defaults-vap-capable": ({}, (VAP_CAPABILITY,)),
    "cert-manager": ({"certificates": {"mode": "cert-manager"}}, ()),
    "cert-manager-issuer": (
        {
            "certificates": {
                "mode": "cert-manager",
                "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
            }
        },
        (),
    ),
    "external": (
        {
            "certificates": {
                "mode": "external",
                "external": {"secretName": "my-webhook-tls", "caBundle": EXTERNAL_CA_BUNDLE},
            }
        },
        (),
    ),
    # IPv6 first: `::` is what a YAML list item must not leave unquoted (a mapping, no string).
    "ipv6-listen": ({"webhook": {"listenAddress": "::"}}, ()),
    "vap-forced-on": ({"validatingAdmissionPolicy": {"enabled": True}}, ()),
    "vap-forced-off": ({"validatingAdmissionPolicy": {"enabled": False}}, (VAP_CAPABILITY,)),
    "service-monitor": (
        {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}},
        (),
    ),
    "network-policy": (
        {
            "networkPolicy": {
                "enabled": True,
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                "egress": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"]}},
            }
        },
        (),
    ),
    # Scraped through a NetworkPolicy: metricsFrom must let Prometheus in.
    "network-policy-scraped": (
        {
            "networkPolicy": {
                "enabled": True,
                "metricsFrom": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                        },
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                    }
                ],
            },
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        },
        (),
    ),
    # The node agent: report-only with the policy that keeps it to its own Node, and
    # speaking (root, NET_RAW), scraped on the node's network with its alerts.
    "agent-report-only": ({"agent": {"enabled": True}}, (VAP_CAPABILITY,)),
    "agent-speaker-scraped": (
        {
            "agent": {
                "enabled": True,
                "speaker": "on",
                "probeAddress": "",
                "podMonitor": {"enabled": True},
            },
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        },
        (),
    ),
    "single-replica": ({"replicaCount": 1}, ()),
    "no-spread-no-pdb": (
        {"topologySpread": {"enabled": False}, "podDisruptionBudget": {"enabled": False}},
        (),
    ),
    "policy-and-placement": (
        {
            "policy": {
                "rules": {"can-reach-pod-cidr": "warn", "address-overlap": "off"},
                "allowOverrides": False,
            },
            "inventory": {
                "kubeVip": {"namespaces": ["kube-system", "kube-vip"], "configMap": "lb/kubevip"}
            },
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "a", "operator": "Exists"}]}
                        ]
                    }
                }
            },
            "imagePullSecrets": [{"name": "regcred"}],
            "webhook": {
                "failurePolicy": "Ignore",
                "timeoutSeconds": 10,
                "extraArgs": ["--no-background-audit"],
            },
        },
        (),
    ),
}
