"""TLS for ``eip-guard serve``, and its plain-HTTP probe port.

Two ways to get a certificate, both presented through one live SSLContext that changes
without a restart (:mod:`app.pki.hot_tls`):

- files (``--tls-cert-file``/``--tls-key-file``; cert-manager and external modes mount a
  Secret): polled every ``--tls-reload-interval`` seconds, a changed pair is presented;
- a self-managed Secret (``--tls-secret``): the webhook keeps its CA and serving
  certificate there and the caBundle of ``--webhook-configuration`` in step
  (:mod:`app.kube.certs`).

``--probe-port`` serves ``/healthz``, ``/readyz`` and ``/metrics`` over plain HTTP for
kubelet and Prometheus; ``/readyz`` also waits for a valid certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import socket
from collections.abc import Callable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Gauge

from app.cli.flags import seconds
from app.pki.certs import CertError, check_dns_name
from app.pki.hot_tls import HotContext, ValidityReport, read_pair, watch_files
from app.pki.rotation import service_dns_names
from app.sources.errors import InputError
from app.sources.manifest import DNS_SUBDOMAIN, dns_label, dns_subdomain
from app.webhook import connections
from app.webhook.app import Drain
from app.webhook.metrics import Metrics
from app.webhook.server import GRACEFUL_SHUTDOWN_SECONDS, Server, config, listen

log = logging.getLogger("eip_guard.certs")
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
NOT_FOUND = b'{"code":404,"reason":"Not Found"}'  # as the webhook port answers another path
MIN_RELOAD_INTERVAL = 0.1  # seconds between looks at the certificate files, at least
Task = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class Tls:
    hot: HotContext
    tasks: list[Task] = field(default_factory=list)  # run on the server's event loop
    fields: dict[str, Any] = field(default_factory=dict)  # for the "serving" log line
    # Logs the certificate presented turning invalid (or valid): called once logging is set
    # up, then by the task that watches the certificate.
    report: ValidityReport = field(default_factory=lambda: ValidityReport(log))


_DNS_LABEL = (
    "a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending "
    "with a letter or digit"
)
_DNS_1035_LABEL = (
    "a DNS-1035 label, as a Service's name: at most 63 lower-case letters, digits and '-', "
    "starting with a letter and ending with a letter or digit"
)


def _service_name(value: str) -> bool:
    return dns_label(value) and value[0].isalpha()


def _self_managed_flags(args: argparse.Namespace) -> None:
    missing = [
        flag
        for flag, value in (
            ("--webhook-configuration", args.webhook_configuration),
            ("--service", args.service),
            ("--namespace", args.namespace),
        )
        if not value
    ]
    if missing:
        raise InputError(f"--tls-secret also needs {', '.join(missing)}")
    # Names the API server refuses, said now: else serve started, and every request for the
    # Secret or the webhook configuration failed in the log while /readyz never turned ready.
    for flag, value, valid, what in (
        ("--tls-secret", args.tls_secret, dns_subdomain, DNS_SUBDOMAIN),
        ("--webhook-configuration", args.webhook_configuration, dns_subdomain, DNS_SUBDOMAIN),
        ("--namespace", args.namespace, dns_label, _DNS_LABEL),
        ("--service", args.service, _service_name, _DNS_1035_LABEL),
    ):
        if not valid(value):
            raise InputError(f"{flag} {value!r}: expected {what}")
    if not 1 <= args.cert_renew_before_days <= 300:
        raise InputError(f"--cert-renew-before-days {args.cert_renew_before_days}: expected 1-300")
    seconds("--cert-check-interval", args.cert_check_interval)
    try:
        for name in service_dns_names(args.service, args.namespace):
            check_dns_name(name)
    except CertError as exc:
        raise InputError(f"--service/--namespace: {exc}") from exc


def prepare(args: argparse.Namespace, api_client: Callable[[], Any]) -> Tls:
    """Check the TLS flags and load what can be loaded now; InputError for bad input.

    ``api_client`` makes the Kubernetes client (raising InputError), only for self mode.
    """
    files = args.tls_cert_file is not None or args.tls_key_file is not None
    if files and args.tls_secret:
        raise InputError("give either --tls-cert-file/--tls-key-file or --tls-secret, not both")
    # A tenth of a second at least: 1e-9 made the server read the files without pause.
    seconds("--tls-reload-interval", args.tls_reload_interval, least=MIN_RELOAD_INTERVAL)
    hot = HotContext()
    if args.tls_secret:
        _self_managed_flags(args)
        api = api_client()
        # The kubernetes client loads only in self-managed mode (see app/cli/live.py).
        from app.kube.certs import (  # noqa: PLC0415
            SecretStore,
            SelfManagedCerts,
            WebhookConfigs,
            run_rotation,
        )

        certs = SelfManagedCerts(
            SecretStore(api, args.namespace, args.tls_secret),
            WebhookConfigs(api, args.webhook_configuration),
            service_dns_names(args.service, args.namespace),
            dt.timedelta(days=args.cert_renew_before_days),
        )
        interval = args.cert_check_interval
        tls = Tls(hot, fields={"tls": f"self-managed Secret {args.namespace}/{args.tls_secret}"})
        tls.tasks.append(
            lambda: run_rotation(
                certs, hot.load, interval, report=lambda: tls.report(hot), problem=hot.note_source
            )
        )
        return tls
    if args.tls_cert_file is None or args.tls_key_file is None:
        raise InputError(
            "TLS: give --tls-cert-file and --tls-key-file, or --tls-secret for a "
            "self-managed certificate (`eip-guard certs` makes files)"
        )
    cert_file, key_file = args.tls_cert_file, args.tls_key_file
    for flag, path in (("--tls-cert-file", cert_file), ("--tls-key-file", key_file)):
        if not path.is_file():
            if path.is_dir():
                what = "a directory, not a file"
            elif path.exists():  # a pipe (<(...)) or a device is read once: not re-readable
                what = "not a regular file: the pair is re-read as it changes"
            else:
                what = "no such file"
            raise InputError(f"{flag} {path}: {what}")
    try:
        hot.load(read_pair(cert_file, key_file))
    except CertError as exc:
        what = f"{cert_file}, {key_file}: cannot load the certificate and key"
        raise InputError(f"{what}: {exc}") from exc
    interval = args.tls_reload_interval
    tls = Tls(hot, fields={"tls": str(cert_file), **hot.fields()})
    tls.tasks.append(
        lambda: watch_files(cert_file, key_file, hot, interval, log, report=tls.report)
    )
    return tls


def probe_app(app: Any) -> Any:
    """Only the probe paths of ``app``; anything else is 404 (no reviews over plain HTTP)."""

    async def probe(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in PROBE_PATHS:
            await app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(NOT_FOUND)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": NOT_FOUND})

    return probe


# uvicorn's lines for a server's start and stop: the webhook's say them for the process, and
# the probe server's, the same words in the same logger, made every one appear twice.
_LIFECYCLE = frozenset(
    {
        "Started server process [%d]",
        "Shutting down",
        "Waiting for connections to close. (CTRL+C to force quit)",
        "Waiting for background tasks to complete. (CTRL+C to force quit)",
        "Finished server process [%d]",
    }
)
_IN_PROBE = contextvars.ContextVar("in_probe_server", default=False)


class _ProbeLifecycle(logging.Filter):
    """Drops the probe server's lifecycle lines (logged in its task, where ``_IN_PROBE``
    is set); its errors and everything else it logs pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_IN_PROBE.get() and record.msg in _LIFECYCLE)


