"""``update``: the inventory after a change, made from the one before, must be the inventory
``assemble`` makes of the extracts after the change (or None, for a whole assemble)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.addresses import Span, ip_key, parse_ip
from app.core.eips import Eip
from app.core.facts import FactKind
from app.core.inventory import MAX_CHANGES, Extract, Inventory, assemble, extract, update
from app.core.rules import check
from tests.core.objects import configmap, eip, kube_vip_pod, node, service, service_cidr

EVERY_KEY = Span(0, 1 << 130, None)
CALICO, CALICO_V6 = "projectcalico.org/IPv4Address", "projectcalico.org/IPv6Address"
READS_O0 = {"configMapKeyRef": {"name": "o0", "key": "vip"}}
MAY_READ_O0 = {"configMapKeyRef": {"name": "o0", "key": "vip", "optional": True}}
MAY_SET_BOTH = [{"name": n, "valueFrom": MAY_READ_O0} for n in ("address", "vip_address")]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.9", "fd00::1", "fd00::2", "not-an-ip"]
RANGES = ["10.0.0.0/30", "10.0.0.2-10.0.0.5", "10.0.1.9", "10.0.2.0/28", "fd00::/126", "1-2"]
NAMES = [f"o{i}" for i in range(6)]
ips = st.sampled_from(IPS)


@st.composite
def objects(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """Any object the inventory reads, with values that collide across objects, and now and
    then one that needs a whole assemble (kube-vip values, ConfigMaps)."""
    kind = draw(st.sampled_from(["Service"] * 4 + ["Node"] * 2 + ["Eip"] * 3 + ["other"]))
    if kind == "Service":
        return service(
            name,
            draw(st.sampled_from(["a", "b"])),
            cluster_ip=draw(st.none() | ips),
            external_ips=tuple(draw(st.lists(ips, max_size=2))),
            lb_ip=draw(st.none() | ips),
            ingress=tuple(draw(st.lists(ips, max_size=2))),
        )
    if kind == "Node":
        pod_cidrs = tuple(draw(st.lists(st.sampled_from(["10.244.0.0/24", "10.244.1.0/24"]))))
        # Now and then a node subnet (Calico's annotation): its ends are indexed apart.
        calico = draw(st.sampled_from([None, "10.0.0.2/30", "10.0.1.9/24", "fd00::1/120"]))
        annotations = {} if calico is None else {CALICO_V6 if ":" in calico else CALICO: calico}
        return node(
            name, *draw(st.lists(ips, max_size=2)), pod_cidrs=pod_cidrs, annotations=annotations
        )
    if kind == "Eip":
        return eip(
            name,
            draw(st.sampled_from(RANGES)),
            protocol=draw(st.sampled_from(["layer2", "bgp"])),
            interface=draw(st.sampled_from(["eth0", "can_reach:10.0.0.1", "can_reach:fd00::9"])),
            default=draw(st.booleans()),
            # OpenELB writes status.used on every IP it hands out: the usual Eip change.
            used=draw(st.sampled_from([None, {"10.0.0.2": "a/web"}, {"10.0.0.3": "b/db"}])),
        )
    return draw(
        st.sampled_from(
            [
                service_cidr(name, "10.96.0.0/12"),
                service_cidr(name, "10.0.0.0/30", "fd00::/120"),
                configmap(name, {"range-global": "10.0.0.1-10.0.0.3"}),
                kube_vip_pod(name, [{"name": "address", "value": "10.0.0.2"}]),
                kube_vip_pod(name, [{"name": "address", "valueFrom": READS_O0}]),
                configmap(name, {"vip": "10.0.0.3"}),  # o0's is read by the Pod above
                # kubelet skips an optional env ref to an absent key: envFrom's o1 then
                # stands, so a change to either ConfigMap resolves the Pod anew.
                _env_from_o1(kube_vip_pod(name, MAY_SET_BOTH)),
                configmap(name, {"address": "10.0.0.1"}),  # read by envFrom when o1
            ]
        )
    )


def _env_from_o1(pod: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "o1"}}]
    return pod


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A store of objects by name, and the same store after some changes."""
    before = {n: draw(objects(n)) for n in draw(st.lists(st.sampled_from(NAMES), unique=True))}
    after = dict(before)
    for n in draw(st.lists(st.sampled_from(NAMES), max_size=4)):
        how = draw(st.sampled_from(["remove", "replace", "edit", "edit"]))
        if n in after and how == "remove":
            del after[n]
        elif n in after and how == "edit" and after[n]["kind"] == "Eip":
            after[n] = edited = copy.deepcopy(after[n])  # what an Eip's owner and OpenELB edit
            edited["status"] = {"used": draw(st.dictionaries(ips, st.sampled_from(["a/w", "b/d"])))}
            if draw(st.booleans()):
                edited["spec"]["interface"] = draw(st.sampled_from(["eth1", "can_reach:10.0.0.2"]))
        else:
            after[n] = draw(objects(n))
    return before, after


