"""A real uvicorn TLS server per test (or per session), and clients that verify it.

Certificates come from app.pki with the SAN the API server checks
(``eip-guard.eip-guard.svc``); clients connect to 127.0.0.1 but send that name as SNI
and verify the certificate against the generated CA and that name.
"""

from __future__ import annotations

import copy
import functools
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from app.core.inventory import Inventory, build
from app.core.sources import Readiness, StaticSource
from app.core.verdict import Policy
from app.pki.certs import make_bundle, write_bundle
from app.sources.files import load_objects
from app.webhook.app import create_app
from app.webhook.connections import Limits
from app.webhook.server import Server, config, listen, ssl_context

SERVICE_DNS = "eip-guard.eip-guard.svc"
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
V1 = "admission.k8s.io/v1"
V1BETA1 = "admission.k8s.io/v1beta1"


def no_dns(name: str) -> list[str]:
    raise OSError(f"no DNS in tests ({name})")


def example_inventory() -> Inventory:
    return build(load_objects(EXAMPLES / "cluster.yaml"), resolve=no_dns)


def example_eip(which: str) -> dict[str, Any]:
    obj = yaml.safe_load((EXAMPLES / f"eip-{which}.yaml").read_text())
    assert isinstance(obj, dict)
    return obj


def review(
    obj: dict[str, Any] | None,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    api_version: str = V1,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
) -> dict[str, Any]:
    """An AdmissionReview as the API server sends it."""
    source = obj if obj is not None else old
    name = str((source or {}).get("metadata", {}).get("name", ""))
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "network.kubesphere.io", "version": "v1alpha2", "kind": "Eip"},
            "resource": {
                "group": "network.kubesphere.io",
                "version": "v1alpha2",
                "resource": "eips",
            },
            "name": name,
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": copy.deepcopy(obj),
            "oldObject": copy.deepcopy(old),
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


@dataclass
class NotReadySource:
    """A live source before its first full list: holds nothing yet."""

    inventory: Inventory

    def current(self) -> Inventory:
        return self.inventory

    def readiness(self) -> Readiness:
        return Readiness(False, "waiting for the first list of Services")


@dataclass(frozen=True)
class Certs:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.dir / "tls.crt"

    @property
    def key(self) -> Path:
        return self.dir / "tls.key"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    out = tmp_path_factory.mktemp("certs")
    write_bundle(make_bundle([SERVICE_DNS], ["127.0.0.1"]), out)
    return Certs(out)


@pytest.fixture(scope="session")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A second, unrelated CA (and a certificate for the same name) that nobody trusts."""
    out = tmp_path_factory.mktemp("other-certs")
    write_bundle(make_bundle([SERVICE_DNS]), out)
    return Certs(out)


def client(
    port: int, ca: Path, sni: str = SERVICE_DNS, tls_max: ssl.TLSVersion | None = None
) -> httpx.Client:
    """An HTTPS client to 127.0.0.1:port that verifies the server as ``sni`` against ``ca``."""
    context = ssl.create_default_context(cafile=str(ca))  # CERT_REQUIRED + check_hostname
    if tls_max is not None:
        context.maximum_version = tls_max

    def name_the_server(request: httpx.Request) -> None:
        request.extensions["sni_hostname"] = sni  # what httpcore verifies the certificate for

    return httpx.Client(
        base_url=f"https://127.0.0.1:{port}",
        verify=context,
        event_hooks={"request": [name_the_server]},
        timeout=10,
    )


@contextmanager
def serving(
    app: FastAPI, certs: Certs, limits: Limits | None = None, keep_alive: float | None = None
) -> Iterator[int]:
    """Run ``app`` in a real uvicorn server over TLS on a free loopback port."""
    sock = listen("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    make_ssl = functools.partial(ssl_context, certs.cert, certs.key)
    cfg = config(app, make_ssl, app.state.metrics.closed, limits or Limits())
    if keep_alive is not None:
        cfg.timeout_keep_alive = keep_alive  # type: ignore[assignment]  # int in uvicorn
    server = Server(cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@dataclass
class Webhook:
    """A running server and a verifying client for it."""

    port: int
    http: httpx.Client

    def validate(self, body: Any, path: str = "/validate-eip") -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert isinstance(answer, dict)
        return answer


@pytest.fixture(scope="session")
def webhook(certs: Certs) -> Iterator[Webhook]:
    """The example cluster, default policy: shared by tests that only read answers."""
    app = create_app(StaticSource(example_inventory()), Policy())
    with serving(app, certs) as port, client(port, certs.ca) as http:
        yield Webhook(port, http)


@pytest.fixture
def start(certs: Certs) -> Iterator[Callable[[FastAPI], Webhook]]:
    """Start a server for an app of the test's own making (its policy, source, metrics)."""
    with ExitStack() as stack:

        def _start(app: FastAPI) -> Webhook:
            port = stack.enter_context(serving(app, certs))
            http = stack.enter_context(client(port, certs.ca))
            return Webhook(port, http)

        yield _start


def failed_call(response: httpx.Response, code: int, reason: str) -> str:
    """The message of an HTTP error carrying a v1 Status: what the API server decodes from a
    failed call and reports (or, with failurePolicy Ignore, admits past)."""
    assert response.status_code == code
    assert response.headers["content-type"] == "application/json"
    status = response.json()
    assert {k: status[k] for k in ("kind", "apiVersion", "status", "code", "reason")} == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
    }
    message = status["message"]
    assert isinstance(message, str)
    return message
