"""Hardened pods and least-privilege RBAC, in every mode the chart renders."""

from __future__ import annotations

from typing import Any

import pytest

from app.kube import agent_api, auditor
from app.kube.resources import rbac_rules
from tests.chart.rendering import NAMESPACE, SCENARIOS, Obj, RenderFn, by_kind, is_hook, one
from tests.kmock_harness import rbac_grants

RBAC_KINDS = ("Role", "ClusterRole")


def _pod_specs(objs: list[Obj]) -> list[tuple[str, dict[str, Any]]]:
    specs = [(f"Pod/{o['metadata']['name']}", o["spec"]) for o in by_kind(objs, "Pod")]
    for kind in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
        specs += [
            (f"{kind}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
            for o in by_kind(objs, kind)
        ]
    return specs


# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), the
# checks the chart's pods could trip: baseline's host namespaces, privileged, capabilities
# and host paths; restricted's volumes, privilege escalation, non-root, seccomp and
# capabilities.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                 "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                 "SYS_CHROOT"}  # fmt: skip
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}  # fmt: skip


def _pss_level(spec: dict[str, Any]) -> str:
    """The strictest Pod Security Standard level a pod spec meets."""
    pod_sc = spec.get("securityContext") or {}
    containers = spec["containers"] + spec.get("initContainers", [])
    scs = [c.get("securityContext") or {} for c in containers]
    added = {cap for sc in scs for cap in (sc.get("capabilities") or {}).get("add", [])}
    host_ports = [p for c in containers for p in c.get("ports", []) if p.get("hostPort")]
    if (
        any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        or any(sc.get("privileged") for sc in scs)
        or not added <= BASELINE_CAPS
        or host_ports
        or any("hostPath" in v for v in spec.get("volumes", []))
    ):
        return "privileged"
    restricted = (
        all(set(v) - {"name"} <= RESTRICTED_VOLUMES for v in spec.get("volumes", []))
        and all(sc.get("allowPrivilegeEscalation") is False for sc in scs)
        and all(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True for sc in scs)
        and all(sc.get("runAsUser", pod_sc.get("runAsUser")) != 0 for sc in scs)
        and all(
            (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            in ("RuntimeDefault", "Localhost")
            for sc in scs
        )
        and all("ALL" in (sc.get("capabilities") or {}).get("drop", []) for sc in scs)
        and added <= {"NET_BIND_SERVICE"}
    )
    return "restricted" if restricted else "baseline"


def test_the_pod_security_check_tells_the_levels_apart(render: RenderFn) -> None:
    # Guards the test below: the webhook's pod is restricted, and each loosening drops it.
    spec = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert _pss_level(spec) == "restricted"
    container = spec["containers"][0]
    container["securityContext"]["runAsNonRoot"] = False
    spec["securityContext"]["runAsNonRoot"] = False
    assert _pss_level(spec) == "baseline"
    container["securityContext"]["capabilities"]["add"] = ["NET_RAW"]
    assert _pss_level(spec) == "privileged"
    del container["securityContext"]["capabilities"]["add"]
    spec["hostNetwork"] = True
    assert _pss_level(spec) == "privileged"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_pod_is_hardened(render: RenderFn, scenario: str) -> None:
    values, api_versions = SCENARIOS[scenario]
    agent = values.get("agent") or {}
    speaks = agent.get("speaker") in ("on", True)
    specs = _pod_specs(render(values, api_versions=api_versions))
    # The webhook Deployment, the helm test Pod, and the agent's DaemonSet when it is on.
    assert len(specs) == (3 if agent.get("enabled") else 2)
    for where, spec in specs:
        is_agent = where == "DaemonSet/eip-guard-agent"
        # The host network for the agent alone (ARP/NDP on the node's NICs): README, Pod
        # Security: the webhook's pods meet restricted, the agent needs privileged.
        assert spec.get("hostNetwork", False) is is_agent, where
        assert not spec.get("hostPID") and not spec.get("hostIPC"), where
        assert _pss_level(spec) == ("privileged" if is_agent else "restricted"), where
        pod_sc = spec["securityContext"]
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("seccompProfile", pod_sc["seccompProfile"]) == {"type": "RuntimeDefault"}
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
            if is_agent and speaks:
                # Raw packet sockets: CAP_NET_RAW, effective for root only; nothing else
                # (multicast joins, rtnetlink and the probe port need no capability).
                assert sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False, where
                assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}, where
                continue
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) != 0, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
            # The webhook's /tmp holds its private key's scratch copy for a moment.
            if where.startswith("Deployment/") and "emptyDir" in volume:
                assert volume["emptyDir"].get("medium") == "Memory", f"{where}: {volume['name']}"


