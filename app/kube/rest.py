"""Kubernetes API calls by path, through the official client's ``ApiClient``: its
configuration, credentials (tokens, exec plugins, client certificates), TLS, connection pool
and ``ApiException``; JSON in, JSON (or the raw response) out.

Not the generated API classes: importing ``CoreV1Api`` takes about 1 s and 22 MB (4.5 MB of
generated source, with a pydantic validator per method), ``AppsV1Api`` and
``NetworkingV1Api`` 0.45 s and 8 MB more, and every call validates its arguments first.
eip-guard makes a dozen kinds of call, all on plain JSON. Its bodies stay plain dicts, so a
read-modify-write keeps the fields this client version has no model for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import incluster_config

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
Timeout = float | tuple[float, float] | None

# A list or watch call's keyword arguments, as the generated ``list_*`` functions take them
# (and as ``kubernetes.watch.Watch.stream`` passes them), and their query parameter.
QUERY_NAMES = {
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
    "limit": "limit",
    "_continue": "continue",
    "resource_version": "resourceVersion",
    "resource_version_match": "resourceVersionMatch",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
    "watch": "watch",
}


def path(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """The REST path of a collection or, with ``name``, of one object."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    return f"{base}/{quote(name, safe='')}" if name else base


def request(
    api: client.ApiClient,
    method: str,
    where: str,
    *,
    query: Iterable[tuple[str, Any]] = (),
    body: Any = None,
    content_type: str = JSON,
    timeout: Timeout = None,
) -> urllib3.BaseHTTPResponse:
    """One call, answered with the response unread (stream it, or read ``.data``);
    ``ApiException`` for a status outside 2xx, as the generated functions raise it."""
    headers = {"Accept": JSON}
    if body is not None:
        headers["Content-Type"] = content_type
    method, url, headers, body, post = api.param_serialize(
        method,
        where,
        query_params=list(query),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    answer = api.call_api(method, url, headers, body, post, _request_timeout=timeout)
    if not 200 <= answer.status <= 299:
        answer.read()  # type: ignore[no-untyped-call]
        raise ApiException.from_response(http_resp=answer, body=None, data=None)
    response: urllib3.BaseHTTPResponse = answer.response
    return response


def merge_patch(
    api: client.ApiClient, where: str, body: Any, *, timeout: Timeout = None
) -> urllib3.BaseHTTPResponse:
    """A JSON merge patch (RFC 7386): the one patch type every resource takes, custom ones
    included, and a list in it replaces the list whole."""
    return request(api, "PATCH", where, body=body, content_type=MERGE_PATCH, timeout=timeout)


def read_json(response: urllib3.BaseHTTPResponse) -> Any:
    """A :func:`request`'s answer, read whole and parsed (``{}`` when empty); the connection
    goes back to the pool. A body that is not JSON raises ``ValueError``."""
    try:
        data = response.data
    finally:
        response.release_conn()
    return json.loads(data) if data else {}


def lister(api: client.ApiClient, where: str, **fixed: Any) -> Callable[..., Any]:
    """A list function for the collection at ``where``, called as the generated ``list_*``
    functions are (``limit``, ``_continue``, ``label_selector``, ``watch``... and
    ``_request_timeout``), answering the raw response: ``list_all`` and
    ``kubernetes.watch.Watch.stream`` read it themselves. ``fixed``: parameters of every
    call (a ``label_selector``)."""

    # No docstring and no return type the watch module can resolve, on purpose: Watch.stream
    # then finds no model type and hands us the raw dicts (no per-event deserialisation).
    def call(
        *, _preload_content: bool = False, _request_timeout: Timeout = None, **params: Any
    ) -> Any:
        if _preload_content:
            raise TypeError("a lister answers the raw response: pass _preload_content=False")
        params = {**fixed, **params}
        unknown = set(params) - QUERY_NAMES.keys()
        if unknown:
            raise TypeError(f"unknown list parameter(s): {sorted(unknown)}")
        query = [(QUERY_NAMES[k], v) for k, v in params.items() if v is not None]
        return request(api, "GET", where, query=query, timeout=_request_timeout)

    return call


def why(exc: Exception) -> str:
    """A failed call in one line: an ApiException's str() spans lines, with its headers, and
    urllib3's errors nest their cause in reprs (:func:`unreachable`)."""
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return unreachable(exc)
    return str(exc) or type(exc).__name__


def status_message(exc: ApiException) -> str:
    """The ``message`` of the Status an API server answered with, on one line and cut to 300
    characters ("" when there is none): which namespace is missing, which grant a 403 lacks,
    which field a 422 refused, where ``HTTP 404 Not Found`` says none of it."""
    try:
        status = json.loads(exc.body) if exc.body else None
    except (TypeError, ValueError):
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return " ".join(message.split())[:300] if isinstance(message, str) else ""


SERVICE_ACCOUNT_HINT = (
    "mount one readable by the container's user (automountServiceAccountToken not false on "
    "the pod and its ServiceAccount, or a projected serviceAccountToken volume; "
    "securityContext runAsUser/fsGroup)"
)


def file_problem(exc: OSError) -> str:
    """A credentials file that cannot be read, in one line: which, why, what to do. The
    library reads the pod's token again before requests: gone or unreadable, every call
    failed as "cannot reach the API server (FileNotFoundError ...)"."""
    why = exc.strerror or type(exc).__name__
    if str(exc.filename) == incluster_config.SERVICE_TOKEN_FILENAME:  # read now: tests move it
        return (
            f"cannot read the pod's service-account token {exc.filename} ({why}): "
            f"{SERVICE_ACCOUNT_HINT}"
        )
    return f"cannot read {exc.filename} ({why}), a file the Kubernetes credentials come from"


def unreachable(exc: BaseException, server: str | None = None) -> str:
    """An error below HTTP in one short line: urllib3's MaxRetryError repeats the URL and
    wraps the cause in two reprs; the host, the port and the cause are what an admin needs.
    ``server``: the API server's URL, said when the error does not name it (an answer that
    is not HTTP raises a bare ProtocolError, with no pool)."""
    pool: Any = getattr(exc, "pool", None)  # urllib3's connection pool: its host and port
    cause = getattr(exc, "reason", None)
    if getattr(pool, "host", None):
        where = f" at {pool.host}:{pool.port}"
    else:
        where = f" at {server}" if server else ""
    inner = cause if isinstance(cause, BaseException) else exc
    if isinstance(inner, OSError) and inner.filename is not None:  # a local file, no socket
        return file_problem(inner)
    text = str(inner).splitlines()[0] if str(inner) else ""
    if text.startswith(("HTTPSConnection", "HTTPConnection")) and "): " in text:
        text = text.split("): ", 1)[1]  # "HTTPSConnection(host=..., port=...): " says it twice
    said = f"cannot reach the API server{where} ({type(inner).__name__}: {text[:200]})"
    if "WRONG_VERSION_NUMBER" in text:  # OpenSSL's words for a peer that answered no TLS
        said += ": the port does not speak TLS (is the server an http:// URL?)"
    return said
