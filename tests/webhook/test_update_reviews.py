"""An UPDATE is judged against its oldObject, which the API server always sends: a review
without it, or with another object in it, is malformed (HTTP 400, a failed call), not a
create to judge."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from app.core.sources import StaticSource
from app.core.verdict import Policy
from app.webhook.app import create_app

from .conftest import Webhook, example_eip, example_inventory, review
from .test_edges import sample


def _bad_request(webhook: Webhook, body: dict[str, Any]) -> str:
    response = webhook.http.post("/validate-eip", json=body)
    assert response.status_code == 400
    status = response.json()
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "BadRequest", 400)
    return str(status["message"])


def test_an_update_without_its_old_object_is_a_bad_request(webhook: Webhook) -> None:
    # Judged as a create it was allowed: a changed address went past address-immutable.
    moved = example_eip("good")
    moved["spec"]["address"] = "172.16.236.61-172.16.236.79"
    message = _bad_request(webhook, review(moved, "UPDATE", old=None, uid="no-old"))
    assert "request.oldObject is missing on an UPDATE request" in message


@pytest.mark.parametrize(
    ("old", "said"),
    [
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "eip-layer2"}},
         "is not a network.kubesphere.io Eip"),
        (example_eip("bad") | {"metadata": {"name": "another"}},
         "names Eip 'another', not 'eip-layer2'"),
    ],
)  # fmt: skip
def test_an_update_whose_old_object_is_another_is_a_bad_request(
    webhook: Webhook, old: dict[str, Any], said: str
) -> None:
    message = _bad_request(webhook, review(example_eip("good"), "UPDATE", old=old, uid="o"))
    assert said in message


def test_a_malformed_review_is_counted_as_refused_not_as_errored(
    start: Callable[[FastAPI], Webhook],
) -> None:
    # Only a client that is no API server sends these: counted as `errored`, they fired
    # EipGuardReviewsErrored ("a bug", "the failed to judge log line has the traceback")
    # though nothing failed and nothing was logged.
    hook = start(create_app(StaticSource(example_inventory()), Policy()))
    _bad_request(hook, review(example_eip("good"), "UPDATE", old=None, uid="no-old"))
    no_object = review(example_eip("good"), uid="no-object")
    del no_object["request"]["object"]
    _bad_request(hook, no_object)
    text = hook.http.get("/metrics").text
    assert sample(text, "eip_guard_http_rejected_total", code="400") == 2
    for operation in ("CREATE", "UPDATE"):
        errored = sample(
            text, "eip_guard_admission_reviews_total", operation=operation, verdict="errored"
        )
        assert errored == 0, operation


def test_an_update_with_its_old_object_is_judged_as_before(webhook: Webhook) -> None:
    old = example_eip("good")
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["finalizer.lb.kubesphere.io/v1alpha1"]
    response = webhook.validate(review(new, "UPDATE", old=old, uid="fin"))["response"]
    assert response["allowed"] is True


def test_delete_names_the_services_that_lose_their_ips(webhook: Webhook) -> None:
    old = example_eip("good")
    old["status"] = {"used": {f"172.16.236.{61 + i}": f"default/web-{i}" for i in range(5)}}
    response = webhook.validate(review(None, "DELETE", old=old, uid="d"))["response"]
    assert response["allowed"] is True
    assert response["warnings"] == [
        # As many as fit a warning's 119 characters, and how many more.
        "eip-guard: Eip eip-layer2 hands out 172.16.236.61 to default/web-0, 172.16.236.62 to "
        "default/web-1 and 3 more",
        "eip-guard: Eip eip-layer2's Services lose their IPs if it goes: move them to another "
        "Eip first",
    ]
