"""Every rule both ways, the openelb #331 scenario, ratcheting, policy and overrides."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.eips import V1ALPHA1, Eip
from app.core.interfaces import NoInterface
from app.core.inventory import Inventory, build
from app.core.rules import RULE_IDS, RULES, audit, check
from app.core.verdict import WARNING_LIMIT, Action, Operation, Policy, Verdict
from tests.core.objects import (
    calico_pool,
    cilium_node,
    configmap,
    eip,
    kube_vip_pod,
    node,
    service,
    service_cidr,
)

GW = "172.16.236.1"
SUBNET = "172.16.236.0/24"


def cluster(*extra: dict[str, Any]) -> Inventory:
    """The cluster of openelb #331: three nodes, a pool with one IP in use, kube-vip."""
    base = [
        node("node1", "172.16.236.152", pod_cidrs=("10.233.64.0/24",),
             annotations={"projectcalico.org/IPv4Address": "172.16.236.152/24"}),
        node("node2", "172.16.236.153", pod_cidrs=("10.233.65.0/24",)),
        eip("eip-pool", "172.16.236.40-172.16.236.60", used={"172.16.236.40": "ns/nginx"}),
        service("nginx", "ns", cluster_ip="10.233.9.17", ingress=("172.16.236.40",)),
        service("api", "ns", external_ips=("172.16.236.90",)),
        kube_vip_pod("kube-vip-node1", [{"name": "address", "value": "172.16.236.100"}]),
        configmap("kubevip", {"range-global": "172.16.236.110-172.16.236.119"}),
        service_cidr("kubernetes", "10.233.0.0/18"),
    ]  # fmt: skip
    return build(base + list(extra))


def judge(obj: dict[str, Any], inv: Inventory | None = None, **kw: Any) -> Verdict:
    return check(Eip.from_object(obj), None, inv or cluster(), **kw)


def denied(verdict: Verdict) -> set[str]:
    return {v.rule for v in verdict.denied_by}


def warned(verdict: Verdict) -> set[str]:
    return {v.rule for v in verdict.warned_by}


def l2(interface: str | None, address: str = "172.16.236.61-172.16.236.80", **kw: Any) -> Any:
    return eip("candidate", address, interface=interface, **kw)


def test_rules_table_is_complete_and_unique() -> None:
    assert len(RULE_IDS) == len(RULES) == 22


def test_the_331_scenario_is_denied_with_a_working_suggestion() -> None:
    v = judge(l2("can_reach:172.16.236.40"))
    assert not v.allowed
    assert denied(v) == {"can-reach-in-eip", "can-reach-service-ip"}
    first = v.denied_by[0]
    assert first.field == "spec.interface"
    assert first.message.startswith('spec.interface: Invalid value: "can_reach:172.16.236.40": ')
    assert "Eip eip-pool (172.16.236.40-172.16.236.60)" in first.message
    assert "'lo'" in first.message
    assert f"can_reach:{GW}" in first.message
    # The suggestion passes every rule itself.
    assert judge(l2(f"can_reach:{GW}")).allowed


@pytest.mark.parametrize(
    ("ip", "rule", "names"),
    [
        ("172.16.236.152", "can-reach-node-ip", "Node node1 (status.addresses InternalIP)"),
        ("172.16.236.50", "can-reach-in-eip", "Eip eip-pool"),
        ("172.16.236.65", "can-reach-in-eip", "the Eip under review"),
        ("172.16.236.100", "can-reach-kube-vip", "Pod kube-system/kube-vip-node1"),
        ("172.16.236.115", "can-reach-kube-vip", "ConfigMap kube-system/kubevip"),
        ("172.16.236.90", "can-reach-service-ip", "Service ns/api (spec.externalIPs)"),
        ("10.233.9.17", "can-reach-service-ip", "Service ns/nginx (spec.clusterIPs)"),
        ("10.233.20.1", "can-reach-service-ip", "ServiceCIDR kubernetes"),
        ("10.233.64.1", "can-reach-pod-cidr", "Node node1 (spec.podCIDRs)"),
    ],
)
def test_can_reach_conflicts_deny_and_name_the_source(ip: str, rule: str, names: str) -> None:
    v = judge(l2(f"can_reach:{ip}"))
    assert rule in denied(v)
    message = next(x.message for x in v.denied_by if x.rule == rule)
    assert names in message
    assert f"can_reach:{GW}" in message
    # Why it breaks: a bound IP sends the route to lo; a pod CIDR sends it into the pod network.
    bound = "makes 'ip route get' answer 'lo'" in message
    assert bound == (rule != "can-reach-pod-cidr"), message
    assert ("pod-network device" in message) == (rule == "can-reach-pod-cidr"), message


@pytest.mark.parametrize(
    "ip", ["127.0.0.1", "0.0.0.0", "224.0.0.5", "169.254.1.1", "255.255.255.255", "::1", "fe80::1"]
)
def test_special_addresses(ip: str) -> None:
    assert denied(judge(l2(f"can_reach:{ip}"))) == {"can-reach-special"}


def test_the_unspecified_address_is_said_to_be_no_destination_in_either_family() -> None:
    # In a network namespace (Linux 6.18): 'ip route get 0.0.0.0' answers 'local 0.0.0.0 dev
    # lo', but 'ip route get ::' answers the IPv6 default route's NIC, not lo.
    for ip in ("0.0.0.0", "::"):
        message = judge(l2(f"can_reach:{ip}")).message
        assert f"{ip} is the unspecified address: it is no destination: 'ip route get' " in message
        assert "answers lo for 0.0.0.0, the default route for ::" in message


@pytest.mark.parametrize("interface", ["can_reach:", "can_reach:10.0.0.0/8", "eth0:1"])
def test_syntax(interface: str) -> None:
    assert denied(judge(l2(interface))) == {"can-reach-syntax"}


@pytest.mark.parametrize("interface", [f"can_reach:{GW}", "eth0", "can_reach:2001:db8::1"])
def test_good_interfaces_pass(interface: str) -> None:
    v = judge(l2(interface))
    assert v.allowed and not v.warned_by, v.denied_by


