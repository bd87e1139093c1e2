"""The chart renders with Helm's engine, lints clean and yields valid Kubernetes objects."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from app.kube.auditor import EVENT_NAMESPACE
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

# Strict (unknown fields are errors) against the oldest release we claim and the newest
# kubernetes-validate ships.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
# Objects of CRDs we do not own: validated for shape below, not by kubernetes-validate.
CRD_GROUPS = {"cert-manager.io", "monitoring.coreos.com"}
# The only lint finding we accept: an icon would have to point at a URL we do not have.
ACCEPTED_LINT = {("Chart.yaml", "icon is recommended")}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kube_version", ["v1.30.0", "v1.37.0"])
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
