"""The chart's Deployment speaks the flags `eip-guard serve` really has."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli.agent_run import MIN_INTERVAL
from app.cli.flags import seconds
from app.cli.main import parser
from app.webhook.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.chart.rendering import SCENARIOS, RenderFn, one


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_deployment_args_are_what_serve_accepts(
    render: RenderFn, scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In the pod: the live cluster through the service account is the default source.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    values, api_versions = SCENARIOS[scenario]
    container = one(render(values, api_versions=api_versions), "Deployment")["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["args"][0] == "serve"
    parsed = parser().parse_args(container["args"])  # exits 2 on any unknown flag
    assert parsed.probe_port == 8080 and parsed.policy == Path("/etc/eip-guard/policy/policy.yaml")
    assert parsed.cluster is None and parsed.kubeconfig is None  # live, in-cluster
    probes = {p: container[p]["httpGet"]["port"] for p in ("readinessProbe", "livenessProbe")}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {ports[name] for name in probes.values()} == {parsed.probe_port}
    assert ports["https"] == parsed.port
    # A rollout drains each pod: not ready, still answering, then stopping, within its grace.
    assert parsed.shutdown_delay == 5
    # Then the webhook's requests in flight, the probe server's and the live watches', one
    # after the other, at most GRACEFUL_SHUTDOWN_SECONDS each: all within the grace period.
    grace = one(render(values, api_versions=api_versions), "Deployment")["spec"]["template"][
        "spec"
    ]["terminationGracePeriodSeconds"]
    assert parsed.shutdown_delay + 3 * GRACEFUL_SHUTDOWN_SECONDS < grace


def test_the_grace_period_follows_the_drain(render: RenderFn) -> None:
    pod = one(render({"webhook": {"shutdownDelaySeconds": 12.5}}), "Deployment")["spec"][
        "template"
    ]["spec"]
    args = pod["containers"][0]["args"]
    assert "--shutdown-delay=12.5" in args
    assert pod["terminationGracePeriodSeconds"] == 48


def test_extra_args_come_last(render: RenderFn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    values, _ = SCENARIOS["policy-and-placement"]
    args = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == "--no-background-audit"
    assert parser().parse_args(args).no_background_audit is True


AGENT_LIMITS = {"leaseRenewSeconds": 1799.5, "leaseDurationSeconds": 3600, "intervalSeconds": 60}


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ({}, ("off", 2.0, 6, 0.5)),
        ({"speaker": "on", **AGENT_LIMITS}, ("on", 1799.5, 3600, 60.0)),
        # An unquoted `speaker: on` in a values file is YAML's true: it means on.
        ({"speaker": True}, ("on", 2.0, 6, 0.5)),
        ({"speaker": False}, ("off", 2.0, 6, 0.5)),
        ({"probeAddress": "::"}, ("off", 2.0, 6, 0.5)),
    ],
)
def test_the_agent_args_are_what_agent_accepts(
    render: RenderFn, agent: dict[str, object], expected: tuple[str, float, int, float]
) -> None:
    # Values come as JSON numbers (floats, as from a values file): whole ones must still
    # print as such, or the agent's `type=int` refuses them at start.
    ds = one(render({"agent": {"enabled": True, **agent}}), "DaemonSet")
    container = ds["spec"]["template"]["spec"]["containers"][0]
    parsed = parser().parse_args(container["args"])  # exits 2 on any unknown flag or bad value
    assert parsed.live is True
    assert (parsed.speaker, parsed.lease_renew, parsed.lease_duration, parsed.interval) == expected
    assert parsed.probe_address == agent.get("probeAddress", "127.0.0.1")
    assert parsed.probe_port == container["ports"][0]["containerPort"] == 9477
    seconds("--interval", parsed.interval, least=MIN_INTERVAL)  # what the agent checks at start
    assert 0 < parsed.lease_renew < parsed.lease_duration - parsed.lease_renew  # LiveCluster's
    added = container["securityContext"]["capabilities"].get("add")
    assert added == (["NET_RAW"] if expected[0] == "on" else None)
