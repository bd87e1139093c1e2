"""kube-vip's VIP variables as kubelet sets them: ``env`` wins over ``envFrom``, but an env
ref with ``optional: true`` to an absent ConfigMap or key sets nothing, and then the value
``envFrom`` gave the variable stands (kubelet's ``makeEnvironmentVariables``)."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.addresses import Span, parse_ip
from app.core.eips import Eip
from app.core.facts import FactKind
from app.core.inventory import Inventory, assemble, build, extract
from app.core.rules import check
from tests.core.objects import configmap, eip, kube_vip_pod, node, service

VIP = "10.0.0.50"  # in cm-b, which envFrom reads
ENV_VIP = "10.0.0.60"  # in cm-a, which the env ref reads, when it has the key
WHERE = "Pod kube-system/kv (container kube-vip"
FROM_ENV_FROM = f"{WHERE} envFrom ConfigMap cm-b key address)"


def ref(
    name: str = "cm-a",
    key: str = "vip",
    *,
    optional: bool | None = True,
    var: str = "address",
    kind: str = "configMapKeyRef",
) -> dict[str, Any]:
    """An env entry for ``var`` whose value is in ConfigMap (or Secret) ``name``, ``key``."""
    found: dict[str, Any] = {"name": name, "key": key}
    if optional is not None:
        found["optional"] = optional
    return {"name": var, "valueFrom": {kind: found}}


def pod(*env: dict[str, Any], env_from: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    made = kube_vip_pod("kv", list(env))
    made["spec"]["containers"][0]["envFrom"] = (
        env_from if env_from is not None else [{"configMapRef": {"name": "cm-b"}}]
    )
    return made


CM_B = configmap("cm-b", {"address": VIP, "vip_interface": "eth0"})
BASE = [node("n1", "10.0.0.5"), service("kubernetes", cluster_ip="10.96.0.1")]


def inv_of(*objects: dict[str, Any]) -> Inventory:
    """The inventory ``build`` makes; ``assemble`` of the extracts must make the same."""
    built = build([*BASE, *objects])
    assembled = assemble(extract(o) for o in [*BASE, *objects])
    assert vips(built) == vips(assembled) and built.gaps == assembled.gaps
    assert built.vip_configmaps == assembled.vip_configmaps
    return built


def vips(inv: Inventory) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for ip in (VIP, ENV_VIP, "10.0.0.70"):
        sources = {str(f.source) for f in inv.at(FactKind.KUBE_VIP_VIP, key(ip))}
        if sources:
            found[ip] = sources
    return found


def key(ip: str) -> int:
    return Span.of_ip(parse_ip(ip)).first


def kube_vip_gaps(inv: Inventory) -> list[str]:
    return [g for g in inv.gaps if "kube-vip" in g]


def denied_rules(inv: Inventory, ip: str) -> set[str]:
    candidate = Eip.from_object(eip("pool", "10.0.0.100-10.0.0.120", interface=f"can_reach:{ip}"))
    return {v.rule for v in check(candidate, None, inv).denied_by}


def test_an_optional_env_ref_to_a_missing_key_leaves_the_env_from_value() -> None:
    # The bug: env named 'address', so envFrom's address was never read; kube-vip binds it.
    inv = inv_of(pod(ref()), configmap("cm-a", {"other": "x"}), CM_B)
    assert vips(inv) == {VIP: {FROM_ENV_FROM}}
    assert kube_vip_gaps(inv) == []  # an optional ref that is absent sets nothing: no gap
    assert "can-reach-kube-vip" in denied_rules(inv, VIP)
    assert inv.vip_configmaps == {("kube-system", "cm-a"), ("kube-system", "cm-b")}


def test_an_optional_env_ref_to_an_absent_configmap_leaves_the_env_from_value() -> None:
    inv = inv_of(pod(ref()), CM_B)
    assert vips(inv) == {VIP: {FROM_ENV_FROM}}
    assert kube_vip_gaps(inv) == []
    assert "can-reach-kube-vip" in denied_rules(inv, VIP)


def test_an_optional_env_ref_whose_key_exists_wins_over_env_from() -> None:
    inv = inv_of(pod(ref()), configmap("cm-a", {"vip": ENV_VIP}), CM_B)
    assert vips(inv) == {ENV_VIP: {f"{WHERE} env address)"}}
    assert "can-reach-kube-vip" in denied_rules(inv, ENV_VIP)
    assert "can-reach-kube-vip" not in denied_rules(inv, VIP)
    # Present but empty, the key still sets the variable (to nothing): envFrom's is gone.
    assert vips(inv_of(pod(ref()), configmap("cm-a", {"vip": ""}), CM_B)) == {}


@pytest.mark.parametrize("optional", [None, False])
def test_a_required_env_ref_to_a_missing_key_is_a_gap_as_before(optional: bool | None) -> None:
    # The container does not start (CreateContainerConfigError): envFrom's value is not bound.
    inv = inv_of(pod(ref(optional=optional)), configmap("cm-a", {"other": "x"}), CM_B)
    assert vips(inv) == {}
    assert kube_vip_gaps(inv) == [
        f"{WHERE} env address): ConfigMap kube-system/cm-a key 'vip' not found"
    ]
    inv = inv_of(pod(ref(optional=optional)), CM_B)
    assert kube_vip_gaps(inv) == [f"{WHERE} env address): ConfigMap kube-system/cm-a not found"]


def test_env_from_stands_only_when_every_optional_env_ref_is_absent() -> None:
    second = ref("cm-c")
    both_absent = inv_of(pod(ref(), second), CM_B)
    assert vips(both_absent) == {VIP: {FROM_ENV_FROM}}
    one_present = inv_of(pod(ref(), second), configmap("cm-c", {"vip": ENV_VIP}), CM_B)
    assert vips(one_present) == {ENV_VIP: {f"{WHERE} env address)"}}
    # A value env sets for sure, before or after the optional ref, wins whatever.
    for env in ([{"name": "address", "value": "10.0.0.70"}, ref()], [ref(), ref(optional=False)]):
        assert VIP not in vips(inv_of(pod(*env), configmap("cm-a", {"x": "y"}), CM_B))


def test_a_prefixed_env_from_and_vip_address_are_matched_by_variable_name() -> None:
    made = pod(
        ref(var="vip_address"), env_from=[{"configMapRef": {"name": "cm-b"}, "prefix": "vip_"}]
    )
    inv = inv_of(made, CM_B)
    assert vips(inv) == {VIP: {f"{WHERE} envFrom ConfigMap cm-b key address)"}}
    assert vips(inv_of(made, configmap("cm-a", {"vip": ENV_VIP}), CM_B)) == {
        ENV_VIP: {f"{WHERE} env vip_address)"}
    }


def test_an_optional_secret_ref_is_never_read_so_env_from_counts() -> None:
    inv = inv_of(pod(ref("s", kind="secretKeyRef")), CM_B)
    assert vips(inv) == {VIP: {FROM_ENV_FROM}}
    assert kube_vip_gaps(inv) == [
        f"{WHERE} env address): Secret kube-system/s key vip is not read by eip-guard; "
        "a kube-vip VIP set there is not checked"
    ]
    # Required, the Secret's key sets the variable (or the container does not start).
    assert vips(inv_of(pod(ref("s", kind="secretKeyRef", optional=None)), CM_B)) == {}


# --- kube-vip binds `address` only with its control plane on --------------------------------
# cmd/kube-vip.go: `--controlplane` defaults to false; pkg/kubevip/config_environment.go: a
# non-empty cp_enable overwrites it (strconv.ParseBool); pkg/manager (startARP, startBGP,
# worker.StartControlPlane): only EnableControlPlane starts the cluster that binds `address`.
# A Services-only kube-vip (svc_enable, as kube-vip's Helm chart sets by default) binds the
# Services' IPs, never `address`.

CP = "cp_enable"
SVC_ONLY = [{"name": "svc_enable", "value": "true"}, {"name": "address", "value": VIP}]


def kv(
    env: list[dict[str, Any]],
    args: list[str] | None = None,
    env_from: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A kube-vip Pod with exactly this env (no cp_enable unless given) and these flags."""
    made = kube_vip_pod("kv", env, control_plane=None)
    container = made["spec"]["containers"][0]
    container["args"] = ["manager", *(args or [])]
    if env_from is not None:
        container["envFrom"] = env_from
    return made


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ([{"name": CP, "value": "false"}], []),  # kube-vip's Helm chart: Services only
        ([], []),  # the flag's default
        ([], ["--controlplane=false"]),
        ([{"name": CP, "value": "0"}], ["--controlplane"]),  # env wins over the flag
        ([{"name": CP, "value": ""}], ["--controlplane=F"]),  # empty is unset: the flag
        ([{"name": CP, "value": "true"}, {"name": CP, "value": "False"}], []),  # the last
    ],
)
def test_a_services_only_kube_vip_binds_no_address(
    env: list[dict[str, Any]], args: list[str]
) -> None:
    # The bug: every `address` counted, so a Services-only kube-vip's unused address
    # denied can_reach IPs and pools that nothing binds.
    inv = inv_of(kv([*env, *SVC_ONLY], args))
    assert vips(inv) == {}
    assert "can-reach-kube-vip" not in denied_rules(inv, VIP)