def test_bgp_interface_is_advisory_only() -> None:
    v = judge(l2("can_reach:172.16.236.152", protocol="bgp"))
    assert v.allowed
    assert warned(v) == {"can-reach-node-ip"}
    assert judge(l2("eth0:1", protocol="bgp")).allowed


def test_a_v1alpha1_layer2_eip_is_sent_to_v1alpha2_for_its_interface() -> None:
    old_version = eip("legacy", "172.16.236.61-172.16.236.80", interface=None,
                      api_version="network.kubesphere.io/v1alpha1")  # fmt: skip
    v = judge(old_version)
    assert denied(v) == {"interface-required"}
    assert "v1alpha1 Eip has no spec.interface: write this Eip as" in v.message
    assert "v1alpha1" not in judge(l2(None)).message  # a v1alpha2 Eip: set the field


def test_interface_required() -> None:
    for protocol in ("layer2", "vip"):
        assert denied(judge(l2(None, protocol=protocol))) == {"interface-required"}
    assert judge(l2(None, protocol="bgp")).allowed
    absent = l2("", protocol="bgp")
    del absent["spec"]["protocol"]
    assert judge(absent).allowed  # no protocol means bgp (OpenELB's GetProtocol)


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("172.16.236.60-172.16.236.70", False),  # shares an end: inclusive, as OpenELB
        ("172.16.236.30-172.16.236.40", False),
        ("172.16.236.45", False),
        ("172.16.236.0/26", False),  # a CIDR around the whole pool
        ("172.16.236.61-172.16.236.70", True),
        ("172.16.236.20-172.16.236.39", True),  # not CIDR-aligned, adjacent, fine
        ("2001:db8::/64", True),  # other family never overlaps
    ],
)
def test_address_overlap(address: str, ok: bool) -> None:
    v = judge(l2("eth0", address=address))
    assert ("address-overlap" not in denied(v)) is ok
    if not ok:
        assert "eip address overlap with Eip eip-pool" in v.message


def test_overlapping_pools_are_named_in_one_order_however_they_came() -> None:
    # A list gives objects in name order, a watch in the order they change: the message (an
    # audit Event's, whose text the Event carries) must not depend on which.
    pools = [eip(n, "10.9.0.0/28", interface="eth0") for n in ("zeta", "alpha", "mid")]
    messages = {
        judge(l2("eth0", address="10.9.0.0/29"), build(order)).message
        for order in (pools, pools[::-1], pools[1:] + pools[:1])
    }
    (message,) = messages
    assert message.index("Eip alpha") < message.index("Eip mid") < message.index("Eip zeta")


def test_address_syntax() -> None:
    v = judge(l2("eth0", address="172.16.236.70-172.16.236.61"))
    assert denied(v) == {"address-syntax"}
    assert "invalid eip address format" in v.message and "reversed" in v.message


def _with_spec(**fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = l2("eth0")
    obj["spec"] = {**obj["spec"], **fields}
    return obj


@pytest.mark.parametrize(
    ("fields", "field", "value", "advice"),
    [
        ({"address": 10}, "spec.address", "integer", 'Quote it in YAML, e.g. address: "'),
        ({"interface": ["eth0"]}, "spec.interface", "array", "one NIC name or can_reach"),
        ({"protocol": "Layer2"}, "spec.protocol", "Layer2", 'Did you mean "layer2"?'),
        ({"protocol": "ospf"}, "spec.protocol", "ospf", 'Write one of "bgp", "layer2", "vip".'),
        # The enum has no "": the API server refuses an explicit empty protocol (a Helm
        # value left unset), only an absent one means bgp.
        ({"protocol": ""}, "spec.protocol", "", "Leave spec.protocol out for bgp"),
        ({"protocol": ["layer2"]}, "spec.protocol", "array", "must be of type string"),
        ({"disable": "true"}, "spec.disable", "string", "true or false, unquoted"),
        ({"disable": 1.5}, "spec.disable", "number", "must be of type boolean"),
    ],
)
def test_a_field_the_crd_schema_rejects_is_named_not_read_as_empty(
    fields: dict[str, Any], field: str, value: str, advice: str
) -> None:
    v = judge(_with_spec(**fields))
    # Only the schema rule: a wrong-typed address is not also "empty address", a
    # wrong-typed interface not also "interface required".
    assert denied(v) == {"spec-schema"}
    (violation,) = v.denied_by
    assert (violation.field, violation.value) == (field, value)
    assert advice in violation.detail
    assert "the API server rejects the Eip before any webhook sees it" in violation.detail
    assert violation.short.startswith(field)  # a warning (policy: warn) says which field


def test_with_spec_schema_off_a_wrong_type_is_judged_as_read() -> None:
    # Turning the rule off must not turn the field's other rules off with it: the address
    # then reads as empty, as before the rule existed, and is denied as such.
    off = Policy(actions={"spec-schema": Action.OFF})
    v = judge(_with_spec(address=10), policy=off)
    assert denied(v) == {"address-syntax"} and "empty address" in v.message
    v = judge(_with_spec(interface=["eth0"]), policy=off)
    assert denied(v) == {"interface-required"}
    warn = Policy(actions={"spec-schema": Action.WARN})  # reported, as a warning: no double
    v = judge(_with_spec(address=10), policy=warn)
    assert v.allowed and warned(v) == {"spec-schema"}


def test_a_spec_that_is_no_mapping_is_one_error_and_a_missing_one_an_empty_address() -> None:
    obj = l2("eth0")
    obj["spec"] = "172.16.236.61"
    v = judge(obj)
    assert [(x.rule, x.field, x.value) for x in v.denied_by] == [("spec-schema", "spec", "string")]
    del obj["spec"]  # as OpenELB's webhook says it: "invalid eip address format"
    assert denied(judge(obj)) == {"address-syntax"}
    obj["spec"] = {"interface": "eth0"}
    assert denied(judge(obj)) == {"address-syntax"}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)
