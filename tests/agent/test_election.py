"""OpenELB's election: lowest sha256(node + "#" + ip) among qualifying live nodes."""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.agent.election import (
    Claims,
    candidates,
    cluster_view,
    elect,
    mine,
    winners,
)
from app.core.eips import Eip
from app.core.labels import EXCLUDE_LABEL
from app.kube.agent_source import keep_eip, keep_service, keep_slice

NODES = ("node-a", "node-b", "node-c", "node-d")


def eip(name: str, used: dict[str, str], protocol: str = "layer2", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "network.kubesphere.io/v1alpha2",
        "kind": "Eip",
        "metadata": {"name": name},
        "spec": {"address": "10.0.0.0/8", "protocol": protocol, "interface": "eth0", **spec},
        "status": {"used": used},
    }


def node(name: str, *labels: str) -> dict[str, Any]:
    return {"kind": "Node", "metadata": {"name": name, "labels": dict.fromkeys(labels, "")}}


def service(ns: str, name: str, policy: str) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy}}  # fmt: skip


def slice_(ns: str, svc: str, *endpoints: tuple[str, bool | None]) -> dict[str, Any]:
    eps = []
    for node_name, ready in endpoints:
        ep: dict[str, Any] = {"nodeName": node_name, "addresses": ["10.1.0.1"]}
        if ready is not None:
            ep["conditions"] = {"ready": ready}
        eps.append(ep)
    return {"kind": "EndpointSlice", "endpoints": eps,
            "metadata": {"namespace": ns, "name": f"{svc}-x",
                         "labels": {"kubernetes.io/service-name": svc}}}  # fmt: skip


def lowest(ip: str, nodes: tuple[str, ...]) -> str:
    return min(nodes, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).hexdigest())


def ip_won_by(winner: str, among: tuple[str, ...]) -> str:
    """An IP that ``winner`` wins among ``among``."""
    return next(f"10.0.0.{n}" for n in range(1, 250) if lowest(f"10.0.0.{n}", among) == winner)


def test_elect_is_the_lowest_hash() -> None:
    ips = [f"10.0.0.{i}" for i in range(1, 40)]
    for ip in ips:
        assert elect(ip, NODES) == lowest(ip, NODES)
    # Every node wins some IP: the hash spreads announcers.
    assert {elect(ip, NODES) for ip in ips} == set(NODES)
    assert elect("10.0.0.1", ()) is None


def test_each_ip_has_exactly_one_announcer() -> None:
    used = {f"10.0.0.{i}": f"default/svc{i}" for i in range(1, 30)}
    view = cluster_view([eip("pool", used)])
    announced = [a.ip for n in NODES for a in mine(view, NODES, n)]
    assert sorted(announced) == sorted(used)


def test_only_layer2_eips_that_are_enabled() -> None:
    view = cluster_view([
        eip("bgp", {"10.0.0.1": "a/b"}, protocol="bgp"),
        eip("vip", {"10.0.0.2": "a/b"}, protocol="vip"),  # keepalived speaks for vip
        eip("off", {"10.0.0.3": "a/b"}, disable=True),
        eip("l2", {"10.0.0.4": "a/b"}),
    ])  # fmt: skip
    assert [a.ip for a in view.assignments] == ["10.0.0.4"]
    assert {e.name for e in view.eips} == {"bgp", "vip", "off", "l2"}


def test_excluded_and_dead_nodes_do_not_announce() -> None:
    ip = "10.0.0.7"
    first = lowest(ip, NODES)
    objects = [eip("pool", {ip: "default/web"}), node(first, EXCLUDE_LABEL)]
    rest = tuple(n for n in NODES if n != first)
    assert winners(cluster_view(objects), NODES)[ip] == lowest(ip, rest)
    alive = rest[:2]
    assert winners(cluster_view(objects[:1]), alive)[ip] == lowest(ip, alive)


def conditions(name: str, **status: str) -> dict[str, Any]:
    """A Node whose conditions (type: status) are ``status``, as kubelet writes them."""
    found = [{"type": t, "status": s, "reason": "x"} for t, s in status.items()]
    return {"kind": "Node", "metadata": {"name": name}, "status": {"conditions": found}}


