"""The chart renders with Helm's engine, lints clean and yields valid Kubernetes objects."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from app.kube.auditor import EVENT_NAMESPACE
from app.sources.manifest import dns_subdomain
from tests.chart.rendering import (
    CHART,
    SCENARIOS,
    VAP_CAPABILITY,
    Obj,
    RenderFn,
    by_kind,
    objects,
    render_raw,
)

# Strict (unknown fields are errors) against the oldest release Chart.yaml's kubeVersion
# claims, the first that serves ValidatingAdmissionPolicy v1, and the newest
# kubernetes-validate ships.
KUBE_VERSIONS = ("1.27.0", "1.30.0", kubernetes_validate.latest_version())
# Rendered only where the API server serves them (validatingAdmissionPolicy.enabled: auto,
# 1.30+): the older releases have no schema for them.
VAP_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
# Objects of CRDs we do not own: validated for shape below, not by kubernetes-validate.
CRD_GROUPS = {"cert-manager.io", "monitoring.coreos.com"}
# The only lint finding we accept: an icon would have to point at a URL we do not have.
ACCEPTED_LINT = {("Chart.yaml", "icon is recommended")}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kube_version", [f"v{v}" for v in KUBE_VERSIONS])
def test_helm_lint_is_clean(scenario: str, kube_version: str) -> None:
    values, _ = SCENARIOS[scenario]
    report = helm_python.lint(CHART, values, strict=True, kube_version=kube_version)
    findings = {(m["path"], m["error"]) for m in report["messages"]} - ACCEPTED_LINT
    assert report["errors"] == [] and findings == set(), report


def test_helm_lint_reports_a_broken_value() -> None:
    report = helm_python.lint(CHART, {"replicaCount": "two"}, strict=True)
    assert any("replicaCount" in m["error"] for m in report["messages"]), report


def _validate(obj: Obj, version: str) -> None:
    group = obj["apiVersion"].rpartition("/")[0]
    if group in CRD_GROUPS:
        return
    if obj["kind"] in VAP_KINDS and tuple(map(int, version.split(".")[:2])) < (1, 30):
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} vs {version}: {where}: {exc.message}")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_builtin_object_is_valid(render: RenderFn, scenario: str, version: str) -> None:
    values, api_versions = SCENARIOS[scenario]
    objs = render(values, api_versions=api_versions)
    assert objs
    for obj in objs:
        _validate(obj, version)


def test_the_oldest_version_validated_is_the_oldest_the_chart_claims() -> None:
    claimed = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    assert claimed == f">={KUBE_VERSIONS[0]}-0"


def test_validation_catches_a_bad_object() -> None:
    # Guards the test above: strict validation must reject an unknown field.
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"nope": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendering_twice_is_identical(chart: helm_python.Chart, scenario: str) -> None:
    values, api_versions = SCENARIOS[scenario]
    first = render_raw(chart, values, api_versions=api_versions)
    second = render_raw(chart, values, api_versions=api_versions)
    assert first == second


_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_UNSTABLE = re.compile(
    r"\b(genCA|genCAWithKey|genSelfSignedCert\w*|genSignedCert\w*|genPrivateKey|rand\w+"
    r"|uuidv4|now|unixEpoch|date\w*|lookup)\b"
)


def test_no_template_draws_random_or_live_material() -> None:
    # genCA and friends would make a new CA on every `helm upgrade` and break admission;
    # lookup would make the output depend on the cluster.
    for path in sorted((CHART / "templates").rglob("*")):
        if path.is_file():
            actions = " ".join(_ACTION.findall(_COMMENT.sub("", path.read_text())))
            used = _UNSTABLE.findall(actions)
            assert not used, f"{path.name} uses {used}"
    assert _UNSTABLE.findall(" ".join(_ACTION.findall('{{ genCA "x" 365 }}'))) == ["genCA"]


def test_capabilities_reach_the_engine(chart: helm_python.Chart) -> None:
    # render_raw passes --api-versions/--kube-version through the C library's options.
    without = objects(render_raw(chart, {}, kube_version="v1.30.0"))
    with_vap = objects(render_raw(chart, {}, api_versions=[VAP_CAPABILITY]))
    assert not by_kind(without, "ValidatingAdmissionPolicy")
    assert len(by_kind(with_vap, "ValidatingAdmissionPolicy")) == 1


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_notes_tell_how_to_check(chart: helm_python.Chart, scenario: str) -> None:
    values, api_versions = SCENARIOS[scenario]
    notes = render_raw(chart, values, api_versions=api_versions)["eip-guard/templates/NOTES.txt"]
    assert "helm test eip-guard -n eip-guard" in notes
    assert "kubectl create --dry-run=server" in notes


def test_names_follow_the_release(render: RenderFn) -> None:
    objs: list[dict[str, Any]] = render({}, name="guard", namespace="lb")
    names = {o["metadata"]["name"] for o in objs}
    assert "guard-eip-guard" in names
    # The release's, kube-vip's, and where the auditor writes Events (a Role to write them).
    places = ("lb", "kube-system", EVENT_NAMESPACE)
    assert all(o["metadata"].get("namespace", "lb") in places for o in objs)


def _notes(chart: helm_python.Chart, values: dict[str, Any]) -> str:
    return render_raw(chart, values)["eip-guard/templates/NOTES.txt"]


def test_notes_tell_what_the_agent_needs(chart: helm_python.Chart) -> None:
    # hostNetwork: Pod Security's baseline and restricted levels refuse the agents, and the
    # DaemonSet then sits at FailedCreate with no pod to look at.
    assert "agent" not in _notes(chart, {})
    notes = _notes(chart, {"agent": {"enabled": True}})
    assert "kubectl -n eip-guard rollout status daemonset/eip-guard-agent" in notes
    assert "pod-security.kubernetes.io/enforce=privileged" in notes
    assert "report-only" in notes
    assert "OpenELB's layer2 speaker" in _notes(
        chart, {"agent": {"enabled": True, "speaker": "on"}}
    )


def test_notes_say_what_a_deleted_webhook_configuration_lacks_when_put_back(
    chart: helm_python.Chart,
) -> None:
    # self mode: `helm upgrade` makes it again without a caBundle, which the replicas fill
    # only at their next check (every certificates.self.checkIntervalSeconds).
    notes = _notes(chart, {})
    assert "kubectl delete validatingwebhookconfiguration eip-guard" in notes
    assert "kubectl -n eip-guard rollout restart deployment/eip-guard" in notes
    external = _notes(chart, {"certificates": {"mode": "cert-manager"}})
    assert "rollout restart" not in external


def test_a_new_chart_version_alone_restarts_no_pod(tmp_path: Path) -> None:
    # A pod template that names the chart's version (a label, or a checksum of an object
    # that carries it) changes with every chart release: each `helm upgrade` then restarts
    # every agent (with agent.speaker on, every layer2 IP moves away and back, node by node)
    # and every webhook replica, though neither the image nor the policy changed.
    bumped = tmp_path / "eip-guard"
    shutil.copytree(CHART, bumped)
    meta = (bumped / "Chart.yaml").read_text()
    (bumped / "Chart.yaml").write_text(meta.replace("\nversion: ", "\nversion: 9.9.9-", 1))
    values = {"agent": {"enabled": True}}

    def templates(chart_dir: Path) -> dict[str, Any]:
        with helm_python.Chart.load(chart_dir) as chart:
            objs = objects(render_raw(chart, values))
        workloads = [o for o in objs if o["kind"] in ("Deployment", "DaemonSet")]
        assert len(workloads) == 2
        return {o["kind"]: o["spec"]["template"] for o in workloads}

    old, new = templates(CHART), templates(bumped)
    assert [kind for kind in sorted(old) if old[kind] != new[kind]] == []


# Helm takes release names of dotted DNS labels (at most 53 characters); the API server
# holds a Service's name to a DNS-1035 label, other names here to DNS subdomains.
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


@pytest.mark.parametrize("release", ["my.guard", "guard-" + "a" * 47, "eip-guard.prod"])
def test_names_are_valid_for_any_release_name(render: RenderFn, release: str) -> None:
    values = {"agent": {"enabled": True, "podMonitor": {"enabled": True}, "probeAddress": ""}}
    for obj in render(values, name=release):
        name, kind = obj["metadata"]["name"], obj["kind"]
        if kind == "Service":
            assert len(name) <= 63 and _DNS_1035.fullmatch(name), f"Service {name!r}"
        else:
            assert dns_subdomain(name), f"{kind} {name!r}"
        for key, value in obj["metadata"].get("labels", {}).items():
            assert len(value) <= 63 and _LABEL_VALUE.fullmatch(value), f"{kind} {key}={value!r}"


def test_a_release_name_starting_with_a_digit_is_refused_with_a_way_out(
    chart: helm_python.Chart,
) -> None:
    with pytest.raises(Exception, match=r"starts with a digit.*set fullnameOverride"):
        render_raw(chart, {}, name="1guard")
    rendered = objects(render_raw(chart, {"fullnameOverride": "guard"}, name="1guard"))
    assert {o["metadata"]["name"] for o in by_kind(rendered, "Service")} == {"guard"}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"image": {"repository": "ghcr.io/x/eip-guard:1.0"}}, "image.repository"),
        ({"image": {"repository": "ghcr.io/x/eip-guard@sha256:" + "0" * 64}}, "image.repository"),
        ({"tests": {"image": {"repository": "alpine/k8s:1.30.0"}}}, "tests.image.repository"),
    ],
)
def test_a_repository_with_its_tag_is_refused(
    chart: helm_python.Chart, values: dict[str, Any], field: str
) -> None:
    # Rendered, it would be "...:1.0:<appVersion>": pods stuck in InvalidImageName.
    with pytest.raises(Exception, match=rf"{re.escape(field)} .* holds a tag or digest"):
        render_raw(chart, values)


def test_a_registry_port_is_no_tag(render: RenderFn) -> None:
    objs = render({"image": {"repository": "registry.local:5000/eip-guard", "tag": "1.2.3"}})
    (deployment,) = by_kind(objs, "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local:5000/eip-guard:1.2.3"


def test_notes_say_the_alerts_need_a_scrape(chart: helm_python.Chart) -> None:
    # EipGuardNotReady is absent(...) of a series only a scrape makes: with no
    # ServiceMonitor it fires after 5 minutes on a healthy install.
    alone = _notes(chart, {"metrics": {"prometheusRule": {"enabled": True}}})
    assert "metrics.serviceMonitor is off" in alone and 'namespace="eip-guard"' in alone
    both = {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}
    assert "serviceMonitor is off" not in _notes(chart, {"metrics": both})
    assert "serviceMonitor is off" not in _notes(chart, {})