_SCHEMA_OK: dict[str, Callable[[Any], bool]] = {
    "address": lambda x: x is None or isinstance(x, str),
    "interface": lambda x: x is None or isinstance(x, str),
    "protocol": lambda x: x is None or x in ("bgp", "layer2", "vip"),
    "disable": lambda x: x is None or isinstance(x, bool),
}


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "address": _JSON | st.just("172.16.236.61"),
            "interface": _JSON | st.just("eth0"),
            "protocol": _JSON | st.sampled_from(["layer2", "Layer2", "vip", ""]),
            "disable": _JSON,
        },
    )
)
def test_any_json_in_the_spec_is_judged_and_bad_types_are_schema_errors(
    spec: dict[str, Any],
) -> None:
    obj = l2("eth0")
    obj["spec"] = spec
    verdict = judge(obj)  # never raises, whatever the values
    wrong = {f"spec.{f}" for f, ok in _SCHEMA_OK.items() if not ok(spec.get(f))}
    assert {v.field for v in verdict.denied_by if v.rule == "spec-schema"} == wrong


def test_a_well_formed_eip_has_no_field_errors() -> None:
    for protocol in ("bgp", "layer2", "vip"):
        for disable in (None, True, False):
            fields: dict[str, Any] = {"protocol": protocol}
            if disable is not None:
                fields["disable"] = disable
            assert Eip.from_object(_with_spec(**fields)).field_errors == ()
    assert Eip.from_object(l2(None)).field_errors == ()
    for address in ("10.0.0.1", "10.0.0.0/24", "10.0.0.0/0", "10.0.0.1-10.0.0.9"):
        old = eip("old", address, protocol="layer2", interface=None, api_version=V1ALPHA1)
        assert Eip.from_object(old).field_errors == (), address


# The served v1alpha1 schema (openelb config/crd/bases/network.kubesphere.io_eips.yaml):
# address with the pattern below (IPv4 only), protocol enum bgp|layer2, disable,
# usingKnownIPs; no interface (the API server drops it, kubectl's strict field validation
# refuses it). What the API server says of each, and the field eip-guard names.
@pytest.mark.parametrize(
    ("spec", "field", "detail"),
    [
        ({"protocol": "vip"}, "spec.protocol", 'must be one of "bgp", "layer2"'),  # enum
        ({"protocol": ""}, "spec.protocol", 'must be one of "bgp", "layer2"'),
        ({"address": "2001:db8::/120"}, "spec.address", "spec.address in body should match"),
        ({"address": "10.0.0.0/024"}, "spec.address", "spec.address in body should match"),
        ({"address": "10.0.0.0/24\n"}, "spec.address", "spec.address in body should match"),
        ({"interface": "eth0"}, "spec.interface", 'unknown field "spec.interface"'),
    ],
)
def test_a_v1alpha1_eip_is_held_to_the_v1alpha1_schema(
    spec: dict[str, Any], field: str, detail: str
) -> None:
    obj = eip("old", "172.16.236.61", protocol="bgp", interface=None, api_version=V1ALPHA1)
    obj["spec"].update(spec)
    read = Eip.from_object(obj)
    assert [(e.field, detail in e.detail) for e in read.field_errors] == [(field, True)]
    assert "network.kubesphere.io/v1alpha2" in read.field_errors[0].advice
    v = judge(obj)
    assert denied(v) == {"spec-schema"}
    if field == "spec.interface":  # dropped: OpenELB never sees it
        assert isinstance(read.interface, NoInterface) and read.interface_text == ""


def test_eip_covers_another_eips_can_reach() -> None:
    inv = cluster(eip("other", "172.16.236.200", interface="can_reach:172.16.236.75"))
    v = judge(l2("eth0"), inv)
    assert denied(v) == {"eip-covers-can-reach"}
    assert "172.16.236.75, the can_reach IP of Eip other" in v.message
    assert judge(l2("eth0", address="172.16.236.76-172.16.236.80"), inv).allowed
    # A bgp Eip's interface is never used: covering its can_reach IP harms nobody.
    bgp = cluster(eip("b", "172.16.236.201", protocol="bgp", interface="can_reach:172.16.236.75"))
    assert judge(l2("eth0"), bgp).allowed


def test_default_eip_unique() -> None:
    inv = cluster(eip("dflt", "172.16.236.220", default=True))
    v = judge(l2("eth0", default=True), inv)
    assert denied(v) == {"default-eip-unique"}
    assert "already exists a default EIP: dflt" in v.message
    assert judge(l2("eth0", default=True)).allowed
    assert judge(l2("eth0"), inv).allowed


def test_update_replaces_its_namesake_and_address_is_immutable() -> None:
    old = eip("eip-pool", "172.16.236.40-172.16.236.60", used={"172.16.236.40": "ns/nginx"})
    inv = cluster()
    same = check(Eip.from_object(old), Eip.from_object(old), inv)
    assert same.allowed, same.denied_by  # its own old version is no overlap
    moved = eip("eip-pool", "172.16.236.40-172.16.236.61")
    v = check(Eip.from_object(moved), Eip.from_object(old), inv)
    assert denied(v) == {"address-immutable"}
    assert "was '172.16.236.40-172.16.236.60'" in v.message


def with_annotation(obj: dict[str, Any], value: str) -> dict[str, Any]:
    annotations = {"eip.openelb.kubesphere.io/is-default-eip": value}
    return dict(obj, metadata={**obj["metadata"], "annotations": annotations})


@pytest.mark.parametrize("value", ["True", "TRUE", "tRuE"])
def test_the_default_annotation_is_read_as_openelb_reads_it(value: str) -> None:
    # OpenELB: strings.ToLower(value) == "true", for the Eip judged and those it meets.
    existing = with_annotation(eip("dflt", "172.16.236.220"), value)
    assert denied(judge(l2("eth0", default=True), cluster(existing))) == {"default-eip-unique"}
    candidate = with_annotation(l2("eth0"), value)
    assert denied(judge(candidate, cluster(eip("d", "172.16.236.230", default=True)))) == {
        "default-eip-unique"
    }
    assert judge(with_annotation(l2("eth0"), "yes"), cluster(existing)).allowed