def test_nodes_openelb_deems_not_ready_do_not_announce() -> None:
    """OpenELB's speaker manager takes the nodes passing util.NodeReady for a Service that
    is not Local: a Ready other than True, or a NetworkUnavailable other than False (a broken
    network plugin), rules a node out. A probe saw such nodes keep winning IPs here."""
    ip = "10.0.0.7"
    first = lowest(ip, NODES)
    rest = tuple(n for n in NODES if n != first)
    for status in ({"Ready": "False"}, {"Ready": "Unknown"},
                   {"Ready": "True", "NetworkUnavailable": "True"},
                   {"Ready": "True", "NetworkUnavailable": "Unknown"}):  # fmt: skip
        view = cluster_view([eip("pool", {ip: "default/web"}), conditions(first, **status)])
        assert winners(view, NODES)[ip] == lowest(ip, rest), status
        assert mine(view, NODES, first) == ()
    # Ready, or saying nothing of it (a snapshot written by hand): a candidate as before.
    for status in ({"Ready": "True", "NetworkUnavailable": "False", "DiskPressure": "True"}, {}):
        view = cluster_view([eip("pool", {ip: "default/web"}), conditions(first, **status)])
        assert winners(view, NODES)[ip] == first, status


def test_a_local_service_follows_its_endpoints_whatever_the_node_conditions() -> None:
    # As OpenELB: a Local Service's candidates are the nodes of its ready endpoints.
    ip = "10.0.0.9"
    view = cluster_view([eip("pool", {ip: "shop/web"}), service("shop", "web", "Local"),
                         slice_("shop", "web", ("node-c", True)),
                         conditions("node-c", Ready="False")])  # fmt: skip
    assert winners(view, NODES)[ip] == "node-c"


def test_local_traffic_policy_needs_a_ready_endpoint() -> None:
    ip = "10.0.0.9"
    objects = [
        eip("pool", {ip: "shop/web"}),
        service("shop", "web", "Local"),
        slice_("shop", "web", ("node-c", True), ("node-d", False), ("node-b", None)),
    ]
    view = cluster_view(objects)
    assert winners(view, NODES)[ip] == lowest(ip, ("node-b", "node-c"))  # no ready: no
    assert winners(view, ("node-a", "node-d"))[ip] is None  # nobody qualifies: silence


def test_a_shared_ip_with_one_cluster_policy_service_uses_every_node() -> None:
    ip = "10.0.0.11"
    objects = [
        eip("pool", {ip: "shop/web;shop/api"}),
        service("shop", "web", "Local"),
        service("shop", "api", "Cluster"),
        slice_("shop", "web", ("node-c", True)),
    ]
    assert winners(cluster_view(objects), NODES)[ip] == lowest(ip, NODES)


def test_one_ip_written_two_ways_is_one_election() -> None:
    # The hash is of the IP's text: two spellings elected two nodes, and both answered.
    view = cluster_view([eip("v6", {"2001:db8:77::102": "shop/a", "2001:DB8:77::0102": "shop/b"},
                             address="2001:db8:77::100-2001:db8:77::120")])  # fmt: skip
    (only,) = view.assignments
    assert only.ip == "2001:db8:77::102" and only.services == ("shop/a", "shop/b")
    assert sum(bool(mine(view, NODES, n)) for n in NODES) == 1


def test_one_ip_in_two_eips_is_one_election_over_both_services() -> None:
    # Eip a's Service uses every node; Eip b's is Local with its endpoint on node-d only.
    # Elected apart, two nodes could win the IP; together, the cluster-wide Service counts.
    objects = [
        eip("b", {"10.0.0.101": "shop/loc"}),
        eip("a", {"10.0.0.101": "shop/web"}),
        service("shop", "loc", "Local"),
        slice_("shop", "loc", ("node-d", True)),
    ]
    view = cluster_view(objects)
    (only,) = view.assignments
    assert only.eip.name == "a" and [e.name for e in only.eips] == ["a", "b"]
    assert only.services == ("shop/loc", "shop/web")
    assert candidates(only, NODES, view) == set(NODES)
    assert sum(bool(mine(view, NODES, n)) for n in NODES) == 1
    assert view.ignored == ("10.0.0.101 is in status.used of Eips a, b: one node announces it",)


def test_what_status_used_may_not_make_the_agent_announce() -> None:
    # status is written by whoever may patch it; none of these may be answered for.
    used = {
        "10.0.0.12": "x/node-address-outside-the-pool",
        "0.0.0.0": "x/a",
        "127.0.0.1": "x/b",
        "224.0.0.5": "x/c",
        "fe80::1%eth9": "x/d",
        "not-an-ip": "x/e",
        "192.0.2.101": "shop/web",
    }
    view = cluster_view([eip("pool", used, address="192.0.2.100-192.0.2.110")])
    assert [a.ip for a in view.assignments] == ["192.0.2.101"]
    reasons = "\n".join(view.ignored)
    assert len(view.ignored) == 6
    assert "'10.0.0.12' is not announced: it lies outside spec.address" in reasons
    assert "'0.0.0.0' is not announced: it is " in reasons
    assert "'fe80::1%eth9' is not announced: " in reasons and "zone" in reasons


