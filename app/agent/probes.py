"""The agent's plain-HTTP probe server: ``/healthz``, ``/readyz`` and ``/metrics``. Edge only:
what each answers is decided in ``app.agent.health`` from the agent's current Status.

The agent runs on the host network, so the chart binds it to 127.0.0.1, where kubelet
probes it, as calico-node does. Bound wider (for Prometheus), it answers those three paths
only and holds each connection for CONNECTION_SECONDS at most, idle for TIMEOUT_SECONDS at
most. Clients on this node (kubelet) and the others have MAX_CONNECTIONS each: others
holding theirs never turn kubelet's probes away.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.agent.health import Status, liveness, readiness

MAX_CONNECTIONS = 16
TIMEOUT_SECONDS = 5.0
CONNECTION_SECONDS = 10.0
COMPACT = (",", ":")


class StatusMetrics:
    """The agent's metrics, made from its Status when scraped (no counter kept twice)."""

    def __init__(self, status: Callable[[], Status]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        yield CounterMetricFamily(
            "eip_guard_agent_looks", "Looks at the cluster and the kernel finished.", s.looks
        )
        yield GaugeMetricFamily(
            "eip_guard_agent_last_look_timestamp_seconds",
            "Unix time the last look finished.",
            s.last_look_unix,
        )
        yield GaugeMetricFamily(
            "eip_guard_agent_ready", "1 while /readyz answers 200, else 0.", readiness(s) == ""
        )
        yield CounterMetricFamily(
            "eip_guard_agent_cluster_read_errors",
            "Looks that could not read the cluster (the agent kept its last view).",
            s.cluster_errors,
        )
        yield CounterMetricFamily(
            "eip_guard_agent_kernel_read_errors",
            "Looks that could not read this node's links, addresses and routes.",
            s.kernel_errors,
        )
        yield GaugeMetricFamily(
            "eip_guard_agent_member",
            "1 while this node counts itself live (its Lease current); 0: it answers for no IP.",
            s.member,
        )
        yield GaugeMetricFamily(
            "eip_guard_agent_members", "Live nodes this node sees, itself included.", s.members
        )
        yield GaugeMetricFamily(
            "eip_guard_agent_speaker", "1 when answering ARP/NDP, 0 when report-only.", s.speaker
        )
        announced = GaugeMetricFamily(
            "eip_guard_agent_announced_ips",
            "IPs this node answers ARP/NDP for (report-only: would answer for), by NIC.",
            labels=("nic",),
        )
        for nic, count in sorted(s.announced.items()):
            announced.add_metric((nic,), count)
        yield announced
        yield GaugeMetricFamily(
            "eip_guard_agent_problems",
            "Problems the agent logs now: IPs won but not announced, Eips ignored, notes.",
            s.problems,
        )
        yield GaugeMetricFamily(
            "eip_guard_agent_can_reach_bound_locally",
            "Eips whose can_reach IP is bound on this node now (ip route get answers lo).",
            s.bound_locally,
        )
        yield CounterMetricFamily("eip_guard_agent_replies", "ARP and NDP replies sent.", s.replies)
        drops = CounterMetricFamily(
            "eip_guard_agent_frames_ignored",
            "ARP and NDP frames received and not answered, by reason.",
            labels=("reason",),
        )
        for reason, count in sorted(s.drops.items()):
            drops.add_metric((reason,), count)
        yield drops
        yield GaugeMetricFamily(
            "eip_guard_agent_view_seconds",
            "Seconds the last view of the cluster (and the election on it) took to make.",
            s.view_seconds,
        )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = TIMEOUT_SECONDS  # applied to the socket: an idle client is dropped
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status = self.server.status()
        path = self.path.partition("?")[0]
        if path == "/healthz":
            self._answer_check(liveness(status, self.server.clock()), "ok")
        elif path == "/readyz":
            self._answer_check(readiness(status), "ready")
        elif path == "/metrics":
            self._answer(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        else:
            body = {"error": f"no such path: {path[:200]}; try /healthz, /readyz, /metrics"}
            self._answer(404, json.dumps(body, separators=COMPACT).encode(), "application/json")

    def _answer_check(self, reason: str, key: str) -> None:
        body = {key: True} if not reason else {key: False, "reason": reason}
        data = json.dumps(body, separators=COMPACT).encode()
        self._answer(503 if reason else 200, data, "application/json")

    def _answer(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: kubelet probes every few seconds; the agent's own log says what matters."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stopping never waits for a client

    def __init__(
        self,
        sock: socket.socket,
        status: Callable[[], Status],
        clock: Callable[[], float],
        log: Callable[[str], None],
    ) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.status, self.clock, self.log = status, clock, log
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StatusMetrics(status))
        # Two pools: clients on this node (kubelet probes from the node itself, to the
        # loopback or to the node's own address) and the others (Prometheus): the others
        # holding all of theirs never turn kubelet away.
        self._slots = {
            local: threading.BoundedSemaphore(MAX_CONNECTIONS) for local in (True, False)
        }
        self._open: dict[socket.socket, float] = {}  # connections served, and since when
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        slots = self._slots[_on_this_node(request)]
        if not slots.acquire(blocking=False):  # full: drop this one, keep serving
            self.shutdown_request(request)
            return
        try:
            worker = threading.Thread(
                target=self._serve, args=(request, client_address, slots), daemon=True
            )
            worker.start()
        except BaseException:  # no thread (a pids limit): the slot and the socket go back
            slots.release()
            self.shutdown_request(request)

    def _serve(self, request: Any, client_address: Any, slots: threading.BoundedSemaphore) -> None:
        with self._lock:
            self._open[request] = time.monotonic()
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._open.pop(request, None)
            self.shutdown_request(request)
            slots.release()

    def cut_overdue(self) -> None:
        """Cut every connection open longer than CONNECTION_SECONDS: a client dripping a
        byte every few seconds is never idle long enough for the socket's timeout."""
        now = time.monotonic()
        with self._lock:
            overdue = [s for s, since in self._open.items() if now - since > CONNECTION_SECONDS]
        for sock in overdue:
            with contextlib.suppress(OSError):  # closed meanwhile
                sock.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets or times out is its own business; anything else is ours,
        said in one line (socketserver would print a traceback per connection)."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            self.log(f"probe server: {type(exc).__name__}: {exc}")


def _on_this_node(sock: socket.socket) -> bool:
    """Whether the client is on this node: the loopback, or its address is ours (a local
    connection to the node's address comes from that same address)."""
    try:
        peer, own = sock.getpeername()[0], sock.getsockname()[0]
    except OSError:
        return False
    address = ipaddress.ip_address(str(peer).partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or peer == own


def listen(address: str, port: int) -> socket.socket:
    """The probe socket; raises OSError. "" and "::" are every address, IPv6 and IPv4 alike
    where the node has IPv6: kubelet probes a host-network pod on the node's first address,
    which may be of either family."""
    if address in ("", "::"):
        if socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("", port))
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((address, port), family=family)


class ProbeServer:
    """Serves until closed, on daemon threads of its own: one accepts, one cuts overdue
    connections, and one serves each connection."""

    def __init__(
        self,
        sock: socket.socket,
        status: Callable[[], Status],
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = print,
    ) -> None:
        self._server = _Server(sock, status, clock, log)
        self._stop = threading.Event()
        self._threads = (
            threading.Thread(target=self._server.serve_forever, name="probes", daemon=True),
            threading.Thread(target=self._sweep, name="probes-deadline", daemon=True),
        )

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    def _sweep(self) -> None:
        while not self._stop.wait(min(1.0, CONNECTION_SECONDS / 4)):
            self._server.cut_overdue()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join()