def test_messages_name_a_few_defaults_and_quote_values_on_one_line() -> None:
    defaults = [eip(f"d{i}", f"172.16.236.{200 + i}", default=True) for i in range(10)]
    v = judge(l2("eth0", default=True), cluster(*defaults))
    assert "already exists a default EIP: d0; d1; d2; and 7 more." in v.message
    # A value quoted as Kubernetes quotes it (Go's %q), cut, however odd or long it is.
    odd = l2('can_reach:10.0.0.1"\n' + "x" * 500)
    message = judge(odd).message
    assert '"can_reach:10.0.0.1\\"\\nxxx' in message and "\n" not in message
    assert len(message) < 1000
    old = eip("candidate", "y" * 100_000)
    v = check(Eip.from_object(l2("eth0")), Eip.from_object(old), cluster())
    assert "address-immutable" in denied(v) and len(v.message) < 2000


def test_ratcheting_keeps_old_violations_as_warnings() -> None:
    # An Eip created before eip-guard with a bad can_reach: OpenELB must still manage it.
    legacy = eip("legacy", "172.16.236.150-172.16.236.151", interface="can_reach:172.16.236.152")
    inv = cluster(legacy)
    with_finalizer = dict(legacy, metadata={**legacy["metadata"], "finalizers": ["x"]})
    v = check(Eip.from_object(with_finalizer), Eip.from_object(legacy), inv)
    assert v.allowed and warned(v) == {"can-reach-node-ip"}
    # Changing the offending field to another bad value is judged afresh.
    worse = dict(legacy, spec={**legacy["spec"], "interface": "can_reach:172.16.236.153"})
    v = check(Eip.from_object(worse), Eip.from_object(legacy), inv)
    assert denied(v) == {"can-reach-node-ip"}
    # And a CREATE of the same object is denied.
    assert not check(Eip.from_object(legacy), None, inv).allowed


@pytest.mark.parametrize(("was", "now"), [("bgp", "layer2"), ("", "vip"), ("bgp", "vip")])
@pytest.mark.parametrize("interface", ["can_reach:172.16.236.152", "lo:0"])
def test_an_update_that_starts_using_a_bad_can_reach_is_denied(
    was: str, now: str, interface: str
) -> None:
    # On a bgp Eip a bad can_reach only warns (never used); the update that makes the
    # speaker use it is what breaks, and the interface it keeps is no excuse.
    old = eip("e", "172.16.236.150-172.16.236.151", protocol=was, interface=interface)
    new = eip("e", "172.16.236.150-172.16.236.151", protocol=now, interface=interface)
    inv = cluster(old)
    assert check(Eip.from_object(old), Eip.from_object(old), inv).allowed
    as_update = check(Eip.from_object(new), Eip.from_object(old), inv)
    as_create = check(Eip.from_object(new), None, inv)
    assert not as_create.allowed
    assert denied(as_update) == denied(as_create)


def test_policy_actions() -> None:
    bad = l2("can_reach:172.16.236.152")
    warn = Policy(actions={"can-reach-node-ip": Action.WARN})
    v = judge(bad, policy=warn)
    assert v.allowed and warned(v) == {"can-reach-node-ip"}
    assert v.warnings[0].startswith("eip-guard can-reach-node-ip: 172.16.236.152 is a node addr")
    off = Policy(actions={"can-reach-node-ip": Action.OFF})
    v = judge(bad, policy=off)
    assert v.allowed and not v.warned_by


def test_allow_rules_annotation_overrides_unless_forbidden() -> None:
    bad = l2("can_reach:172.16.236.152", allow="can-reach-node-ip,no-such-rule")
    v = judge(bad)
    assert v.allowed and warned(v) == {"can-reach-node-ip"}
    assert any("turned can-reach-node-ip into a warning" in n for n in v.notes)
    assert any("no-such-rule" in n for n in v.notes)
    strict = judge(bad, policy=Policy(allow_overrides=False))
    assert denied(strict) == {"can-reach-node-ip"}
    assert any("does not allow" in n for n in strict.notes)


def test_an_allow_rules_annotation_is_read_to_its_first_4_kib() -> None:
    """A client on the webhook's port sent 5 MB of rule ids (an API server caps annotations
    at 256 KiB): parsed and sorted, they held the event loop for half a second a review."""
    junk = ",".join(f"junk-{i}" for i in range(500_000))
    bad = l2("can_reach:172.16.236.152", allow="can-reach-node-ip," + junk)
    assert len(Eip.from_object(bad).allow_rules) < 500
    v = judge(bad)
    assert v.allowed and warned(v) == {"can-reach-node-ip"}
    assert any("unknown rule id(s)" in n and "junk-0" in n for n in v.notes)


def test_delete_is_allowed_and_warns_when_ips_are_in_use() -> None:
    pool = Eip.from_object(eip("eip-pool", "172.16.236.40-172.16.236.60", used={"a": "b"}))
    v = check(pool, pool, cluster(), operation=Operation.DELETE)
    assert v.allowed and v.warnings == (
        "eip-guard: Eip eip-pool hands out a to b",
        "eip-guard: Eip eip-pool's Services lose their IPs if it goes: move them to another "
        "Eip first",
    )
    empty = Eip.from_object(eip("e", "172.16.236.70"))
    assert check(empty, empty, cluster(), operation=Operation.DELETE).warnings == ()


def test_warnings_are_short_and_printable() -> None:
    bad = l2("can_reach:172.16.236.40", allow=",".join(sorted(RULE_IDS)))
    v = judge(bad)
    assert v.allowed and v.warnings
    for w in v.warnings:
        assert len(w) <= WARNING_LIMIT and w.isprintable()


