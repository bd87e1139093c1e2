"""The README's webhook section shows what the real server answers, as kubectl shows it."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import FastAPI

from app.core.inventory import Inventory
from app.core.sources import StaticSource
from app.core.verdict import Action, Policy
from app.webhook import connections
from app.webhook.app import create_app
from app.webhook.connections import REASONS, Limits
from app.webhook.metrics import VERDICTS, Metrics
from app.webhook.server import KEEP_ALIVE_SECONDS

from .conftest import EXAMPLES, NotReadySource, Webhook, example_inventory
from .kubectl import api_server_failed_call, api_server_status, kubectl_created, kubectl_stderr

README = (EXAMPLES.parent / "README.md").read_text()
WEBHOOK = "validate.eip-guard.io"
Start = Callable[[FastAPI], Webhook]


def shown(text: str) -> str:
    # Markdown editors strip trailing blanks (kubectl's "is invalid: " has one).
    return "\n".join(line.rstrip() for line in text.splitlines())


def kubectl_blocks() -> list[str]:
    return [
        shown(m)
        for m in re.findall(r"```console\n\$ kubectl apply -f eip.yaml\n(.*?)```", README, re.S)
    ]


def post_bad(hook: Webhook) -> dict[str, object]:
    body = (EXAMPLES / "review-bad.json").read_bytes()
    response = hook.http.post(
        "/validate-eip", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    answer = response.json()["response"]
    assert isinstance(answer, dict)
    return answer


def test_the_denial_is_shown_as_kubectl_prints_it(webhook: Webhook) -> None:
    answer = post_bad(webhook)
    status = api_server_status(WEBHOOK, answer["status"])  # type: ignore[arg-type]
    printed = kubectl_stderr(status, "creating", "eip.yaml", [])
    assert shown(printed) in kubectl_blocks()
    assert f"```text\n{status['message']}\n```" in README


def test_the_warnings_are_shown_as_kubectl_prints_them(start: Start) -> None:
    policy = Policy(actions={"can-reach-in-eip": Action.WARN, "can-reach-service-ip": Action.WARN})
    answer = post_bad(start(create_app(StaticSource(example_inventory()), policy)))
    assert answer["allowed"] is True
    warnings = answer["warnings"]
    assert isinstance(warnings, list)
    printed = kubectl_created(warnings, "eip.network.kubesphere.io", "eip-layer2")
    assert shown(printed) in kubectl_blocks()


def test_the_not_ready_failure_is_shown_as_kubectl_prints_it(start: Start) -> None:
    hook = start(create_app(NotReadySource(Inventory()), Policy()))
    body = (EXAMPLES / "review-bad.json").read_bytes()
    response = hook.http.post(
        "/validate-eip", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 503
    status = api_server_failed_call(WEBHOOK, response.json())
    assert shown(kubectl_stderr(status, "creating", "eip.yaml", [])) in kubectl_blocks()


def test_the_good_answer_is_shown_verbatim(webhook: Webhook) -> None:
    body = (EXAMPLES / "review-good.json").read_bytes()
    response = webhook.http.post(
        "/validate-eip", content=body, headers={"content-type": "application/json"}
    )
    assert f"```json\n{response.text}\n```" in README


def test_the_curl_command_is_the_one_make_run_prints() -> None:
    makefile = (EXAMPLES.parent / "Makefile").read_text()
    match = re.search(r'@echo "  (for f in .*?)"\n', makefile)
    assert match
    command = match.group(1).replace("\\$$", "$").replace("$(PORT)", "8443")
    assert f"```sh\n{command}\n```" in README


def test_the_readme_lists_every_metric_and_verdict() -> None:
    families = {family.name for family in Metrics().registry.collect()}
    assert len(families) == 6
    for name in families:
        assert f"| `{name}" in README, name
    for verdict in VERDICTS:
        assert f"`{verdict}`" in README, verdict
    for reason in REASONS:
        assert f"`{reason}`" in README, reason


def test_the_readme_gives_the_connection_limits_the_server_has() -> None:
    limits = Limits()
    section = README[README.index("**Connections.**") : README.index("**Who should reach")]
    assert f"within {limits.head_seconds:g} s of their first byte" in section
    assert f"handshake must end within {connections.HANDSHAKE_SECONDS:g} s" in section
    assert f"chunked trailers may take {limits.head_bytes // 1024} KiB together" in section
    assert f"in at most {connections.MAX_HEADERS} headers" in section
    assert f"more than {connections.MAX_PIPELINED} requests waiting" in section
    assert f"within {connections.REQUEST_SECONDS:g} s of its head" in section
    assert f"at most {limits.connections:,} connections" in section
    assert f"closed after {KEEP_ALIVE_SECONDS} s" in section