_PROBE_LIFECYCLE = _ProbeLifecycle()


class _QuietServer(uvicorn.Server):
    """The probe server: the main server owns the signals and stops this one, and logs the
    process's start and stop alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        uvicorn_log = logging.getLogger("uvicorn.error")
        if _PROBE_LIFECYCLE not in uvicorn_log.filters:
            uvicorn_log.addFilter(_PROBE_LIFECYCLE)
        _IN_PROBE.set(True)  # in this server's own task: the webhook's context keeps False
        await super().serve(sockets)


class _ServerWithTasks(Server):
    def __init__(
        self,
        cfg: uvicorn.Config,
        tasks: Sequence[Task],
        probe: _QuietServer | None,
        probe_sockets: list[socket.socket],
        *,
        drain: Drain,
        drain_seconds: float,
    ) -> None:
        super().__init__(cfg, drain, drain_seconds)
        self._tasks, self._probe, self._probe_sockets = tasks, probe, probe_sockets

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        running = [asyncio.create_task(task()) for task in self._tasks]
        if self._probe is not None:
            running.append(asyncio.create_task(self._probe.serve(self._probe_sockets)))
        try:
            await super().serve(sockets)
        finally:
            if self._probe is not None:
                self._probe.should_exit = True
            for task in running[: len(self._tasks)]:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def serve(
    app: Any,
    sock: socket.socket,
    tls: Tls,
    probe_sock: socket.socket | None,
    *,
    drain_seconds: float = 0.0,
) -> None:
    """Serve until SIGTERM/SIGINT, the TLS tasks and the probe port alongside; a SIGTERM
    first drains for ``drain_seconds`` (:class:`app.webhook.server.Server`)."""
    metrics: Metrics = app.state.metrics
    probe = None
    if probe_sock is not None:
        probe = _QuietServer(
            uvicorn.Config(
                probe_app(app),
                http=connections.protocol(closed=metrics.closed),  # the webhook's limits
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                ws="none",
                # As the webhook's: a client that never reads must not hold the exit forever.
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
        )
    probe_sockets = [probe_sock] if probe_sock is not None else []
    cfg = config(app, lambda: tls.hot.context, metrics.closed)
    drain: Drain = app.state.drain
    server = _ServerWithTasks(
        cfg, tls.tasks, probe, probe_sockets, drain=drain, drain_seconds=drain_seconds
    )
    server.run(sockets=[sock])


def listen_probe(args: argparse.Namespace, main: socket.socket) -> socket.socket | None:
    """The plain-HTTP probe socket, on the webhook's address; None without --probe-port."""
    if args.probe_port is None:
        return None
    if not 0 <= args.probe_port < 65536:
        raise InputError(f"--probe-port {args.probe_port}: expected 0-65535")
    if args.probe_port != 0 and args.probe_port == main.getsockname()[1]:
        raise InputError(f"--probe-port {args.probe_port}: the webhook already listens there")
    try:
        return listen(args.host, args.probe_port)
    except OSError as exc:
        raise InputError(
            f"cannot listen on {args.host}:{args.probe_port} (--probe-port): {exc.strerror or exc}"
        ) from exc