def test_several_violations_in_one_message() -> None:
    v = judge(eip("x", "172.16.236.50", interface="can_reach:172.16.236.152", default=True),
              cluster(eip("d", "172.16.236.230", default=True)))  # fmt: skip
    assert denied(v) == {"address-overlap", "can-reach-node-ip", "default-eip-unique"}
    assert v.message.startswith("[") and v.message.count("Invalid value") == 3


def test_suggestion_skips_taken_addresses() -> None:
    # .1 (gateway guess) is taken by a node: the suggestion moves on to a free address.
    inv = cluster(node("gw-node", "172.16.236.1"))
    v = judge(l2("can_reach:172.16.236.152"), inv)
    assert "can_reach:172.16.236.2" in v.message
    assert judge(l2("can_reach:172.16.236.2"), inv).allowed


def calico_node(name: str, ip: str, prefix: int) -> dict[str, Any]:
    return node(name, ip, annotations={"projectcalico.org/IPv4Address": f"{ip}/{prefix}"})


def test_a_suggestion_is_found_past_long_runs_of_taken_addresses() -> None:
    # 767 consecutive node IPs, then a Service CIDR, a pool and the candidate's own pool, in
    # and across the search's windows: the first address nothing claims is suggested.
    racks = [calico_node(f"r{i}", f"10.20.{i // 256}.{i % 256}", 16) for i in range(1, 768)]
    taken = [service_cidr("svc", "10.20.3.0/24"), eip("p", "10.20.4.0-10.20.7.255")]
    inv = build([*racks, *taken, service("k", cluster_ip="10.96.0.1")])

    def candidate(interface: str) -> Eip:
        return Eip.from_object(eip("c", "10.20.8.0-10.20.8.9", interface=interface))

    v = check(candidate("can_reach:10.20.0.5"), None, inv)
    assert "e.g. can_reach:10.20.8.10." in v.message
    assert check(candidate("can_reach:10.20.8.10"), None, inv).allowed


def test_the_subnet_router_anycast_address_of_an_ipv6_node_subnet_is_a_node_ip() -> None:
    # A node forwarding IPv6 binds the first address of each on-link prefix: 'ip route get'
    # answers 'anycast ... dev lo' (checked in a network namespace). Nodes of a rack report
    # one subnet: it is named once. IPv4 network addresses route to the NIC: allowed.
    six = {"projectcalico.org/IPv6Address": "fd00:1::10/64"}
    same = {"projectcalico.org/IPv6Address": "fd00:1::11/64"}
    p2p = {"projectcalico.org/IPv6Address": "fd00:2::1/127"}
    inv = cluster(
        node("v6a", annotations=six), node("v6b", annotations=same), node("p2p", annotations=p2p)
    )

    def judged(ip: str, address: str = "fd00:1::100-fd00:1::1ff") -> Verdict:
        return judge(l2(f"can_reach:{ip}", address), inv)

    v = judged("fd00:1::")
    assert denied(v) == {"can-reach-node-ip"}
    assert v.message.count("subnet-router anycast address of node subnet fd00:1::/64") == 1
    assert "of Node v6a (annotation projectcalico.org/IPv6Address)" in v.message
    assert "can_reach:fd00:1::1." in v.message
    assert judged("fd00:1::1").allowed
    assert judged("fd00:2::", "fd00:2::100-fd00:2::1ff").allowed  # /127: no anycast
    assert judge(l2("can_reach:172.16.236.0"), inv).allowed


def test_ipv4_mapped_values_count_as_the_ipv4_openelb_reads() -> None:
    # Go's net.ParseIP reads ::ffff:a.b.c.d as a.b.c.d: a stored pool or can_reach written so
    # is the IPv4 one OpenELB serves (they were ignored: false allows), and a new can_reach
    # written so is judged as that IPv4. A new address written so is refused, with its IPv4.
    inv = cluster(
        eip("mapped", "::ffff:10.9.0.1-::ffff:10.9.0.20"),
        eip("mapped-cr", "10.8.0.0/28", interface="can_reach:::ffff:10.9.3.7"),
    )
    v = judge(l2("can_reach:10.9.0.5"), inv)
    assert denied(v) == {"can-reach-in-eip"}
    assert "Eip mapped (::ffff:10.9.0.1-::ffff:10.9.0.20)" in v.message
    assert denied(judge(l2("eth0", "10.9.0.0/24"), inv)) == {"address-overlap"}
    assert denied(judge(l2("eth0", "10.9.3.0/29"), inv)) == {"eip-covers-can-reach"}
    v = judge(l2("can_reach:::ffff:172.16.236.152"), inv)
    assert denied(v) == {"can-reach-node-ip"}  # the node's IPv4 address: not a syntax error
    assert "172.16.236.152 is a node address of Node node1" in v.message
    v = judge(l2("eth0", "::ffff:10.7.0.1-::ffff:10.7.0.9"), inv)
    assert denied(v) == {"address-syntax"}
    assert "OpenELB reads it as 10.7.0.1-10.7.0.9" in v.message
    assert "write spec.address: 10.7.0.1-10.7.0.9." in v.message


def test_mapped_values_openelb_stores_but_no_one_reads_are_unread_never_a_crash() -> None:
    # GetSize reads each end as it parses, with no family check: OpenELB stores these. They
    # raised in Eip.from_object, failing the webhook's Eip list, the agent and check.
    for address in ("::ffff:10.0.0.1-2001:db8::ffff:ffff", "::ffff:10.0.0.9-10.0.0.1"):
        stored = Eip.from_object(eip("odd", address))
        assert stored.address is None and stored.address_error
        inv = cluster(eip("odd", address))
        assert any(note.startswith("Eip odd (spec.address): ignored") for note in inv.notes)
        assert denied(judge(l2("eth0", address))) == {"address-syntax"}
    # A mapped CIDR is the IPv4 one: /120 of the mapped space is a /24.
    assert str(Eip.from_object(eip("cidr", "::ffff:10.9.0.0/120")).address) == "10.9.0.0/24"


