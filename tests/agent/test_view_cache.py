"""The agent makes its view of the cluster, and elects, again only after a change: sources
answer the same sequence while nothing changed (runner.ClusterSource), live mode included."""

from __future__ import annotations

import copy
import ipaddress
import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.agent import election, runner
from app.agent.election import Elector, ViewMaker, cluster_view, mine
from app.agent.netlink import Address, HostNet, Link, NetlinkError, Route
from app.agent.plan import local_bindings as plan_local_bindings
from app.agent.plan import plan as plan_of
from app.agent.speaker import Speaker, Target
from app.core.labels import EXCLUDE_LABEL
from app.kube.agent_api import AgentApi
from app.kube.agent_source import WATCHES, LiveCluster
from app.kube.config import api_client
from app.kube.resources import EIPS
from tests.agent.lab import NoNics
from tests.agent.test_election import NODES, eip, ip_won_by, node, service, slice_


class _Source:
    """A ClusterSource answering a given sequence."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.answer: Sequence[Mapping[str, Any]] = objects

    def objects(self) -> Sequence[Mapping[str, Any]]:
        return self.answer

    def members(self) -> frozenset[str]:
        return frozenset(NODES)


class _NoKernel:
    def host(self, probe: Any = ()) -> Any:
        raise NetlinkError("no kernel in this test")

    def route_get(self, ip: Any) -> Any:
        raise NetlinkError("no kernel in this test")


def test_the_agent_makes_its_view_again_only_when_the_objects_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A view of a big cluster costs seconds of CPU and a tick comes every 0.5 s: the agent
    makes it again only when its source answers another sequence (sources answer the same one
    while nothing changed)."""
    made: list[int] = []

    def counted(_: ViewMaker, objects: Sequence[Mapping[str, Any]]) -> Any:
        made.append(len(objects))
        return cluster_view(objects)

    monkeypatch.setattr(ViewMaker, "view", counted)
    source = _Source([eip("pool", {"10.0.0.1": "shop/web"})])
    now = [0.0]
    agent = runner.Agent(
        runner.Settings("node-a"), source, _NoKernel(), lambda _: None, clock=lambda: now[0]
    )

    def tick() -> None:
        agent.tick()
        now[0] += 0.5  # the agent's interval

    for _ in range(3):
        tick()
    assert made == [1]
    source.answer = [*source.answer, eip("other", {"10.0.0.2": "shop/api"})]
    tick()
    tick()
    assert made == [1, 2]


def test_live_mode_answers_the_same_objects_until_one_changes() -> None:
    cluster = LiveCluster(AgentApi(api_client(host="http://127.0.0.1:9"), "ns"), "n", print)
    pool = eip("pool", {"10.0.0.1": "shop/web"})
    for stream, _keep in WATCHES:
        cluster.replace(stream.name, {("", "pool"): pool} if stream.resource is EIPS else {})
    first = cluster.objects()
    assert cluster.objects() is first and first == [pool]
    cluster.upsert("eips", ("", "pool"), dict(pool))  # a replay: equal, no change
    assert cluster.objects() is first
    cluster.remove("eips", ("", "gone"))  # nothing to remove
    assert cluster.objects() is first
    cluster.upsert("eips", ("", "pool"), eip("pool", {"10.0.0.2": "shop/web"}))
    changed = cluster.objects()
    assert changed is not first and changed[0]["status"]["used"] == {"10.0.0.2": "shop/web"}
    cluster.remove("eips", ("", "pool"))
    assert cluster.objects() == []