@pytest.mark.parametrize(
    ("env", "args"),
    [
        ([{"name": CP, "value": "true"}], []),
        ([{"name": CP, "value": "T"}], ["--controlplane=false"]),  # Go's ParseBool; env wins
        ([], ["--controlplane"]),
        ([], ["--controlplane", "false"]),  # pflag: a bool flag takes no separate value
        ([{"name": CP, "value": ""}], ["--controlplane=1"]),
    ],
)
def test_a_control_plane_kube_vip_binds_its_address(
    env: list[dict[str, Any]], args: list[str]
) -> None:
    inv = inv_of(kv([*env, *SVC_ONLY], args))
    assert vips(inv) == {VIP: {f"{WHERE} env address)"}}
    assert "can-reach-kube-vip" in denied_rules(inv, VIP)


@pytest.mark.parametrize(
    ("env", "args", "env_from"),
    [
        ([ref("cm-x", "cp", var=CP, optional=None)], [], None),  # a ConfigMap may say true
        ([], [], [{"configMapRef": {"name": "cm-x"}}]),  # so may envFrom, env not naming it
        ([{"name": CP, "value": "yes"}], [], None),  # kube-vip exits; fixed, it says true
        ([], ["--controlplane=maybe"], None),
        ([], ["--config-file=/etc/kube-vip/config.yaml"], None),  # a file may turn it on
    ],
)
def test_a_control_plane_setting_eip_guard_cannot_read_keeps_the_address(
    env: list[dict[str, Any]], args: list[str], env_from: list[dict[str, Any]] | None
) -> None:
    inv = inv_of(kv([*env, *SVC_ONLY], args, env_from))
    assert vips(inv) == {VIP: {f"{WHERE} env address)"}}


def test_a_services_only_kube_vip_has_no_address_gap_nor_flag_or_env_from_vip() -> None:
    made = kv(
        [{"name": CP, "value": "false"}, ref("s", kind="secretKeyRef", optional=None)],
        ["--address=10.0.0.70"],
        [{"configMapRef": {"name": "cm-b"}}],
    )
    inv = inv_of(made, CM_B)
    assert vips(inv) == {}
    assert kube_vip_gaps(inv) == []
    # The same Pod with its control plane on: every one of them counts again.
    made["spec"]["containers"][0]["env"][0]["value"] = "true"
    inv = inv_of(made, CM_B)
    assert vips(inv) == {"10.0.0.70": {f"{WHERE} flag --address)"}}
    assert len(kube_vip_gaps(inv)) == 1 and "Secret kube-system/s key vip" in kube_vip_gaps(inv)[0]