def test_a_new_mapped_address_is_still_judged_for_overlap_when_its_form_only_warns() -> None:
    policy = Policy(actions={"address-syntax": Action.WARN})
    v = judge(l2("eth0", "::ffff:172.16.236.50"), policy=policy)
    assert denied(v) == {"address-overlap"}  # eip-pool is 172.16.236.40-172.16.236.60
    assert warned(v) == {"address-syntax"}


def test_a_stored_eip_whose_address_cannot_be_read_is_said_not_checked() -> None:
    inv = cluster(eip("broken", "10.9.0.1 - 10.9.0.20"))
    (note,) = [n for n in inv.notes if "Eip broken" in n]
    assert note.startswith("Eip broken (spec.address): ignored '10.9.0.1 - 10.9.0.20': ")
    assert note.endswith("; its pool is not checked")


def test_messages_count_what_a_warning_line_leaves_out_and_name_a_disabled_pool() -> None:
    inv = cluster(
        eip("cr1", "10.9.1.0/28", interface="can_reach:10.9.0.5"),
        eip("cr2", "10.9.2.0/28", interface="can_reach:10.9.0.6"),
    )
    covers = judge(l2("eth0", "10.9.0.0/24"), inv, policy=Policy(actions={
        "eip-covers-can-reach": Action.WARN, "address-overlap": Action.WARN}))  # fmt: skip
    assert covers.allowed
    assert any("the pool contains 10.9.0.5, the can_reach IP of Eip cr1 and 1 more" in w
               for w in covers.warnings)  # fmt: skip
    denial = judge(l2("eth0", "10.9.0.0/24"), inv).message
    assert "Once OpenELB assigns one of those IPs to a Service" in denial
    assert "Leave those IPs out of the pool" in denial
    disabled = eip("idle", "10.9.6.0/28", interface="eth0")
    disabled["spec"]["disable"] = True
    v = judge(l2("can_reach:10.9.6.3"), cluster(disabled))
    assert "lies in Eip idle (10.9.6.0/28), disabled now (enabled again, it hands out" in (
        v.message
    )


def test_a_pool_that_swallows_its_node_subnet_is_told_so_not_sent_to_its_gateway() -> None:
    v = judge(l2("can_reach:172.16.236.1", "172.16.236.0/24"))
    assert "can-reach-in-eip" in denied(v)
    assert "This Eip's own pool covers its node subnet (172.16.236.0/24)" in v.message
    assert "the gateway is a good choice" not in v.message


def test_a_pool_holding_a_node_address_or_a_reported_gateway_is_denied() -> None:
    # OpenELB would hand it to a Service and a speaker answer ARP for it: the node's (or the
    # gateway's) traffic taken from the segment (a security review's case).
    report = '{"interfaces": [{"name": "eth0", "addresses": ["172.16.236.153/24"]}],'
    report += ' "gateways": ["172.16.236.254"]}'
    inv = cluster(node("node3", annotations={"eip-guard.io/network": report}))
    v = judge(l2("eth0", "172.16.236.150-172.16.236.160"), inv)
    assert denied(v) == {"address-node-ip"}
    assert "172.16.236.152, an address of Node node1 (status.addresses InternalIP)" in v.message
    assert v.message.count("172.16.236.153,") == 1  # node2 and node3's report: one line
    assert "OpenELB would hand those IPs to a Service" in v.message
    gateway = judge(l2("eth0", "172.16.236.250-172.16.236.254"), inv)
    assert denied(gateway) == {"address-node-ip"}
    assert "172.16.236.254, a gateway reported by Node node3" in gateway.message
    assert judge(l2("eth0", "172.16.236.170-172.16.236.180"), inv).allowed
    # An Eip's own IPs in use, bound on a NIC by OpenELB's vip mode (keepalived), come back
    # as node addresses in the agent's report: not held against the Eip itself.
    vip = eip("vip", "172.16.236.200-172.16.236.210", protocol="vip",
              used={"172.16.236.201": "ns/web"})  # fmt: skip
    bound = '{"interfaces": [{"name": "eth0", "addresses": ["172.16.236.201/32"]}]}'
    with_vip = cluster(vip, node("node4", annotations={"eip-guard.io/network": bound}))
    assert "address-node-ip" not in denied(judge(vip, with_vip))
    # A single node using its own address as a Service IP: an explicit exception.
    waived = judge(l2("eth0", "172.16.236.152", allow="address-node-ip"), inv)
    assert waived.allowed and warned(waived) == {"address-node-ip"}


def test_an_object_read_twice_is_named_once_and_a_one_ip_pool_is_a_pool() -> None:
    inv = build([calico_node("n5", "10.20.0.5", 16), service("k", cluster_ip="10.96.0.1"),
                 configmap("kubevip", {"range-global": "10.20.0.9"})])  # fmt: skip

    def judged(interface: str) -> str:
        return check(
            Eip.from_object(eip("c", "10.30.0.0/28", interface=interface)), None, inv
        ).message

    assert judged("can_reach:10.20.0.5").count("Node n5") == 1
    assert "10.20.0.9 lies in kube-vip-cloud-provider pool 10.20.0.9 of ConfigMap" in judged(
        "can_reach:10.20.0.9"
    )


def test_a_known_gateway_is_suggested_first() -> None:
    report = '{"interfaces": [{"name": "eth0", "addresses": ["172.16.236.153/24"]}],'
    report += ' "gateways": ["172.16.236.254"]}'
    inv = cluster(node("node3", annotations={"eip-guard.io/network": report}))
    assert "can_reach:172.16.236.254" in judge(l2("can_reach:172.16.236.152"), inv).message


