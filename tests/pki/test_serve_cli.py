"""`eip-guard serve` as a real process: self-managed certificates against kmock, live reload
of certificate files, and the plain-HTTP probe port."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from app.cli.main import main
from app.pki.certs import KeyPair, make_bundle, make_serving, write_bundle
from app.pki.rotation import service_dns_names
from app.webhook.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.chart.rendering import ROOT
from tests.kmock_harness import kubeconfig
from tests.pki.test_self_managed import install, state
from tests.pki.tls_helpers import NAME, Connection, der_sha, trusting
from tests.support import LogLines

EXAMPLES = ROOT / "examples"
SNAPSHOT = ["--cluster", str(EXAMPLES / "cluster.yaml")]
EXPIRY_METRIC = "eip_guard_tls_certificate_expiry_timestamp_seconds"
POLLS = 600  # bounded waits of 50 ms; nothing here asserts how long anything took


class Process:
    """`python -m app.cli.main serve ...` with its JSON log lines read by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli.main", "serve", *args],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines = LogLines(self.proc)

    def until(self, msg: str) -> dict[str, Any]:
        return self.lines.until(msg)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.lines.finish()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


def env_without_cluster(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def wait_ready(probe: str) -> httpx.Response:
    for _ in range(POLLS):
        response = httpx.get(probe, timeout=5)
        if response.status_code == 200:
            return response
        threading.Event().wait(0.05)
    raise AssertionError(f"{probe} never became ready: {response.text}")


def test_self_managed_serve_fills_the_secret_and_is_trusted_by_its_ca_bundle(
    api: str, chart_objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    install(api, chart_objects)
    config = kubeconfig(tmp_path / "kubeconfig", api)
    args = [
        *SNAPSHOT, "--host", "127.0.0.1", "--port", "0", "--probe-port", "0",
        *[a for a in one_deployment(chart_objects) if a.split("=")[0] in SELF_FLAGS],
        "--namespace", "eip-guard",  # the chart passes $(POD_NAMESPACE)
    ]  # fmt: skip
    server = Process(args, env_without_cluster(KUBECONFIG=str(config)))
    try:
        line = server.until("serving")
        assert line["tls"] == "self-managed Secret eip-guard/eip-guard-tls"
        wait_ready(line["probe"])
        stored, bundle = state(api)
        context = trusting(base64.b64decode(bundle))
        port = port_of(line["address"])
        conn = Connection(port, context)
        assert conn.peer() == der_sha(KeyPair(stored.data["tls.crt"], b""))
        conn.close()
        review = (EXAMPLES / "review-bad.json").read_bytes()
        assert post_review(port, context, review)["response"]["allowed"] is False
        probe = line["probe"].removesuffix("/readyz")
        exposition = httpx.get(probe + "/metrics").text
        found = re.search(rf"^{EXPIRY_METRIC} (\S+)$", exposition, re.M)
        assert found is not None
        expiry = float(found[1])
        served = x509.load_pem_x509_certificate(stored.data["tls.crt"])
        assert expiry == served.not_valid_after_utc.timestamp()
        refused = httpx.post(probe + "/validate-eip", content=review)
        assert refused.status_code == 404  # no reviews over plain HTTP, said as on the webhook
        assert refused.json() == {"code": 404, "reason": "Not Found"}
    finally:
        assert server.stop() == 0


SELF_FLAGS = {
    "--tls-secret",
    "--webhook-configuration",
    "--service",
    "--cert-renew-before-days",
    "--cert-check-interval",
}


def one_deployment(objs: list[dict[str, Any]]) -> list[str]:
    (deploy,) = [o for o in objs if o["kind"] == "Deployment"]
    args: list[str] = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def post_review(port: int, context: ssl.SSLContext, body: bytes) -> dict[str, Any]:
    with httpx.Client(
        base_url=f"https://127.0.0.1:{port}",
        verify=context,
        event_hooks={"request": [lambda r: r.extensions.update(sni_hostname=NAME)]},
        timeout=10,
    ) as http:
        response = http.post(
            "/validate-eip", content=body, headers={"content-type": "application/json"}
        )
        result: dict[str, Any] = response.json()
        return result


@contextmanager
def serving_files(
    tmp_path: Path, first: Callable[[KeyPair], KeyPair] | None = None, *extra: str
) -> Iterator[tuple[Process, dict[str, Any], KeyPair]]:
    """``serve`` on certificate files: a fresh bundle's, or ``first(ca)`` when given; with
    ``extra`` flags."""
    bundle = make_bundle(service_dns_names("eip-guard", "eip-guard"))
    write_bundle(bundle, tmp_path)
    if first is not None:
        swap(tmp_path, first(bundle.ca))
    args = [
        *SNAPSHOT, "--host", "127.0.0.1", "--port", "0", "--probe-port", "0",
        "--tls-cert-file", str(tmp_path / "tls.crt"), "--tls-key-file", str(tmp_path / "tls.key"),
        "--tls-reload-interval", "0.1", *extra,
    ]  # fmt: skip
    server = Process(args, env_without_cluster())
    try:
        yield server, server.until("serving"), bundle.ca
    finally:
        assert server.stop() == 0


def swap(folder: Path, pair: KeyPair) -> None:
    """Both files replaced, each atomically, as kubelet updates a mounted Secret."""
    (folder / "tls.key.new").write_bytes(pair.key_pem)
    (folder / "tls.crt.new").write_bytes(pair.cert_pem)
    os.replace(folder / "tls.key.new", folder / "tls.key")
    os.replace(folder / "tls.crt.new", folder / "tls.crt")


NAMES = service_dns_names("eip-guard", "eip-guard")
NOT_LOADED = "TLS certificate files not loaded; still presenting the previous ones"
LONG_AGO = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)


def test_the_process_start_and_stop_are_logged_once_beside_the_probe_server(
    tmp_path: Path,
) -> None:
    with serving_files(tmp_path) as (server, line, _):
        wait_ready(line["probe"])
    said = [str(later["msg"]).split(" [")[0] for later in server.lines.rest()]
    lifecycle = ["Started server process", "Shutting down", "Finished server process"]
    assert [msg for msg in said if msg in lifecycle] == lifecycle


def test_a_shutdown_delay_drains_not_ready_then_exits_cleanly(tmp_path: Path) -> None:
    with serving_files(tmp_path, None, "--shutdown-delay", "2") as (server, line, ca):
        wait_ready(line["probe"])
        server.proc.send_signal(signal.SIGTERM)
        said = server.until("SIGTERM: not ready, still answering for 2 s, then stopping")
        assert said["level"] == "info"
        ready = httpx.get(line["probe"], timeout=5)  # within the 2 s: still answering
        assert (ready.status_code, ready.json()) == (
            503,
            {"ready": False, "reason": "shutting down"},
        )
        review = (EXAMPLES / "review-good.json").read_bytes()
        assert post_review(port_of(line["address"]), trusting(ca.cert_pem), review)["response"][
            "allowed"
        ]
        assert server.proc.wait(timeout=30) == 0  # the drain runs out: it stops by itself


def test_broken_files_are_logged_once_and_the_pair_presented_stays(tmp_path: Path) -> None:
    with serving_files(tmp_path) as (server, line, ca):
        (tmp_path / "tls.key").unlink()
        warned = server.until(NOT_LOADED)
        assert warned["error"] == f"{tmp_path / 'tls.key'}: No such file or directory"
        assert warned["sha256"] == line["sha256"] and warned["level"] == "warning"
        (tmp_path / "tls.crt").write_bytes(b"")  # truncated in place
        warned = server.until(NOT_LOADED)
        assert warned["error"] == f"{tmp_path / 'tls.crt'} is empty"
        assert httpx.get(line["probe"]).status_code == 200  # still serving the loaded pair
        metrics = line["probe"].removesuffix("/readyz") + "/metrics"
        assert "\neip_guard_tls_certificate_in_step 0.0\n" in httpx.get(metrics).text
        # An expired pair is refused while the one presented is valid.
        swap(tmp_path, make_serving(ca, NAMES, now=LONG_AGO))
        warned = server.until(NOT_LOADED)
        assert "the new certificate is not valid now (it expired on" in warned["error"]
        assert httpx.get(line["probe"]).status_code == 200
        # A renewal that drops a name clients may use is taken, and said.
        swap(tmp_path, make_serving(ca, NAMES[2:]))
        assert server.until("presenting a renewed TLS certificate")["dns_names"] == ",".join(
            NAMES[2:]
        )
        assert "\neip_guard_tls_certificate_in_step 1.0\n" in httpx.get(metrics).text
        lost = server.until(
            "the renewed TLS certificate lacks DNS names the previous one had: clients "
            "calling the webhook by them fail the handshake"
        )
        assert lost["missing"] == ",".join(sorted(NAMES[:2]))


def test_an_expired_certificate_is_logged_at_start_and_a_valid_one_cures_it(
    tmp_path: Path,
) -> None:
    expired = partial(make_serving, dns_names=NAMES, now=LONG_AGO)
    with serving_files(tmp_path, expired) as (server, line, ca):
        invalid = server.until(
            "the TLS certificate presented is not valid now: the API server refuses the "
            "handshake and /readyz answers 503 until a valid one is loaded"
        )
        assert invalid["level"] == "error" and invalid["problem"].startswith("it expired on")
        ready = httpx.get(line["probe"])
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith(
            "the TLS certificate presented is not valid now: it expired on"
        )
        swap(tmp_path, make_serving(ca, NAMES))
        server.until("presenting a renewed TLS certificate")
        server.until("the TLS certificate presented is valid")
        wait_ready(line["probe"])


def test_a_certificate_file_that_is_no_regular_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_bundle(make_bundle(NAMES), tmp_path)
    args = ["--tls-cert-file", "/dev/null", "--tls-key-file", str(tmp_path / "tls.key")]
    assert main(["serve", *SNAPSHOT, *args]) == 2
    assert "--tls-cert-file /dev/null: not a regular file" in capsys.readouterr().err


def test_a_renewed_certificate_file_is_served_without_a_restart(tmp_path: Path) -> None:
    with serving_files(tmp_path) as (server, line, ca):
        port = port_of(line["address"])
        assert httpx.get(line["probe"]).status_code == 200
        context = trusting(ca.cert_pem)
        old = Connection(port, context)
        before = old.peer()
        renewed = make_serving(ca, service_dns_names("eip-guard", "eip-guard"))
        # As kubelet updates a mounted Secret: both files replaced, then picked up.
        (tmp_path / "tls.key.new").write_bytes(renewed.key_pem)
        (tmp_path / "tls.crt.new").write_bytes(renewed.cert_pem)
        os.replace(tmp_path / "tls.key.new", tmp_path / "tls.key")
        os.replace(tmp_path / "tls.crt.new", tmp_path / "tls.crt")
        assert server.until("presenting a renewed TLS certificate")
        new = Connection(port, context)
        assert new.peer() == der_sha(renewed) != before
        assert old.get("/healthz").startswith(b"HTTP/1.1 200")  # the old connection still works
        assert old.peer() == before
        old.close()
        new.close()


SETTLING = "TLS certificate files do not load yet (being replaced?); looking again"


def test_a_pair_replaced_one_file_at_a_time_is_taken_without_a_warning(tmp_path: Path) -> None:
    # `cp new/tls.crt certs/; cp new/tls.key certs/`: between the two, the new certificate
    # lies beside the old key. That is no problem to warn of (nor an in-step gauge of 0).
    with serving_files(tmp_path, None, "--log-level", "debug") as (server, line, ca):
        port = port_of(line["address"])
        renewed = make_serving(ca, NAMES)
        (tmp_path / "tls.crt.new").write_bytes(renewed.cert_pem)
        os.replace(tmp_path / "tls.crt.new", tmp_path / "tls.crt")
        seen = server.lines.next()
        while seen.get("msg") not in (SETTLING, NOT_LOADED):
            seen = server.lines.next()
        assert seen["msg"] == SETTLING and seen["level"] == "debug"
        assert "the key does not belong to the certificate" in seen["error"]
        metrics = line["probe"].removesuffix("/readyz") + "/metrics"
        assert "\neip_guard_tls_certificate_in_step 1.0\n" in httpx.get(metrics).text
        (tmp_path / "tls.key.new").write_bytes(renewed.key_pem)
        os.replace(tmp_path / "tls.key.new", tmp_path / "tls.key")
        server.until("presenting a renewed TLS certificate")
        conn = Connection(port, trusting(ca.cert_pem))
        assert conn.peer() == der_sha(renewed)
        conn.close()
    assert NOT_LOADED not in [later.get("msg") for later in server.lines.rest()]


def test_certs_renew_beside_a_running_serve_is_trusted_by_the_same_ca_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A year on: renewing with `eip-guard certs --renew` keeps the CA, so the cluster's
    # caBundle (here: the client's trust) need not change while serve picks the pair up.
    with serving_files(tmp_path) as (server, line, ca):
        port = port_of(line["address"])
        names = [arg for name in NAMES for arg in ("--dns", name)]
        assert main(["certs", "--out", str(tmp_path), *names, "--renew"]) == 0
        assert base64.b64decode(capsys.readouterr().out) == ca.cert_pem
        server.until("presenting a renewed TLS certificate")
        conn = Connection(port, trusting(ca.cert_pem))  # verifies against the old caBundle
        assert conn.peer() == der_sha(KeyPair((tmp_path / "tls.crt").read_bytes(), b""))
        assert conn.get("/healthz").startswith(b"HTTP/1.1 200")
        conn.close()
    assert NOT_LOADED not in [later.get("msg") for later in server.lines.rest()]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give --tls-cert-file and --tls-key-file, or --tls-secret"),
        (["--tls-secret", "s"], "--tls-secret also needs --webhook-configuration, --service"),
        (
            ["--tls-secret", "s", "--tls-cert-file", "x"],
            "either --tls-cert-file/--tls-key-file or --tls-secret, not both",
        ),
        (
            [
                "--tls-secret",
                "s",
                "--webhook-configuration",
                "w",
                "--service",
                "v",
                "--namespace",
                "n",
                "--cert-renew-before-days",
                "400",
            ],
            "--cert-renew-before-days 400: expected 1-300",
        ),
        (
            [
                "--tls-secret",
                "s",
                "--webhook-configuration",
                "w",
                "--service",
                "Bad_Name",
                "--namespace",
                "n",
            ],
            "--service 'Bad_Name': expected a DNS-1035 label",
        ),
        # Names the API server refuses: said at start, not in a log of failed requests
        # while /readyz never turns ready.
        *(
            (
                [
                    "--tls-secret",
                    "s",
                    "--webhook-configuration",
                    "w",
                    "--service",
                    "v",
                    "--namespace",
                    "n",
                    flag,
                    value,
                ],
                f"{flag} {value!r}: expected a DNS-1",
            )
            for flag, value in (
                ("--tls-secret", "Bad_Name"),
                ("--webhook-configuration", "W"),
                ("--namespace", "NS"),
                ("--service", "Svc"),
                ("--service", "1svc"),
            )
        ),
    ],
)
def test_bad_tls_flags_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["serve", *SNAPSHOT, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_probe_client_that_never_reads_does_not_hold_the_exit(tmp_path: Path) -> None:
    # 20,000 pipelined scrapes, never read: the probe server's writes stall. SIGTERM must
    # still end the process within the graceful shutdown, as on the webhook port.
    with serving_files(tmp_path) as (server, line, _):
        probe = urllib.parse.urlsplit(line["probe"])
        assert probe.hostname is not None and probe.port is not None
        stalled = socket.create_connection((probe.hostname, probe.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.settimeout(2)
        try:
            with contextlib.suppress(OSError):  # the send buffer fills up: enough
                for _ in range(20_000):
                    stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            server.proc.send_signal(signal.SIGTERM)
            # Within the 10 s grace and a margin; before the fix it waited for the client.
            assert server.proc.wait(timeout=GRACEFUL_SHUTDOWN_SECONDS + 15) == 0
        finally:
            stalled.close()
