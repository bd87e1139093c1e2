"""The ValidatingAdmissionPolicy's CEL, run by Google's CEL runtime (cel-expr-python, RE2).

The policy must never deny what the webhook allows (it runs first and alone when the
webhook is down), and it must catch the plain mistakes. ``parse_interface`` is the oracle:
the same parser the webhook and the agent use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from cel_expr_python import cel
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.core.interfaces import BadInterface, parse_interface
from tests.chart.rendering import VAP_CAPABILITY, RenderFn, one

_ENV = cel.NewEnv(
    variables={name: cel.Type.DYN for name in ("object", "oldObject", "request", "variables")}
)


@dataclass(frozen=True)
class Policy:
    variables: tuple[tuple[str, Any], ...]
    validations: tuple[tuple[Any, Any], ...]  # (expression, messageExpression)

    def review(self, iface: str | None, old: str | None = None, op: str = "CREATE") -> list[str]:
        """Messages of the failed validations: empty means admitted."""
        obj = _eip(iface)
        data: dict[str, Any] = {
            "object": obj,
            "oldObject": _eip(old) if op == "UPDATE" else None,
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


def _eip(iface: str | None) -> Mapping[str, Any]:
    spec: dict[str, Any] = {"address": "192.0.2.10-192.0.2.20", "protocol": "layer2"}
    if iface is not None:
        spec["interface"] = iface
    return {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "spec": spec}


@pytest.fixture(scope="module")
def policy(render: RenderFn) -> Policy:
    spec = one(render(api_versions=[VAP_CAPABILITY]), "ValidatingAdmissionPolicy")["spec"]
    return Policy(
        variables=tuple((v["name"], _ENV.compile(v["expression"])) for v in spec["variables"]),
        validations=tuple(
            (_ENV.compile(v["expression"]), _ENV.compile(v["messageExpression"]))
            for v in spec["validations"]
        ),
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
