"""The agent's Lease against a real API server's optimistic concurrency: answers lost in a
row, a rival that gives the Lease up, a release after a renewal whose answer was lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from app.kube.agent_api import AgentApi, KubeError
from app.kube.agent_leases import lease_name
from app.kube.agent_source import LiveCluster
from tests.kmock_harness import FakeApi, running
from tests.support import eventually

from .test_live_kube import agent_api, lease_of


@pytest.fixture
def emulator() -> Iterator[FakeApi]:
    with running() as emu:
        yield emu


class Unlucky(AgentApi):
    """The real client over kmock. Once armed, the renewals in ``fates`` go, in order:
    "lost" (written by the API server, its answer lost), "unsent" (never reaching it),
    "gone" (refused, 409, and the Lease deleted before the agent reads it back)."""

    def __init__(self, emulator: FakeApi) -> None:
        base = agent_api(emulator)
        super().__init__(base.api, base.namespace, timeout=base.timeout)
        self.fates: list[str] = []
        self.armed = threading.Event()
        self.done = threading.Event()

    def renew_lease(
        self,
        node: str,
        duration: int,
        now: datetime | None = None,
        *,
        create: Callable[[], bool] = lambda: True,
        version: str | None = None,
    ) -> Mapping[str, Any]:
        fate = self.fates.pop(0) if self.armed.is_set() and self.fates else ""
        if fate == "unsent":
            raise KubeError("renew Lease: cannot reach the API server (connection refused)")
        if fate == "gone":
            self.delete_lease(node)
            refused = KubeError("renew Lease: 409 Conflict")
            refused.__cause__ = ApiException(status=409, reason="Conflict")
            raise refused
        written = super().renew_lease(node, duration, now, create=create, version=version)
        if fate == "lost":
            raise KubeError("renew Lease: cannot reach the API server (read timed out)")
        if self.armed.is_set() and not self.fates:
            self.done.set()
        return written


@pytest.mark.parametrize("fates", [["lost"], ["lost", "unsent"]])
def test_a_lost_answer_then_a_failed_renewal_is_not_taken_for_another_agent(
    emulator: FakeApi, fates: list[str]
) -> None:
    # A renewal written with its answer lost, then one that never reached the API server:
    # the next, refused (409), found the renewTime of the one before last, which the agent
    # no longer took for its own: it fenced itself as superseded by "another agent".
    logs: list[str] = []
    stop = threading.Event()
    api = Unlucky(emulator)
    one = LiveCluster(api, "node1", logs.append, renew=0.2, duration=2, watch_seconds=1)
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        api.fates[:] = fates
        api.armed.set()
        eventually(api.done.is_set, what="a renewal through after the failures")
        time.sleep(0.6)  # three more renewals
        assert not any("another agent renews" in line for line in logs), logs
        assert one.self_live()
    finally:
        stop.set()
    one.release()
    assert lease_of(emulator, "node1") is None
    assert logs[-1] == "Lease given up: the others take over at their next list"


def test_a_release_after_a_lost_answer_still_gives_the_lease_up(emulator: FakeApi) -> None:
    # The last renewal was written but its answer lost: the delete's preconditions named
    # the resourceVersion before it, the API server refused (409), and the agent said
    # "another agent renews it" and left its own Lease to run out, its IPs dark meanwhile.
    logs: list[str] = []
    stop = threading.Event()
    api = Unlucky(emulator)
    one = LiveCluster(api, "node1", logs.append, renew=1, duration=3, watch_seconds=1)
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        api.fates[:] = ["lost"]
        api.armed.set()
        eventually(lambda: not api.fates, what="a renewal's answer lost")
        stop.set()
        one.release()
        assert lease_of(emulator, "node1") is None
        assert logs[-1] == "Lease given up: the others take over at their next list"
    finally:
        stop.set()


def test_a_release_after_a_label_edited_by_hand_still_gives_the_lease_up(
    emulator: FakeApi,
) -> None:
    # kubectl label on our Lease between our last renewal and the stop: not another agent's
    # renewal, and our Lease to give up.
    logs: list[str] = []
    stop = threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", logs.append, renew=1, duration=3,
                      watch_seconds=1)  # fmt: skip
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        stop.set()
        time.sleep(0.1)
        agent_api(emulator).call(
            "label", "PATCH",
            f"/apis/coordination.k8s.io/v1/namespaces/eip-guard/leases/{lease_name('node1')}",
            body={"metadata": {"labels": {"team": "net"}}},
            content_type="application/merge-patch+json",
        )  # fmt: skip
        one.release()
        assert lease_of(emulator, "node1") is None
        assert logs[-1] == "Lease given up: the others take over at their next list"
    finally:
        stop.set()


def test_an_agent_superseded_fences_at_once_and_warms_up_when_it_gets_the_lease_back(
    emulator: FakeApi,
) -> None:
    # Another agent of node1 renews its Lease, then gives it up (its release deletes it):
    # the others drop node1 at their next list and take its IPs. The agent that stood back
    # made the Lease again and counted itself at once (it had never fenced: its last good
    # renewal was recent), two nodes answering until the others listed the new Lease.
    logs: list[str] = []
    stop = threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", logs.append, renew=0.2, duration=4,
                      watch_seconds=1)  # fmt: skip
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        agent_api(emulator).renew_lease("node1", 4)  # the rival's renewal
        eventually(lambda: any("another agent renews" in line for line in logs),
                   what="node1 superseded")  # fmt: skip
        assert not one.self_live()  # "fences itself", as the README says
        agent_api(emulator).delete_lease("node1")  # the rival's release
        eventually(lambda: lease_of(emulator, "node1") is not None, what="the Lease made again")
        made = time.monotonic()
        assert not one.self_live()
        eventually(one.self_live, what="node1 counts itself again")
        assert time.monotonic() - made >= one.warm_up - 0.25
    finally:
        stop.set()


def test_a_lease_deleted_by_hand_and_made_again_warms_up_again(emulator: FakeApi) -> None:
    # kubectl delete lease: the others drop node1 at their next list and take its IPs; the
    # agent made it again at its next renewal and counted itself throughout.
    stop = threading.Event()
    one = LiveCluster(agent_api(emulator), "node1", print, renew=0.2, duration=4,
                      watch_seconds=1)  # fmt: skip
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        before = (lease_of(emulator, "node1") or {})["metadata"]["uid"]
        agent_api(emulator).delete_lease("node1")
        eventually(
            lambda: (
                (lease_of(emulator, "node1") or {}).get("metadata", {}).get("uid")
                not in (None, before)
            ),
            what="the Lease made again",
        )
        made = time.monotonic()
        time.sleep(0.05)
        assert not one.self_live()
        eventually(one.self_live, what="node1 counts itself again")
        assert time.monotonic() - made >= one.warm_up - 0.25
    finally:
        stop.set()


def test_a_rival_with_a_longer_lease_is_judged_by_its_lease_not_ours(emulator: FakeApi) -> None:
    # A rollout raising --lease-duration while an old pod still stops: the new pod renews
    # every 3 s a Lease of 8 s; the old one, judging it by its own 2 s, took the Lease over
    # between two of its renewals, and the new one then stood back (two pods taking turns,
    # each fencing in its turn).
    logs: list[str] = []
    stop = threading.Event()
    old = LiveCluster(agent_api(emulator), "node1", logs.append, renew=0.2, duration=2,
                      watch_seconds=1)  # fmt: skip
    new = agent_api(emulator)
    try:
        old.start(stop)
        eventually(old.self_live, what="the old pod counts itself")
        new.renew_lease("node1", 8)
        eventually(lambda: any("another agent renews" in line for line in logs),
                   what="the old pod superseded")  # fmt: skip
        for _ in range(2):
            time.sleep(3)
            lease = lease_of(emulator, "node1") or {}
            assert lease["spec"]["leaseDurationSeconds"] == 8, "the old pod took it over"
            new.renew_lease("node1", 8, version=lease["metadata"]["resourceVersion"])
        assert not old.self_live()
    finally:
        stop.set()


def test_a_stop_after_the_lease_was_found_gone_says_so(emulator: FakeApi) -> None:
    # A refused renewal found the Lease gone: nothing of ours to delete at the stop, and the
    # others take over at their next list. The log said "this agent never renewed it".
    logs: list[str] = []
    stop = threading.Event()
    api = Unlucky(emulator)
    one = LiveCluster(api, "node1", logs.append, renew=0.3, duration=3, watch_seconds=1)
    try:
        one.start(stop)
        eventually(one.self_live, what="node1 counts itself")
        api.fates[:] = ["gone"]
        api.armed.set()
        eventually(lambda: not api.fates, what="a renewal refused and the Lease gone")
        stop.set()
    finally:
        stop.set()
    one.release()
    assert lease_of(emulator, "node1") is None
    assert logs[-1] == "Lease given up: the others take over at their next list", logs
