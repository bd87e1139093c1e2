"""The agent makes its view of the cluster again only after a change: sources answer the
same sequence while nothing changed (runner.ClusterSource), live mode included."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from app.agent import runner
from app.agent.election import cluster_view
from app.agent.netlink import NetlinkError
from app.kube.agent_api import AgentApi
from app.kube.agent_source import WATCHES, LiveCluster
from app.kube.config import api_client
from app.kube.resources import EIPS
from tests.agent.test_election import NODES, eip


class _Source:
    """A ClusterSource answering a given sequence."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.answer: Sequence[Mapping[str, Any]] = objects

    def objects(self) -> Sequence[Mapping[str, Any]]:
        return self.answer

    def members(self) -> frozenset[str]:
        return frozenset(NODES)


class _NoKernel:
    def host(self) -> Any:
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

    def counted(objects: Sequence[Mapping[str, Any]]) -> Any:
        made.append(len(objects))
        return cluster_view(objects)

    monkeypatch.setattr(runner, "cluster_view", counted)
    source = _Source([eip("pool", {"10.0.0.1": "shop/web"})])
    agent = runner.Agent(runner.Settings("node-a"), source, _NoKernel(), lambda _: None)
    for _ in range(3):
        agent.tick()
    assert made == [1]
    source.answer = [*source.answer, eip("other", {"10.0.0.2": "shop/api"})]
    agent.tick()
    agent.tick()
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