def test_under_constant_change_views_take_at_most_a_share_of_the_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a view that took t seconds the next waits until t / VIEW_SHARE has passed, so a
    big cluster whose objects change on every tick does not keep the agent's core busy."""
    now = [0.0]
    made: list[float] = []

    def slow(_: ViewMaker, objects: Sequence[Mapping[str, Any]]) -> Any:
        made.append(now[0])
        now[0] += 1.0  # this view took a second
        return cluster_view(objects)

    monkeypatch.setattr(ViewMaker, "view", slow)
    source = _Source([eip("pool", {"10.0.0.1": "shop/web"})])
    agent = runner.Agent(
        runner.Settings("node-a"), source, _NoKernel(), lambda _: None, clock=lambda: now[0]
    )
    for _ in range(12):  # a change before every tick, a tick every 0.5 s
        source.answer = [*source.answer]
        agent.tick()
        now[0] += 0.5
    wait = 1.0 / runner.VIEW_SHARE
    assert made[0] == 0.0 and len(made) >= 2
    assert all(later - earlier >= wait for earlier, later in itertools.pairwise(made))


def test_the_agent_elects_again_only_when_the_view_or_the_members_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elected: list[frozenset[str]] = []

    def counted(_: Elector, view: Any, members: frozenset[str]) -> Any:
        elected.append(members)
        return mine(view, members, "node-a")

    monkeypatch.setattr(Elector, "mine", counted)
    source = _Source([eip("pool", {"10.0.0.1": "shop/web"})])
    agent = runner.Agent(runner.Settings("node-a"), source, NoNics(), lambda _: None)
    for _ in range(3):
        assert agent.tick() is not None
    assert elected == [frozenset(NODES)]
    source.members = lambda: frozenset(NODES[:2])  # type: ignore[method-assign]
    agent.tick()
    agent.tick()
    assert elected == [frozenset(NODES), frozenset(NODES[:2])]


class _TrapKernel:
    """A node where 10.0.0.1 is bound on kube-ipvs0 (index 3) while ``bound`` says so."""

    def __init__(self) -> None:
        self.bound = True
        self.probed: list[tuple[Any, ...]] = []

    def host(self, probe: Any = ()) -> HostNet:
        self.probed.append(tuple(probe))
        ipvs = Link(3, "kube-ipvs0", "dummy", "", False, None, True, False)
        answer = (3,) if self.bound else ()
        return HostNet((ipvs,), (), (), {ip: answer for ip in probe})

    def route_get(self, ip: Any) -> Any:
        raise NetlinkError("no routes in this test")


