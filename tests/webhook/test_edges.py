"""Bad input, limits, readiness, failures, metrics and TLS of the real server."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from threading import Thread

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.inventory import Inventory
from app.core.sources import Readiness, StaticSource
from app.core.verdict import Policy
from app.webhook.app import (
    COUNTED_BODY_BYTES,
    MAX_BODY_BYTES,
    MAX_CONTAINERS,
    Drain,
    create_app,
)
from app.webhook.metrics import Metrics
from app.webhook.server import Server, config, listen, ssl_context

from .conftest import (
    SERVICE_DNS,
    V1,
    V1BETA1,
    Certs,
    NotReadySource,
    Webhook,
    client,
    example_eip,
    example_inventory,
    failed_call,
    review,
    serving,
)

Start = Callable[[FastAPI], Webhook]
JSON_HEADERS = {"content-type": "application/json"}


def reason_of(response: httpx.Response, code: int) -> str:
    assert response.status_code == code, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content.startswith(b'{"code":%d,"reason":"' % code)  # as the README shows
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["reason"], str)
    return body["reason"]


# --- 400 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "the body is not JSON"),
        (b"", "the body is empty: expected an AdmissionReview"),
        (b" \r\n", "the body is only whitespace: expected an AdmissionReview"),
        (b"[1, 2]", "not an admission.k8s.io/v1 (or v1beta1) AdmissionReview"),
        (b'{"apiVersion": "v1", "kind": "Pod"}', "apiVersion"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
            b' "request": {"operation": "CREATE"}}',
            "request.uid",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
            b' "request": {"uid": "u", "operation": "PATCH"}}',
            "request.operation",
        ),
        # Literals pydantic's parser takes but JSON (RFC 8259, Go's encoding/json) does not.
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
            b' "request": {"uid": "u", "operation": "CREATE", "x": NaN}}',
            "the body is not JSON: expected value at line 1",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",'
            b' "request": {"uid": "u", "operation": "CREATE", "object": {"a": -Infinity}}}',
            "the body is not JSON",
        ),
    ],
)
def test_what_is_not_a_review_gets_400_with_a_reason(
    webhook: Webhook, body: bytes, expected: str
) -> None:
    response = webhook.http.post(
        "/validate-eip", content=body, headers={"content-type": "application/json"}
    )
    assert expected in reason_of(response, 400)


@pytest.mark.parametrize(
    ("mark", "encoding", "expected"),
    [
        (b"\xef\xbb\xbf", "utf-8", "a UTF-8 byte order mark (EF BB BF)"),
        (b"", "utf-16", "a UTF-16 byte order mark (FF FE)"),
        (b"", "utf-16-be", "no byte order mark but NUL bytes: UTF-16 or UTF-32"),
    ],
)
def test_a_body_not_in_plain_utf8_gets_400_saying_so(
    webhook: Webhook, mark: bytes, encoding: str, expected: str
) -> None:
    # What an editor or a shell may write (Notepad's BOM, PowerShell 5's UTF-16 redirect),
    # answered "expected value at line 1 column 1" by the parser: no hint at the cause.
    body = mark + json.dumps(review(example_eip("good"))).encode(encoding)
    response = webhook.http.post("/validate-eip", content=body, headers=JSON_HEADERS)
    reason = reason_of(response, 400)
    assert reason.startswith(f"the body is not JSON: it starts with {expected}"), reason
    assert "save it as UTF-8 without a byte order mark" in reason


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_wrong_content_type_gets_400(webhook: Webhook, content_type: str | None) -> None:
    body = json.dumps(review(example_eip("good"))).encode()
    headers = {"content-type": content_type} if content_type else {}
    response = webhook.http.post("/validate-eip", content=body, headers=headers)
    assert "Content-Type must be application/json" in reason_of(response, 400)


@pytest.mark.parametrize("encoding", ["gzip", "br, gzip", "deflate"])
def test_a_compressed_body_gets_400_naming_the_encoding(webhook: Webhook, encoding: str) -> None:
    body = json.dumps(review(example_eip("good"))).encode()
    headers = {"content-type": "application/json", "content-encoding": encoding}
    response = webhook.http.post("/validate-eip", content=body, headers=headers)
    assert f"Content-Encoding {encoding!r} is not supported" in reason_of(response, 400)


def test_identity_content_encoding_is_fine(webhook: Webhook) -> None:
    body = json.dumps(review(example_eip("good"), uid="id")).encode()
    headers = {"content-type": "application/json", "content-encoding": "Identity"}
    response = webhook.http.post("/validate-eip", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["response"]["allowed"] is True


def test_nan_and_infinity_inside_strings_are_fine(webhook: Webhook) -> None:
    eip = example_eip("good")
    eip["metadata"]["annotations"] = {"note": "NaN Infinity"}
    assert webhook.validate(review(eip))["response"]["allowed"] is True


def test_json_with_a_charset_is_fine(webhook: Webhook) -> None:
    body = json.dumps(review(example_eip("good"), uid="cs")).encode()
    headers = {"content-type": "application/json; charset=utf-8"}
    response = webhook.http.post("/validate-eip", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["response"] == {"uid": "cs", "allowed": True}


def test_wrong_paths_and_methods_answer_in_the_same_form(webhook: Webhook) -> None:
    body = json.dumps(review(example_eip("good"))).encode()
    headers = {"content-type": "application/json"}
    assert reason_of(webhook.http.get("/validate-eip"), 405) == "Method Not Allowed"
    assert webhook.http.get("/validate-eip").headers["allow"] == "POST"
    assert reason_of(webhook.http.get("/nowhere"), 404) == "Not Found"
    # No redirect to a URL made from the Host header: the webhook's path is exact.
    slash = webhook.http.post("/validate-eip/", content=body, headers=headers)
    assert reason_of(slash, 404) == "Not Found"


# Where a client (or a buggy proxy) may put a wrong value in a review: each gets any JSON.
REVIEW_PATHS = [
    ("request",),
    ("request", "uid"),
    ("request", "operation"),
    ("request", "name"),
    ("request", "subResource"),
    ("request", "userInfo"),
    ("request", "dryRun"),
    ("request", "object"),
    ("request", "oldObject"),
    ("request", "object", "metadata"),
    ("request", "object", "metadata", "name"),
    ("request", "object", "metadata", "annotations"),
    ("request", "object", "spec"),
    ("request", "object", "spec", "address"),
    ("request", "object", "spec", "interface"),
    ("request", "object", "spec", "protocol"),
    ("request", "object", "spec", "disable"),
    ("request", "object", "status"),
    ("request", "oldObject", "spec", "address"),
    ("request", "oldObject", "status", "used"),
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)  # about a second over the real server
@given(
    st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]),
    st.sampled_from([V1, V1BETA1]),
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(REVIEW_PATHS), st.none() | JSON_VALUES), max_size=3),
)
def test_a_review_of_any_shape_is_answered_never_with_a_5xx(
    webhook: Webhook,
    operation: str,
    api_version: str,
    with_old: bool,
    changes: list[tuple[tuple[str, ...], object]],
) -> None:
    # The contract: a verdict of the request's version echoing its uid, or a 400 that says
    # why (a {code, reason}, or a v1 Status for a request missing what it must carry).
    old = example_eip("good") if with_old else None
    body = review(example_eip("bad"), operation, old, api_version, uid="u-1")
    for path, value in changes:
        at = body
        for key in path[:-1]:
            if not isinstance(at.get(key), dict):
                at[key] = {}
            at = at[key]
        at[path[-1]] = value
    response = webhook.http.post("/validate-eip", json=body)
    assert response.status_code in (200, 400), response.text
    answer = response.json()
    if response.status_code == 200:
        assert answer["apiVersion"] == api_version
        assert answer["response"]["uid"] == body["request"]["uid"]
    elif answer.get("kind") == "Status":
        assert failed_call(response, 400, "BadRequest")
    else:
        assert reason_of(response, 400)


# --- 413 -----------------------------------------------------------------------------


def test_a_body_over_7_mib_gets_413(webhook: Webhook) -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    response = webhook.http.post(
        "/validate-eip", content=body, headers={"content-type": "application/json"}
    )
    assert "exceeds 7340032 bytes" in reason_of(response, 413)
    # The connection survives (the server drained the body): the next review is answered.
    assert webhook.validate(review(example_eip("good"), uid="after"))["response"]["uid"] == "after"


def test_a_large_body_of_too_many_json_containers_gets_400_unparsed(webhook: Webhook) -> None:
    # Parsed, 600,000 empty lists cost some 60 MB and more; a review holds far fewer.
    eip = example_eip("good")
    eip["junk"] = [[] for _ in range(MAX_CONTAINERS + 1)]
    body = json.dumps(review(eip)).encode()
    response = webhook.http.post(
        "/validate-eip", content=body, headers={"content-type": "application/json"}
    )
    assert f"more than {MAX_CONTAINERS} JSON arrays and objects" in reason_of(response, 400)
    # As many as a large real Eip has (managedFields: an object per status.used IP) pass.
    eip["junk"] = [{"f:10.0.0.1": {}} for _ in range(100_000)]
    assert len(json.dumps(review(eip))) > COUNTED_BODY_BYTES
    assert webhook.validate(review(eip, uid="large"))["response"]["allowed"] is True


def _padded(size: int, uid: str) -> bytes:
    body = json.dumps(review(example_eip("good"), uid=uid)).encode()
    return body + b" " * (size - len(body))  # JSON allows trailing whitespace


def test_the_limit_is_inclusive_and_enforced_on_streamed_bodies(start: Start) -> None:
    limit = 64 * 1024
    hook = start(create_app(StaticSource(example_inventory()), Policy(), max_body_bytes=limit))
    json_headers = {"content-type": "application/json"}

    exact = hook.http.post("/validate-eip", content=_padded(limit, "at"), headers=json_headers)
    assert exact.status_code == 200
    assert exact.json()["response"] == {"uid": "at", "allowed": True}

    def chunks(total: int) -> Iterator[bytes]:
        # No Content-Length: the server can only find out by counting while it reads.
        data = _padded(total, "over")
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    over = hook.http.post("/validate-eip", content=chunks(limit + 1), headers=json_headers)
    assert "content-length" not in over.request.headers
    assert "exceeds 65536 bytes" in reason_of(over, 413)


def test_a_body_that_never_finishes_gets_408_and_the_connection_closed(
    certs: Certs, start: Start
) -> None:
    # A client that sends part of a body and waits holds a connection and its buffers; the
    # API server sends a review at once. (Here 0.5 s in place of the default 30 s.)
    metrics = Metrics()
    hook = start(create_app(StaticSource(example_inventory()), Policy(), metrics=metrics,
                            body_seconds=0.5))  # fmt: skip
    context = ssl.create_default_context(cafile=str(certs.ca))
    with (
        socket.create_connection(("127.0.0.1", hook.port)) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_DNS) as tls,
    ):
        tls.sendall(
            b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"apiVersion":'
        )
        tls.settimeout(10)
        answer = b""
        while chunk := tls.recv(4096):  # until the server closes
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {"code": 408, "reason": "the body did not arrive within 0.5 s"}
    text = hook.http.get("/metrics").text
    assert sample(text, "eip_guard_http_rejected_total", code="408") == 1


def test_bodies_held_together_past_their_budget_get_503_and_the_budget_comes_back(
    certs: Certs, start: Start
) -> None:
    # 60 clients each sending 7 MiB minus a byte held 400 MB more (a security review): the
    # bytes of all bodies in flight, past the first 64 KiB of each, have one budget (here
    # 100 KiB). A review of kilobytes never counts: held bodies cannot crowd it out.
    metrics = Metrics()
    hook = start(create_app(StaticSource(example_inventory()), Policy(), metrics=metrics,
                            max_bodies_bytes=100 * 1024))  # fmt: skip
    context = ssl.create_default_context(cafile=str(certs.ca))
    head = (b"POST /validate-eip HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 300000\r\n\r\n")  # fmt: skip
    large = b" " * (64 * 1024 + 20 * 1024)  # 20 KiB past its free part
    with (
        socket.create_connection(("127.0.0.1", hook.port)) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_DNS) as holding,
    ):
        holding.sendall(head + b"[" * (64 * 1024 + 90 * 1024))  # held: 90 KiB of the budget
        time.sleep(0.3)
        assert hook.validate(review(example_eip("good")))["response"]["allowed"] is True
        second = hook.http.post("/validate-eip", content=large, headers=JSON_HEADERS)
        assert second.status_code == 503 and second.headers["connection"] == "close"
        assert "bodies being received together exceed 102400 bytes" in second.json()["reason"]
    time.sleep(0.3)  # the held body's connection is gone: its bytes with it
    again = hook.http.post("/validate-eip", content=large, headers=JSON_HEADERS)
    assert again.status_code == 400  # read whole, and judged no review
    assert sample(hook.http.get("/metrics").text, "eip_guard_http_rejected_total", code="503") == 1


# --- failures of ours and of the source ------------------------------------------------


@dataclass
class BrokenSource:
    """A source that fails, as a bug or a broken live cache would."""

    def current(self) -> Inventory:
        raise RuntimeError("cache exploded")

    def readiness(self) -> Readiness:
        raise RuntimeError("cache exploded")


def test_an_exception_of_ours_is_a_failed_call_so_failure_policy_applies(start: Start) -> None:
    # A response with allowed false is a rejection whatever its code: the API server applies
    # failurePolicy only to a call that failed, so a bug of ours answers an HTTP 500.
    hook = start(create_app(BrokenSource(), Policy()))
    response = hook.http.post("/validate-eip", json=review(example_eip("good"), uid="boom"))
    message = failed_call(response, 500, "InternalError")
    assert message == "eip-guard failed to check this request: RuntimeError: cache exploded"
    assert "Traceback" not in response.text
    ready = hook.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "ready": False,
        "reason": "readiness check failed: RuntimeError: cache exploded",
    }


def test_not_ready_is_a_retryable_503_failed_call_and_readyz_says_why(start: Start) -> None:
    hook = start(create_app(NotReadySource(Inventory()), Policy()))
    ready = hook.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.content == b'{"ready":false,"reason":"waiting for the first list of Services"}'

    # Even a good Eip gets no verdict (an empty inventory would allow everything): a failed
    # call, which failurePolicy Fail refuses and Ignore admits, as when no pod is reachable.
    response = hook.http.post("/validate-eip", json=review(example_eip("good"), uid="nr"))
    message = failed_call(response, 503, "ServiceUnavailable")
    assert "waiting for the first list of Services" in message
    assert "retry" in message
    assert "Retry-After" not in response.headers  # the API server would wait, not report

    # DELETE needs no cluster facts and is still answered.
    old = example_eip("good")
    deleted = hook.validate(review(None, "DELETE", old=old, uid="nr-d"))["response"]
    assert deleted == {"uid": "nr-d", "allowed": True}


# --- health and metrics ----------------------------------------------------------------


def test_healthz_and_readyz_of_a_ready_source(webhook: Webhook) -> None:
    assert webhook.http.get("/healthz").json() == {"ok": True}
    ready = webhook.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_metrics_count_verdicts_rules_rejections_and_latency(start: Start) -> None:
    metrics = Metrics()
    hook = start(create_app(StaticSource(example_inventory()), Policy(), metrics=metrics))
    hook.validate(review(example_eip("bad")))
    hook.validate(review(example_eip("bad")))
    hook.validate(review(example_eip("good")))
    hook.http.post("/validate-eip", content=b"nope", headers={"content-type": "application/json"})

    response = hook.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    reviews = "eip_guard_admission_reviews_total"
    assert sample(text, reviews, operation="CREATE", verdict="denied") == 2
    assert sample(text, reviews, operation="CREATE", verdict="allowed") == 1
    rules = "eip_guard_rule_violations_total"
    assert sample(text, rules, rule="can-reach-in-eip", action="deny") == 2
    assert sample(text, rules, rule="can-reach-service-ip", action="deny") == 2
    assert sample(text, "eip_guard_http_rejected_total", code="400") == 1
    assert sample(text, "eip_guard_admission_duration_seconds_count") == 3
    assert sample(text, "eip_guard_admission_duration_seconds_bucket", le="+Inf") == 3


@dataclass
class SwitchingSource:
    """Ready or not as a test says, so the gauge is seen to follow it."""

    ready: bool = False

    def current(self) -> Inventory:
        return example_inventory()

    def readiness(self) -> Readiness:
        return Readiness(self.ready, "" if self.ready else "waiting for the first list of Nodes")


def ready_line(text: str) -> str:
    """The one sample of eip_guard_ready (absent would be a failure, not a 0)."""
    [line] = [line for line in text.splitlines() if line.startswith("eip_guard_ready ")]
    return line


def test_the_ready_gauge_says_what_readyz_says_when_scraped(start: Start) -> None:
    source = SwitchingSource()
    hook = start(create_app(source, Policy()))
    assert hook.http.get("/readyz").status_code == 503
    assert ready_line(hook.http.get("/metrics").text) == "eip_guard_ready 0.0"
    source.ready = True
    assert hook.http.get("/readyz").status_code == 200
    assert ready_line(hook.http.get("/metrics").text) == "eip_guard_ready 1.0"


def test_a_broken_source_scrapes_as_not_ready_never_a_500(start: Start) -> None:
    hook = start(create_app(BrokenSource(), Policy()))
    response = hook.http.get("/metrics")
    assert response.status_code == 200
    assert ready_line(response.text) == "eip_guard_ready 0.0"


def test_the_latency_is_judging_not_the_clients_upload(start: Start) -> None:
    metrics = Metrics()
    hook = start(create_app(StaticSource(example_inventory()), Policy(), metrics=metrics))
    body = json.dumps(review(example_eip("good"))).encode()

    def slowly() -> Iterator[bytes]:
        yield body[:10]
        time.sleep(0.5)  # a slow client, not a slow decision
        yield body[10:]

    response = hook.http.post(
        "/validate-eip", content=slowly(), headers={"content-type": "application/json"}
    )
    assert response.json()["response"]["allowed"] is True
    text = hook.http.get("/metrics").text
    assert sample(text, "eip_guard_admission_duration_seconds_count") == 1
    assert sample(text, "eip_guard_admission_duration_seconds_sum") < 0.5


def test_each_app_counts_in_its_own_registry(start: Start) -> None:
    first = start(create_app(StaticSource(example_inventory()), Policy()))
    second = start(create_app(StaticSource(example_inventory()), Policy()))
    first.validate(review(example_eip("good")))
    count = "eip_guard_admission_duration_seconds_count"
    assert sample(first.http.get("/metrics").text, count) == 1
    assert sample(second.http.get("/metrics").text, count) == 0


# --- TLS -----------------------------------------------------------------------------


def test_the_server_speaks_tls12_or_later_and_http11(webhook: Webhook) -> None:
    response = webhook.http.get("/healthz")
    assert response.http_version == "HTTP/1.1"
    tls = response.extensions["network_stream"].get_extra_info("ssl_object")
    assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert tls.selected_alpn_protocol() in (None, "http/1.1")
    names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
    assert SERVICE_DNS in names


def test_a_client_trusting_another_ca_refuses_the_server(
    webhook: Webhook, other_certs: Certs
) -> None:
    with client(webhook.port, other_certs.ca) as untrusting, pytest.raises(httpx.ConnectError) as e:
        untrusting.get("/healthz")
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def test_a_client_expecting_another_name_refuses_the_server(webhook: Webhook, certs: Certs) -> None:
    with (
        client(webhook.port, certs.ca, sni="eip-guard.other.svc") as wrong_name,
        pytest.raises(httpx.ConnectError) as e,
    ):
        wrong_name.get("/healthz")
    assert "Hostname mismatch" in str(e.value) or "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def test_a_server_with_an_untrusted_certificate_is_refused(
    certs: Certs, other_certs: Certs
) -> None:
    app = create_app(StaticSource(example_inventory()), Policy())
    with (
        serving(app, other_certs) as port,
        client(port, certs.ca) as http,
        pytest.raises(httpx.ConnectError) as e,
    ):
        http.get("/healthz")
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def test_the_floor_is_tls_1_2_and_tls_1_2_clients_are_served(
    webhook: Webhook, certs: Certs
) -> None:
    # The server refuses anything older (clients here cannot even offer it: OpenSSL
    # deprecates it), so check the server's own floor, then that 1.2 really works.
    server_side = ssl_context(certs.cert, certs.key)
    assert server_side.minimum_version is ssl.TLSVersion.TLSv1_2
    assert server_side.options & ssl.OP_NO_RENEGOTIATION
    with client(webhook.port, certs.ca, tls_max=ssl.TLSVersion.TLSv1_2) as http:
        tls = http.get("/healthz").extensions["network_stream"].get_extra_info("ssl_object")
        assert tls.version() == "TLSv1.2"


@contextmanager
def stoppable(certs: Certs, drain_seconds: float = 0.0) -> Iterator[tuple[Server, Thread, int]]:
    """The example webhook in a uvicorn server of its own thread, which a test stops (or
    makes drain) itself: the server, its thread and its port. On the way out it is stopped,
    whatever happened."""
    app = create_app(StaticSource(example_inventory()), Policy())
    sock = listen("127.0.0.1", 0)
    cfg = config(app, functools.partial(ssl_context, certs.cert, certs.key))
    server = Server(cfg, drain=app.state.drain, drain_seconds=drain_seconds)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.01)
        yield server, thread, int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def test_a_review_in_flight_is_answered_during_shutdown(certs: Certs) -> None:
    """Stopping (what SIGTERM does) lets a request that has started finish."""
    with stoppable(certs) as (server, thread, port):
        body = json.dumps(review(example_eip("bad"), uid="in-flight")).encode()
        head = (
            f"POST /validate-eip HTTP/1.1\r\nHost: {SERVICE_DNS}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        context = ssl.create_default_context(cafile=str(certs.ca))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=SERVICE_DNS) as tls,
        ):
            tls.sendall(head + body[:100])
            time.sleep(0.2)  # the server has the request's start
            server.should_exit = True  # what the SIGTERM handler sets
            time.sleep(0.3)  # shutdown has begun: no new connections
            tls.sendall(body[100:])
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK"
        payload = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert payload["response"]["uid"] == "in-flight"
        assert payload["response"]["allowed"] is False
        assert b"connection: close" in rest.lower()  # and then it closed
    assert not thread.is_alive()


def test_sigterm_with_a_drain_time_answers_not_ready_then_stops(certs: Certs) -> None:
    """A terminating pod's Endpoints still receive for a moment: draining, the server is not
    ready, still answers (closing each connection after its answer), then stops."""
    with (
        stoppable(certs, drain_seconds=1.0) as (server, thread, port),
        client(port, certs.ca) as http,
    ):
        assert http.get("/readyz").status_code == 200
        assert (
            "connection" not in http.post("/validate-eip", json=review(example_eip("good"))).headers
        )
        server.handle_exit(signal.SIGTERM, None)  # what the signal handler calls
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["reason"] == "shutting down"
        answer = http.post("/validate-eip", json=review(example_eip("good"), uid="late"))
        assert answer.json()["response"] == {"uid": "late", "allowed": True}
        assert answer.headers["connection"] == "close"
        failed = http.post("/validate-eip", json=review(None, uid="no-object"))
        assert (failed.status_code, failed.headers["connection"]) == (400, "close")
        assert thread.is_alive()
        thread.join(20)  # the drain ends, then the graceful stop
        assert not thread.is_alive()


def test_draining_every_4xx_closes_its_connection_too(certs: Certs) -> None:
    """Draining, a refused request's connection is closed as a review's is: kept, its client
    (an API server with a wrong path in its webhook configuration, say) stayed on a replica
    about to stop instead of reconnecting to one that stays."""
    good = json.dumps(review(example_eip("good"))).encode()
    refused = [
        ("POST", "/validate-eip", b"{not json", JSON_HEADERS, 400),
        ("POST", "/validate-eip", b"", JSON_HEADERS, 400),
        ("POST", "/validate-eip", good, {"content-type": "text/plain"}, 400),
        ("POST", "/validate-eip", good, {**JSON_HEADERS, "content-encoding": "gzip"}, 400),
        ("POST", "/validate", good, JSON_HEADERS, 404),
        ("GET", "/validate-eip", b"", {}, 405),
    ]
    with stoppable(certs, drain_seconds=60.0) as (server, _, port), client(port, certs.ca) as http:
        for method, path, body, headers, code in refused:
            answer = http.request(method, path, content=body, headers=headers)
            assert (answer.status_code, answer.headers.get("connection")) == (code, None)
        server.handle_exit(signal.SIGTERM, None)  # draining from now on
        for method, path, body, headers, code in refused:
            answer = http.request(method, path, content=body, headers=headers)
            assert (answer.status_code, answer.headers.get("connection")) == (code, "close")
            if code == 405:
                assert answer.headers["allow"] == "POST"  # Starlette's header kept
        # A 413's body is still arriving: closing would reset the connection and could lose
        # the answer (see app.webhook.app._problem). No API server sends one (etcd's objects
        # are at most 1.5 MiB): it keeps its connection, as without a drain.
        big = http.post("/validate-eip", content=b" " * (MAX_BODY_BYTES + 1), headers=JSON_HEADERS)
        assert (big.status_code, big.headers.get("connection")) == (413, None)


def test_any_stop_says_not_ready_at_once_and_ctrl_c_after_a_drain_forces_it(
    certs: Certs,
) -> None:
    # SIGINT stops without a drain, but /readyz must not go on saying ready meanwhile.
    app = create_app(StaticSource(example_inventory()), Policy())
    cfg = config(app, functools.partial(ssl_context, certs.cert, certs.key))
    stopping = Server(cfg, drain=app.state.drain, drain_seconds=5.0)
    stopping.handle_exit(signal.SIGINT, None)
    assert app.state.drain.active and stopping.should_exit
    # A drain that ran out stops as a signal would: one Ctrl-C then forces the stop
    # (uvicorn's "CTRL+C to force quit"), not a second one.
    drained = Server(cfg, drain=Drain(), drain_seconds=5.0)
    drained.handle_exit(signal.SIGTERM, None)
    assert not drained.should_exit
    drained._drain_until = time.monotonic() - 1  # the drain's end, without waiting for it
    assert asyncio.run(drained.on_tick(0)) is True and drained.should_exit
    drained.handle_exit(signal.SIGINT, None)
    assert drained.force_exit


def test_the_decision_line_cuts_what_any_client_may_make_huge(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    # A client reaching the port sent a 2 MB uid: a 2 MB log line each, rotating the real
    # ones (overrides audited) out of the kubelet's log files.
    # (A uid is at most 256 characters: see the next test.)
    body = review(example_eip("good"), uid="u" * 256)
    body["request"]["userInfo"] = {"username": "x" * 100_000}
    annotations = body["request"]["object"]["metadata"].setdefault("annotations", {})
    # One long id, then more short ones than a line names (all within the 4 KiB read).
    annotations["eip-guard.io/allow-rules"] = ",".join(["r" * 1000] + ["s" * 50] * 100)
    with caplog.at_level(logging.INFO, logger="eip_guard.webhook"):
        assert webhook.validate(body)["response"]["uid"] == "u" * 256  # echoed whole
    (line,) = [r for r in caplog.records if r.getMessage() == "admission decision"]
    fields = line.__dict__["fields"]
    assert fields["uid"] == "u" * 256 and fields["user"] == "x" * 253 + "..."
    named = fields["allow_rules"]
    assert len(named) == 32 and {len(r) for r in named} == {128, 50}


def test_an_answer_never_echoes_more_than_an_api_server_sends(webhook: Webhook) -> None:
    # A client reaching the port sent reviews with a 6 MB uid and read no answer: each
    # answer echoed the uid whole and sat in the server's buffers for up to a minute (the
    # body budget had let go of it): 40 such connections took 665 MB, past the chart's
    # 512 MiB limit. An API server's uid is a UUID (36 characters), and a name it sends is
    # at most 253 characters (it validates the name before any validating webhook).
    response = webhook.http.post("/validate-eip", json=review(example_eip("good"), uid="u" * 257))
    assert response.status_code == 400
    assert response.json()["reason"] == (
        "the body is not an admission.k8s.io/v1 (or v1beta1) AdmissionReview with a request: "
        "request.uid: String should have at most 256 characters"
    )
    assert webhook.validate(review(example_eip("good"), uid="u" * 256))["response"]["uid"] == (
        "u" * 256
    )
    bad = example_eip("bad")
    bad["metadata"]["name"] = "n" * 1_000_000
    answer = webhook.validate(review(bad))["response"]
    assert answer["allowed"] is False
    assert answer["status"]["details"]["name"] == "n" * 250 + "..."
    assert len(json.dumps(answer)) < 10_000
