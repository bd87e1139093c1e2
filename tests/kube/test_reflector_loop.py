"""The reflector's loop with a scripted transport: which waits it takes, and when it lists.

The real ``kubernetes.watch.Watch`` reads the scripted responses, so its 410 handling is the
library's own; ``stop.wait`` records each wait instead of sleeping (no wall clock involved).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry
from urllib3.exceptions import ProtocolError

from app.core.inventory import Options
from app.kube.config import KubeError, api_client
from app.kube.metrics import KubeMetrics
from app.kube.reflector import Key, Reflector, holder
from app.kube.resources import EIPS, NODES, SERVICECIDRS, Stream
from app.kube.settings import WatchSettings
from app.kube.snapshot import list_cluster
from tests.core.objects import eip, node

NODE_STREAM = Stream(NODES)
SETTINGS = WatchSettings(backoff_base=1.0, backoff_cap=8.0, absent_retry=99.0)
EXTRACTS = holder(Options())  # what the webhook keeps of each object


class Resp:
    """What the generated client returns with ``_preload_content=False``."""

    status = 200

    def __init__(self, body: Any = None, lines: list[dict[str, Any]] | None = None) -> None:
        self.data = json.dumps(body).encode()
        self.lines = [json.dumps(e).encode() + b"\n" for e in lines or []]

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.lines

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class Script:
    """Answers list and watch calls in order; each step is a Resp or an exception."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.calls: list[str] = []
        self.asked: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Resp:
        self.calls.append("watch" if kwargs.get("watch") else "list")
        self.asked.append(kwargs)
        step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, Resp)
        return step