def test_what_live_mode_keeps_judges_as_the_whole_objects() -> None:
    """The agent keeps a trimmed copy of each Service and EndpointSlice (a Service only when
    it is Local); the election must see the same cluster in the copies as in the objects."""
    objects = [
        service("shop", "web", "Local"),
        service("shop", "api", "Cluster"),
        slice_("shop", "web", ("node-a", True), ("node-b", False), ("node-c", None)),
        slice_("shop", "api", ("node-d", True)),
        {"kind": "EndpointSlice", "metadata": {"namespace": "shop", "name": "odd"},
         "endpoints": [{"addresses": ["10.1.0.9"]}, "not an endpoint"]},
    ]  # fmt: skip
    keep = {"Service": keep_service, "EndpointSlice": keep_slice}
    kept = [k for o in objects if (k := keep[o["kind"]](o)) is not None]
    assert [k["metadata"]["name"] for k in kept if k["kind"] == "Service"] == ["web"]
    whole, trimmed = cluster_view(objects), cluster_view(kept)
    assert trimmed.local_services == whole.local_services == {"shop/web"}
    assert trimmed.ready_nodes == whole.ready_nodes
    assert whole.ready_nodes["shop/web"] == {"node-a", "node-c"}  # not-ready node-b is out
    # Kept: each node with a ready endpoint once, as one endpoint per node.
    web, api = (k for k in kept if k["kind"] == "EndpointSlice" and k["metadata"]["name"] != "odd")
    assert web["endpoints"] == [{"nodeName": "node-a"}, {"nodeName": "node-c"}]
    again = keep_slice(slice_("shop", "db", ("node-a", None), ("node-a", True)))
    assert again["endpoints"] == [{"nodeName": "node-a"}]
    assert again["endpoints"][0] is web["endpoints"][0]
    assert api["endpoints"] == [{"nodeName": "node-d"}]
    # Held as four fields, read as the object: equal to its dict, and to itself kept again.
    assert dict(web) == {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [{"nodeName": "node-a"}, {"nodeName": "node-c"}],
    }  # fmt: skip
    assert web == dict(web) and web == keep_slice(objects[2])
    assert web != keep_slice(slice_("shop", "web", ("node-a", True)))
    assert web != keep_slice(slice_("shop", "other", ("node-a", True), ("node-c", True)))
    odd = next(k for k in kept if k["kind"] == "EndpointSlice" and k["metadata"]["name"] == "odd")
    assert "labels" not in odd["metadata"] and odd.get("spec") is None


def test_a_kept_eip_is_the_same_eip_without_what_no_one_reads() -> None:
    """The agent keeps of an Eip what ``Eip.from_object``, the election and its Warning Events
    (the uid) read: the same Eip, the same assignments and the uid, without the last-applied
    JSON, labels or status counters."""
    applied = "kubectl.kubernetes.io/last-applied-configuration"
    objects = [
        eip("plain", {"10.0.0.1": "shop/web;shop/api"}),
        eip("spare", {}, protocol="vip", disable=True),
        eip("bgp", {"10.0.1.1": "shop/db"}, protocol="bgp"),
        eip("bad", {}, address="10.0.0.9-10.0.0.1", interface="can_reach:10.0.0.1"),
        {"apiVersion": "network.kubesphere.io/v1alpha1", "kind": "Eip",
         "metadata": {"name": "odd", "annotations": {applied: "{}", "x": "y"}}},
    ]  # fmt: skip
    for obj in objects[:4]:
        obj["metadata"].update(
            uid="u-1",
            labels={"team": "net"},
            annotations={
                "eip.openelb.kubesphere.io/is-default-eip": "true",
                "eip-guard.io/allow-rules": "can-reach-node-ip, address-overlap",
                applied: '{"spec": {"address": "10.0.0.0/24"}}',
            },
        )
        obj["spec"]["priority"] = 5
        obj["status"].update(firstIP="10.0.0.1", usage=1, ready=True, v4=True)
    kept = [keep_eip(o) for o in objects]
    assert [Eip.from_object(k) for k in kept] == [Eip.from_object(o) for o in objects]
    assert cluster_view(kept).assignments == cluster_view(objects).assignments
    assert cluster_view(objects).assignments  # the comparison covers some assignments
    assert Eip.from_object(kept[0]).allow_rules == ("can-reach-node-ip", "address-overlap")
    for k in kept:
        assert applied not in k["metadata"].get("annotations", {})
        assert set(k["metadata"]) <= {"name", "uid", "annotations"}  # no labels
        assert set(k.get("status", {})) <= {"used"}
        assert "priority" not in k["spec"]
    # The agent's Warning Events name the Eip's uid (app/cli/agent_run.py).
    assert [k["metadata"].get("uid") for k in kept] == ["u-1"] * 4 + [None]
    # Held as fields, read as the slimmed object: equal to its dict and to itself kept again.
    assert dict(kept[0]) == {
        "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
        "metadata": {"name": "plain", "uid": "u-1", "annotations": {
            "eip.openelb.kubesphere.io/is-default-eip": "true",
            "eip-guard.io/allow-rules": "can-reach-node-ip, address-overlap"}},
        "spec": {"address": "10.0.0.0/8", "protocol": "layer2", "interface": "eth0"},
        "status": {"used": {"10.0.0.1": "shop/web;shop/api"}},
    }  # fmt: skip
    assert kept[0] == dict(kept[0]) and kept[0] == keep_eip(objects[0])
    assert kept[1] == dict(kept[1]) and "status" not in kept[1]  # nothing used
    moved = copy.deepcopy(objects[0])
    moved["status"]["used"] = {"10.0.0.2": "shop/web"}
    assert keep_eip(moved) != kept[0]