def test_webhook_runs_two_spread_replicas_with_a_budget(render: RenderFn) -> None:
    objs = render()
    deploy = one(objs, "Deployment")
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spread[0]["labelSelector"]["matchLabels"] == selector
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == selector
    # One replica: a PDB would block every node drain, so there is none.
    assert not by_kind(render({"replicaCount": 1}), "PodDisruptionBudget")


@pytest.mark.parametrize(("replicas", "min_available"), [(2, 1), (3, 2), (4, "50%")])
def test_replicas_that_are_not_ready_never_block_a_drain(
    render: RenderFn, replicas: int, min_available: int | str
) -> None:
    # Running but never ready (no Eip CRD yet, RBAC missing: /readyz waits for the first
    # list): under the default IfHealthyBudget no eviction is allowed, so every drain waits
    # for ever. policy/v1, beta and on by default from 1.27 (the chart's kubeVersion), GA 1.31.
    values = {"replicaCount": replicas, "podDisruptionBudget": {"minAvailable": min_available}}
    pdb = one(render(values), "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_probes_use_the_plain_http_port(render: RenderFn) -> None:
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": 8443, "http-probe": 8080}
    assert "--probe-port=8080" in container["args"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get == {"path": path, "port": "http-probe"}  # no scheme: plain HTTP


def test_placement_values_reach_the_pod(render: RenderFn) -> None:
    values, _ = SCENARIOS["policy-and-placement"]
    spec = one(render(values), "Deployment")["spec"]["template"]["spec"]
    for key in ("priorityClassName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert spec[key] == values[key], key


def _rules(objs: list[Obj], *, hooks: bool = False) -> list[tuple[Obj, dict[str, Any]]]:
    return [
        (o, rule)
        for kind in RBAC_KINDS
        for o in by_kind(objs, kind)
        if is_hook(o) == hooks
        for rule in o["rules"]
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_has_no_wildcards(render: RenderFn, scenario: str) -> None:
    values, api_versions = SCENARIOS[scenario]
    objs = render(values, api_versions=api_versions)
    for role, rule in _rules(objs) + _rules(objs, hooks=True):
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(key, [])), (role["metadata"], rule)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_secret_access_is_only_its_own(render: RenderFn, scenario: str) -> None:
    values, api_versions = SCENARIOS[scenario]
    objs = render(values, api_versions=api_versions)
    grants = [(o, r) for o, r in _rules(objs, hooks=False) + _rules(objs, hooks=True)]
    secret_grants = [(o, r) for o, r in grants if "secrets" in r["resources"]]
    if (values.get("certificates") or {}).get("mode", "self") != "self":
        assert secret_grants == []  # cert-manager and external: the pod mounts the Secret
        return
    (role, rule), *others = secret_grants
    assert others == []
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == NAMESPACE
    secret = one(objs, "Secret")
    assert rule["resourceNames"] == [secret["metadata"]["name"]]
    assert sorted(rule["verbs"]) == ["get", "patch"]
    assert "data" not in secret and "stringData" not in secret  # the chart writes no keys


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_webhook_configuration_access_is_only_its_own(render: RenderFn, scenario: str) -> None:
    values, api_versions = SCENARIOS[scenario]
    objs = render(values, api_versions=api_versions)
    vwc = one(objs, "ValidatingWebhookConfiguration")
    grants = [
        r
        for _, r in _rules(objs)
        if r["apiGroups"] == ["admissionregistration.k8s.io"] or "admissionregistration" in str(r)
    ]
    if (values.get("certificates") or {}).get("mode", "self") != "self":
        assert grants == []
        return
    assert grants == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": [vwc["metadata"]["name"]],
            "verbs": ["get", "patch"],
        }
    ]


def test_inventory_reads_are_read_only(render: RenderFn) -> None:
    objs = render()
    read = {"list", "watch"}
    for role, rule in _rules(objs):
        if "events" in rule["resources"]:
            assert rule["resources"] == ["events"] and set(rule["verbs"]) == {"create", "patch"}
        elif rule.get("resourceNames"):
            continue  # its own Secret and webhook configuration, checked above
        else:
            assert set(rule["verbs"]) == read, (role["metadata"]["name"], rule)


def test_kube_vip_reads_are_bound_per_namespace(render: RenderFn) -> None:
    values, _ = SCENARIOS["policy-and-placement"]
    objs = render(values)
    kube_vip_role = one(objs, "ClusterRole", "eip-guard-kube-vip")
    assert {r for rule in kube_vip_role["rules"] for r in rule["resources"]} == {
        "pods",
        "configmaps",
        "daemonsets",
        "deployments",
    }
    bound = {
        b["metadata"]["namespace"]
        for b in by_kind(objs, "RoleBinding")
        if b["roleRef"]["name"] == "eip-guard-kube-vip"
    }
    assert bound == {"kube-system", "kube-vip"}
    cluster_bound = {b["roleRef"]["name"] for b in by_kind(objs, "ClusterRoleBinding")}
    assert "eip-guard-kube-vip" not in cluster_bound  # never cluster-wide
    # The provider's ConfigMap lives in "lb", where kube-vip does not run: ConfigMaps only.
    role = one(objs, "Role", "eip-guard-kube-vip-configmap")
    assert role["metadata"]["namespace"] == "lb"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                              "verbs": ["list", "watch"]}]  # fmt: skip
    binding = one(objs, "RoleBinding", "eip-guard-kube-vip-configmap")
    assert binding["metadata"]["namespace"] == "lb"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "eip-guard-kube-vip-configmap"}  # fmt: skip
    # Where it lives with kube-vip (the default), the kube-vip binding covers it.
    assert not [o for o in render() if o["metadata"]["name"] == "eip-guard-kube-vip-configmap"]