def test_the_agent_warns_of_a_bound_can_reach_ip_once_per_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bindings are made again only when the view or a probed IP's devices change:
    50,000 Eips naming one can_reach IP made 50,000 of them on every tick."""
    made: list[int] = []

    def counted(by_ip: Any, host: HostNet) -> Any:
        found = plan_local_bindings(by_ip, host)
        made.append(len(found))
        return found

    monkeypatch.setattr(runner, "local_bindings", counted)
    trap = eip("trap", {}, interface="can_reach:10.0.0.1")
    twin = eip("twin", {}, interface="can_reach:10.0.0.1")
    kernel, lines = _TrapKernel(), list[str]()
    agent = runner.Agent(runner.Settings("node-a"), _Source([trap, twin]), kernel, lines.append)
    for _ in range(3):
        agent.tick()
    assert made == [2] and kernel.probed[-1] == (ipaddress.ip_address("10.0.0.1"),)
    assert len([line for line in lines if "is bound on this node (kube-ipvs0)" in line]) == 2
    kernel.bound = False
    agent.tick()
    agent.tick()
    kernel.bound = True  # bound again: warned again
    agent.tick()
    assert made == [2, 0, 2]
    assert len([line for line in lines if "is bound on this node (kube-ipvs0)" in line]) == 4


def _object(draw: st.DrawFn) -> dict[str, Any]:
    """One object of any kind the view reads, small enough that changes collide."""
    i = draw(st.integers(0, 5))
    nodes = [f"node-{n}" for n in range(4)]
    kind = draw(st.sampled_from(["Eip", "Node", "Service", "EndpointSlice", "ConfigMap"]))
    if kind == "Eip":
        ips = st.sampled_from([f"10.0.0.{n}" for n in range(6)])
        used = draw(st.dictionaries(ips, st.sampled_from(["shop/a", "shop/b", "shop/a;shop/b"])))
        return eip(f"pool-{i}", used, draw(st.sampled_from(["layer2", "bgp", "vip"])))
    if kind == "Node":
        made = node(nodes[i % 4], *draw(st.sampled_from([(), (EXCLUDE_LABEL,)])))
        status = draw(st.sampled_from([None, "True", "False"]))
        if status is not None:  # OpenELB's NodeReady rules a node out: the candidates change
            made["status"] = {"conditions": [{"type": "Ready", "status": status}]}
        return made
    if kind == "Service":
        policy = draw(st.sampled_from(["Local", "Cluster"]))
        return service("shop", draw(st.sampled_from("ab")), policy)
    if kind == "EndpointSlice":
        endpoint = st.tuples(st.sampled_from(nodes), st.sampled_from([True, False, None]))
        ready = draw(st.lists(endpoint, max_size=4))
        return slice_("shop", draw(st.sampled_from("ab")), *ready)
    return {"kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}}


objects_st = st.composite(_object)


# Changes as a live source makes them (``_changed``), and of the members.
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["replace", "copy", "remove", "add", "members"]),
        st.integers(0, 20),
        objects_st(),
        st.sets(st.sampled_from([f"node-{n}" for n in range(5)])),
    ),
    max_size=8,
)
Steps = list[tuple[str, int, dict[str, Any], set[str]]]


@settings(max_examples=150, deadline=None)
@given(first=st.lists(objects_st(), max_size=8), steps=STEPS)
def test_a_view_made_from_what_changed_is_the_view_read_whole(
    first: list[dict[str, Any]], steps: Steps
) -> None:
    """The live source swaps a changed object for a new one, drops removed ones and appends
    new ones; a ViewMaker must then see what ``cluster_view`` sees reading everything."""
    maker, current = ViewMaker(), list(first)
    assert maker.view(current) == cluster_view(current)
    for action, at, new, _ in steps:
        current = _changed(current, action, at, new)  # "members": the same objects anew
        assert maker.view(current) == cluster_view(current)


def _changed(
    objects: list[dict[str, Any]], action: str, at: int, new: dict[str, Any]
) -> list[dict[str, Any]]:
    """The list a live source answers after ``action`` (a new list, as after a change)."""
    current = list(objects)
    where = at % len(current) if current else None
    if action == "add" or where is None:
        current.append(new)
    elif action == "replace":
        current[where] = new
    elif action == "copy":  # an equal object, as after a relist
        current[where] = copy.deepcopy(current[where])
    elif action == "remove":
        del current[where]
    return current


@settings(max_examples=150, deadline=None)
@given(
    first=st.lists(objects_st(), max_size=8),
    steps=STEPS,
    node=st.sampled_from([f"node-{n}" for n in range(5)]),
)
def test_an_election_from_what_changed_is_the_election_read_whole(
    first: list[dict[str, Any]], steps: Steps, node: str
) -> None:
    """Views made by a ViewMaker keep the assignments of unchanged Eips; an Elector must
    then pick what ``mine`` picks from scratch, through changes of objects and members."""
    maker, elector, current = ViewMaker(), Elector(node), list(first)
    members = {f"node-{n}" for n in range(5)}
    view = maker.view(current)
    assert elector.mine(view, members) == mine(view, members, node)
    for action, at, new, others in steps:
        if action == "members":
            members = others
        else:
            current = _changed(current, action, at, new)
        view = maker.view(current)
        assert elector.mine(view, members) == mine(view, members, node)


def test_a_view_reads_again_only_the_objects_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[Mapping[str, Any]] = []
    part = election._part

    def counted(obj: Mapping[str, Any]) -> Any:
        read.append(obj)
        return part(obj)

    monkeypatch.setattr(election, "_part", counted)
    objects: list[dict[str, Any]] = [eip(f"pool-{i}", {f"10.0.{i}.1": "shop/a"}) for i in range(50)]
    objects += [slice_("shop", f"svc-{i}", ("node-a", True)) for i in range(50)]
    maker = ViewMaker()
    maker.view(objects)
    assert len(read) == 100
    changed = list(objects)
    changed[3] = eip("pool-3", {"10.0.3.9": "shop/a"})
    del changed[70]
    changed.append(slice_("shop", "svc-new", ("node-b", True)))
    read.clear()
    view = maker.view(changed)
    assert read == [changed[3], changed[-1]]
    assert view == cluster_view(changed)
    assert "10.0.3.9" in {a.ip for a in view.assignments}


class _GhostNicKernel(NoNics):
    """A NIC the kernel does not have (index 99999): the speaker cannot open it."""

    def host(self, probe: Any = ()) -> HostNet:
        ghost = Link(99999, "ghost0", "", "02:00:00:00:00:09", True, None, False, False)
        return HostNet((ghost,), (), (), {})


class _NicKernel:
    """eth1 on 10.0.0.0/24: a new HostNet on every look, as netlink reads it."""

    def __init__(self) -> None:
        self.mac = "02:00:00:00:00:02"

    def host(self, probe: Any = ()) -> HostNet:
        eth1 = Link(2, "eth1", "", self.mac, True, None, False, False)
        subnet = ipaddress.ip_network("10.0.0.0/24")
        address = Address(2, ipaddress.ip_address("10.0.0.5"), 24)
        return HostNet((eth1,), (address,), (Route(subnet, 2, None),))

    def route_get(self, ip: Any) -> Any:
        raise NetlinkError("no routes in this test")


class _CountingSpeaker:
    """What the agent asks of a speaker, counted."""

    def __init__(self) -> None:
        self.updates: list[Mapping[str, Target]] = []
        self.retrying = False  # a NIC whose sockets would not open, a group not joined
        self.replies, self.drops = 0, Counter[str]()

    def update(self, targets: Mapping[str, Target]) -> None:
        self.updates.append(targets)

    def announced(self) -> dict[str, frozenset[Any]]:
        return {name: t.ips for name, t in self.updates[-1].items()} if self.updates else {}

    def close(self) -> None:
        pass


def test_the_agent_plans_again_only_when_what_it_won_or_the_host_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 20,000 won IPs a plan, its targets, the speaker's update and the log's diff took
    0.35 s of every tick, while the speaker answered nothing: they are made again only after
    a change of the won assignments or of the node's links, addresses and routes."""
    planned: list[int] = []

    def counted(won: Any, host: HostNet, *parsed: Any) -> Any:
        planned.append(len(won))
        return plan_of(won, host, *parsed)

    monkeypatch.setattr(runner, "plan", counted)
    source = _Source([eip("pool", {"10.0.0.1": "shop/web"}, interface="eth1")])
    source.members = lambda: frozenset({"node-a"})  # type: ignore[method-assign]
    kernel, speaker, lines = _NicKernel(), _CountingSpeaker(), list[str]()
    # A clock that stands still: a view that took long on a busy machine would otherwise
    # put off the next one (VIEW_SHARE) past this test's ticks.
    agent = runner.Agent(runner.Settings("node-a", settle=0), source, kernel, lines.append,
                         speaker=cast(Speaker, speaker), clock=lambda: 0.0)  # fmt: skip
    for _ in range(3):
        current = agent.tick()
        assert current is not None and [str(a.ip) for a in current.announcements] == ["10.0.0.1"]
    assert planned == [1] and len(speaker.updates) == 1
    assert [line for line in lines if line.startswith("announce")] == [
        "announce 10.0.0.1 on eth1 (Eip pool, NIC by named in spec.interface)"
    ]
    assert agent.status.announced == {"eth1": 1}
    kernel.mac = "02:00:00:00:00:03"  # the host changed: planned again, the speaker told
    agent.tick()
    agent.tick()
    assert planned == [1, 1] and speaker.updates[-1]["eth1"].nic.mac[-1] == 3
    speaker.retrying = True  # something to try again: every tick, as before
    agent.tick()
    agent.tick()
    assert planned == [1, 1, 1, 1]
    speaker.retrying = False
    source.answer = [*source.answer, eip("more", {"10.0.0.2": "shop/api"}, interface="eth1")]
    agent.tick()  # a new view: elected and planned again
    agent.tick()
    assert planned == [1, 1, 1, 1, 2]
    assert len([line for line in lines if line.startswith("announce")]) == 2
    # A new view that changes nothing this node wins (a slice of another Service): a busy
    # cluster's views change every tick, and planned 5,000 IPs again each time (a review).
    source.answer = [*source.answer, slice_("shop", "other", ("node-b", True))]
    agent.tick()
    agent.tick()
    assert planned == [1, 1, 1, 1, 2]


