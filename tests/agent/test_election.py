"""OpenELB's election: lowest sha256(node + "#" + ip) among qualifying live nodes."""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.agent import election
from app.agent.claims import Claims, NodeStates
from app.agent.election import (
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


def test_what_a_tenant_writes_in_its_namespace_never_picks_the_ip_announced() -> None:
    """Only Eips' status.used (cluster-scoped) names IPs: a tenant's Service asking for or
    claiming a node IP, a gateway or another tenant's IP in any field adds none. Its
    EndpointSlices count for its own Services only (the namespace is the slice's), whoever
    made them, as kube-proxy counts them: they move only IPs its Services use."""
    claims = "192.0.2.1,192.0.2.102,10.0.0.12"
    evil = {
        "kind": "Service",
        "metadata": {"namespace": "evil", "name": "web", "annotations": {
            "eip.openelb.kubesphere.io/v1alpha1": "192.0.2.1",
            "lb.kubesphere.io/v1alpha1": "openelb", "kube-vip.io/loadbalancerIPs": claims}},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                 "loadBalancerIP": "192.0.2.102", "externalIPs": ["10.0.0.12"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.101"}, {"ip": "192.0.2.1"}]}},
    }  # fmt: skip
    pool = eip("pool", {"192.0.2.101": "shop/web"}, address="192.0.2.100-192.0.2.110")
    hand_made = slice_("evil", "web", ("node-d", True))
    hand_made["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = "someone"
    objects = [*map(node, NODES), pool, service("shop", "web", "Local"), evil, hand_made,
               slice_("shop", "web", ("node-a", True))]  # fmt: skip
    keep = {"Service": keep_service, "EndpointSlice": keep_slice, "Eip": keep_eip}
    kept = [keep.get(o["kind"], lambda o: o)(o) for o in objects]
    for view in (cluster_view(objects), cluster_view([k for k in kept if k is not None])):
        assert [(a.ip, a.services) for a in view.assignments] == [("192.0.2.101", ("shop/web",))]
        assert winners(view, NODES) == {"192.0.2.101": "node-a"}  # evil/web's slice: not shop's


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


class _Agent:
    """node-a's election and ``Claims`` over the views it is handed, as ``runner.Agent``
    makes them: the IPs it answers for at each moment."""

    def __init__(self) -> None:
        self.claims = Claims("node-a", settle=3.0)
        self.members = frozenset(NODES[:3])

    def look(self, now: float, objects: list[dict[str, Any]] | None = None) -> set[str]:
        self.elect(objects)
        return self.claim(now)

    def elect(self, objects: list[dict[str, Any]] | None = None) -> None:
        if objects is not None:
            self.view = cluster_view(objects)
        self.won = mine(self.view, self.members & self.view.nodes, "node-a")

    def claim(self, now: float) -> set[str]:
        view = self.view
        self.claims.seen(view, NodeStates(view.nodes, view.excluded, view.unfit), self.members, now)
        self.answered = self.claims.claimed(self.won, now)
        return {a.ip for a in self.answered}

    def later(self, now: float) -> set[str]:
        """A look with nothing new: ``claimed`` again, as the agent asks once ``due``."""
        return {a.ip for a in self.claims.claimed(self.won, now)}


def _cluster(
    policy: str = "Cluster",
    endpoints: tuple[str, ...] = ("node-b",),
    unfit: tuple[str, ...] = (),
    used: dict[str, str] | None = None,
    interface: str = "eth0",
) -> list[dict[str, Any]]:
    nodes = [
        {**node(n), "status": {"conditions": [{"type": "Ready", "status": str(n not in unfit)}]}}
        for n in NODES[:3]
    ]
    used = {X: "shop/web", Y: "shop/web"} if used is None else used
    return [*nodes, eip("pool", used, interface=interface), service("shop", "web", policy),
            slice_("shop", "web", *((n, True) for n in endpoints))]  # fmt: skip


X, Y, Z = "10.0.0.5", "10.0.0.1", "10.0.0.9"  # by hash, a < c < b; b < a < c; a < b < c


def test_claims_answer_what_this_node_wins_under_every_mix_of_what_it_saw() -> None:
    """What node-a answers for as the cluster changes: an IP it wins on every combination
    of the inputs it saw within the settle time (each taken from any moment: the others
    read each watch with lags of their own), with the members of now."""
    assert [lowest(ip, NODES[:3]) for ip in (X, Y, Z)] == ["node-a", "node-b", "node-a"]
    assert lowest(Y, ("node-a", "node-c")) == "node-a"
    agent = _Agent()
    assert agent.look(0.0, _cluster()) == set()  # the first view: no past to trust
    assert agent.claims.due == 3.0 and agent.later(3.0) == {X}
    assert agent.claims.due == math.inf
    # node-c turns NotReady: node-a beats it for X, which stays answered; nothing is won.
    assert agent.look(10.0, _cluster(unfit=("node-c",))) == {X}
    # node-b too: Y is node-a's now, but node-b won it until 11 s: it waits until 14 s.
    assert agent.look(11.0, _cluster(unfit=("node-b", "node-c"))) == {X}
    assert agent.claims.due == 13.0 and agent.later(13.0) == {X}  # node-c's change is over
    assert agent.claims.due == 14.0 and agent.later(14.0) == {X, Y}
    # Both Ready again: Y lost at once. node-b's Lease lapses: Y taken at once (a member
    # that left was fenced), and given back at once when it joins again (after its warm-up).
    assert agent.look(20.0, _cluster()) == {X}
    agent.members = frozenset({"node-a", "node-c"})
    assert agent.look(30.0) == {X, Y}
    agent.members = frozenset(NODES[:3])
    assert agent.look(31.0) == {X}
    # An Eip's other fields change no election: nothing waits.
    won = agent.look(40.0, _cluster(interface="eth1"))
    assert won == {X} and agent.claims.claimed(agent.won, 40.0) is agent.won
    # web turns Local, node-a and node-c ready: while it was Cluster its ready nodes were not
    # kept, so whoever had an endpoint then could hold both IPs: they wait.
    assert agent.look(50.0, _cluster("Local", ("node-a", "node-c"))) == set()
    assert agent.later(53.0) == {X, Y}
    # An endpoint on node-b: Y lost at once; X stays (node-a beats node-b), ...
    assert agent.look(60.0, _cluster("Local", ("node-a", "node-b", "node-c"))) == {X}
    # ... and gone again: Y waits (node-b held it until 70 s), X stays.
    assert agent.look(70.0, _cluster("Local", ("node-a", "node-c"))) == {X}
    assert agent.later(72.9) == {X} and agent.later(73.0) == {X, Y}
    # node-a's endpoint is no longer ready: both lost at once; ready again, both wait.
    assert agent.look(80.0, _cluster("Local", ("node-c",))) == set()
    assert agent.look(81.0, _cluster("Local", ("node-a", "node-c"))) == set()
    assert agent.later(84.0) == {X, Y}
    # X moves to a Cluster Service: node-a wins it among every node as among web's ready
    # nodes, so it stays. Z is new to the view: it waits (another agent may have seen it
    # come under other Services).
    used = {X: "shop/api", Y: "shop/web", Z: "shop/web"}
    assert agent.look(90.0, _cluster("Local", ("node-a", "node-c"), used=used)) == {X, Y}
    assert agent.later(93.0) == {X, Y, Z}
    # Y moves to the Cluster Service: node-b wins it there, node-a gives it up at once;
    # back to web, it waits (node-b may still see it under shop/api).
    used = {X: "shop/api", Y: "shop/api", Z: "shop/web"}
    assert agent.look(100.0, _cluster("Local", ("node-a", "node-c"), used=used)) == {X, Z}
    used = {X: "shop/api", Y: "shop/web", Z: "shop/web"}
    assert agent.look(101.0, _cluster("Local", ("node-a", "node-c"), used=used)) == {X, Z}
    assert agent.later(104.0) == {X, Y, Z}


def test_claims_answer_when_due_says_the_wait_is_over() -> None:
    """The agent asks ``claimed`` again only once its clock reaches ``due``: what waited is
    answered then, not a look later. ``now - when < settle`` held at ``when + settle`` for
    some times (1.1 + 3.0 is 4.1, and 4.1 - 1.1 is 2.9999999999999996)."""
    agent = _Agent()
    assert agent.look(1.1, _cluster()) == set()  # the first view
    assert agent.claims.due == 1.1 + 3.0 and agent.later(agent.claims.due) == {X}
    # node-b and node-c turn NotReady: Y, node-b's until then, waits for 3 s.
    assert agent.look(5.2, _cluster(unfit=("node-b", "node-c"))) == {X}
    assert agent.claims.due == 5.2 + 3.0 and agent.later(agent.claims.due) == {X, Y}
    assert agent.claims.due == math.inf


def test_claims_score_nothing_for_changes_that_cannot_move_an_ip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What changes another Service, or a node that is no member, costs ``claimed`` no score
    per won IP, and answers the same tuple; a node that turns NotReady costs two scores per
    IP it was a candidate for (this node's and its own), once."""
    used = {f"10.1.{i // 250}.{i % 250 + 1}": "shop/web" for i in range(1000)}

    def objects(unfit: str = "", endpoints: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        nodes = [
            {**node(n), "status": {"conditions": [{"type": "Ready", "status": str(n != unfit)}]}}
            for n in NODES
        ]
        return [*nodes, eip("pool", used), service("shop", "web", "Cluster"),
                service("shop", "other", "Local"),
                slice_("shop", "other", *((n, True) for n in endpoints))]  # fmt: skip

    agent = _Agent()
    agent.members = frozenset({"node-a", "node-b"})
    agent.look(0.0, objects())
    answered = agent.claims.claimed(agent.won, 3.0)
    assert answered is agent.won and 300 < len(answered) < 700
    scored: list[str] = []
    real = election.score

    def counted(node_name: str, ip: str) -> bytes:
        scored.append(ip)
        return real(node_name, ip)

    monkeypatch.setattr(election, "score", counted)
    ips = {a.ip for a in answered}
    for at, unfit, endpoints in ((10.0, "", ("node-b",)), (20.0, "node-c", ("node-b",))):
        agent.elect(objects(unfit, endpoints))
        scored.clear()
        assert agent.claim(at) == ips and agent.answered is agent.won and scored == []
    # node-b turns NotReady: node-a wins every IP; those node-b beat wait.
    agent.elect(objects("node-b", ("node-b",)))
    scored.clear()
    assert agent.claim(30.0) == ips
    assert len(agent.won) == 1000 and len(scored) == 2000
    assert agent.later(33.0) == set(used)


def _two_services(
    web: tuple[str, ...], api: tuple[str, ...], excluded: str = ""
) -> list[dict[str, Any]]:
    """Y listed for two Local Services, shop/web and shop/api, ready on these nodes."""
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    nodes = [{**node(n, *([EXCLUDE_LABEL] if n == excluded else [])), **ready}
             for n in NODES[:3]]  # fmt: skip
    return [*nodes, eip("pool", {Y: "shop/web;shop/api"}),
            service("shop", "web", "Local"), service("shop", "api", "Local"),
            slice_("shop", "web", *((n, True) for n in web)),
            slice_("shop", "api", *((n, True) for n in api))]  # fmt: skip


def test_claims_of_an_ip_of_two_services_take_the_ready_nodes_of_both() -> None:
    """An IP shared by two Local Services has the ready nodes of both as candidates: a
    change of either may move it (Y: by hash node-b < node-a < node-c)."""
    agent = _Agent()
    assert agent.look(0.0, _two_services(("node-a",), ("node-c",))) == set()
    assert agent.later(3.0) == {Y}  # node-a beats node-c
    # web gains node-c, which node-a beats: nothing can move Y, it stays answered.
    assert agent.look(10.0, _two_services(("node-a", "node-c"), ("node-c",))) == {Y}
    # api's endpoint moves to node-b, which beats node-a: Y lost at once ...
    assert agent.look(20.0, _two_services(("node-a", "node-c"), ("node-b",))) == set()
    # ... and back on node-c: node-b may still see api ready on it, so Y waits.
    assert agent.look(30.0, _two_services(("node-a", "node-c"), ("node-c",))) == set()
    assert agent.later(32.9) == set() and agent.later(33.0) == {Y}
    # web loses node-a: api's nodes alone (node-c) hold Y, node-a has no endpoint: lost.
    assert agent.look(40.0, _two_services(("node-c",), ("node-c",))) == set()
    # node-a ready for api: another agent may still see api ready on node-c alone, where
    # node-c wins: Y waits.
    assert agent.look(41.0, _two_services(("node-c",), ("node-a", "node-c"))) == set()
    assert agent.later(44.0) == {Y}
    # api's endpoint on node-b, which beats node-a: lost. node-b gets the exclude label:
    # node-a wins Y now, but an agent that has not seen the label yet counts node-b, with
    # api's endpoint on it: Y waits, whichever Service node-b's endpoint belongs to.
    assert agent.look(50.0, _two_services(("node-a",), ("node-b",))) == set()
    assert agent.look(60.0, _two_services(("node-a",), ("node-b",), "node-b")) == set()
    assert agent.later(63.0) == {Y}