class Waits(threading.Event):
    """A stop event whose wait() records the delay, and stops the loop after ``n`` waits."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.delays: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.delays.append(timeout)
        if len(self.delays) >= self.n:
            self.set()
        return self.is_set()


class Sink:
    def __init__(self) -> None:
        self.items: dict[Key, Any] = {}
        self.replaced = 0
        self.lists: list[list[Key]] = []
        self.problems: list[str] = []
        self.gaps: list[str] = []

    def replace(self, stream: str, items: dict[Key, Any], gap: str = "") -> None:
        self.items, self.replaced = dict(items), self.replaced + 1
        self.gaps.append(gap)
        self.lists.append(sorted(items))

    def upsert(self, stream: str, key: Key, held: Any) -> None:
        self.items[key] = held

    def remove(self, stream: str, key: Key) -> None:
        self.items.pop(key, None)

    def problem(self, stream: str, text: str) -> None:
        self.problems.append(text)


def listing(*objects: dict[str, Any]) -> Resp:
    return Resp({"metadata": {"resourceVersion": "10"}, "items": list(objects)})


def gone() -> ApiException:
    return ApiException(status=410, reason="Expired: too old resource version")


def run(
    script: Script,
    stop: Waits,
    stream: Stream = NODE_STREAM,
    keep: Callable[[dict[str, Any]], Any] = EXTRACTS,
) -> tuple[Sink, Reflector[Any]]:
    api = api_client(host="http://127.0.0.1:9")  # never contacted: the script answers
    sink = Sink()
    try:
        reflector = Reflector(
            stream, api, sink, metrics=KubeMetrics(CollectorRegistry()),
            keep=keep, settings=SETTINGS, stop=stop, rand=lambda: 1.0, lister=script,
        )  # fmt: skip
        reflector.run()
    finally:
        api.close()  # type: ignore[no-untyped-call]
    return sink, reflector


def test_errors_back_off_exponentially_up_to_the_cap() -> None:
    down = ProtocolError("Connection aborted.")
    script = Script(down, down, down, down, down)
    stop = Waits(5)
    sink, _ = run(script, stop)
    assert script.calls == ["list"] * 5
    assert stop.delays == [1.0, 2.0, 4.0, 8.0, 8.0]  # never a retry without a wait
    assert sink.replaced == 0
    # A bare ProtocolError names no server (no pool): the reflector's client does.
    said = "nodes: cannot reach the API server at http://127.0.0.1:9 (ProtocolError"
    assert sink.problems[-1].startswith(said)


def test_410_after_a_working_watch_relists_at_once() -> None:
    event = {"type": "ADDED", "object": {**node("n2", "10.0.0.2"), "metadata": {
        "name": "n2", "resourceVersion": "11"}}}  # fmt: skip
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                         "message": "too old resource version"}}  # fmt: skip
    script = Script(
        listing(node("n1", "10.0.0.1")),
        Resp(lines=[event, error]),  # a working watch, then 410 as an ERROR event
        listing(node("n3", "10.0.0.3")),  # the re-list: n1 and n2 are gone
        gone(),  # a 410 straight away: now it backs off
        listing(),
        gone(),
    )
    stop = Waits(3)
    sink, reflector = run(script, stop)
    assert script.calls == ["list", "watch", "list", "watch", "list", "watch"]
    assert stop.delays == [0.0, 1.0, 2.0]
    assert sink.replaced == 3 and reflector.rv is None


def test_a_resource_version_newer_than_the_servers_relists() -> None:
    # After an etcd restore, or from an API server behind the others: the server answers a
    # watch from our resourceVersion with this, every time. Resuming there forever left the
    # inventory stale while ready; client-go lists again.
    too_large = {"type": "ERROR", "object": {
        "kind": "Status", "code": 504, "reason": "Timeout",
        "message": "Too large resource version: 1000, current: 10",
        "details": {"causes": [{"reason": "ResourceVersionTooLarge",
                                "message": "Too large resource version"}]}}}  # fmt: skip
    script = Script(
        listing(node("n1", "10.0.0.1")),
        Resp(lines=[too_large]),
        listing(node("n2", "10.0.0.2")),
        Resp(lines=[too_large]),
        listing(),
    )
    stop = Waits(2)
    sink, _ = run(script, stop)
    assert script.calls == ["list", "watch", "list", "watch"]
    assert sink.lists[1] == [("", "n2")]  # what the server has now
    assert stop.delays == [0.0, 1.0]  # at once, then backing off as 410s in a row do


def test_a_watch_that_ends_at_once_with_nothing_backs_off() -> None:
    # A proxy (or server) that ends every watch at once, cleanly: without a wait the loop
    # made thousands of requests a second, counted nowhere.
    script = Script(listing(node("n1", "10.0.0.1")), Resp(), Resp(), Resp(), Resp())
    stop = Waits(3)
    sink, reflector = run(script, stop)
    assert script.calls == ["list", "watch", "watch", "watch"]
    assert stop.delays == [1.0, 2.0, 4.0]
    assert reflector.rv == "10"  # it resumes from where it was, no list
    assert sink.problems[-1] == (
        "nodes: the watch ended within 1 s with no event; watching again after a backoff"
    )


def test_a_broken_watch_resumes_from_the_last_event_not_a_list() -> None:
    event = {"type": "MODIFIED", "object": {**node("n1", "10.0.0.9"), "metadata": {
        "name": "n1", "resourceVersion": "12"}}}  # fmt: skip
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}
    script = Script(
        listing(node("n1", "10.0.0.1")),
        Resp(lines=[event, bookmark]),  # ends cleanly (server timeout): watch again
        ProtocolError("Connection broken: IncompleteRead"),
    )
    stop = Waits(1)
    sink, reflector = run(script, stop)
    assert script.calls == ["list", "watch", "watch"]
    assert reflector.rv == "15"  # the bookmark's: the next watch starts there
    assert stop.delays == [1.0]
    (held,) = sink.items.values()
    assert [str(f.span) for f in held.extract.every_fact] == ["10.0.0.9"]


def test_watch_timeouts_are_spread_over_one_to_two_times_the_setting() -> None:
    # As client-go's: the watches of replicas started together must not end together.
    script = Script(listing(node("n1", "10.0.0.1")), Resp(lines=[]))
    run(script, Waits(1))  # rand() is 1.0 there: the longest
    watch = script.asked[1]
    assert watch["timeout_seconds"] == 2 * SETTINGS.timeout_seconds
    assert watch["_request_timeout"] == (
        SETTINGS.connect_timeout,
        2 * SETTINGS.timeout_seconds + SETTINGS.read_grace,
    )


def test_a_watch_line_that_is_no_json_event_is_said_so_and_the_watch_resumes() -> None:
    # The client yields None for such a line; it ended the watch with "cannot reach the API
    # server (AttributeError: 'NoneType' ...)", pointing the admin at the network.
    event = {"type": "MODIFIED", "object": {**node("n1", "10.0.0.9"), "metadata": {
        "name": "n1", "resourceVersion": "12"}}}  # fmt: skip
    garbled = Resp(lines=[event])
    garbled.lines[:0] = [b"\n", b"  \n"]  # blank lines: nothing, as client-go reads them
    garbled.lines.append(b"<html>502 Bad Gateway</html>\n")
    script = Script(listing(node("n1", "10.0.0.1")), garbled)
    stop = Waits(1)
    sink, reflector = run(script, stop)
    assert script.calls == ["list", "watch"]
    assert reflector.rv == "12"  # resumed from the last event read, as client-go does
    assert sink.problems == [
        "",  # the list cleared any problem
        "nodes: the API server's answer could not be read (UnreadableAnswer: the watch sent "
        "a line that is no JSON event); retrying",
    ]


def test_an_absent_optional_resource_is_listed_empty_and_asked_again_later() -> None:
    script = Script(ApiException(status=404, reason="Not Found"))
    stop = Waits(1)
    sink, reflector = run(script, stop, Stream(SERVICECIDRS))
    assert script.calls == ["list"]
    assert stop.delays == [99.0]  # absent_retry, not the error backoff
    assert sink.replaced == 1 and sink.items == {}  # counts as listed: readiness is not held
    # In sync, too: a last sync time left at 0 read as "never" to EipGuardSourceStale, on
    # every cluster older than Kubernetes 1.33 (no ServiceCIDR API).
    synced = reflector.metrics.last_sync.labels(reflector.name)._value.get()
    assert synced > time.time() - 60


def test_a_forbidden_optional_resource_is_held_empty_with_a_gap_and_listed_again() -> None:
    # 403 on an optional resource: held empty with its gap (readiness is not held), an error
    # counted, and listed again after the error's backoff: a grant added later is read.
    cidr = {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12"]}}  # fmt: skip
    forbidden = ApiException(status=403, reason="Forbidden")
    script = Script(forbidden, forbidden, listing(cidr))
    stop = Waits(3)
    sink, reflector = run(script, stop, Stream(SERVICECIDRS))
    assert script.calls == ["list", "list", "list", "watch"]
    assert stop.delays[:2] == [1.0, 2.0]  # the error's backoff, not absent_retry
    assert sink.lists == [[], [], [("", "kubernetes")]]
    gap = "Service ranges in ServiceCIDRs (RBAC: grant list and watch on "
    assert sink.gaps[:2] == [gap + "servicecidrs.networking.k8s.io)"] * 2
    assert sink.gaps[2] == ""  # read at last: the gap is gone
    said = "servicecidrs: the API refuses the list/watch (403 Forbidden): grant list and watch"
    assert [p.startswith(said) for p in sink.problems[:2]] == [True, True]  # then the watch's
    assert reflector.metrics.errors.labels(reflector.name)._value.get() >= 2


def test_a_403_on_a_required_resource_holds_nothing() -> None:
    script = Script(ApiException(status=403, reason="Forbidden"))
    stop = Waits(1)
    sink, _ = run(script, stop)
    assert stop.delays == [1.0] and sink.replaced == 0


def test_a_404_on_a_required_resource_is_an_error_that_backs_off() -> None:
    script = Script(ApiException(status=404, reason="Not Found"))
    stop = Waits(1)
    sink, _ = run(script, stop)
    assert stop.delays == [1.0] and sink.replaced == 0


def test_a_resource_gone_under_its_watch_is_listed_again_not_held_for_ever() -> None:
    # ServiceCIDRs listed, then the API stops serving them (turned off on the API server):
    # every watch answers 404. Resuming the watch for ever kept the old ranges in the
    # inventory; the list says they are gone (an optional resource: held empty).
    cidr = {"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
            "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12"]}}  # fmt: skip
    missing = ApiException(status=404, reason="Not Found")
    script = Script(listing(cidr), missing, missing)
    stop = Waits(2)
    sink, reflector = run(script, stop, Stream(SERVICECIDRS))
    assert script.calls == ["list", "watch", "list"]
    assert sink.lists == [[("", "kubernetes")], []]
    assert stop.delays == [1.0, 99.0]  # the error's backoff, then absent_retry
    assert reflector.rv is None


def test_what_keep_declines_is_not_held_and_an_update_it_declines_drops_the_object() -> None:
    """The node agent keeps only labelled Nodes: keep returns None for the rest."""

    def keep(obj: dict[str, Any]) -> Any:
        return obj["metadata"]["name"] if "excluded" in obj["metadata"].get("labels", {}) else None

    labelled = {**node("n1", "10.0.0.1"), "metadata": {"name": "n1", "labels": {"excluded": ""}}}
    unlabelled = {"type": "MODIFIED", "object": {**node("n1", "10.0.0.1"), "metadata": {
        "name": "n1", "resourceVersion": "11"}}}  # fmt: skip
    script = Script(
        listing(labelled, node("n2", "10.0.0.2")),
        Resp(lines=[unlabelled]),
        ProtocolError("Connection broken: IncompleteRead"),
    )
    stop = Waits(1)
    sink, _ = run(script, stop, keep=keep)
    assert sink.lists == [[("", "n1")]]  # n2 was never held
    assert sink.items == {}  # n1 lost its label: dropped, not kept stale


def test_a_store_key_and_what_is_kept_share_one_copy_of_the_name() -> None:
    """Each name is copied out of the parsed page (keeping the page resident otherwise), and
    once: the store key and the Eip (copied with its uid) hold the same copy, listed or
    watched."""
    pool = eip("pool-a", "192.168.1.0/30")
    later = {"type": "ADDED", "object": {**eip("pool-b", "192.168.2.0/30"), "metadata": {
        "name": "pool-b", "uid": "u-2"}}}  # fmt: skip
    pool["metadata"]["uid"] = "u-1"
    script = Script(listing(pool), Resp(lines=[later]), ProtocolError("Connection reset"))
    sink, _ = run(script, Waits(1), stream=Stream(EIPS))
    assert sorted(sink.items) == [("", "pool-a"), ("", "pool-b")]
    for key, held in sink.items.items():
        assert held.extract.eip.name is key[1]
        assert held.uid in ("u-1", "u-2")


def test_a_one_shot_list_lists_again_once_when_a_continue_token_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `check --kubeconfig` on a big, busy cluster: a page's continue token outlived etcd's
    # compaction (410). It failed with "the API answers 410 Gone"; kubectl lists again.
    script = Script(gone(), listing(node("n1", "10.0.0.1")), gone(), gone())
    monkeypatch.setattr(Stream, "lister", lambda self, api: script)
    api = api_client(host="http://127.0.0.1:9")  # never contacted: the script answers
    try:
        objects, notes, _gaps = list_cluster(api, [NODE_STREAM])
        assert [o["metadata"]["name"] for o in objects] == ["n1"] and notes == []
        with pytest.raises(KubeError, match="nodes: the API answers 410"):
            list_cluster(api, [NODE_STREAM])  # twice in a row: said, not looped
    finally:
        api.close()  # type: ignore[no-untyped-call]
    assert script.calls == ["list"] * 4