def test_announce_is_logged_only_for_what_the_speaker_answers() -> None:
    lines: list[str] = []
    source = _Source([eip("pool", {"10.0.0.1": "shop/web"}, interface="ghost0")])
    source.members = lambda: frozenset({"node-a"})  # type: ignore[method-assign]
    speaker = Speaker(lines.append)
    agent = runner.Agent(runner.Settings("node-a", settle=0), source, _GhostNicKernel(),
                         lines.append, speaker=speaker)  # fmt: skip
    try:
        current = agent.tick()
    finally:
        speaker.close()
    assert current is not None and [a.nic for a in current.announcements] == ["ghost0"]
    assert any("ghost0: cannot open raw sockets" in line for line in lines), lines
    assert not any(line.startswith("announce ") for line in lines), lines


class _NodeBFlips:
    """``me``'s agent in a cluster whose one IP node-b wins while it is fit."""

    def __init__(self, me: str = "node-a") -> None:
        self.ip = ip_won_by("node-b", ("node-a", "node-b"))
        self.pool = eip("pool", {self.ip: "default/web"})
        self.now = [0.0]
        self.source = _Source(self.objects("True"))
        self.source.members = lambda: frozenset({"node-a", "node-b"})  # type: ignore[method-assign]
        settings = runner.Settings(me, settle=3.0)
        self.agent = runner.Agent(
            settings, self.source, NoNics(), lambda _: None, clock=lambda: self.now[0]
        )

    def objects(self, ready: str | None) -> list[dict[str, Any]]:
        """The pool and both Nodes, node-b's Ready condition ``ready`` (None: no such Node)."""
        fit = {"conditions": [{"type": "Ready", "status": "True"}]}
        nodes = {"node-a": fit}
        if ready is not None:
            nodes["node-b"] = {"conditions": [{"type": "Ready", "status": ready}]}
        return [
            self.pool,
            *({"kind": "Node", "metadata": {"name": n}, "status": s} for n, s in nodes.items()),
        ]

    def won(self) -> bool:
        """Whether this agent won the IP at this look (no NIC here: a problem of the plan)."""
        current = self.agent.tick()
        assert current is not None
        return any(p.startswith(f"Eip pool: won {self.ip}") for p in current.problems)


