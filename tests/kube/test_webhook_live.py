"""The webhook on a live inventory: real TLS in front, kmock (real HTTP) behind.

The next admission request sees ADDED, MODIFIED and DELETED objects; a missing Eip CRD keeps
/readyz failing with the reason and denies reviews with a retryable message; and
`eip-guard serve --kubeconfig` runs the whole thing as a real process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.verdict import Policy
from app.webhook.app import create_app
from tests.core.objects import eip, node, service
from tests.kmock_harness import EIPS, FakeApi, Writer, kubeconfig, running
from tests.kube.harness import Cluster
from tests.support import eventually, log_lines
from tests.webhook.conftest import Certs, client, failed_call, review, serving
from tests.webhook.test_cli_webhook import ROOT

CANDIDATE = eip("candidate", "192.168.50.10-192.168.50.20", interface="can_reach:10.0.0.9")


def answer(http: Any) -> dict[str, Any]:
    response = http.post("/validate-eip?timeout=10s", json=review(CANDIDATE))
    assert response.status_code == 200, response.text
    result = response.json()["response"]
    assert isinstance(result, dict)
    return result


def denied_by(http: Any, rule: str) -> bool:
    result = answer(http)
    return not result["allowed"] and rule in result["status"]["message"]


def test_the_next_admission_request_sees_watch_events(
    writer: Writer, cluster_factory: Callable[..., Cluster], certs: Certs
) -> None:
    cluster = cluster_factory()
    cluster.ready()
    app = create_app(cluster.live.source, Policy())
    with serving(app, certs) as port, client(port, certs.ca) as http:
        assert http.get("/readyz").status_code == 200
        assert answer(http)["allowed"] is True

        writer.create(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.9",)))
        eventually(lambda: denied_by(http, "is a Service IP"), "ADDED Service denies")

        writer.patch(service("web", cluster_ip="10.96.0.10", external_ips=("10.0.0.77",)))
        eventually(lambda: answer(http)["allowed"], "MODIFIED Service allows again")

        writer.create(node("n1", "10.0.0.9"))
        eventually(lambda: not answer(http)["allowed"], "ADDED Node denies")
        writer.delete("Node", "n1")
        eventually(lambda: answer(http)["allowed"], "DELETED Node allows again")


def test_missing_crd_fails_readyz_and_answers_a_retryable_503(certs: Certs) -> None:
    with running(missing=(EIPS,)) as api:
        cluster = Cluster(api)
        try:
            app = create_app(cluster.live.source, Policy())
            with serving(app, certs) as port, client(port, certs.ca) as http:
                ready = eventually(
                    lambda: "not installed" in http.get("/readyz").text and http.get("/readyz"),
                    "/readyz names the missing CRD",
                )
                assert ready.status_code == 503
                assert "eips.network.kubesphere.io" in ready.json()["reason"]
                response = http.post("/validate-eip?timeout=10s", json=review(CANDIDATE))
                message = failed_call(response, 503, "ServiceUnavailable")
                assert "not ready" in message and "retry" in message
                assert "eips.network.kubesphere.io" in message

                api.call(lambda: api.declare("network.kubesphere.io/v1alpha2/eips", "Eip", False))
                eventually(lambda: http.get("/readyz").status_code == 200, "ready once installed")
                assert answer(http)["allowed"] is True
        finally:
            cluster.close()


def test_serve_with_a_kubeconfig_watches_the_cluster(
    api: FakeApi, writer: Writer, certs: Certs, tmp_path: Path
) -> None:
    writer.create(node("n1", "10.0.0.1"))
    config = kubeconfig(tmp_path / "kubeconfig", api.url)
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["PYTHONUNBUFFERED"] = "1"
    argv = [
        "serve", "--kubeconfig", str(config), "--kube-vip-namespace", "kube-system",
        "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key),
        "--host", "127.0.0.1", "--port", "0", "--watch-timeout", "2",
        "--resync-interval", "0.05", "--audit-interval", "0.1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", *argv],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with log_lines(proc) as lines:
        line = lines.until("serving")
        assert line["cluster"] == "live"
        port = int(line["address"].rsplit(":", 1)[1].split("/")[0])
        with client(port, certs.ca) as http:
            eventually(lambda: http.get("/readyz").status_code == 200, "live serve ready")
            assert answer(http)["allowed"] is True
            writer.create(node("n2", "10.0.0.9"))
            eventually(lambda: not answer(http)["allowed"], "the new Node denies")
            metrics = http.get("/metrics").text
            assert 'eip_guard_source_objects{source="nodes"} 2.0' in metrics
            assert "eip_guard_admission_reviews_total" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
