"""`helm test` and the install notes expect what kubectl really prints for the webhook's denial.

The webhook denies with a `422 Invalid` status carrying one cause per violation, and kubectl
lists the causes of an `Invalid` status without the status message, so the words
`admission webhook "validate.eip-guard.io" denied` never reach its output (see
tests/webhook/kubectl.py). The chart's test script is run here with a `kubectl` that prints
what the real kubectl prints for the real webhook's answer to the test's Eip.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import yaml

from app.core.inventory import build
from app.core.sources import StaticSource
from app.core.verdict import Policy
from app.webhook.admission import decide
from app.webhook.reviews import AdmissionReviewRequest
from tests.chart.rendering import RenderFn, one, render_raw
from tests.webhook.conftest import review
from tests.webhook.kubectl import api_server_status, kubectl_stderr

WEBHOOK = "validate.eip-guard.io"


def kubectl_says(eip: dict[str, Any], source: str) -> str:
    """What `kubectl create --dry-run=server -f SOURCE` prints when the webhook judges EIP
    against a cluster holding nothing else."""
    request = AdmissionReviewRequest.model_validate(review(eip)).request
    response = decide(request, StaticSource(build([])), Policy()).response
    assert response["allowed"] is False
    status = api_server_status(WEBHOOK, dict(response["status"]))
    return kubectl_stderr(status, "creating", source, list(response.get("warnings", [])))


def run_test_script(
    tmp_path: Path, data: dict[str, str], printed: str
) -> subprocess.CompletedProcess[str]:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for name, text in data.items():
        (manifests / name).write_text(text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!/bin/sh\nprintf '%s' {shlex.quote(printed)} >&2\nexit 1\n")
    kubectl.chmod(0o755)
    script = data["run.sh"].replace("/manifests/", f"{manifests}/")
    return subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_helm_test_passes_on_the_webhooks_real_denial(render: RenderFn, tmp_path: Path) -> None:
    data = one(render(), "ConfigMap", "eip-guard-test")["data"]
    eip = yaml.safe_load(data["eip-in-own-pool.yaml"])
    printed = kubectl_says(eip, "/manifests/eip-in-own-pool.yaml")
    assert printed.count("is invalid") == 1  # kubectl's rendering of an Invalid status
    done = run_test_script(tmp_path, data, printed)
    assert done.returncode == 0, done.stdout + done.stderr


def test_helm_test_fails_when_something_else_refuses(render: RenderFn, tmp_path: Path) -> None:
    data = one(render(), "ConfigMap", "eip-guard-test")["data"]
    printed = "Error from server (NotFound): the server could not find the requested resource\n"
    done = run_test_script(tmp_path, data, printed)
    assert done.returncode == 1 and "FAIL" in done.stdout


def test_the_notes_show_what_kubectl_prints(chart: helm_python.Chart) -> None:
    notes = render_raw(chart)["eip-guard/templates/NOTES.txt"]
    manifest = notes.split("kubectl create --dry-run=server -f -\n", 1)[1].split("YAML\n", 1)[0]
    eip = yaml.safe_load("\n".join(line[5:] for line in manifest.splitlines()))
    printed = kubectl_says(eip, "STDIN")
    expected = notes.split("expected: ", 1)[1].splitlines()[0]
    pieces = [p.strip() for p in expected.split("...")]
    at = 0
    for piece in pieces:
        found = printed.find(piece, at)
        assert found >= 0, f"NOTES expect {piece!r}; kubectl prints {printed!r}"
        at = found + len(piece)