def test_a_suggestion_for_an_ip_in_no_subnet_is_of_the_pools_family() -> None:
    report = '{"interfaces": [{"name": "eth0", "addresses": ["172.16.236.153/24",'
    report += ' "2001:db8:236::153/64"]}], "gateways": ["172.16.236.254", "2001:db8:236::1"]}'
    inv = cluster(node("node3", annotations={"eip-guard.io/network": report}))
    # ::1 lies in no subnet: the lowest known subnet of the IPv6 pool's family is searched.
    six = judge(l2("can_reach:::1", address="2001:db8:77::10-2001:db8:77::20"), inv)
    assert "e.g. can_reach:2001:db8:236::1." in six.message
    four = judge(l2("can_reach:127.0.0.1", address="172.16.236.60"), inv)
    assert "e.g. can_reach:172.16.236.254." in four.message
    # A family with no known subnet gets no address of the other one: the IPv4 network's NIC
    # need not carry the IPv6 pool (tests/core/test_rules_properties.py).
    only_v4 = judge(l2("can_reach:::1", address="2001:db8:77::10"), cluster())
    assert "e.g. can_reach:" not in only_v4.message
    assert "the node network's gateway is a good choice" in only_v4.message


def test_a_suggestion_outside_the_candidates_own_pool() -> None:
    # The first free addresses of the subnet (.1-.4, cached per inventory) all lie in the
    # candidate's pool: the search goes past the pool instead of suggesting one of them.
    v = judge(l2("can_reach:172.16.236.152", address="172.16.236.1-172.16.236.30"))
    assert "e.g. can_reach:172.16.236.31." in v.message
    assert judge(l2("can_reach:172.16.236.31", address="172.16.236.1-172.16.236.30")).allowed


def test_free_addresses_are_searched_once_per_inventory() -> None:
    inv = cluster()

    def searched() -> list[object]:
        return [v for k, v in inv.memo.items() if isinstance(k, tuple) and k[0] == "free-keys"]

    first = judge(l2("can_reach:172.16.236.152"), inv)
    (cached,) = searched()  # the node subnet's free addresses
    second = judge(l2("can_reach:172.16.236.153"), inv)
    assert searched() == [cached] and searched()[0] is cached
    advice = f"e.g. can_reach:{GW}."
    assert advice in first.message and advice in second.message
    # A new inventory (a changed cluster) starts afresh: a node now holds the gateway.
    changed = cluster(node("gw-node", GW))
    assert advice not in judge(l2("can_reach:172.16.236.152"), changed).message


def test_without_a_known_subnet_the_advice_is_generic() -> None:
    inv = build([node("n", "10.1.1.1")])
    v = judge(l2("can_reach:10.1.1.1"), inv)
    assert "gateway is a good choice" in v.message


def test_unresolved_kube_vip_name_is_reported_for_can_reach() -> None:
    kv = kube_vip_pod("kv", [{"name": "address", "value": "vip.example.test"}])
    v = judge(l2(f"can_reach:{GW}"), cluster(kv))
    assert v.allowed
    assert any("vip.example.test" in w for w in v.warnings)


def test_a_cluster_without_nodes_or_services_is_not_a_silent_allow() -> None:
    """An Eip checked against a snapshot without nodes and services (a failed 'kubectl get'
    in a pipeline) is allowed, since nothing is known to conflict, but says what was not
    checked; the OpenELB #331 cluster says nothing of the sort."""
    inv = build([eip("eip-pool", "172.16.236.40-172.16.236.60")])
    v = judge(l2("can_reach:172.16.236.152"), inv)
    assert v.allowed
    nodes, services = v.notes
    assert nodes.startswith("eip-guard: not checked: node IPs, subnets and pod CIDRs: no Node")
    assert services.startswith("eip-guard: not checked: Service IPs: no Service has an IP")
    assert v.warnings == v.notes  # each fits a kubectl warning whole
    assert not judge(l2("can_reach:172.16.236.152")).notes
    # The pool itself is judged against node IPs, kube-vip VIPs, Service and pod ranges: an
    # Eip with a NIC name is told what was missing too (172.16.236.152 could be a node's).
    assert judge(eip("named", "172.16.236.152", interface="eth0"), inv).notes == v.notes
    # Only an Eip judged against nothing of the cluster needs nothing of it.
    assert not judge(eip("bad", "not-an-ip", interface="eth0"), inv).notes


def test_audit_judges_every_existing_eip() -> None:
    inv = cluster(eip("late", "172.16.236.160", interface="can_reach:172.16.236.90"))
    verdicts = audit(inv)
    assert sorted(verdicts) == ["eip-pool", "late"]
    assert verdicts["eip-pool"].allowed
    assert denied(verdicts["late"]) == {"can-reach-service-ip"}


# A /27 with a reported subnet and gateway, crowded at random: the suggestion must hold.
_HOSTS = st.integers(1, 30).map(lambda n: f"10.9.0.{n}")
_REPORT = (
    '{"interfaces": [{"name": "eth0", "addresses": ["10.9.0.2/27"]}], "gateways": ["10.9.0.1"]}'
)