def test_only_the_test_hook_may_create_eips(render: RenderFn) -> None:
    objs = render()
    for role, rule in _rules(objs):
        assert not ("eips" in rule["resources"] and "create" in rule["verbs"]), role["metadata"]
    hook_rules = _rules(objs, hooks=True)
    assert [r for _, r in hook_rules] == [
        {"apiGroups": ["network.kubesphere.io"], "resources": ["eips"], "verbs": ["create"]}
    ]
    for obj in objs:
        if obj["metadata"]["name"].endswith("-test"):
            assert is_hook(obj), f"{obj['kind']} {obj['metadata']['name']} outlives the test"


def test_bindings_name_the_chart_service_account(render: RenderFn) -> None:
    objs = render()
    sa = one(objs, "ServiceAccount", "eip-guard")
    assert sa["automountServiceAccountToken"] is False  # only the webhook pod mounts it
    for binding in by_kind(objs, "RoleBinding") + by_kind(objs, "ClusterRoleBinding"):
        expected = "eip-guard-test" if is_hook(binding) else "eip-guard"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": expected, "namespace": NAMESPACE}
        ]


def test_the_chart_grants_exactly_what_the_live_inventory_needs(render: RenderFn) -> None:
    objs = render()
    granted = rbac_grants(one(objs, "ClusterRole", "eip-guard")["rules"])
    granted |= rbac_grants(one(objs, "ClusterRole", "eip-guard-kube-vip")["rules"])
    granted |= rbac_grants(one(objs, "Role", "eip-guard-events")["rules"])
    needed = rbac_grants(rbac_rules())
    # The same (group, resource, verb) set; the kube-vip part is bound per namespace only,
    # Events in the one namespace they are written to.
    assert granted == needed


def _bound_to(objs: list[Obj], role: Obj) -> list[str]:
    """The release namespace's service accounts a Role is bound to."""
    name = role["metadata"]["name"]
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    return [
        subject["name"]
        for b in by_kind(objs, "RoleBinding")
        if b["roleRef"] == ref and b["metadata"]["namespace"] == role["metadata"]["namespace"]
        for subject in b["subjects"]
        if subject["namespace"] == NAMESPACE
    ]


def test_events_are_granted_only_where_the_code_writes_them(render: RenderFn) -> None:
    # The auditor and the agent write Events in one namespace only (EVENT_NAMESPACE): a
    # cluster-wide grant would let a stolen token write Events into every namespace.
    objs = render({"agent": {"enabled": True}})
    event_roles = [o for o, rule in _rules(objs) if "events" in rule["resources"]]
    assert [o["kind"] for o in event_roles] == ["Role", "Role"]
    writers = {
        "eip-guard": (auditor.EVENT_NAMESPACE, ["create", "patch"]),
        "eip-guard-agent": (agent_api.EVENT_NAMESPACE, ["create"]),
    }
    for role in event_roles:
        (account,) = _bound_to(objs, role)
        namespace, verbs = writers.pop(account)
        assert role["metadata"]["namespace"] == namespace
        assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": verbs}]
    assert writers == {}


def _rbac_keys(objs: list[Obj]) -> list[tuple[str, str, str]]:
    kinds = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    return [
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        for o in objs
        if o["kind"] in kinds
    ]


def test_rbac_names_never_collide(render: RenderFn) -> None:
    # Two releases, each installed where its Events go, with kube-vip and its ConfigMap
    # there too: every Role and binding is its own.
    everywhere = {
        "agent": {"enabled": True},
        "inventory": {"kubeVip": {"namespaces": ["default"], "configMap": "default/kubevip"}},
    }
    first = _rbac_keys(render(everywhere, name="guard-a", namespace="default"))
    second = _rbac_keys(render(everywhere, name="guard-b", namespace="default"))
    assert len(set(first)) == len(first) and len(set(second)) == len(second)
    assert not set(first) & set(second)
