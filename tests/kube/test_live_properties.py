"""Live mode against assembling from scratch: any sequence of watch events and relists,
fed through the reflectors into a ``LiveInventory`` with rebuilds in between (patched or
whole, as it decides), leaves the inventory, the Eip uids and the verdicts that assembling
the final objects whole gives.

``tests/core/test_inventory_update.py`` checks ``inventory.update`` on one change; this
checks the live path around it: the reflector's event handling, the stores, the changes
noted between rebuilds (an object changed twice, removed and added again under a new uid,
made irrelevant and relevant again), relists in between, and ``_patched``'s uids.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from app.core.eips import Eip
from app.core.inventory import Options, assemble, extract
from app.core.rules import check
from app.kube.config import api_client
from app.kube.live import LiveInventory
from app.kube.metrics import KubeMetrics
from app.kube.reflector import Reflector, holder
from app.kube.resources import CONFIGMAPS, EIPS, NODES, PODS, SERVICECIDRS, SERVICES, Stream
from app.kube.settings import WatchSettings
from tests.core.objects import configmap, eip, kube_vip_pod, node, service, service_cidr
from tests.core.test_inventory_update import canonical
from tests.kube.test_reflector_loop import Resp, Script

STREAMS = {
    "Node": Stream(NODES),
    "Service": Stream(SERVICES),
    "Eip": Stream(EIPS),
    "Pod": Stream(PODS, "kube-system"),
    "ConfigMap": Stream(CONFIGMAPS, "kube-system"),
    "ServiceCIDR": Stream(SERVICECIDRS),
}
NAMES = ["a", "b", "c"]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.1.9", "fd00::1"]
ips = st.sampled_from(IPS)
OPTIONS = Options(kube_vip_configmap=("kube-system", "c"))  # one of NAMES: it comes and goes
READS_A = {"configMapKeyRef": {"name": "a", "key": "vip"}}
CANDIDATES = [
    eip("candidate", r, interface=f"can_reach:{ip}")
    for r in ["10.0.0.0/30", "10.0.1.9", "fd00::/126", "10.0.2.0/28"]
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.1.9", "fd00::1", "10.0.2.1"]
]


@st.composite
def objects(draw: st.DrawFn, kind: str, name: str) -> dict[str, Any]:
    """An object of ``kind``, relevant or not, with values that collide across objects."""
    if kind == "Node":
        return node(name, *draw(st.lists(ips, max_size=2)))
    if kind == "Service":
        return service(
            name,
            cluster_ip=draw(st.none() | ips),
            ingress=tuple(draw(st.lists(ips, max_size=1))),
        )
    if kind == "Eip":
        return eip(
            name,
            draw(st.sampled_from(["10.0.0.0/30", "10.0.1.9", "fd00::/126", "10.0.2.0/28"])),
            interface=draw(st.sampled_from(["eth0", "can_reach:10.0.0.1"])),
            default=draw(st.booleans()),
            used=draw(st.sampled_from([None, {"10.0.0.2": "default/a"}])),
        )
    if kind == "Pod":
        return draw(
            st.sampled_from(
                [
                    kube_vip_pod(name, [{"name": "address", "value": "10.0.0.2"}]),
                    kube_vip_pod(name, [{"name": "address", "valueFrom": READS_A}]),
                    kube_vip_pod(name, [{"name": "vip_address", "value": "10.0.1.9"}]),
                    {**kube_vip_pod(name, []), "spec": {"containers": [{"name": "dns"}]}},
                ]
            )
        )
    if kind == "ConfigMap":
        return draw(
            st.sampled_from(
                [
                    configmap(name, {"vip": "10.0.0.1"}),
                    configmap(name, {"vip": "10.0.1.9"}),
                    configmap(name, {"other": "x"}),
                    configmap(name, {"range-global": "10.0.0.1-10.0.0.2"}),  # read as c
                ]
            )
        )
    return service_cidr(name, draw(st.sampled_from(["10.0.0.0/30", "10.96.0.0/12", "fd00::/120"])))


@st.composite
def steps(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], list[tuple[str, ...]]]:
    """Objects to list first, then events, relists and rebuilds."""
    first = {}
    for kind in STREAMS:
        for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=2)):
            first[f"{kind}/{name}"] = draw(objects(kind, name))
    out: list[tuple[str, ...]] = []
    for _ in range(draw(st.integers(1, 25))):
        what = draw(st.sampled_from(["event"] * 6 + ["rebuild"] * 2 + ["relist"]))
        kind = draw(st.sampled_from(list(STREAMS)))
        out.append((what, kind, draw(st.sampled_from(NAMES)), str(draw(st.integers(0, 10**6)))))
    return first, out


def rebuilt(source: LiveInventory, truth: dict[str, dict[str, Any]]) -> None:
    published = source.rebuild()
    final = list(truth.values())
    whole = assemble(extract(o, OPTIONS) for o in final)
    assert canonical(published.inventory) == canonical(whole)
    assert published.inventory.fact_count == whole.fact_count
    uids = {o["metadata"]["name"]: o["metadata"]["uid"] for o in final if o["kind"] == "Eip"}
    assert dict(published.eip_uids) == uids
    for candidate in CANDIDATES:
        ours = check(Eip.from_object(candidate), None, published.inventory).rule_ids
        assert ours == check(Eip.from_object(candidate), None, whole).rule_ids


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps(), st.data())
def test_live_events_leave_the_inventory_assembling_the_final_objects_gives(
    plan: tuple[dict[str, dict[str, Any]], list[tuple[str, ...]]], data: st.DataObject
) -> None:
    first, actions = plan
    api = api_client(host="http://127.0.0.1:9")  # never contacted: the scripts answer
    source = LiveInventory(api, STREAMS.values(), KubeMetrics(CollectorRegistry()), options=OPTIONS)
    rv = 100
    truth: dict[str, dict[str, Any]] = {}

    def stamped(obj: dict[str, Any], uid: str) -> dict[str, Any]:
        nonlocal rv
        rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"] = {**obj["metadata"], "uid": uid, "resourceVersion": str(rv)}
        return obj

    def reflector(kind: str, *answers: Resp) -> Reflector[Any]:
        return Reflector(
            STREAMS[kind], api, source, keep=holder(OPTIONS), lister=Script(*answers),
            metrics=KubeMetrics(CollectorRegistry()), settings=WatchSettings(),
            stop=threading.Event(),
        )  # fmt: skip

    def relist(kind: str) -> None:
        items = [copy.deepcopy(o) for k, o in truth.items() if k.startswith(f"{kind}/")]
        for o in items:  # list items carry no apiVersion/kind
            del o["kind"], o["apiVersion"]
        r = reflector(kind, Resp({"metadata": {"resourceVersion": str(rv)}, "items": items}))
        assert r._list() == str(rv)

    try:
        for key, obj in first.items():
            truth[key] = stamped(obj, f"uid-{key}-0")
        for kind in STREAMS:
            relist(kind)
        rebuilt(source, truth)
        for what, kind, name, salt in actions:
            key = f"{kind}/{name}"
            event: dict[str, Any]
            if what == "rebuild":
                rebuilt(source, truth)
                continue
            if what == "relist":
                relist(kind)
                continue
            if key in truth and data.draw(st.booleans()):
                gone = truth.pop(key)
                event = {"type": "DELETED", "object": stamped(gone, gone["metadata"]["uid"])}
            else:
                kind_of = "MODIFIED" if key in truth else "ADDED"
                uid = truth[key]["metadata"]["uid"] if key in truth else f"uid-{key}-{salt}"
                truth[key] = stamped(data.draw(objects(kind, name)), uid)
                event = {"type": kind_of, "object": truth[key]}
            r = reflector(kind, Resp(lines=[event]))
            r.rv = "1"
            r._watch_once()
            assert r.rv == event["object"]["metadata"]["resourceVersion"]
        rebuilt(source, truth)
    finally:
        api.close()  # type: ignore[no-untyped-call]