@st.composite
def _crowded(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    objects: list[dict[str, Any]] = [
        node("reporter", annotations={"eip-guard.io/network": _REPORT})
    ]
    for i, ip in enumerate(draw(st.lists(_HOSTS, max_size=8))):
        objects.append(node(f"n{i}", ip))
    for i, ip in enumerate(draw(st.lists(_HOSTS, max_size=8))):
        objects.append(service(f"s{i}", external_ips=(ip,)))
    first = draw(st.integers(1, 30))
    last = draw(st.integers(first, 30))
    objects.append(eip("pool", f"10.9.0.{first}-10.9.0.{last}"))
    candidates = []
    for i in range(draw(st.integers(1, 4))):
        a = draw(st.integers(1, 30))
        b = draw(st.integers(a, 30))
        iface = f"can_reach:{draw(_HOSTS)}"
        net = "10.9.1" if i % 2 else "10.9.0"  # outside the subnet, or inside it
        candidates.append(eip(f"c{i}", f"{net}.{a}-{net}.{b}", interface=iface))
    return objects, candidates


@given(_crowded())
@settings(max_examples=150, deadline=None)
def test_a_suggestion_is_free_and_the_cache_changes_no_answer(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    objects, candidates = case
    shared = build(objects)  # one inventory for every candidate: the cached path
    for obj in candidates:
        verdict = judge(obj, shared)
        assert verdict.message == judge(obj, build(objects)).message  # fresh: no cache yet
        found = re.search(r"e\.g\. can_reach:([0-9.]+)\.", verdict.message)
        if found is None:
            continue
        fixed = dict(obj, spec=dict(obj["spec"], interface=f"can_reach:{found[1]}"))
        again = judge(fixed, build(objects))
        broken = {r for r in denied(again) | warned(again) if r.startswith("can-reach")}
        if obj["spec"]["address"].startswith("10.9.1."):
            # A pool in no known node subnet: no can_reach IP picks a NIC with a subnet
            # holding it, and the warning says so, whatever IP is suggested.
            broken.discard("can-reach-pool-subnet")
        assert not broken


def test_cni_node_annotations_deny_can_reach_ips_bound_or_routed_on_nodes() -> None:
    # A Cilium (cluster-pool IPAM) and an Antrea node: the cilium_host IP, the Cilium pod CIDR
    # and Antrea's transport-interface IP appear nowhere but in these annotations.
    inv = cluster(
        node("node3", "172.16.236.154", annotations={
            "network.cilium.io/ipv4-cilium-host": "10.0.3.12",
            "network.cilium.io/ipv4-pod-cidr": "10.0.3.0/24",
            "node.antrea.io/transport-addresses": "172.16.236.160",
        }),
    )  # fmt: skip
    assert denied(judge(l2("can_reach:10.0.3.12"), inv)) >= {"can-reach-node-ip"}
    assert "can-reach-pod-cidr" in denied(judge(l2("can_reach:10.0.3.77"), inv))
    assert "can-reach-node-ip" in denied(judge(l2("can_reach:172.16.236.160"), inv))


def test_calico_ip_pools_deny_can_reach_ips_and_eip_pools_in_the_pod_network() -> None:
    # calico-ipam: the nodes' spec.podCIDRs say nothing of the pod network; its IPPools do.
    inv = cluster(calico_pool("default-ipv4-ippool", "192.168.0.0/16"))
    v = judge(l2("can_reach:192.168.7.9"), inv)
    assert denied(v) == {"can-reach-pod-cidr"}
    (violation,) = v.denied_by
    assert "pod CIDR 192.168.0.0/16 of IPPool default-ipv4-ippool (spec.cidr)" in violation.message
    assert "pod-network device" in violation.message
    pool = judge(l2(f"can_reach:{GW}", address="192.168.200.0/28"), inv)
    assert denied(pool) == {"address-cluster-network"}
    assert "IPPool default-ipv4-ippool" in pool.denied_by[0].message


def test_a_disabled_calico_pool_still_denies_and_says_why() -> None:
    inv = cluster(calico_pool("old", "10.10.0.0/16", disabled=True))
    v = judge(l2("can_reach:10.10.0.7"), inv)
    assert denied(v) == {"can-reach-pod-cidr"}
    assert "a disabled pool: its pods keep their IPs" in v.denied_by[0].message


def test_cilium_nodes_deny_their_pod_cidrs_and_cilium_host_ip_named_once_per_node() -> None:
    host = "10.0.5.12"
    inv = cluster(
        cilium_node("node5", pod_cidrs=("10.0.5.0/24",), cilium_host=host),
        # The same node with Cilium's annotations on as well: one node, named once.
        node("node6", "172.16.236.156",
             annotations={"network.cilium.io/ipv4-cilium-host": "10.0.6.1"}),
        cilium_node("node6", cilium_host="10.0.6.1"),
    )  # fmt: skip
    assert "can-reach-pod-cidr" in denied(judge(l2("can_reach:10.0.5.77"), inv))
    v = judge(l2(f"can_reach:{host}"), inv)
    assert "can-reach-node-ip" in denied(v)
    assert "CiliumNode node5 (spec.addresses CiliumInternalIP)" in v.denied_by[0].message
    twice = judge(l2("can_reach:10.0.6.1"), inv)
    (node_ip,) = [x for x in twice.denied_by if x.rule == "can-reach-node-ip"]
    assert node_ip.message.count("10.0.6.1 is a node address") == 1, node_ip.message


def test_a_pool_over_a_cilium_nodes_pod_cidr_names_that_node_once() -> None:
    # Cilium's cluster-pool IPAM writes a node's pod CIDR into its CiliumNode and its Node's
    # annotation (and kube-controller-manager's allocation may be in spec.podCIDRs too): one
    # pod range of one node, named once, so the message names other nodes' ranges, not
    # three copies of one, and counts ranges, not where each was read.
    inv = cluster(
        node("node7", "172.16.236.157", pod_cidrs=("10.0.7.0/24",),
             annotations={"network.cilium.io/ipv4-pod-cidr": "10.0.7.0/24"}),
        cilium_node("node7", pod_cidrs=("10.0.7.0/24",)),
        cilium_node("node8", pod_cidrs=("10.0.8.0/24",)),
    )  # fmt: skip
    v = judge(l2(f"can_reach:{GW}", address="10.0.7.0-10.0.8.255"), inv)
    (pod,) = [x for x in v.denied_by if x.rule == "address-cluster-network"]
    assert pod.message.count("pod CIDR 10.0.7.0/24 of") == 1, pod.message
    assert "pod CIDR 10.0.8.0/24 of CiliumNode node8" in pod.message
    assert "more" not in pod.message


def test_a_service_range_known_only_from_kube_apiserver_flags_is_denied() -> None:
    # No ServiceCIDR object (Kubernetes before 1.33): the range is in the static Pod's flags.
    apiserver = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver-node1", "namespace": "kube-system"},
        "spec": {"containers": [{
            "name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.30.4",
            "command": ["kube-apiserver", "--service-cluster-ip-range=10.96.0.0/16"],
        }]},
    }  # fmt: skip
    inv = cluster(apiserver)
    assert "can-reach-service-ip" in denied(judge(l2("can_reach:10.96.40.1"), inv))
    pool = l2(f"can_reach:{GW}", address="10.96.200.0/24")
    assert "address-cluster-network" in denied(judge(pool, inv))