def canonical(inv: Inventory) -> dict[str, Any]:
    """What an inventory holds, with no order the rules do not see."""

    return {
        "eips": dict(inv.eips),
        "pools": sorted(repr(e) for e in inv.eip_pools.all()),  # every field, used included
        "can_reach": sorted((k, repr(e)) for k, e in inv.can_reach_ips.within(EVERY_KEY)),
        "defaults": inv.default_eips,
        "points": {
            kind: sorted((k, tuple(s)) for k, s in index.within(EVERY_KEY))
            for kind, index in inv.points.items()
        },
        "spans": {
            kind: sorted((f.span.first, f.span.last, tuple(f.source)) for f in index.all())
            for kind, index in inv.spans.items()
        },
        "counts": {kind: inv.count(kind) for kind in FactKind},
        "notes": sorted(inv.notes),
        "gaps": inv.gaps,
        "subnets": dict(inv.node_subnet_names),
        # Which node's fact names a subnet end depends on arrival order: the ends do not.
        "subnet_ends": sorted((k, f.span) for k, f in inv.node_subnet_ends.within(EVERY_KEY)),
    }


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[Extract], list[Extract]]:
    """The extracts that went and came, as a live store sees a change."""
    gone, new = [], []
    for n in sorted(before.keys() | after.keys()):
        old, now = before.get(n), after.get(n)
        if old is not None and now is not None and extract(old) == extract(now):
            continue
        if old is not None:
            gone.append(extract(old))
        if now is not None:
            new.append(extract(now))
    return gone, new


