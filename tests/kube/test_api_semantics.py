"""What a real API server does that kmock does not by itself, over real HTTP: a continue
token that expires mid-list, a 429 with Retry-After, a token rotated on disk after the old
one is refused, a connection reset mid-list."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kmock._internal import rendering
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config

from app.kube import resources, rest
from app.kube.agent_api import AgentApi
from app.kube.config import KubeError, api_client
from app.kube.resources import NODES, Stream, describe_failure, list_all
from tests.core.objects import node
from tests.kmock_harness import FakeApi, Writer, kubeconfig
from tests.kube.harness import Cluster
from tests.support import eventually

NODE_STREAM = Stream(NODES)
TIMEOUT = (5.0, 5.0)
EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results."
)


def names(api_url: str) -> list[str]:
    client = api_client(host=api_url)
    try:
        items, _ = list_all(NODE_STREAM, NODE_STREAM.lister(client), TIMEOUT, lambda o: o)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return sorted(o["metadata"]["name"] for o in items)


def node_lists(api: FakeApi) -> list[dict[str, str]]:
    return list(
        api.call(
            lambda: [
                dict(r.url.query)
                for r in list(api.km)
                if r.url.path == "/api/v1/nodes" and r.url.query.get("watch") != "true"
            ]
        )
    )


def continued(request: rendering.Request) -> bool:
    return bool(request.params.get("continue"))


def test_a_continue_token_that_expires_mid_list_lists_again_from_the_start(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "PAGE", 2)
    for i in range(5):
        api.put("v1/nodes", node(f"n{i}", f"10.0.0.{i + 1}"))
    api.refuse_next(continued, 410, "Expired", EXPIRED)
    assert names(api.url) == [f"n{i}" for i in range(5)]
    asked = [(q.get("limit"), bool(q.get("continue"))) for q in node_lists(api)]
    # page 1, page 2 refused, then the whole list again in pages from the start
    assert asked == [("2", False), ("2", True), ("2", False), ("2", True), ("2", True)]


def test_a_429_with_retry_after_is_waited_for_once(api: FakeApi) -> None:
    api.put("v1/nodes", node("n1", "10.0.0.1"))
    is_list = lambda r: r.url.path == "/api/v1/nodes"  # noqa: E731
    api.refuse_next(is_list, 429, "TooManyRequests", "too many requests", {"Retry-After": "1"})
    began = time.monotonic()
    assert names(api.url) == ["n1"]
    assert time.monotonic() - began >= 1.0
    assert len(node_lists(api)) == 2


def test_a_token_refused_after_rotation_on_disk_is_read_again_at_the_next_request(
    api: FakeApi, tmp_path: Path
) -> None:
    """A projected service account token is rotated on disk; when the old one is refused
    (401), client-go drops its cached token and reads the file at the next request
    (ResettableTokenSource), not up to a minute later."""
    token = tmp_path / "token"
    token.write_text("first")
    path = kubeconfig(tmp_path / "kubeconfig", api.url, user={"tokenFile": str(token)})
    api.put("v1/nodes", node("n1", "10.0.0.1"))
    api.accept_tokens("first")
    client = api_client(str(path))
    try:
        lister = NODE_STREAM.lister(client)
        assert len(list_all(NODE_STREAM, lister, TIMEOUT, lambda o: o)[0]) == 1
        token.write_text("second")
        api.accept_tokens("second")
        failures = 0
        while True:
            try:
                list_all(NODE_STREAM, lister, TIMEOUT, lambda o: o)
                break
            except Exception as exc:
                assert getattr(exc, "status", None) == 401
                failures += 1
                assert failures <= 1, "the rotated token file was not read after a 401"
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_a_connection_reset_mid_list_is_one_line_and_the_next_list_works(api: FakeApi) -> None:
    api.put("v1/nodes", node("n1", "10.0.0.1"))
    release = api.hold_next_list("v1/nodes")
    client = api_client(host=api.url)
    caught: list[BaseException] = []

    def listing() -> None:
        try:
            list_all(NODE_STREAM, NODE_STREAM.lister(client), TIMEOUT, lambda o: o)
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=listing)
    thread.start()
    try:
        eventually(lambda: api.cut() > 0, "the held list's connection to cut")
        thread.join(10)
        release()
        assert caught and isinstance(caught[0], urllib3.exceptions.HTTPError | OSError)
        said = describe_failure(NODE_STREAM, caught[0])
        assert said.startswith("nodes: cannot reach the API server at 127.0.0.1") or (
            said.startswith("nodes: cannot reach the API server")
        ), said
        assert "\n" not in said
        assert names(api.url) == ["n1"]
    finally:
        release()
        client.close()  # type: ignore[no-untyped-call]


def test_the_pods_service_account_token_is_read_again_as_soon_as_kubelet_rotates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod the library read the token again once a minute only: a token refused after
    kubelet rotated it failed every request until then."""
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first")
    ca.write_text("not read until a connection is made")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    client = api_client()
    try:
        cfg = client.configuration
        assert cfg.get_api_key_with_prefix("BearerToken") == "bearer first"
        rotated = tmp_path / "token.new"  # kubelet swaps the file, atomically
        rotated.write_text("second")
        rotated.replace(token)
        assert cfg.get_api_key_with_prefix("BearerToken") == "bearer second"
        token.unlink()  # gone for a moment: the token held is kept, no error
        assert cfg.get_api_key_with_prefix("BearerToken") == "bearer second"
    finally:
        client.close()  # type: ignore[no-untyped-call]