def test_the_agent_acts_on_a_node_turning_unfit_once_it_has_settled() -> None:
    """node-b turns NotReady: node-a takes node-b's IP only after the settle time, with no
    other change to make it elect again (claims.Claims)."""
    cluster = _NodeBFlips()
    assert not cluster.won()
    cluster.source.answer = cluster.objects("False")
    for at in (1.0, 2.0, 3.9):
        cluster.now[0] = at
        assert not cluster.won(), at
    cluster.now[0] = 4.1
    assert cluster.won()


def test_a_node_whose_node_object_is_deleted_gives_up_at_once_and_is_replaced_after_settling() -> (
    None
):
    """A machine whose Node was deleted may run on and renew its Lease: OpenELB lists the
    Nodes, so it is no candidate. Agents see the deletion at different moments: node-b's own
    agent gives the IP up at once, node-a takes it only after the settle time (it took it at
    its next look while node-b, not yet aware, still answered)."""
    others, own = _NodeBFlips(), _NodeBFlips("node-b")
    assert not own.won() and not others.won()  # the first view: node-b waits to settle
    own.now[0] = others.now[0] = 3.0
    assert own.won() and not others.won()
    for cluster in (own, others):
        cluster.source.answer = cluster.objects(None)
    own.now[0] = others.now[0] = 4.0
    assert not own.won()
    for at in (4.0, 5.0, 6.9):
        others.now[0] = at
        assert not others.won(), at
    others.now[0] = 7.0
    assert others.won()
    # Made again: node-a gives the IP up at once, node-b takes it back after settling.
    for cluster in (own, others):
        cluster.source.answer = cluster.objects("True")
    own.now[0] = others.now[0] = 8.0
    assert not others.won() and not own.won()
    own.now[0] = 11.0
    assert own.won()


