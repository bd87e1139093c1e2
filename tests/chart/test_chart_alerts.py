"""The chart's PrometheusRule, judged by Prometheus's own engine: promtool (Debian's
prometheus package, installed by `make test` as root) checks the rules and runs them over
series made here, and the metrics and label values they name are held to what eip-guard
really exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from app.agent.health import Status
from app.agent.probes import StatusMetrics
from app.cli.serve_tls import Tls, register_metrics
from app.kube.metrics import AuditMetrics, KubeMetrics
from app.pki.hot_tls import HotContext
from app.webhook.metrics import VERDICTS, Metrics
from tests.chart.rendering import NAMESPACE, SCENARIOS, Obj, RenderFn, by_kind, one

ALERTS = (
    "EipGuardNotReady",
    "EipGuardReplicaNotReady",
    "EipGuardCertificateExpiresSoon",
    "EipGuardCertificateNotInStep",
    "EipGuardSourceErrors",
    "EipGuardSourceStale",
    "EipGuardInventoryRebuildFailing",
    "EipGuardChecksIncomplete",
    "EipGuardEipsViolateRules",
    "EipGuardReviewsErrored",
)
ON = {"metrics": {"prometheusRule": {"enabled": True, "alertLabels": {"team": "network"}}}}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make test` installs Debian's prometheus package as root")
    return found


def rule_of(objs: list[Obj]) -> Obj:
    return one(objs, "PrometheusRule")


def rules(objs: list[Obj]) -> dict[str, Obj]:
    [group] = rule_of(objs)["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def write_rules(objs: list[Obj], where: Path) -> Path:
    path = where / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_of(objs)["spec"]["groups"]}))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_off_by_default_and_on_in_the_monitoring_scenario(render: RenderFn) -> None:
    assert not by_kind(render(), "PrometheusRule")
    values, _ = SCENARIOS["service-monitor"]
    assert rule_of(render(values))["metadata"]["namespace"] == NAMESPACE


def test_promtool_accepts_the_rules(render: RenderFn, tmp_path: Path) -> None:
    checked = run("check", "rules", str(write_rules(render(ON), tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_promtool_refuses_a_broken_rule(render: RenderFn, tmp_path: Path) -> None:
    # Guards the test above: a broken expression must fail the check.
    objs = render(ON)
    rule_of(objs)["spec"]["groups"][0]["rules"][0]["expr"] = "absent(eip_guard_ready{"
    checked = run("check", "rules", str(write_rules(objs, tmp_path)))
    assert checked.returncode != 0


def test_every_rule_has_the_shape_the_operator_takes(render: RenderFn) -> None:
    for name, rule in rules(render(ON)).items():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert isinstance(rule["expr"], str) and f'namespace="{NAMESPACE}"' in rule["expr"], name
        assert all(isinstance(v, str) for v in rule["labels"].values()), name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert all(isinstance(v, str) and v for v in rule["annotations"].values()), name
        assert rule["labels"]["team"] == "network" and rule["labels"]["severity"], name


def exposed() -> str:
    """Every eip-guard series a live `serve` exposes, in one registry as serve_run builds it."""
    registry = CollectorRegistry(auto_describe=True)
    Metrics(registry)
    KubeMetrics(registry).source("nodes")  # a source's series exist once it is started
    AuditMetrics(registry)
    register_metrics(registry, Tls(HotContext()))
    return generate_latest(registry).decode()


def test_the_rules_name_only_metrics_and_labels_eip_guard_exposes(render: RenderFn) -> None:
    text = exposed()
    families = set(re.findall(r"^# TYPE (\w+) (\w+)", text, re.M))
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    for name, rule in rules(render(ON)).items():
        used = set(re.findall(r"\beip_guard_\w+", rule["expr"]))
        assert used, name
        for metric in used:
            assert metric in samples, f"{name} uses {metric}, which eip-guard does not expose"
        # Label values the rules match on: each is one the metric takes.
        for label, value in re.findall(r'(how|kind|verdict)="([^"]+)"', rule["expr"]):
            if label == "verdict":
                assert value in VERDICTS, name
            else:
                assert f'{label}="{value}"' in text, f"{name}: no series with {label}={value}"
    assert ("eip_guard_ready", "gauge") in families


def promtool_test(objs: list[Obj], tests: list[dict[str, Any]], where: Path) -> None:
    """Run promtool's rule tests ``tests`` over the chart's rules; fail with its output."""
    write_rules(objs, where)
    spec = where / "tests.yaml"
    spec.write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    tested = run("test", "rules", str(spec))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def expand(text: str, value: str = "", **labels: str) -> str:
    """An annotation as Prometheus renders it for these labels and value (the templates the
    rules use, nothing else: an unknown one stays and fails the comparison)."""
    text = text.replace("{{ $value | humanizeDuration }}", value).replace("{{ $value }}", value)
    for label, given in labels.items():
        text = text.replace(f"{{{{ $labels.{label} }}}}", given)
    return text


def alert(of: Obj, *, value: str = "", severity: str = "warning", **labels: str) -> dict[str, Any]:
    """What promtool must find firing for the rule ``of``."""
    annotations = {k: expand(v, value, **labels) for k, v in of["annotations"].items()}
    return {
        "exp_labels": {"severity": severity, "team": "network", **labels},
        "exp_annotations": annotations,
    }


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in {"namespace": NAMESPACE, **labels}.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


def case(inputs: list[dict[str, str]], *checks: tuple[str, str, list[Any]]) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": expected}
            for at, name, expected in checks
        ],
    }


def test_each_alert_fires_when_it_should_and_only_then(render: RenderFn, tmp_path: Path) -> None:
    objs = render(ON)
    r = rules(objs)
    ready, expiry = "eip_guard_ready", "eip_guard_tls_certificate_expiry_timestamp_seconds"
    synced = "eip_guard_source_last_sync_timestamp_seconds"
    failures = "eip_guard_inventory_rebuild_failures_total"
    errors = "eip_guard_source_errors_total"
    in_step = "eip_guard_tls_certificate_in_step"
    elsewhere = {"namespace": "other"}
    down = alert(r["EipGuardNotReady"], severity="critical", namespace=NAMESPACE)
    tests = [
        # No replica ready (one not ready, none scraped, or only another release's): critical
        # with failurePolicy Fail, after 5 minutes.
        case(
            [series(ready, "0x30", pod="a")],
            ("4m", "EipGuardNotReady", []),
            ("6m", "EipGuardNotReady", [down]),
        ),
        case([], ("6m", "EipGuardNotReady", [down])),
        case(
            [{"series": f'{ready}{{namespace="other", pod="x"}}', "values": "1x30"}],
            ("6m", "EipGuardNotReady", [down]),
        ),
        # One of two not ready: only that replica's alert, after 15 minutes.
        case(
            [series(ready, "0x30", pod="a"), series(ready, "1x30", pod="b")],
            ("10m", "EipGuardNotReady", []),
            ("14m", "EipGuardReplicaNotReady", []),
            (
                "16m",
                "EipGuardReplicaNotReady",
                [alert(r["EipGuardReplicaNotReady"], pod="a", namespace=NAMESPACE)],
            ),
        ),
        # Ten days left (the series is the expiry time; promtool's clock starts at 0): fires
        # after 10 minutes; 30 days left, or no certificate yet (0), does not.
        case(
            [
                series(expiry, f"{10 * 86400 + 15 * 60}x30", pod="a"),
                series(expiry, f"{30 * 86400}x30", pod="b"),
                series(expiry, "0x30", pod="c"),
            ],
            ("9m", "EipGuardCertificateExpiresSoon", []),
            (
                "15m",
                "EipGuardCertificateExpiresSoon",
                [
                    alert(
                        r["EipGuardCertificateExpiresSoon"],
                        value="10d 0h 0m 0s",
                        pod="a",
                        namespace=NAMESPACE,
                    )
                ],
            ),
        ),
        # Expired already: still this alert (the replica is not ready either).
        case(
            [series(expiry, "60x30", pod="a")],
            (
                "15m",
                "EipGuardCertificateExpiresSoon",
                [
                    alert(
                        r["EipGuardCertificateExpiresSoon"],
                        value="-14m 0s",
                        pod="a",
                        namespace=NAMESPACE,
                    )
                ],
            ),
        ),
        # Nodes last in sync at 0; Services kept in sync every minute: only nodes, once 15
        # minutes stale for 5 minutes.
        case(
            [
                series(synced, "0x40", pod="a", source="nodes"),
                series(synced, "0+60x40", pod="a", source="services"),
            ],
            ("19m", "EipGuardSourceStale", []),
            (
                "21m",
                "EipGuardSourceStale",
                [
                    alert(
                        r["EipGuardSourceStale"],
                        value="21m 0s",
                        pod="a",
                        source="nodes",
                        namespace=NAMESPACE,
                    )
                ],
            ),
        ),
        # Files that cannot be loaded for 20 minutes on one replica, 5 on another.
        case(
            [
                series(in_step, "0x30", pod="a"),
                series(in_step, "0x5 1x30", pod="b"),
                series(in_step, "1x30", pod="c"),
            ],
            ("14m", "EipGuardCertificateNotInStep", []),
            (
                "16m",
                "EipGuardCertificateNotInStep",
                [alert(r["EipGuardCertificateNotInStep"], pod="a", namespace=NAMESPACE)],
            ),
        ),
        # The API server hangs for nodes from 0: an error once a read times out (5.5 min),
        # no sync since. Services fail now and then but keep syncing (watches that end and
        # start again): only nodes, once 6 minutes out of sync, for 5 minutes.
        case(
            [
                series(errors, "0x4 1x5 2x5 3x5 4x5 5x5 6x5 7x5", pod="a", source="nodes"),
                series(synced, "0x40", pod="a", source="nodes"),
                series(errors, "0+0.25x40", pod="a", source="services"),
                series(synced, "0+60x40", pod="a", source="services"),
            ],
            ("10m", "EipGuardSourceErrors", []),
            (
                "12m",
                "EipGuardSourceErrors",
                [alert(r["EipGuardSourceErrors"], pod="a", source="nodes", namespace=NAMESPACE)],
            ),
            (
                "30m",
                "EipGuardSourceErrors",
                [alert(r["EipGuardSourceErrors"], pod="a", source="nodes", namespace=NAMESPACE)],
            ),
        ),
        # A whole rebuild failed at 5m: fires at once, gone 15 minutes later; failed
        # patches (then assembled whole) do not fire.
        case(
            [
                series(failures, "0x4 1x30", pod="a", how="whole"),
                series(failures, "0+1x30", pod="a", how="changes"),
            ],
            ("3m", "EipGuardInventoryRebuildFailing", []),
            (
                "6m",
                "EipGuardInventoryRebuildFailing",
                [
                    alert(
                        r["EipGuardInventoryRebuildFailing"],
                        pod="a",
                        how="whole",
                        namespace=NAMESPACE,
                    )
                ],
            ),
            ("25m", "EipGuardInventoryRebuildFailing", []),
        ),
        case(
            [
                series("eip_guard_inventory_problems", "2x30", pod="a", kind="not_checked"),
                series("eip_guard_inventory_problems", "7x30", pod="a", kind="ignored"),
            ],
            ("14m", "EipGuardChecksIncomplete", []),
            (
                "16m",
                "EipGuardChecksIncomplete",
                [
                    alert(
                        r["EipGuardChecksIncomplete"],
                        value="2",
                        pod="a",
                        kind="not_checked",
                        namespace=NAMESPACE,
                    )
                ],
            ),
        ),
        # Two replicas audit the same Eips: one alert per rule, with the count once.
        case(
            [
                series("eip_guard_audit_violations", "3x30", pod="a", rule="can-reach-node-ip"),
                series("eip_guard_audit_violations", "3x30", pod="b", rule="can-reach-node-ip"),
                series("eip_guard_audit_violations", "0x30", pod="a", rule="address-overlap"),
                series("eip_guard_audit_violations", "5x30", **elsewhere, rule="address-overlap"),
            ],
            ("9m", "EipGuardEipsViolateRules", []),
            (
                "11m",
                "EipGuardEipsViolateRules",
                [
                    alert(
                        r["EipGuardEipsViolateRules"],
                        value="3",
                        rule="can-reach-node-ip",
                        namespace=NAMESPACE,
                    )
                ],
            ),
        ),
        case(
            [
                series("eip_guard_admission_reviews_total", "0x4 2x30", pod="a", verdict="errored"),
                series("eip_guard_admission_reviews_total", "0+9x30", pod="a", verdict="allowed"),
            ],
            ("3m", "EipGuardReviewsErrored", []),
            (
                "6m",
                "EipGuardReviewsErrored",
                [alert(r["EipGuardReviewsErrored"], namespace=NAMESPACE)],
            ),
            ("20m", "EipGuardReviewsErrored", []),
        ),
    ]
    covered = {check["alertname"] for test in tests for check in test["alert_rule_test"]}
    assert covered == set(ALERTS)
    promtool_test(objs, tests, tmp_path)


def test_with_failure_policy_ignore_no_ready_replica_is_a_warning(render: RenderFn) -> None:
    values = {**ON, "webhook": {"failurePolicy": "Ignore"}}
    down = rules(render(values))["EipGuardNotReady"]
    assert down["labels"]["severity"] == "warning"
    assert "created and updated unchecked" in down["annotations"]["description"]
    assert "refused" in rules(render(ON))["EipGuardNotReady"]["annotations"]["description"]


def test_thresholds_and_labels_come_from_values(render: RenderFn) -> None:
    values = {
        "metrics": {
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "certificateExpiryDays": 30,
                "sourceStaleMinutes": 60,
                "disabled": ["EipGuardEipsViolateRules", "EipGuardReviewsErrored"],
            }
        }
    }
    objs = render(values)
    assert rule_of(objs)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    found = rules(objs)
    assert set(found) == set(ALERTS) - {"EipGuardEipsViolateRules", "EipGuardReviewsErrored"}
    assert "< 30 * 86400" in found["EipGuardCertificateExpiresSoon"]["expr"]
    assert found["EipGuardSourceStale"]["expr"].endswith("> 3600")
    assert "team" not in found["EipGuardNotReady"]["labels"]


def test_disabling_every_alert_fails_the_render(chart: helm_python.Chart) -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, "disabled": list(ALERTS)}}}
    with pytest.raises(helm_python.HelmError, match=re.escape("prometheusRule.enabled to false")):
        chart.render(values, name="eip-guard", namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        ({"severity": "page"}, '"severity" is set by each alert itself'),
        ({"alertname": "x"}, '"alertname" is set by each alert itself'),
        ({"team-name": "x"}, '"team-name" is no Prometheus label name'),
        ({"1team": "x"}, '"1team" is no Prometheus label name'),
        # Labels that tell one alert from another: overwritten, two rules violated (or two
        # sources stale) become one label set, and Prometheus fails the whole rule ("vector
        # contains metrics with the same labelset after applying alert labels"): no alert.
        ({"rule": "x"}, '"rule" names what an alert is about'),
        ({"source": "x"}, '"source" names what an alert is about'),
        ({"pod": "x"}, '"pod" names what an alert is about'),
        ({"namespace": "x"}, '"namespace" names what an alert is about'),
    ],
)
def test_alert_labels_that_prometheus_would_refuse_fail_the_render(
    chart: helm_python.Chart, labels: dict[str, str], says: str
) -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, "alertLabels": labels}}}
    with pytest.raises(helm_python.HelmError, match=re.escape(says)):
        chart.render(values, name="eip-guard", namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"disabled": ["EipGuardDown"]}, "disabled"),
        ({"sourceStaleMinutes": 5}, "sourceStaleMinutes"),
        ({"certificateExpiryDays": 0}, "certificateExpiryDays"),
    ],
)
def test_the_schema_refuses_values_that_would_break_the_rules(
    chart: helm_python.Chart, values: dict[str, Any], where: str
) -> None:
    merged = chart.merge_values({"metrics": {"prometheusRule": {"enabled": True, **values}}})
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.validate_schema(merged)
    assert where in str(err.value)


AGENT_ALERTS = ("EipGuardAgentCanReachBoundLocally", "EipGuardAgentNotReady")
AGENTS_ON = {
    **ON,
    "agent": {"enabled": True, "probeAddress": "", "podMonitor": {"enabled": True}},
}


def test_the_agents_alerts_come_with_their_pod_monitor(render: RenderFn) -> None:
    assert not set(AGENT_ALERTS) & set(rules(render(ON)))
    no_monitor = {**ON, "agent": {"enabled": True}}
    assert not set(AGENT_ALERTS) & set(rules(render(no_monitor)))
    assert set(rules(render(AGENTS_ON))) == {*ALERTS, *AGENT_ALERTS}
    off = {**AGENTS_ON, "metrics": {"prometheusRule": {
        "enabled": True, "disabled": ["EipGuardAgentNotReady"]}}}  # fmt: skip
    assert "EipGuardAgentNotReady" not in rules(render(off))


def test_the_agents_alerts_name_what_the_agent_exposes_and_fire(
    render: RenderFn, tmp_path: Path
) -> None:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatusMetrics(lambda: Status(0.0, 0.5)))
    text = generate_latest(registry).decode()
    objs = render(AGENTS_ON)
    r = rules(objs)
    for name in AGENT_ALERTS:
        for metric in re.findall(r"\beip_guard_\w+", r[name]["expr"]):
            assert re.search(rf"^{metric} ", text, re.M), f"{name}: the agent has no {metric}"
    bound, ready = "eip_guard_agent_can_reach_bound_locally", "eip_guard_agent_ready"
    tests = [
        # Two Eips on node a's agent for 6 minutes; node b's for 3 (a blip as a pod moved).
        case(
            [series(bound, "0 2x10", pod="a"), series(bound, "0 1x3 0x10", pod="b")],
            ("4m", "EipGuardAgentCanReachBoundLocally", []),
            (
                "7m",
                "EipGuardAgentCanReachBoundLocally",
                [
                    alert(
                        r["EipGuardAgentCanReachBoundLocally"],
                        value="2",
                        pod="a",
                        namespace=NAMESPACE,
                    )
                ],
            ),
        ),
        case(
            [series(ready, "0x20", pod="a"), series(ready, "1x20", pod="b")],
            ("14m", "EipGuardAgentNotReady", []),
            (
                "16m",
                "EipGuardAgentNotReady",
                [alert(r["EipGuardAgentNotReady"], pod="a", namespace=NAMESPACE)],
            ),
        ),
    ]
    promtool_test(objs, tests, tmp_path)