def node_watch(request: rendering.Request) -> bool:
    return request.url.path == "/api/v1/nodes" and request.params.get("watch") == "true"


def test_a_watch_refused_410_lists_again_and_one_refused_429_resumes(
    api: FakeApi, cluster_factory: Callable[..., Cluster]
) -> None:
    """A watch from a resourceVersion older than the server keeps may be refused with HTTP
    410 itself (not an ERROR event in a 200): list again. A 429 (twice: urllib3 waits for
    one Retry-After) is any failure: back off and resume, no list."""
    cluster = cluster_factory()
    cluster.ready()
    eventually(lambda: api.watch_params("/api/v1/nodes"), "a watch of nodes")
    lists = api.lists("/api/v1/nodes")
    api.refuse_next(node_watch, 410, "Expired", "too old resource version: 1 (2)")
    api.cut()
    eventually(lambda: api.lists("/api/v1/nodes") > lists, "a list after the 410")
    eventually(lambda: cluster.live.source.readiness().ready, "ready")
    lists = api.lists("/api/v1/nodes")
    errors = cluster.metric("eip_guard_source_errors_total", source="nodes")
    for _ in range(2):
        api.refuse_next(node_watch, 429, "TooManyRequests", "slow down", {"Retry-After": "0"})
    api.cut()
    eventually(
        lambda: cluster.metric("eip_guard_source_errors_total", source="nodes") > errors,
        "the 429 counted as an error",
    )
    watches = len(api.watch_params("/api/v1/nodes"))
    eventually(lambda: len(api.watch_params("/api/v1/nodes")) > watches, "watching again")
    assert api.lists("/api/v1/nodes") == lists


def _watch(api: FakeApi, since: str | None, count: int) -> list[tuple[str, str, str]]:
    """The first ``count`` events of a watch of Nodes: (type, name or code, resourceVersion)."""
    client = api_client(host=api.direct_url)
    w = watch.Watch()  # type: ignore[no-untyped-call]
    got: list[tuple[str, str, str]] = []
    try:
        lister = NODE_STREAM.lister(client)
        for event in w.stream(lister, resource_version=since, _request_timeout=(2, 2)):  # type: ignore[no-untyped-call]
            obj = event["raw_object"]
            meta = obj.get("metadata") or {}
            got.append((event["type"], str(meta.get("name") or obj.get("code")),
                        str(meta.get("resourceVersion") or "")))  # fmt: skip
            if len(got) == count:
                break
    except (urllib3.exceptions.ReadTimeoutError, ApiException) as exc:
        got.append(("RAISED", str(getattr(exc, "status", "")), ""))
    finally:
        w.stop()  # type: ignore[no-untyped-call]
        client.close()  # type: ignore[no-untyped-call]
    return got


def test_the_stand_in_keeps_resource_versions_as_an_api_servers_watch_cache(api: FakeApi) -> None:
    """What the resume tests rely on: one increasing resourceVersion stamped on every change,
    a list at the current one, a watch from N sending exactly what came after N (a deletion
    with the object's last state), a watch with none starting with the objects as ADDED, and
    410 Expired for an N older than the history kept."""
    api.put("v1/nodes", node("n1", "10.0.0.1"))
    api.put("v1/nodes", node("n2", "10.0.0.2"))
    client = api_client(host=api.direct_url)
    try:
        items, rv = list_all(NODE_STREAM, NODE_STREAM.lister(client), TIMEOUT, lambda o: o)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    assert rv == str(api.resource_version())
    assert sorted(int(o["metadata"]["resourceVersion"]) for o in items) == [int(rv) - 1, int(rv)]
    writer = Writer(api)
    try:
        writer.delete("Node", "n1")
        writer.patch(node("n2", "10.0.0.3"))
    finally:
        writer.close()
    after = int(rv)
    assert _watch(api, rv, 2) == [
        ("DELETED", "n1", str(after + 1)),
        ("MODIFIED", "n2", str(after + 2)),
    ]
    assert _watch(api, None, 2)[:1] == [("ADDED", "n2", str(after + 2))]
    assert _watch(api, None, 2)[1][0] == "RAISED"  # nothing more: only n2 exists
    api.compact()
    assert _watch(api, rv, 1) == [("RAISED", "410", "")]  # the client raises the ERROR event
    assert _watch(api, str(after + 2), 1)[0][0] == "RAISED"  # the current one: no event, no 410