@settings(max_examples=60, deadline=None)
@given(
    members=st.sets(st.sampled_from([f"node-{i}" for i in range(12)]), max_size=12),
    excluded=st.sets(st.sampled_from([f"node-{i}" for i in range(12)]), max_size=4),
    local=st.sets(st.integers(0, 19), max_size=20),
    ready=st.dictionaries(
        st.integers(0, 19), st.sets(st.sampled_from([f"node-{i}" for i in range(12)])), max_size=20
    ),
)
def test_mine_is_what_elect_chooses(
    members: set[str], excluded: set[str], local: set[int], ready: dict[int, set[str]]
) -> None:
    """mine() stops scoring an IP at the first candidate that beats this node; it must pick
    exactly the IPs that elect() over the candidates gives this node."""
    used = {f"10.0.0.{i}": f"shop/svc{i}" for i in range(20)}
    objects: list[dict[str, Any]] = [eip("pool", used)]
    objects += [node(n, EXCLUDE_LABEL) for n in excluded]
    objects += [service("shop", f"svc{i}", "Local") for i in local]
    objects += [
        slice_("shop", f"svc{i}", *((n, True) for n in nodes)) for i, nodes in ready.items()
    ]
    view = cluster_view(objects)
    for n in sorted(members | excluded | {"node-0"}):
        expected = [a for a in view.assignments if elect(a.ip, candidates(a, members, view)) == n]
        assert list(mine(view, members, n)) == expected


def test_claims_wait_for_the_last_change_of_an_ip_and_not_for_the_members() -> None:
    def view_of(used: dict[str, str]) -> Any:
        view = cluster_view([eip("pool", used)])
        return view, {a.ip: a for a in view.assignments}

    claims = Claims(settle=3.0)
    view, ips = view_of({"10.0.0.1": "default/web", "10.0.0.2": "default/web"})
    a, b = ips["10.0.0.1"], ips["10.0.0.2"]
    claims.seen(view, "nodes", 0.0)  # the first view: all of it changed now
    assert claims.claimed((a,), 0.0) == () and claims.due == 3.0
    assert claims.claimed((a,), 3.0) == (a,)
    both = (a, b)
    # b won with nothing of its own changed since (a member left): at once, the same tuple.
    assert claims.claimed(both, 5.0) is both and claims.due == math.inf
    assert claims.claimed((b,), 6.0) == (b,)  # a lost: given up at once
    assert claims.claimed(both, 6.5) is both  # and won back, nothing changed: at once
    # A Node's state changed: what is newly won waits from then; what is held stays.
    claims.seen(view, "other nodes", 10.0)
    assert claims.claimed((b,), 10.0) == (b,)
    assert claims.claimed(both, 11.0) == (b,) and claims.due == 13.0
    assert claims.claimed(both, 13.0) is both
    # One IP's Services change, one leaves, one is new: the changed and the new one wait (a
    # new IP too: another agent may have seen it come in another state); won again, what
    # nothing changed for is taken at once.
    moved, ips = view_of({"10.0.0.1": "shop/other", "10.0.0.3": "default/web"})
    claims.seen(moved, "other nodes", 20.0)
    a, c = ips["10.0.0.1"], ips["10.0.0.3"]
    assert claims.claimed((a, c), 20.0) == (a,)  # a held on: kept
    assert claims.claimed((c,), 21.0) == ()  # a lost; c new at 20: it waits
    assert claims.claimed((a, c), 22.0) == ()  # a won again, changed at 20: it waits
    assert claims.claimed((a, c), 23.0) == (a, c)
    same, ips = view_of({"10.0.0.1": "shop/other", "10.0.0.3": "default/web", "10.0.0.4": "x/y"})
    claims.seen(same, "other nodes", 30.0)  # a and c unchanged, an IP added
    assert claims.claimed((), 30.0) == ()
    assert claims.claimed((ips["10.0.0.1"], ips["10.0.0.3"]), 31.0) == (
        ips["10.0.0.1"],
        ips["10.0.0.3"],
    )
