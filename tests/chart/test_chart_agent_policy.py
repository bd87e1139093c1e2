"""The agents' own-Node policy, its CEL run by Google's CEL runtime (cel-expr-python).

RBAC cannot narrow "patch nodes" to the Node an agent runs on: one node's token could forge
another node's report, which the webhook trusts, or change any Node's labels and taints (a
security review's finding). The policy must let an agent write its own report, and nothing
else.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cel_expr_python import cel

from app.core.labels import NODE_REPORT_ANNOTATION
from tests.chart.rendering import VAP_CAPABILITY, RenderFn

_ENV = cel.NewEnv(
    variables={name: cel.Type.DYN for name in ("object", "oldObject", "request", "variables")}
)
AGENT = "system:serviceaccount:eip-guard:eip-guard-agent"


def _policy(render: RenderFn, **values: Any) -> dict[str, Any] | None:
    objs = render({"agent": {"enabled": True}, **values}, api_versions=[VAP_CAPABILITY])
    found = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"
             and o["metadata"]["name"].endswith("-agent-own-node")]  # fmt: skip
    return found[0] if found else None


def _node(name: str, annotations: dict[str, str], labels: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": annotations, "labels": labels or {"a": "b"}},
        "spec": {"podCIDR": "10.244.1.0/24"},
    }


def judged(policy: dict[str, Any], old: Any, new: Any, user: str, node: str | None) -> list[str]:
    """The messages of the failed validations (empty: admitted), or ["unmatched"]."""
    extra = {"authentication.kubernetes.io/node-name": [node]} if node is not None else {}
    data: dict[str, Any] = {
        "object": new,
        "oldObject": old,
        "request": {"operation": "UPDATE", "userInfo": {"username": user, "extra": extra}},
        "variables": {},
    }
    spec = policy["spec"]
    for condition in spec["matchConditions"]:
        if _ENV.compile(condition["expression"]).eval(data=data).value() is not True:
            return ["unmatched"]
    for variable in spec["variables"]:
        value = _ENV.compile(variable["expression"]).eval(data=data).value()
        data["variables"][variable["name"]] = _plain(value)
    failed = []
    for v in spec["validations"]:
        if _ENV.compile(v["expression"]).eval(data=data).value() is not True:
            message = v.get("message")
            if message is None:
                message = _ENV.compile(v["messageExpression"]).eval(data=data).value()
            failed.append(" ".join(str(message).split()))
    return failed


def _plain(value: Any) -> Any:
    """A CEL result as plain Python, to be given back to CEL (as the API server keeps it)."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if isinstance(value, bool | int | float) else str(value)


@pytest.fixture(scope="module")
def policy(render: RenderFn) -> dict[str, Any]:
    found = _policy(render)
    assert found is not None
    return found


def test_an_agent_writes_its_own_report_and_nothing_else(policy: dict[str, Any]) -> None:
    before = _node("node1", {"other": "x", NODE_REPORT_ANNOTATION: "{}"})
    report = copy.deepcopy(before)
    report["metadata"]["annotations"][NODE_REPORT_ANNOTATION] = '{"interfaces": []}'
    assert judged(policy, before, report, AGENT, "node1") == []
    first = _node("node1", {"other": "x"})  # the first report: the annotation is new
    assert judged(policy, first, before, AGENT, "node1") == []

    assert judged(policy, before, report, AGENT, "node2") == [
        "the eip-guard agent may change only the Node it runs on (node2), not node1"
    ]
    assert judged(policy, before, report, AGENT, None) == [
        "the eip-guard agent may change only the Node it runs on (its token names none), not node1"
    ]
    only = "the eip-guard agent may change only the eip-guard.io/network annotation of its Node"
    relabelled = copy.deepcopy(report)
    relabelled["metadata"]["labels"] = {"a": "c"}
    tainted = copy.deepcopy(report)
    tainted["spec"]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    annotated = copy.deepcopy(report)
    annotated["metadata"]["annotations"]["other"] = "y"
    dropped = copy.deepcopy(report)
    del dropped["metadata"]["annotations"]["other"]
    held = copy.deepcopy(report)  # a finalizer or an owner: the Node deleted, or never
    held["metadata"]["finalizers"] = ["example.com/hold"]
    owned = copy.deepcopy(report)
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "p",
                                             "uid": "0"}]  # fmt: skip
    for changed in (relabelled, tainted, annotated, dropped, held, owned):
        assert judged(policy, before, changed, AGENT, "node1") == [only]
    # Anyone else (the kubelet, an admin) is not this policy's to judge.
    assert judged(policy, before, tainted, "system:node:node1", "node1") == ["unmatched"]


def test_the_policy_follows_the_agent_and_the_policy_switch(render: RenderFn) -> None:
    assert _policy(render, validatingAdmissionPolicy={"enabled": False}) is None
    objs = render({}, api_versions=[VAP_CAPABILITY])  # no agent: nothing to keep in place
    assert not any(o["metadata"]["name"].endswith("-agent-own-node") for o in objs)