def test_the_stand_in_honours_preconditions_and_uids_as_an_api_server(api: FakeApi) -> None:
    """What the agent's Lease release relies on (kube-apiserver's store): a create gets a uid;
    a DELETE whose preconditions name another uid or resourceVersion is refused 409 Conflict
    ("Precondition failed: ...") and deletes nothing; a merge patch carrying a stale
    ``metadata.resourceVersion`` is refused 409 too; a missing object is 404 before either."""
    client = api_client(host=api.direct_url)
    where = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l", "namespace": "ns"},
        "spec": {"holderIdentity": "a"},
    }

    def call(method: str, path: str, body: Any = None, patch: bool = False) -> Any:
        kind = "application/merge-patch+json" if patch else "application/json"
        try:
            answer = rest.request(client, method, path, body=body, content_type=kind, timeout=5)
        except ApiException as exc:
            return exc.status, json.loads(exc.body or "{}").get("message")
        return rest.read_json(answer)

    def delete(**preconditions: str) -> Any:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
        return call("DELETE", f"{where}/l", body)

    try:
        made = call("POST", where, lease)
        uid, rv = made["metadata"]["uid"], made["metadata"]["resourceVersion"]
        assert uid and call("POST", where, {**lease, "metadata": {"name": "m"}})["metadata"][
            "uid"
        ] not in ("", uid)
        renewed = call("PATCH", f"{where}/l", {"metadata": {"resourceVersion": rv}}, patch=True)
        now = renewed["metadata"]["resourceVersion"]
        assert now != rv
        assert (
            call("PATCH", f"{where}/l", {"metadata": {"resourceVersion": rv}}, patch=True)[0] == 409
        )
        assert delete(uid="other") == (
            409,
            'Operation cannot be fulfilled on leases.coordination.k8s.io "l": Precondition '
            f"failed: UID in precondition: other, UID in object meta: {uid}",
        )
        assert delete(uid=uid, resourceVersion=rv) == (
            409,
            'Operation cannot be fulfilled on leases.coordination.k8s.io "l": Precondition '
            f"failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {now}",
        )
        assert [o["metadata"]["name"] for o in api.objects("coordination.k8s.io/v1/leases")] == [
            "l",
            "m",
        ]
        delete(uid=uid, resourceVersion=now)
        assert delete(uid=uid)[0] == 404
        assert (
            call("PATCH", f"{where}/l", {"metadata": {"resourceVersion": now}}, patch=True)[0]
            == 404
        )
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_a_service_account_token_missing_or_unreadable_is_said_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod without a token (automountServiceAccountToken: false) the start said
    "Service token file does not exist ... run inside a pod" (it was in one) and named no
    file; a token that could not be read later (gone, or not readable by the container's
    user) failed every call as "cannot reach the API server (FileNotFoundError ...)"."""
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    ca.write_text("not read until a connection is made")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    hint = (
        "mount one readable by the container's user (automountServiceAccountToken not false "
        "on the pod and its ServiceAccount, or a projected serviceAccountToken volume; "
        "securityContext runAsUser/fsGroup)"
    )
    with pytest.raises(KubeError) as missing:
        api_client()
    assert str(missing.value) == (
        "cannot load Kubernetes credentials from the pod's service account: cannot read the "
        f"pod's service-account token {token} (No such file or directory): {hint}. Pass "
        "--kubeconfig/--context, or use --cluster SNAPSHOT."
    )
    token.write_text("first")
    client = api_client()
    try:
        token.unlink()
        token.mkdir()  # replaced by what cannot be read (a directory: the tests run as root)
        with pytest.raises(KubeError) as unreadable:
            AgentApi(client, "ns", timeout=1).list_leases()
        assert str(unreadable.value) == (
            f"list Leases in ns: cannot read the pod's service-account token {token} (Is a "
            f"directory): {hint}"
        )
    finally:
        client.close()  # type: ignore[no-untyped-call]
