"""What a real API server does with the selectors, bookmarks and timeouts eip-guard's lists
and watches ask for, and the stand-in must do too (``tests.kmock_selectors``, the watch of
``PagedEmulator``): a regression in the harness fails here, not as a client bug that goes
unseen."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from app.kube import resources, rest
from app.kube.agent_api import AgentApi, make_client
from app.kube.auditor import Finding, KubeEvents
from app.kube.config import api_client
from app.kube.resources import NODES, SERVICES, Stream, list_all
from tests.core.objects import node
from tests.kmock_harness import FakeApi, Writer
from tests.kmock_selectors import SelectorError, field_value, parse_fields, parse_labels
from tests.support import eventually

LABELS = {"app": "web", "tier": "front", "n": "7", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "picked"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web , tier=front", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),  # != picks an object without the label
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app in (db, web)", True),
        ("app in (db)", False),
        ("missing in (db)", False),
        ("app notin (db)", True),
        ("missing notin (db)", True),
        ("app notin (web,db)", False),
        ("n>6", True),
        ("n<7", False),
        ("app>6", False),  # not an integer label: no match
        ("empty=", True),
        ("empty in (,x)", True),
        ("example.com/role!=x", True),
    ],
)
def test_label_selector_grammar_and_matching(selector: str, picked: bool) -> None:
    assert parse_labels(selector)({"metadata": {"labels": LABELS}}) is picked


@pytest.mark.parametrize(
    "selector",
    ["app=", "app in ()", "app in (web", "=web", "app=we b", "app=-web", "app notin web",
     "app=web,", "Example.com/x=y", "app>x", "a" * 64 + "=x", "app=web,,tier", "app=(web)"],
)  # fmt: skip
def test_label_selectors_a_real_api_server_refuses(selector: str) -> None:
    if selector == "app=":  # an empty value is a valid one
        parse_labels(selector)
        return
    with pytest.raises(SelectorError):
        parse_labels(selector)


def test_field_selectors_take_their_grammar_and_only_supported_fields() -> None:
    supported = frozenset({"metadata.name", "metadata.namespace", "spec.unschedulable"})
    obj = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    assert parse_fields("metadata.name=n1", supported)(obj)
    assert parse_fields("metadata.name==n1,spec.unschedulable=true", supported)(obj)
    assert not parse_fields("metadata.name!=n1", supported)(obj)
    assert parse_fields("metadata.namespace=", supported)(obj)  # absent: ""
    assert parse_fields("metadata.name=a\\,b", supported)({"metadata": {"name": "a,b"}})
    assert field_value(obj, "spec.unschedulable") == "true"
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.taints"):
        parse_fields("spec.taints=x", supported)
    with pytest.raises(SelectorError, match=r"can't understand 'metadata\.name'"):
        parse_fields("metadata.name", supported)


def _list(api: FakeApi, where: str, **query: str) -> dict[str, Any]:
    client = api_client(host=api.direct_url)
    try:
        return dict(rest.read_json(rest.request(client, "GET", where, query=query.items())))
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _refusal(api: FakeApi, where: str, **query: str) -> tuple[int, str]:
    with pytest.raises(ApiException) as caught:
        _list(api, where, **query)
    return int(caught.value.status or 0), rest.status_message(caught.value)


def test_lists_and_watches_with_a_bad_selector_are_refused_400(api: FakeApi) -> None:
    api.put("v1/nodes", node("n1", "10.0.0.1"))
    nodes, pods = "/api/v1/nodes", "/api/v1/namespaces/ns/pods"
    assert _refusal(api, nodes, labelSelector="app in ()")[0] == 400
    assert _refusal(api, nodes, labelSelector="app=web,", watch="true")[0] == 400
    said = _refusal(api, nodes, fieldSelector="spec.nodeName=n1")
    assert said == (400, "field label not supported: spec.nodeName")
    assert _refusal(api, pods, fieldSelector="spec.unschedulable=true")[0] == 400
    # Nodes have a field label conversion of their own, with no metadata.namespace; a
    # cluster-scoped custom resource takes its name only.
    assert _refusal(api, nodes, fieldSelector="metadata.namespace=")[0] == 400
    eips = "/apis/network.kubesphere.io/v1alpha2/eips"
    assert _refusal(api, eips, fieldSelector="spec.address=x")[0] == 400
    assert _refusal(api, eips, fieldSelector="metadata.namespace=")[0] == 400
    assert _list(api, pods, fieldSelector="spec.nodeName=n1")["items"] == []
    assert [o["metadata"]["name"] for o in _list(api, eips, fieldSelector="metadata.name=x")[
        "items"
    ]] == []  # fmt: skip


def labelled(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    obj = node(name, "10.0.0.1")
    obj["metadata"]["labels"] = dict(labels)
    return obj


def test_a_paged_list_pages_through_what_the_selectors_pick(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "PAGE", 2)
    for i in range(6):
        api.put("v1/nodes", labelled(f"n{i}", {"role": "edge" if i % 2 else "core"}))
    client = api_client(host=api.direct_url)
    try:
        stream = Stream(NODES, label_selector="role=edge")
        items, _ = list_all(stream, stream.lister(client), (5, 5), lambda o: o)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    assert sorted(o["metadata"]["name"] for o in items) == ["n1", "n3", "n5"]
    picked = _list(api, "/api/v1/nodes", fieldSelector="metadata.name!=n0,metadata.name!=n1")
    assert sorted(o["metadata"]["name"] for o in picked["items"]) == ["n2", "n3", "n4", "n5"]
    api.put("v1/services", {"kind": "Service", "metadata": {"namespace": "a", "name": "s"}})
    api.put("v1/services", {"kind": "Service", "metadata": {"namespace": "b", "name": "s"}})
    services = rest.path(SERVICES.api_version, SERVICES.plural)
    picked = _list(api, services, fieldSelector="metadata.namespace=b")
    assert [o["metadata"]["namespace"] for o in picked["items"]] == ["b"]


class Watching:
    """A raw watch over HTTP in a thread: each event with when it came, and how it ended."""

    def __init__(self, api: FakeApi, path: str, **params: str) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.ended: str | None = None
        self._http = urllib3.PoolManager()
        self._began = time.monotonic()
        self._response = self._http.request(
            "GET", api.direct_url + path, fields={**params, "watch": "true"},
            preload_content=False, timeout=urllib3.Timeout(connect=2, read=10),
        )  # fmt: skip
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response:
                if line.strip():
                    self.events.append((time.monotonic() - self._began, json.loads(line)))
            self.ended = "clean"
        except Exception as exc:  # said in the assertions
            self.ended = repr(exc)

    def kinds(self) -> list[tuple[str, str]]:
        return [(e["type"], e["object"]["metadata"].get("name", "")) for _, e in self.events]

    def close(self) -> None:
        self._response.release_conn()
        self._http.clear()


def test_a_selector_watch_sees_objects_come_in_as_added_and_leave_as_deleted(
    api: FakeApi, writer: Writer
) -> None:
    """The watch cache's rule: a change that makes an object match is ADDED, one that makes
    it stop matching is DELETED (with its last matching state, at the change's version)."""
    api.put("v1/nodes", labelled("in", {"role": "edge"}))
    api.put("v1/nodes", labelled("out", {"role": "core"}))
    since = str(api.resource_version())
    watching = Watching(api, "/api/v1/nodes", labelSelector="role=edge", resourceVersion=since)
    try:
        writer.patch({"kind": "Node", "metadata": {"name": "out", "labels": {"role": "edge"}}})
        writer.patch({"kind": "Node", "metadata": {"name": "in", "annotations": {"a": "b"}}})
        writer.patch({"kind": "Node", "metadata": {"name": "in", "labels": {"role": "core"}}})
        left = api.resource_version()
        writer.delete("Node", "in")  # matched no more: nothing
        writer.delete("Node", "out")
        eventually(lambda: len(watching.events) >= 4, "four events")
        time.sleep(0.3)  # and no more
        assert watching.kinds() == [("ADDED", "out"), ("MODIFIED", "in"), ("DELETED", "in"),
                                    ("DELETED", "out")]  # fmt: skip
        gone = watching.events[2][1]["object"]["metadata"]
        assert gone["labels"] == {"role": "edge"} and gone["resourceVersion"] == str(left)
    finally:
        watching.close()


def test_bookmarks_come_when_asked_for_with_the_current_version_only(api: FakeApi) -> None:
    api.call(lambda: setattr(api.km, "bookmark_every", 0.3))
    api.put("v1/nodes", node("n1", "10.0.0.1"))
    since = str(api.resource_version())
    marked = Watching(api, "/api/v1/nodes", resourceVersion=since, allowWatchBookmarks="true")
    plain = Watching(api, "/api/v1/nodes", resourceVersion=since)
    try:
        # A change of another resource: a version no Node event has, past the watch's start.
        api.put("v1/configmaps", {"kind": "ConfigMap", "metadata": {"namespace": "a", "name": "c"}})
        rv = str(api.resource_version())
        eventually(lambda: marked.events, "a bookmark")
        _, event = marked.events[0]
        assert event == {"type": "BOOKMARK", "object": {"kind": "Node", "apiVersion": "v1",
                         "metadata": {"resourceVersion": rv}}}  # fmt: skip
        time.sleep(1.0)
        assert len(marked.events) == 1  # nothing changed since: no bookmark to send
        assert plain.events == []
    finally:
        marked.close()
        plain.close()


def test_a_watch_ends_at_its_timeout_with_a_bookmark_two_seconds_before(api: FakeApi) -> None:
    since = str(api.resource_version())
    api.put("v1/configmaps", {"kind": "ConfigMap", "metadata": {"namespace": "a", "name": "c"}})
    long = Watching(api, "/apis/network.kubesphere.io/v1alpha2/eips", resourceVersion=since,
                    allowWatchBookmarks="true", timeoutSeconds="3")  # fmt: skip
    short = Watching(api, "/api/v1/nodes", resourceVersion=since, allowWatchBookmarks="true",
                     timeoutSeconds="2")  # fmt: skip
    try:
        eventually(lambda: long.ended and short.ended, "both watches ended")
        assert long.ended == short.ended == "clean"
        [(at, event)] = long.events
        assert event["type"] == "BOOKMARK" and event["object"]["kind"] == "Eip"
        assert 0.7 < at < 2.0
        assert short.events == []  # 2 s before its end was its start: no bookmark
    finally:
        long.close()
        short.close()


def test_the_agents_lease_list_gets_only_the_leases_its_selector_picks(api: FakeApi) -> None:
    leases = "coordination.k8s.io/v1/leases"
    for name, labels in (("a", {"app.kubernetes.io/component": "eip-guard-agent"}),
                         ("b", {"app.kubernetes.io/component": "other"}), ("c", {})):  # fmt: skip
        api.put(leases, {"kind": "Lease", "metadata": {"namespace": "ns", "name": name,
                                                       "labels": labels}})  # fmt: skip
    client = make_client(server=api.direct_url)
    try:
        listed = AgentApi(client, "ns", timeout=5).list_leases()
    finally:
        client.close()  # type: ignore[no-untyped-call]
    assert [lease["metadata"]["name"] for lease in listed] == ["a"]


def test_the_readmes_field_selectors_for_events_find_the_warnings(api: FakeApi) -> None:
    """README (alerts): ``kubectl get events -n default --field-selector reason=...`` names
    each Eip: ``reason`` is a field Events are selected by, and both Warnings carry it."""
    client = make_client(server=api.direct_url)
    try:
        AgentApi(client, "ns", timeout=5).warn_eip("pool", "uid", "node1",
                                                   "CanReachBoundLocally", "m")  # fmt: skip
        finding = Finding("other", "u-1", ("can-reach-node-ip",), "eip-guard audit: ...", "o.a")
        KubeEvents(client).record(finding)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    for reason, eip in (("CanReachBoundLocally", "pool"), ("EipGuardViolation", "other")):
        found = _list(api, "/api/v1/namespaces/default/events",
                      fieldSelector=f"reason={reason}")["items"]  # fmt: skip
        assert [e["involvedObject"]["name"] for e in found] == [eip]