def probe_fields(args: argparse.Namespace, probe_sock: socket.socket | None) -> dict[str, str]:
    """The probe address for the "serving" log line (the port is known once bound)."""
    if probe_sock is None:
        return {}
    host = f"[{args.host}]" if ":" in args.host else args.host
    return {"probe": f"http://{host}:{probe_sock.getsockname()[1]}/readyz"}


def register_metrics(registry: CollectorRegistry, tls: Tls) -> None:
    """``eip_guard_tls_certificate_expiry_timestamp_seconds``: alert well before it passes."""
    gauge = Gauge(
        "eip_guard_tls_certificate_expiry_timestamp_seconds",
        "When the serving certificate presented now expires (Unix time; 0: none yet)",
        registry=registry,
    )

    def expiry() -> float:
        loaded = tls.hot.loaded
        return loaded.not_after.timestamp() if loaded is not None else 0.0

    gauge.set_function(expiry)
    in_step = Gauge(
        "eip_guard_tls_certificate_in_step",
        "1 while the certificate to present (the files, or the self-managed Secret and "
        "caBundle) could be loaded at the last look; 0 before the first one is, and while "
        "it could not (the one presented before, if any, stays)",
        registry=registry,
    )
    in_step.set_function(lambda: 0.0 if tls.hot.source_problem else 1.0)
