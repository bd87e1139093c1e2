"""The `can-reach-unknown-subnet` warning: a can_reach IP outside every known node subnet."""

from __future__ import annotations

import json
from typing import Any

from app.core.eips import Eip
from app.core.inventory import build
from app.core.labels import NODE_REPORT_ANNOTATION
from app.core.rules import RULE_IDS, check
from app.core.verdict import Action, Policy

RULE = "can-reach-unknown-subnet"


def node(name: str, *addresses: str, gateways: tuple[str, ...] = ()) -> dict[str, Any]:
    report = {
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "up": True,
                        "addresses": list(addresses)}],
        "gateways": list(gateways),
    }  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": {NODE_REPORT_ANNOTATION: json.dumps(report)}},
    }


def eip(interface: str, protocol: str = "layer2") -> Eip:
    return Eip.from_object(
        {
            "apiVersion": "network.kubesphere.io/v1alpha2",
            "kind": "Eip",
            "metadata": {"name": "pool"},
            "spec": {
                "address": "10.0.0.100-10.0.0.120",
                "protocol": protocol,
                "interface": interface,
            },
        }
    )


def test_the_rule_is_listed() -> None:
    assert RULE in RULE_IDS


def test_warns_when_the_ip_is_in_no_known_subnet() -> None:
    inventory = build([node("n1", "10.0.0.2/24", gateways=("10.0.0.1",))])
    verdict = check(eip("can_reach:192.168.50.1"), None, inventory)
    assert verdict.allowed  # a warning, never a denial: node reports may be incomplete
    assert [v.rule for v in verdict.warned_by] == [RULE]
    warning = verdict.warned_by[0]
    assert "10.0.0.0/24" in warning.detail
    assert "can_reach:10.0.0.1" in warning.detail  # the known gateway is suggested
    assert any(RULE in w for w in verdict.warnings)


def test_silent_inside_a_known_subnet() -> None:
    inventory = build([node("n1", "10.0.0.2/24"), node("n2", "fd00::2/64")])
    assert check(eip("can_reach:10.0.0.1"), None, inventory).rule_ids == ()
    assert check(eip("can_reach:fd00::1"), None, inventory).rule_ids == ()


def test_only_subnets_of_the_same_family_count() -> None:
    inventory = build([node("n1", "10.0.0.2/24")])
    assert check(eip("can_reach:fd00::1"), None, inventory).rule_ids == ()
    inventory = build([node("n1", "10.0.0.2/24", "fd00:1::2/64")])
    assert check(eip("can_reach:fd00::1"), None, inventory).rule_ids == (RULE,)


def test_silent_when_no_subnet_is_known() -> None:
    # Host routes (/32) and link-local addresses are no subnet: nothing to compare with.
    inventory = build([node("n1", "10.0.0.2/32", "fe80::1/64")])
    assert check(eip("can_reach:192.168.50.1"), None, inventory).rule_ids == ()


def test_only_for_eips_whose_speaker_resolves_the_interface() -> None:
    inventory = build([node("n1", "10.0.0.2/24")])
    assert RULE not in check(eip("can_reach:192.168.50.1", "bgp"), None, inventory).rule_ids
    assert RULE in check(eip("can_reach:192.168.50.1", "vip"), None, inventory).rule_ids


def test_policy_can_turn_it_off() -> None:
    inventory = build([node("n1", "10.0.0.2/24")])
    policy = Policy(actions={RULE: Action.OFF})
    assert check(eip("can_reach:192.168.50.1"), None, inventory, policy).rule_ids == ()
