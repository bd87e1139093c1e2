"""The agent's inputs, hostile: random objects never make the view raise nor announce an IP
that is not its Eip's, and a snapshot file that goes bad while the agent runs keeps its last
view, said in one line, without a traceback and without a parse on every look."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.agent.election import Elector, ViewMaker, cluster_view, mine
from app.agent.runner import Agent, Settings, SnapshotSource, SourceError
from app.core.addresses import AddressError, ip_key, parse_ip, quoted, special_kind_of_key
from app.core.eips import Eip, is_eip
from app.kube.agent_leases import COMPONENT, COMPONENT_LABEL, lease_name, live_seen, observe
from app.kube.agent_source import keep_eip
from app.sources.files import load_objects
from tests.agent.lab import NoNics

NODES = ("node-a", "node-b", "node-c")
POOLS = ("10.0.0.0/29", "10.0.0.8-10.0.0.12", "2001:db8::/126", "::ffff:10.0.0.0/126",
         "10.0.0.20", "", "not-a-pool", "10.0.0.9-10.0.0.1", "fe80::1%eth0")  # fmt: skip

# status.used keys: inside and outside the pools, network and broadcast ends, special and
# zoned addresses, other spellings of one IP, no IP at all, and keys that are no strings
# (a YAML snapshot's keys may be numbers, booleans or null).
IPS = ("10.0.0.0", "10.0.0.1", "10.0.0.7", "10.0.0.8", "10.0.0.12", "10.0.0.13", "10.0.0.20",
       "10.0.0.255", "255.255.255.255", "0.0.0.0", "127.0.0.1", "224.0.0.5", "169.254.1.1",
       "::ffff:10.0.0.1", "::ffff:a00:1", "2001:db8::1", "2001:DB8::0001", "2001:db8::3",
       "fe80::1", "fe80::1%eth0", "ff02::1", "::1", "::", "010.0.0.1", " 10.0.0.1",
       "10.0.0.1/32", "node-a", "")  # fmt: skip
KEYS = st.one_of(st.sampled_from(IPS), st.integers(-3, 2**32), st.booleans(), st.none(),
                 st.floats(allow_nan=False), st.text(max_size=8))  # fmt: skip
VALUES = st.one_of(st.sampled_from(["shop/web", "shop/web;shop/api", "", ";;", "x"]),
                   st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2))  # fmt: skip
ANY = st.one_of(st.none(), st.integers(), st.text(max_size=6), st.booleans(),
                st.lists(st.integers(), max_size=2))  # fmt: skip


@st.composite
def hostile_eip(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for field, choices in (
        ("address", st.one_of(st.sampled_from(POOLS), ANY)),
        ("protocol", st.one_of(st.sampled_from(["layer2", "bgp", "vip", "", "Layer2"]), ANY)),
        (
            "interface",
            st.one_of(st.sampled_from(["eth0", "lo", "kube-ipvs0", "can_reach:10.0.0.1"]), ANY),
        ),
        ("disable", st.one_of(st.booleans(), ANY)),
    ):
        if draw(st.booleans()):
            spec[field] = draw(choices)
    used = draw(st.one_of(st.dictionaries(KEYS, VALUES, max_size=8), ANY))
    status = draw(st.one_of(st.just({"used": used}), ANY))
    name = draw(st.one_of(st.sampled_from(["a", "b", "c"]), ANY))
    meta = draw(st.one_of(st.just({"name": name}), ANY))
    version = draw(st.sampled_from(["v1alpha2", "v1alpha1"]))
    return {
        "apiVersion": f"network.kubesphere.io/{version}",
        "kind": "Eip",
        "metadata": meta,
        "spec": draw(st.one_of(st.just(spec), ANY)),
        "status": status,
    }


@st.composite
def hostile_other(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Node", "Service", "EndpointSlice", "Lease", "ConfigMap"]))
    name = draw(st.one_of(st.sampled_from(NODES), ANY))
    meta = draw(
        st.one_of(
            st.just(
                {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}}
            ),
            ANY,
        )
    )
    conditions = draw(
        st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["Ready", "NetworkUnavailable"]),
                        "status": st.one_of(st.sampled_from(["True", "False", "Unknown"]), ANY),
                    }
                ),
                max_size=2,
            ),
            ANY,
        )
    )
    lease_spec = {
        "holderIdentity": draw(st.one_of(st.sampled_from(NODES), ANY)),
        "leaseDurationSeconds": draw(st.one_of(st.integers(-1, 2**63), ANY)),
        "renewTime": draw(st.sampled_from(["2999-01-01T00:00:00.000000Z", "garbage", None, 5])),
    }
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": meta,
        "status": {"conditions": conditions},
        "spec": lease_spec
        if kind == "Lease"
        else {"externalTrafficPolicy": draw(st.one_of(st.just("Local"), ANY))},
        "endpoints": draw(
            st.one_of(
                st.lists(
                    st.one_of(
                        st.fixed_dictionaries(
                            {
                                "nodeName": st.one_of(st.sampled_from(NODES), ANY),
                                "conditions": st.one_of(st.just({"ready": True}), ANY),
                            }
                        ),
                        ANY,
                    ),
                    max_size=3,
                ),
                ANY,
            )
        ),
    }


def _spoken(obj: dict[str, Any]) -> Eip | None:
    """The Eip of ``obj`` when the agent speaks for it: layer2 and not disabled."""
    if not is_eip(obj):
        return None
    found = Eip.from_object(obj)
    return found if found.protocol == "layer2" and not found.disabled else None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects=st.lists(st.one_of(hostile_eip(), hostile_other()), max_size=8))
@example(objects=[{"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
                   "metadata": {"name": "a"},
                   "spec": {"address": "10.0.0.0/29", "protocol": "layer2"},
                   "status": {"used": {"10.0.0.9": "x/y", 7: "x/z", None: "x/n"}}}])  # fmt: skip
def test_the_view_of_hostile_objects_announces_only_its_eips_ips(
    objects: list[dict[str, Any]],
) -> None:
    view = cluster_view(objects)
    assert ViewMaker().view(objects) == view
    # What live mode keeps of each Eip makes the same election, and says the same.
    kept = cluster_view([keep_eip(o) if is_eip(o) else o for o in objects])
    assert (kept.assignments, kept.ignored) == (view.assignments, view.ignored)
    spoken = [e for e in map(_spoken, objects) if e is not None]
    for a in view.assignments:
        ip = parse_ip(a.ip)  # one plain IP, in its one canonical text
        assert str(ip) == a.ip and special_kind_of_key(ip_key(ip)) is None
        for e in a.eips:
            assert e.protocol == "layer2" and not e.disabled, e
            assert e.address is not None and e.address.contains(ip_key(ip)), (e, a.ip)
        assert a.eip in spoken
    # Every entry of a spoken Eip's status.used is announced (in its canonical text) or said.
    announced = {(a.ip, e.name) for a in view.assignments for e in a.eips}
    said = "\n".join(view.ignored)
    for e in spoken:
        for raw in e.used:
            try:
                canonical = str(parse_ip(raw))
            except AddressError:
                canonical = None
            assert (canonical, e.name) in announced or (
                f"Eip {e.name}: status.used {quoted(raw)} is not announced" in said
            ), (e.name, raw, view.ignored)
    # Every IP is one election: one node of the members answers for it.
    for a in view.assignments:
        assert sum(a in mine(view, NODES, n) for n in NODES) <= 1
    assert Elector("node-a").mine(view, NODES) == mine(view, NODES, "node-a")


def test_a_huge_status_used_is_read_whole_without_raising() -> None:
    used: dict[Any, str] = {f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}": "shop/web"
                            for i in range(100_000)}  # fmt: skip
    used.update({i: "x/int" for i in range(1000)})
    pool = {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": "big"}, "spec": {"address": "10.0.0.0/16", "protocol": "layer2"},
            "status": {"used": used}}  # fmt: skip
    view = cluster_view([pool])
    assert len(view.assignments) == 65_536
    assert len(view.ignored) == 100_000 - 65_536 + 1000


def _snapshot(*nodes: str, used: dict[str, str] | None = None) -> str:
    items: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}} for n in nodes
    ]
    items.append({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
                  "metadata": {"name": "pool"},
                  "spec": {"address": "10.0.0.0/24", "protocol": "layer2", "interface": "eth0"},
                  "status": {"used": used or {"10.0.0.1": "shop/web"}}})  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def test_a_snapshot_object_with_odd_metadata_is_no_member_and_no_crash(tmp_path: Path) -> None:
    # `metadata: just-a-string` in a snapshot ended the running agent with a traceback
    # (AttributeError in SnapshotSource.members), and a Node named null counted a member
    # "None"; the view reads such objects as nameless.
    snap = tmp_path / "cluster.json"
    doc = json.loads(_snapshot("n1", "n2"))
    doc["items"] += [{"apiVersion": "v1", "kind": "Node", "metadata": "just-a-string"},
                     {"apiVersion": "v1", "kind": "Node", "metadata": {"name": None}},
                     {"apiVersion": "v1", "kind": "Node", "metadata": {"name": 7}},
                     {"apiVersion": "v1", "kind": "Node"}]  # fmt: skip
    snap.write_text(json.dumps(doc))
    source = SnapshotSource([snap], "n1", None)
    assert source.members() == {"n1", "n2"}
    logs: list[str] = []
    agent = Agent(Settings("n1"), source, NoNics(), logs.append)
    agent.tick()
    assert agent.status.members == 2 and agent.status.cluster_error is None


def test_a_snapshot_gone_bad_is_parsed_once_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A big YAML snapshot left truncated (its writer died) was parsed again on every look:
    # 0.8 s a look for 4 MiB, over the 0.5 s interval, so the agent's core stayed busy and
    # its speaker, which answers between looks, answered late. The error is kept with the
    # file's stamp, as a good read is, and said again until the file changes.
    loads: list[int] = []

    def counted(*paths: Path) -> Any:
        loads.append(1)
        return load_objects(*paths)

    monkeypatch.setattr("app.agent.runner.load_objects", counted)
    snap = tmp_path / "cluster.yaml"
    snap.write_text(_snapshot("n1", "n2"))
    source = SnapshotSource([snap], "n1", None)
    good = source.objects()
    snap.write_text(_snapshot("n1", "n2")[:-20])
    for _ in range(3):
        with pytest.raises(SourceError, match=r"cluster\.yaml: not valid YAML"):
            source.objects()
    assert len(loads) == 2
    time.sleep(0.01)
    snap.write_text(_snapshot("n1", "n3"))
    assert source.objects() != good and len(loads) == 3


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (lambda p: p.write_bytes(b"\x00\xff garbage"), "not UTF-8 text"),
        (lambda p: p.write_text(_snapshot("n1", "n2")[:-30]), "not valid YAML"),
        (lambda p: p.write_text(""), "empty, no YAML or JSON document"),
        (lambda p: p.unlink(), "cannot read: No such file or directory"),
        (lambda p: (p.unlink(), p.mkdir()), "a directory without .yaml, .yml or .json files"),
        (lambda p: os.truncate(p, 300 * 2**20), "larger than 256 MiB"),  # sparse
        (lambda p: (p.unlink(), p.symlink_to("/dev/zero")), "not a regular file"),
        (lambda p: p.write_text("- 1\n- 2\n"), "expected Kubernetes objects, found"),
    ],
)
def test_a_snapshot_gone_bad_keeps_the_last_view_and_says_why(
    tmp_path: Path, spoil: Any, says: str
) -> None:
    snap = tmp_path / "cluster.yaml"
    snap.write_text(_snapshot("n1", "n2", used={"10.0.0.1": "a/b", "10.0.0.2": "a/b"}))
    logs: list[str] = []
    agent = Agent(Settings("n1"), SnapshotSource([snap], "n1", None), NoNics(), logs.append)
    agent.tick()
    before = (agent.status.members, [a.ip for a in agent._view.assignments])
    spoil(snap)
    for _ in range(3):
        agent.tick()
    assert (agent.status.members, [a.ip for a in agent._view.assignments]) == before
    errors = [line for line in logs if line.startswith("cannot read the cluster")]
    assert len(errors) == 1 and says in errors[0], logs  # said once, not on every look
    assert agent.status.cluster_errors == 3


def test_what_the_snapshot_directory_holds_beside_the_snapshot_is_not_read(
    tmp_path: Path,
) -> None:
    # A dangling symlink beside the snapshot files (an editor's lock, a stale link) made
    # the agent refuse to start ("<dir>: cannot read: No such file or directory") though
    # the loader never reads it, and `eip-guard audit --cluster <dir>` read the directory.
    (tmp_path / "cluster.json").write_text(_snapshot("n1", "n2"))
    (tmp_path / "notes").symlink_to(tmp_path / "gone")
    source = SnapshotSource([tmp_path], "n1", None)
    assert source.members() == {"n1", "n2"}
    (tmp_path / "more.yaml").symlink_to(tmp_path / "gone")  # one it reads: named
    with pytest.raises(SourceError, match=r"more\.yaml: cannot read: No such file"):
        source.objects()


LEASE_TIMES = ("2026-11-28T14:50:00.000000Z", "9999-12-31T23:59:59.999999Z",
               "0001-01-01T00:00:00.000000Z", "2026-11-28T14:50:00Z", "garbage", "", None, 5,
               "2026-11-28T14:50:00.000000+14:00")  # fmt: skip


@st.composite
def hostile_lease(draw: st.DrawFn) -> dict[str, Any]:
    named = draw(st.sampled_from([*NODES, "node-x"]))
    spec = {
        "holderIdentity": draw(st.one_of(st.sampled_from([*NODES, "", "node-x"]), ANY)),
        "leaseDurationSeconds": draw(st.one_of(st.integers(-5, 2**31 - 1), ANY)),
        "renewTime": draw(st.sampled_from(LEASE_TIMES)),
    }
    labels = draw(st.sampled_from([{COMPONENT_LABEL: COMPONENT}, {}, {COMPONENT_LABEL: "x"}]))
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease_name(named), "labels": labels},
            "spec": draw(st.one_of(st.just(spec), st.none()))}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    first=st.lists(hostile_lease(), max_size=6),
    later=st.lists(hostile_lease(), max_size=6),
    longest=st.one_of(st.none(), st.integers(1, 60)),
)
def test_hostile_leases_count_only_their_named_holder_for_a_bounded_time(
    first: list[dict[str, Any]], later: list[dict[str, Any]], longest: int | None
) -> None:
    # A Lease counts only for the node it is named for, only while its renewal is fresh on
    # this node's clock, and never longer than the cap: a renewTime in the future or of
    # year 9999, an unparsable one, or a duration of 68 years never raise nor live forever.
    now = datetime(2026, 11, 28, 14, 50, 30, tzinfo=UTC)
    seen = observe(None, first, 100.0, now, longest)
    seen = observe(seen, later, 110.0, now, longest)
    for holder, s in seen.items():
        assert any(
            (lease.get("spec") or {}).get("holderIdentity") == holder
            and lease["metadata"]["name"] == lease_name(holder)
            for lease in later
        )
        if longest is not None:
            assert s.duration <= longest
            assert holder not in live_seen(seen, 110.0 + longest)


def test_a_node_missing_from_the_snapshot_is_said(tmp_path: Path) -> None:
    # The election leaves out a member without a Node (as OpenELB lists the Nodes): an agent
    # whose Node the snapshot lacks (a typo in --node-name) answered for nothing, silently.
    snap = tmp_path / "cluster.json"
    snap.write_text(_snapshot("n1", "n2"))
    logs: list[str] = []
    source = SnapshotSource([snap], "n9", None, logs.append)
    agent = Agent(Settings("n9"), source, NoNics(), logs.append)
    for _ in range(3):
        agent.tick()
    missing = [line for line in logs if line.startswith("no Node named n9")]
    assert missing == [
        "no Node named n9 in the snapshot (--node-name is not its name?): this node answers "
        "for no IP until it is there"
    ]
    snap.write_text(_snapshot("n1", "n2", "n9"))
    agent.tick()
    assert "Node n9 is in the snapshot again" in logs
    # --members given: said all the same; a snapshot without Nodes says nothing of them.
    logs.clear()
    SnapshotSource([snap], "n8", ["n1", "n8"], logs.append).members()
    assert logs and logs[0].startswith("no Node named n8")
    snap.write_text(_snapshot())
    logs.clear()
    SnapshotSource([snap], "n8", None, logs.append).members()
    assert logs == []