@settings(max_examples=400, deadline=None)
@given(histories())
def test_an_updated_inventory_is_the_one_assembled_after_the_change(
    history: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    before, after = history
    gone, new = changed(before, after)
    full = assemble(extract(o) for o in after.values())
    updated = update(assemble(extract(o) for o in before.values()), gone, new)
    if updated is None:  # only for what needs every object: kube-vip values and ConfigMaps
        assert any(ex.vip_values or ex.configmap is not None for ex in gone + new)
        return
    assert canonical(updated) == canonical(full)
    assert updated.fact_count == full.fact_count
    for candidate in [eip("new", r, interface=f"can_reach:{ip}") for r in RANGES for ip in IPS]:
        mine, theirs = Eip.from_object(candidate), Eip.from_object(candidate)
        assert check(mine, None, updated).rule_ids == check(theirs, None, full).rule_ids


def test_what_the_inventory_does_not_hold_cannot_be_removed() -> None:
    inventory = assemble([extract(service("web", cluster_ip="10.0.0.1"))])
    stranger = extract(service("db", cluster_ip="10.0.0.1"))
    assert update(inventory, [stranger], []) is None
    assert update(inventory, [extract(eip("pool", "10.0.0.0/30"))], []) is None


def test_a_service_change_patches_its_index_and_shares_the_rest() -> None:
    objects = [service(f"s{i}", cluster_ip=f"10.0.{i // 250}.{i % 250 + 1}") for i in range(600)]
    objects += [node("n1", "192.168.0.5", pod_cidrs=("10.244.0.0/24",)), eip("p", "10.9.0.0/24")]
    before = assemble(extract(o) for o in objects)
    old, new = extract(objects[7]), extract(service("s7", cluster_ip="10.1.0.1"))
    after = update(before, [old], [new])
    assert after is not None
    assert after.points[FactKind.SERVICE_IP] is not before.points[FactKind.SERVICE_IP]
    assert after.points[FactKind.NODE_IP] is before.points[FactKind.NODE_IP]
    assert after.spans[FactKind.POD_CIDR] is before.spans[FactKind.POD_CIDR]
    assert after.eip_pools is before.eip_pools  # no Eip changed
    moved, left = ip_key(parse_ip("10.1.0.1")), ip_key(parse_ip("10.0.0.8"))
    assert [f.source.name for f in after.at(FactKind.SERVICE_IP, moved)] == ["s7"]
    assert before.at(FactKind.SERVICE_IP, moved) == () == after.at(FactKind.SERVICE_IP, left)
    assert [f.source.name for f in before.at(FactKind.SERVICE_IP, left)] == ["s7"]
    before.memo["x"] = 1
    assert after.memo == {}  # answers derived from the inventory are derived anew


def test_a_configmap_no_kube_vip_value_reads_changes_nothing() -> None:
    # cluster-autoscaler rewrites kube-system/cluster-autoscaler-status every 10 s: each was
    # a whole assemble (0.2-0.4 s of CPU at the xl size) and then an audit of every Eip.
    status = configmap("cluster-autoscaler-status", {"status": "at 10:00"})
    reader = kube_vip_pod("kv", [{"name": "address", "valueFrom": READS_VIP}])
    vip = configmap("vip", {"vip": "10.0.0.9"})
    provider = configmap("kubevip", {"range-global": "10.0.0.1-10.0.0.3"})
    objects = [service("web", cluster_ip="10.0.0.1"), status, reader, vip, provider]
    before = assemble(extract(o) for o in objects)
    assert before.vip_configmaps == {("kube-system", "vip")}
    later = configmap("cluster-autoscaler-status", {"status": "at 10:01"})
    assert update(before, [extract(status)], [extract(later)]) is before
    read = configmap("vip", {"vip": "10.0.0.8"})
    assert update(before, [extract(vip)], [extract(read)]) is None  # resolved whole
    wider = configmap("kubevip", {"range-global": "10.0.0.1-10.0.0.7"})
    patched = update(before, [extract(provider)], [extract(wider)])
    assert patched is not None and patched.vip_configmaps == before.vip_configmaps
    full = assemble(extract(o) for o in [*objects[:4], wider])
    assert canonical(patched) == canonical(full)


READS_VIP = {"configMapKeyRef": {"name": "vip", "key": "vip"}}


def test_a_configmap_an_optional_env_ref_or_its_env_from_reads_is_resolved_whole() -> None:
    # kubelet skips an env ref with optional: true whose key is absent, and envFrom's value
    # stands: a change to either ConfigMap may move the VIP, so neither is patched.
    may_read = {"configMapKeyRef": {"name": "vip", "key": "vip", "optional": True}}
    reader = kube_vip_pod(
        "kv", [{"name": n, "valueFrom": may_read} for n in ("address", "vip_address")]
    )
    reader["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "env"}}]
    vip, env = configmap("vip", {"other": "x"}), configmap("env", {"address": "10.0.0.9"})
    objects = [service("web", cluster_ip="10.0.0.1"), reader, vip, env]
    before = assemble(extract(o) for o in objects)
    assert before.at(FactKind.KUBE_VIP_VIP, ip_key(parse_ip("10.0.0.9")))
    assert before.vip_configmaps == {("kube-system", "vip"), ("kube-system", "env")}
    moved, keyed = configmap("env", {"address": "10.0.0.8"}), configmap("vip", {"vip": "10.0.0.7"})
    for old, new in [(env, moved), (vip, keyed)]:
        assert update(before, [extract(old)], [extract(new)]) is None
        assert update(before, [extract(old)], []) is None
    after = assemble(extract(o) for o in [objects[0], reader, keyed, env])
    assert not after.at(FactKind.KUBE_VIP_VIP, ip_key(parse_ip("10.0.0.9")))  # env wins
    assert after.at(FactKind.KUBE_VIP_VIP, ip_key(parse_ip("10.0.0.7")))


@pytest.mark.parametrize("count", [MAX_CHANGES + 1])
def test_too_many_changes_are_assembled_whole(count: int) -> None:
    ex = [extract(service(f"s{i}", cluster_ip="10.0.0.1")) for i in range(count)]
    assert update(assemble(ex), ex, ex) is None
