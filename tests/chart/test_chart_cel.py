"""The ValidatingAdmissionPolicy's CEL, run by Google's CEL runtime (cel-expr-python, RE2).

The policy must never deny what the webhook allows (it runs first and alone when the
webhook is down), and it must catch the plain mistakes. The webhook's own judgement is the
oracle: ``parse_interface`` (the parser the webhook and the agent share) for the value, and
``check`` for what the protocol, the policy and the allow-rules annotation make of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pytest
from cel_expr_python import cel
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.core.eips import Eip
from app.core.interfaces import BadInterface, parse_interface
from app.core.inventory import Inventory
from app.core.rules import DEFAULT_POLICY, check
from app.core.verdict import Policy as RulePolicy
from tests.chart.rendering import VAP_CAPABILITY, RenderFn, by_kind, one
from tests.core.objects import eip

Obj = dict[str, Any]
_ENV = cel.NewEnv(
    variables={name: cel.Type.DYN for name in ("object", "oldObject", "request", "variables")}
)


@dataclass(frozen=True)
class Policy:
    variables: tuple[tuple[str, Any], ...]
    validations: tuple[tuple[Any, Any], ...]  # (expression, messageExpression)

    def review(
        self,
        iface: str | None,
        old: str | None = None,
        op: str = "CREATE",
        *,
        protocol: str | None = "layer2",
        allow: str | None = None,
    ) -> list[str]:
        """Messages of the failed validations: empty means admitted."""
        obj = _eip(iface, protocol, allow)
        data: dict[str, Any] = {
            "object": obj,
            "oldObject": _eip(old, protocol, allow) if op == "UPDATE" else None,
            "request": {"operation": op},
            "variables": {},
        }
        for name, expr in self.variables:
            data["variables"][name] = expr.eval(data=data).value()
        failed = []
        for expr, message in self.validations:
            if expr.eval(data=data).value() is not True:
                failed.append(str(message.eval(data=data).value()))
        return failed


def _eip(iface: str | None, protocol: str | None = "layer2", allow: str | None = None) -> Obj:
    obj = eip("pool", "192.0.2.10-192.0.2.20", interface=iface, allow=allow)
    if protocol is None:
        del obj["spec"]["protocol"]
    else:
        obj["spec"]["protocol"] = protocol
    return obj


def _compiled(spec: Mapping[str, Any]) -> Policy:
    return Policy(
        variables=tuple((v["name"], _ENV.compile(v["expression"])) for v in spec["variables"]),
        validations=tuple(
            (_ENV.compile(v["expression"]), _ENV.compile(v["messageExpression"]))
            for v in spec["validations"]
        ),
    )


@pytest.fixture(scope="module")
def policy(render: RenderFn) -> Policy:
    return _compiled(
        one(render(api_versions=[VAP_CAPABILITY]), "ValidatingAdmissionPolicy")["spec"]
    )


PLAIN_MISTAKES = [
    "can_reach:",
    "can_reach:192.0.2.1/24",
    "can_reach: 192.0.2.1",
    "can_reach:192.0.2.1 ",
    "can_reach:gateway.example.com",
    "can_reach:192.0.2.256",
    "can_reach:192.0.2",
    "can_reach:192.0.2.01",
    "can_reach:192.0.2.1:80",
    "can_reach:fe80::1%eth0",
    "can_reach:2001:db8::/64",
    "can-reach:192.0.2.1",
    "Can_Reach:192.0.2.1",
    "eth0:1",
    "ens3:",
]
ALLOWED = [
    None,
    "",
    "eth0",
    "bond0.100",
    "can_reach:192.0.2.1",
    "can_reach:2001:db8::1",
    "can_reach:::1",
]


@pytest.mark.parametrize("iface", PLAIN_MISTAKES)
def test_plain_mistakes_are_denied_by_cel_alone(policy: Policy, iface: str) -> None:
    assert isinstance(parse_interface(iface), BadInterface)
    (message,) = policy.review(iface)
    assert message.startswith(f'spec.interface: Invalid value: "{iface}": ')
    assert "\n" not in message


@pytest.mark.parametrize("iface", ALLOWED)
def test_good_values_pass(policy: Policy, iface: str | None) -> None:
    assert policy.review(iface) == []


_IP_ALPHABET = st.sampled_from("0123456789abcdefABCDEF.:/% ")


@settings(max_examples=300, deadline=None)
@given(value=st.text(_IP_ALPHABET, max_size=45) | st.ip_addresses().map(str))
@example(value="::ffff:192.0.2.1")
@example(value="1.2.3.4.")
def test_never_denies_what_the_webhook_allows(policy: Policy, value: str) -> None:
    iface = "can_reach:" + value
    if policy.review(iface):
        assert isinstance(parse_interface(iface), BadInterface)


@settings(max_examples=300, deadline=None)
@given(value=st.text(st.sampled_from("0123456789."), max_size=16) | st.ip_addresses(v=4).map(str))
def test_ipv4_is_judged_exactly(policy: Policy, value: str) -> None:
    iface = "can_reach:" + value
    assert bool(policy.review(iface)) == isinstance(parse_interface(iface), BadInterface)


@settings(max_examples=200, deadline=None)
@given(iface=st.text(max_size=30))
def test_arbitrary_text_is_never_wrongly_denied(policy: Policy, iface: str) -> None:
    if policy.review(iface):
        assert isinstance(parse_interface(iface), BadInterface)


def test_update_judges_only_a_changed_interface(policy: Policy) -> None:
    # An old Eip with a bad value must still lose its finalizer and be deleted.
    assert policy.review("eth0:1", old="eth0:1", op="UPDATE") == []
    assert policy.review("eth0:1", old="eth0", op="UPDATE") != []
    assert policy.review("can_reach:192.0.2.1", old="eth0:1", op="UPDATE") == []


def _webhook_denies(obj: Obj, rules: RulePolicy = DEFAULT_POLICY) -> bool:
    verdict = check(Eip.from_object(obj), None, Inventory(), rules)
    return any(v.rule == "can-reach-syntax" for v in verdict.denied_by)


@settings(max_examples=300, deadline=None)
@given(
    iface=st.sampled_from(PLAIN_MISTAKES + ALLOWED),
    protocol=st.sampled_from([None, "", "bgp", "layer2", "vip", "Layer2"]),
    allow=st.sampled_from(
        [
            None,
            "",
            "can-reach-syntax",
            " can-reach-syntax ,address-node-ip",
            "address-overlap",
            "can-reach-syntaxes",
            "CAN-REACH-SYNTAX",
        ]
    ),
)
def test_denies_only_where_the_webhook_denies_whatever_the_protocol_and_overrides(
    policy: Policy, iface: str | None, protocol: str | None, allow: str | None
) -> None:
    """A bgp Eip's interface is advisory to the webhook (OpenELB never reads it), and the
    allow-rules annotation turns the rule into a warning: the policy denied both (a review's
    case: the chart refused what the webhook allowed)."""
    if policy.review(iface, protocol=protocol, allow=allow):
        assert _webhook_denies(_eip(iface, protocol, allow))


def test_the_protocol_and_an_override_let_a_bad_value_through(policy: Policy) -> None:
    assert policy.review("eth0:1", protocol="vip") != []
    assert policy.review("eth0:1", protocol="bgp") == []
    assert policy.review("eth0:1", protocol=None) == []
    assert policy.review("eth0:1", allow="address-node-ip,can-reach-syntax") == []


def test_a_policy_that_does_not_deny_the_rule_renders_no_admission_policy(
    render: RenderFn,
) -> None:
    for action in ("warn", "off"):
        values = {"policy": {"rules": {"can-reach-syntax": action}}}
        rendered = render(values, api_versions=[VAP_CAPABILITY])
        assert by_kind(rendered, "ValidatingAdmissionPolicy") == [], action
        assert by_kind(rendered, "ValidatingAdmissionPolicyBinding") == [], action
    values = {"policy": {"rules": {"can-reach-syntax": "deny"}}}
    assert by_kind(render(values, api_versions=[VAP_CAPABILITY]), "ValidatingAdmissionPolicy")


def test_without_overrides_the_annotation_changes_nothing(render: RenderFn) -> None:
    values = {"policy": {"allowOverrides": False}}
    strict = _compiled(
        one(render(values, api_versions=[VAP_CAPABILITY]), "ValidatingAdmissionPolicy")["spec"]
    )
    assert strict.review("eth0:1", allow="can-reach-syntax") != []
    rules = RulePolicy(MappingProxyType({}), allow_overrides=False)
    assert _webhook_denies(_eip("eth0:1", allow="can-reach-syntax"), rules)
