"""The agent's benchmark: what it keeps and measures (never how fast: that is `make bench`)."""

from __future__ import annotations

from collections import Counter

from bench import agent, report


def test_the_cluster_has_the_documented_shape() -> None:
    objects = agent.objects(eips=10, services=40)
    assert Counter(o["kind"] for o in objects) == {
        "Eip": 10, "EndpointSlice": 40, "Service": 4, "Node": agent.MEMBERS
    }  # fmt: skip
    assert all(o["spec"]["interface"] == "can_reach:192.168.0.1" for o in objects[:10])
    assert agent.objects(10, 40) == objects  # deterministic


def test_one_size_measures_every_documented_field() -> None:
    row = agent.measure(eips=20, services=50)
    for key in row:
        assert key in report.__doc__
    assert (row["eips"], row["services"], row["members"]) == (20, 50, agent.MEMBERS)
    assert row["rss_mb"] > row["kept_mb"] >= 0
    assert row["tick_max_ms"] >= row["tick_ms"] > 0
