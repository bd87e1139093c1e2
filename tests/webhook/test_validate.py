"""POST /validate-eip against a real uvicorn TLS server: answers, denials, warnings."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from app.core.sources import StaticSource
from app.core.verdict import WARNING_LIMIT, Action, Policy
from app.webhook.app import create_app
from app.webhook.logs import DECISIONS
from tests.conftest import ROOT

from .conftest import V1, V1BETA1, Webhook, example_eip, example_inventory, review

Start = Callable[[FastAPI], Webhook]
BAD_IFACE = "can_reach:172.16.236.40"


def test_a_bad_eip_is_denied_as_kubernetes_invalid(webhook: Webhook) -> None:
    answer = webhook.validate(review(example_eip("bad"), uid="uid-bad-1"))
    assert answer["apiVersion"] == V1
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "uid-bad-1"
    assert response["allowed"] is False
    assert "patch" not in response
    status = response["status"]
    assert status["status"] == "Failure"
    assert status["code"] == 422
    assert status["reason"] == "Invalid"
    # Two violations: Kubernetes' aggregate form "[a, b]", each a field error.
    message = status["message"]
    assert message.startswith(f'[spec.interface: Invalid value: "{BAD_IFACE}": 172.16.236.40 ')
    assert message.endswith("(eip-guard rule can-reach-service-ip)]")
    assert "(eip-guard rule can-reach-in-eip), spec.interface: Invalid value:" in message
    details = status["details"]
    assert details["name"] == "eip-layer2"
    assert details["group"] == "network.kubesphere.io"
    assert details["kind"] == "Eip"
    causes = details["causes"]
    assert [c["reason"] for c in causes] == ["FieldValueInvalid", "FieldValueInvalid"]
    assert [c["field"] for c in causes] == ["spec.interface", "spec.interface"]
    assert all(c["message"].startswith(f'Invalid value: "{BAD_IFACE}": ') for c in causes)
    assert "can_reach:172.16.236.1" in causes[0]["message"]  # the concrete suggestion
    assert "warnings" not in response


def test_a_good_eip_is_allowed_without_status_or_warnings(webhook: Webhook) -> None:
    answer = webhook.validate(review(example_eip("good"), uid="uid-good"))
    assert answer == {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "response": {"uid": "uid-good", "allowed": True},
    }


def test_v1beta1_is_answered_in_v1beta1(webhook: Webhook) -> None:
    answer = webhook.validate(review(example_eip("bad"), api_version=V1BETA1, uid="b1"))
    assert answer["apiVersion"] == V1BETA1
    assert answer["response"]["uid"] == "b1"
    assert answer["response"]["allowed"] is False
    good = webhook.validate(review(example_eip("good"), api_version=V1BETA1, uid="b2"))
    assert good["apiVersion"] == V1BETA1
    assert good["response"] == {"uid": "b2", "allowed": True}


def test_the_query_string_of_the_api_server_is_ignored(webhook: Webhook) -> None:
    answer = webhook.validate(review(example_eip("bad"), uid="q"), path="/validate-eip?timeout=10s")
    assert answer["response"]["uid"] == "q"
    assert answer["response"]["status"]["code"] == 422


def test_extra_fields_of_a_newer_api_server_are_tolerated(webhook: Webhook) -> None:
    body = review(example_eip("good"), uid="x")
    body["somethingNew"] = {"a": 1}
    body["request"]["requestSubResource"] = ""
    body["request"]["futureField"] = [1, 2]
    assert webhook.validate(body)["response"] == {"uid": "x", "allowed": True}


def test_policy_warn_turns_denials_into_warnings(start: Start) -> None:
    policy = Policy(actions={"can-reach-in-eip": Action.WARN, "can-reach-service-ip": Action.WARN})
    hook = start(create_app(StaticSource(example_inventory()), policy))
    response = hook.validate(review(example_eip("bad"), uid="w"))["response"]
    assert response["allowed"] is True
    assert "status" not in response
    warnings = response["warnings"]
    assert [w.split(":")[0] for w in warnings] == [
        "eip-guard can-reach-in-eip",
        "eip-guard can-reach-service-ip",
    ]
    assert all(len(w) <= WARNING_LIMIT and w.isprintable() for w in warnings)


def test_policy_off_silences_a_rule(start: Start) -> None:
    policy = Policy(actions={"can-reach-in-eip": Action.OFF, "can-reach-service-ip": Action.OFF})
    hook = start(create_app(StaticSource(example_inventory()), policy))
    assert hook.validate(review(example_eip("bad"), uid="o"))["response"] == {
        "uid": "o",
        "allowed": True,
    }


def test_the_allow_rules_annotation_warns_and_is_logged(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    eip = example_eip("bad")
    eip["metadata"]["annotations"] = {"eip-guard.io/allow-rules": "can-reach-in-eip"}
    with caplog.at_level(logging.INFO, logger=DECISIONS):
        response = webhook.validate(review(eip, uid="ovr"))["response"]
    # One of the two violations is overridden; the other still denies.
    assert response["allowed"] is False
    assert [
        c["message"].rsplit("rule ", 1)[1] for c in response["status"]["details"]["causes"]
    ] == ["can-reach-service-ip)"]
    assert any(
        "allow-rules turned can-reach-in-eip into a warning" in w for w in response["warnings"]
    )
    assert (
        "eip-guard can-reach-in-eip: 172.16.236.40 lies in Eip eip-pool" in response["warnings"][0]
    )
    lines = [r for r in caplog.records if getattr(r, "fields", {}).get("uid") == "ovr"]
    assert len(lines) == 1
    fields: dict[str, Any] = lines[0].fields  # type: ignore[attr-defined]
    assert lines[0].levelno == logging.WARNING
    assert fields["overridden"] == ["can-reach-in-eip"]
    assert fields["allow_rules"] == ["can-reach-in-eip"]
    assert fields["denied_by"] == ["can-reach-service-ip"]
    assert fields["verdict"] == "denied"
    assert fields["user"] == "alice"
    # Each field is one the README's Logs section names (in its example line, or in words).
    logs = (ROOT / "README.md").read_text().split("\n### Logs\n", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r'"([a-z_]+)":', logs)) | set(re.findall(r"`([a-z_]+)`", logs))
    assert set(fields) <= named, sorted(set(fields) - named)


def test_every_decision_is_logged_once_with_uid_name_operation_verdict_rules(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=DECISIONS):
        webhook.validate(review(example_eip("bad"), uid="log-1"))
    lines = [r for r in caplog.records if getattr(r, "fields", {}).get("uid") == "log-1"]
    assert len(lines) == 1
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["name"] == "eip-layer2"
    assert fields["operation"] == "CREATE"
    assert fields["verdict"] == "denied"
    assert fields["denied_by"] == ["can-reach-in-eip", "can-reach-service-ip"]
    assert fields["warned_by"] == []


def test_update_ratchets_what_the_old_object_already_broke(webhook: Webhook) -> None:
    old = example_eip("bad")
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["finalizer.ipam.kubesphere.io/v1alpha1"]
    response = webhook.validate(review(new, "UPDATE", old=old, uid="u1"))["response"]
    assert response["allowed"] is True
    assert len(response["warnings"]) == 2


def test_update_that_changes_the_address_is_denied(webhook: Webhook) -> None:
    old = example_eip("good")
    new = copy.deepcopy(old)
    new["spec"]["address"] = "172.16.236.61-172.16.236.90"
    response = webhook.validate(review(new, "UPDATE", old=old, uid="u2"))["response"]
    assert response["allowed"] is False
    causes = response["status"]["details"]["causes"]
    assert [(c["field"], c["message"].rsplit("rule ", 1)[1]) for c in causes] == [
        ("spec.address", "address-immutable)")
    ]


def test_delete_is_allowed_with_a_warning_while_ips_are_in_use(webhook: Webhook) -> None:
    old = example_eip("good")
    old["status"] = {"used": {"172.16.236.61": "default/web"}}
    response = webhook.validate(review(None, "DELETE", old=old, uid="d1"))["response"]
    assert response["allowed"] is True
    assert response["warnings"] == [
        "eip-guard: Eip eip-layer2 hands out 172.16.236.61 to default/web",
        "eip-guard: Eip eip-layer2's Services lose their IPs if it goes: move them to another "
        "Eip first",
    ]
    quiet = webhook.validate(review(None, "DELETE", old=example_eip("bad"), uid="d2"))
    assert quiet["response"] == {"uid": "d2", "allowed": True}


def test_an_object_that_is_not_an_eip_is_allowed_with_a_warning(webhook: Webhook) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "y"}}
    response = webhook.validate(review(cm, uid="cm"))["response"]
    assert response["allowed"] is True
    assert response["warnings"] == [
        "eip-guard checks network.kubesphere.io Eips only; v1 ConfigMap allowed unchecked"
    ]


@pytest.mark.parametrize(
    ("obj", "named"),
    [
        ({}, "an object without apiVersion and kind was allowed unchecked"),
        ({"kind": "Eip"}, "(no apiVersion) Eip allowed unchecked"),
        ({"apiVersion": "network.kubesphere.io/v1alpha2"}, "v1alpha2 (no kind) allowed unchecked"),
    ],
)
def test_a_warning_names_what_an_object_lacks(
    webhook: Webhook, obj: dict[str, str], named: str
) -> None:
    (warning,) = webhook.validate(review(obj, uid="odd"))["response"]["warnings"]
    assert warning.endswith(named)


def test_a_create_without_an_object_is_a_failed_call_with_a_status(webhook: Webhook) -> None:
    response = webhook.http.post("/validate-eip", json=review(None, uid="no-object"))
    assert response.status_code == 400
    status = response.json()
    assert (status["kind"], status["apiVersion"], status["reason"]) == (
        "Status",
        "v1",
        "BadRequest",
    )
    assert status["code"] == 400 and status["status"] == "Failure"
    assert "request.object is missing" in status["message"]


def test_status_subresource_writes_are_not_judged(webhook: Webhook) -> None:
    body = review(example_eip("bad"), "UPDATE", old=example_eip("bad"), uid="st")
    body["request"]["subResource"] = "status"
    body["request"]["object"]["spec"]["address"] = "10.0.0.1"  # would be address-immutable
    assert webhook.validate(body)["response"] == {"uid": "st", "allowed": True}


def test_one_violation_is_one_field_error_without_brackets(webhook: Webhook) -> None:
    eip = example_eip("good")
    eip["spec"]["address"] = "172.16.236.90 - 172.16.236.99"  # OpenELB trims nothing
    status = webhook.validate(review(eip, uid="one"))["response"]["status"]
    assert status["message"].startswith(
        'spec.address: Invalid value: "172.16.236.90 - 172.16.236.99": invalid eip address format'
    )
    assert status["message"].endswith("(eip-guard rule address-syntax)")
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.address"]
    assert status["details"]["causes"][0]["message"] == status["message"].removeprefix(
        "spec.address: "
    )


def test_a_denied_value_is_quoted_on_one_line_and_cut(webhook: Webhook) -> None:
    # As Kubernetes' field errors quote (Go's %q): a quote or newline in the value stays
    # escaped, and a megabyte of it is not echoed twice into the answer.
    bad = copy.deepcopy(example_eip("bad"))
    bad["spec"]["interface"] = 'can_reach:10.0.0.1"\n' + "x" * 1_000_000
    status = webhook.validate(review(bad))["response"]["status"]
    texts = [status["message"]] + [c["message"] for c in status["details"]["causes"]]
    for text in texts:
        assert text.startswith(('spec.interface: Invalid value: "can_reach:10.0.0.1\\"\\nxx',
                                'Invalid value: "can_reach:10.0.0.1\\"\\nxx'))  # fmt: skip
        assert "\n" not in text and len(text) < 1000


def test_a_prefix_of_thousands_of_digits_is_denied_not_a_500(webhook: Webhook) -> None:
    # int() of more than 4,300 digits raised ValueError inside the address parser: the
    # webhook answered 500 "eip-guard failed to check this request".
    obj = example_eip("good")
    obj["spec"]["address"] = "10.0.0.0/" + "1" * 5000
    response = webhook.validate(review(obj, uid="uid-digits"))["response"]
    assert response["allowed"] is False and response["status"]["code"] == 422
    assert "invalid eip address format" in response["status"]["message"]
    assert len(response["status"]["message"]) < 2000
