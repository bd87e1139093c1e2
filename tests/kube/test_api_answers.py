"""Lists against a real HTTP server that answers as a broken or busy API server may: through
the client's own urllib3 pool, with the retry policy eip-guard gives it (``config.RETRIES``).

What must hold: an unanswered request fails after one read timeout (urllib3's default retried
it three times, silently: 22 minutes with a watch's timeout before anything was said); a
Retry-After is obeyed once, and capped; an expired continue token ends in one whole list, as
client-go's pager does; a 200 that is no list is an error, never an empty store.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ReadTimeoutError

from app.kube import config
from app.kube.config import api_client
from app.kube.resources import (
    NODES,
    Stream,
    UnreadableAnswer,
    describe_failure,
    list_all,
)
from tests.core.objects import node

STREAM = Stream(NODES)
TIMEOUT = (2.0, 0.5)  # connect, read: the read timeout is what an unanswered request waits
Answer = tuple[int, dict[str, str], Any] | None  # None: read the request, never answer


Server = Callable[[Callable[[str], Answer]], tuple[str, list[str]]]


@pytest.fixture
def server() -> Iterator[Server]:
    """Starts HTTP servers answering each GET path (with its query) by a function; gives
    each one's URL and the paths it was asked, in order."""
    started: list[tuple[ThreadingHTTPServer, threading.Event]] = []

    def start(answer: Callable[[str], Answer]) -> tuple[str, list[str]]:
        asked: list[str] = []
        release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                reply = answer(self.path)
                if reply is None:
                    release.wait(30)  # the client gives up first
                    return
                code, headers, body = reply
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        http.daemon_threads = True
        threading.Thread(target=http.serve_forever, daemon=True).start()
        started.append((http, release))
        return f"http://127.0.0.1:{http.server_address[1]}", asked

    yield start
    for http, release in started:
        release.set()
        http.shutdown()
        http.server_close()


def listed(url: str) -> list[str]:
    api = api_client(host=url)
    try:
        items, _rv = list_all(STREAM, STREAM.lister(api), TIMEOUT, lambda o: o["metadata"]["name"])
        return items
    finally:
        api.close()  # type: ignore[no-untyped-call]


def node_list(*names: str, token: str = "") -> tuple[int, dict[str, str], Any]:
    meta = {"resourceVersion": "7", **({"continue": token} if token else {})}
    return 200, {}, {"kind": "NodeList", "metadata": meta, "items": [node(n) for n in names]}


def test_an_unanswered_list_fails_after_one_read_timeout(server: Server) -> None:
    url, asked = server(lambda path: None)
    with pytest.raises(ReadTimeoutError) as caught:
        listed(url)
    assert len(asked) == 1  # urllib3's default asked four times before saying anything
    said = describe_failure(STREAM, caught.value)
    assert said.startswith("nodes: cannot reach the API server at 127.0.0.1:")
    assert "Read timed out" in said and said.endswith("; retrying")


def test_a_retry_after_is_obeyed_once_and_capped(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config._CappedRetry, "cap", 0.05)  # the server asks for an hour
    busy = (429, {"Retry-After": "3600"}, {"kind": "Status", "code": 429})
    answers = iter([busy, node_list("n1")])
    url, asked = server(lambda path: next(answers))
    assert listed(url) == ["n1"]
    assert len(asked) == 2

    url, asked = server(lambda path: busy)
    with pytest.raises(ApiException) as caught:
        listed(url)
    assert caught.value.status == 429 and len(asked) == 2  # then the caller's backoff


EXPIRED: Answer = (410, {}, {"kind": "Status", "code": 410, "reason": "Expired"})


def test_an_expired_continue_token_lists_in_pages_again_then_whole(server: Server) -> None:
    # Pages again first (one answer of 100,000 Services peaks near 500 MB); expired again,
    # one whole list, as client-go's pager does at once.
    def answer(path: str) -> Answer:
        if "continue=" in path:
            return EXPIRED
        if "limit=" in path:
            return node_list("n1", token="t1")
        return node_list("n1", "n2", "n3")

    url, asked = server(answer)
    assert listed(url) == ["n1", "n2", "n3"]
    assert ["continue=" in p for p in asked] == [False, True, False, True, False]
    assert ["limit=" in p for p in asked] == [True, True, True, True, False]

    expired_once = iter([node_list("n1", token="t1"), EXPIRED, node_list("n1", token="t2")])

    def once(path: str) -> Answer:
        return next(expired_once, node_list("n2"))

    url, asked = server(once)
    assert listed(url) == ["n1", "n2"]  # the second paged list's pages, nothing before
    assert all("limit=" in p for p in asked) and len(asked) == 4


@pytest.mark.parametrize(
    "body", [{"kind": "Status", "status": "Failure", "message": "proxy"}, {}, [], {"items": 5}]
)
def test_a_200_that_is_no_list_is_an_error_not_an_empty_store(server: Server, body: Any) -> None:
    url, _ = server(lambda path: (200, {}, body))
    with pytest.raises(UnreadableAnswer) as caught:
        listed(url)
    said = describe_failure(STREAM, caught.value, retrying=False)
    assert said.startswith("nodes: the API server's answer could not be read (UnreadableAnswer: ")
    assert "no list" in said


@pytest.mark.parametrize("items", [[], None])
def test_a_list_of_no_items_is_an_empty_list(server: Server, items: list[Any] | None) -> None:
    url, _ = server(lambda path: (200, {}, {"kind": "NodeList", "items": items}))
    assert listed(url) == []


def test_a_refused_connection_is_said_with_its_host_and_port_without_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed on exit: nothing listens there
    with pytest.raises(Exception) as caught:
        listed(f"http://127.0.0.1:{port}")
    said = describe_failure(STREAM, caught.value)
    assert said.startswith(f"nodes: cannot reach the API server at 127.0.0.1:{port} (")
    assert "Connection refused" in said


def test_a_continue_token_given_twice_ends_the_list(server: Server) -> None:
    # A broken server or proxy answering the same page for ever looped `check --kubeconfig`.
    url, asked = server(lambda path: node_list("n1", token="again"))
    with pytest.raises(UnreadableAnswer, match="a continue token it had given before"):
        listed(url)
    assert len(asked) == 2