def test_the_agent_takes_a_local_services_ip_only_once_its_new_endpoint_has_settled() -> None:
    """The endpoint of a Local Service moves from node-b to node-a: node-a's agent answers
    only after the settle time (election.Endpoints), never while node-b's agent, which may
    not have seen the move yet, still does."""
    cluster = _NodeBFlips()
    local = [service("default", "web", "Local")]
    cluster.source.answer = [
        *cluster.objects("True"),
        *local,
        slice_("default", "web", ("node-b", True)),
    ]
    assert not cluster.won()
    cluster.now[0] = 5.0
    cluster.source.answer = [
        *cluster.objects("True"),
        *local,
        slice_("default", "web", ("node-a", True)),
    ]
    for at in (5.0, 6.0, 7.9):
        cluster.now[0] = at
        assert not cluster.won(), at
    cluster.now[0] = 8.0
    assert cluster.won()


def test_fitness_hears_of_a_node_change_while_a_view_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A view that took 2.5 s makes the next wait 10 s (VIEW_SHARE); node-b turning NotReady
    meanwhile must still reach the election in time (a review saw node-a keep treating node-b as
    fit long after node-b had given its IP up, and the reverse)."""
    cluster = _NodeBFlips()
    slow = ViewMaker.view

    def slow_view(self: ViewMaker, objects: Sequence[Mapping[str, Any]]) -> Any:
        cluster.now[0] += 2.5
        return slow(self, objects)

    monkeypatch.setattr(ViewMaker, "view", slow_view)
    assert not cluster.won()  # the view ends at 2.5 s; the next may not start before 10 s
    cluster.now[0] = 3.0
    cluster.source.answer = cluster.objects("False")
    assert not cluster.won()
    cluster.now[0] = 6.1  # settled, and still no view since
    assert cluster.won()


def test_an_ip_lost_while_the_kernel_cannot_be_read_stops_at_once() -> None:
    # The look ended at the kernel's error before the speaker heard of the loss: a node
    # fenced (or outvoted) meanwhile kept answering as long as netlink failed (a review).
    source = _Source([eip("pool", {"10.0.0.1": "shop/web"}, interface="eth1")])
    source.members = lambda: frozenset({"node-a"})  # type: ignore[method-assign]
    kernel, speaker = _NicKernel(), _CountingSpeaker()
    agent = runner.Agent(runner.Settings("node-a", settle=0), source, kernel, lambda _: None,
                         speaker=cast(Speaker, speaker))  # fmt: skip
    agent.tick()
    assert speaker.announced() == {"eth1": {ipaddress.ip_address("10.0.0.1")}}

    def broken(probe: Any = ()) -> HostNet:
        raise NetlinkError("netlink: no buffer space")

    kernel.host = broken  # type: ignore[method-assign]
    source.members = frozenset  # type: ignore[method-assign]
    assert agent.tick() is None
    assert speaker.announced() == {}
