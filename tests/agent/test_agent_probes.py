"""The agent's probes: when it is alive and ready (pure, app.agent.health), what each look
publishes, and the plain-HTTP server (real sockets, a real `eip-guard agent` process)."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.agent import probes, runner
from app.agent.health import STUCK_AFTER_SECONDS, Status, liveness, readiness
from tests.agent.test_election import NODES, eip
from tests.agent.test_view_cache import _NoKernel, _Source, _TrapKernel
from tests.chart.test_chart_alerts import promtool
from tests.support import eventually, run_cli

READY = Status(0.0, 0.5, looks=3, last_look=1.0, viewed=True, member=True, members=3)


def test_alive_while_looks_finish_and_stuck_after_a_while_without() -> None:
    assert liveness(READY, now=1.0 + STUCK_AFTER_SECONDS) == ""
    late = liveness(READY, now=2.0 + STUCK_AFTER_SECONDS)
    assert late.startswith("the last look finished 31 s ago (limit 30 s)")
    # Before the first look, the clock runs from the start.
    fresh = Status(100.0, 0.5)
    assert liveness(fresh, now=100.0 + STUCK_AFTER_SECONDS) == ""
    assert liveness(fresh, now=131.0).startswith("no look finished 31 s ago")
    # Long intervals stretch the limit: 20 looks of a minute.
    slow = dataclasses.replace(READY, interval=60.0)
    assert liveness(slow, now=1.0 + 1200) == ""
    assert "limit 1200 s" in liveness(slow, now=1.0 + 1201)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, ""),
        (
            {"kernel_error": "netlink: EPERM"},
            "cannot read this node's links, addresses and routes: netlink: EPERM",
        ),
        ({"viewed": False}, "no view of the cluster yet"),
        (
            {"viewed": False, "cluster_error": "waiting for the first list of eips"},
            "no view of the cluster yet: waiting for the first list of eips",
        ),
        ({"cluster_error": "watch failed"}, "acting on its last view: watch failed"),
        ({"member": False}, "this node does not count itself live (yet)"),
    ],
)
def test_ready_once_it_reads_both_sides_and_counts_itself(
    change: dict[str, Any], reason: str
) -> None:
    found = readiness(dataclasses.replace(READY, **change))
    assert found.startswith(reason) and bool(found) == bool(reason)


def test_each_look_publishes_a_new_status() -> None:
    trap = eip("trap", {}, interface="can_reach:10.0.0.1")
    now = [10.0]
    source = _Source([trap])
    agent = runner.Agent(runner.Settings("node-a"), source, _TrapKernel(), lambda _: None,
                         clock=lambda: now[0])  # fmt: skip
    assert agent.status == Status(10.0, 0.5)  # nothing looked at yet
    assert readiness(agent.status) == "no view of the cluster yet"
    now[0] = 11.0
    agent.tick()
    first = agent.status
    assert (first.looks, first.last_look, first.viewed) == (1, 11.0, True)
    assert (first.member, first.members, first.bound_locally) == (True, len(NODES), 1)
    assert readiness(first) == "" and liveness(first, now=11.0) == ""
    agent.tick()
    assert agent.status is not first and first.looks == 1 and agent.status.looks == 2

    # Members without this node: fenced, not ready.
    source.members = lambda: frozenset(NODES) - {"node-a"}  # type: ignore[method-assign]
    agent.tick()
    assert (agent.status.member, agent.status.members) == (False, len(NODES) - 1)
    assert "does not count itself live" in readiness(agent.status)


def test_a_look_that_cannot_read_the_kernel_is_counted_and_said_once() -> None:
    lines: list[str] = []
    agent = runner.Agent(runner.Settings("node-a"), _Source([]), _NoKernel(), lines.append)
    for _ in range(3):
        agent.tick()
    status = agent.status
    assert (status.looks, status.kernel_errors, status.kernel_error) == (
        3,
        3,
        "no kernel in this test",
    )
    assert readiness(status).startswith("cannot read this node's links")
    assert lines.count("no kernel in this test") == 1  # not once a look


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served() -> Iterator[tuple[probes.ProbeServer, dict[str, Status], _Clock]]:
    """A probe server on 127.0.0.1 reading ``current["status"]``, with a clock of our own."""
    current = {"status": READY}
    clock = _Clock()
    clock.now = 1.0
    server = probes.ProbeServer(probes.listen("127.0.0.1", 0), lambda: current["status"], clock)
    server.start()
    try:
        yield server, current, clock
    finally:
        server.close()


def get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def answers(port: int) -> bool:
    try:
        return get(port, "/healthz")[0] == 200
    except OSError:  # closed unanswered: no slot free yet
        return False


def test_the_server_answers_from_the_current_status(
    served: tuple[probes.ProbeServer, dict[str, Status], _Clock],
) -> None:
    server, current, clock = served
    assert get(server.port, "/healthz") == (200, "application/json", b'{"ok":true}')
    assert get(server.port, "/readyz?verbose") == (200, "application/json", b'{"ready":true}')

    clock.now = 1.0 + STUCK_AFTER_SECONDS + 5
    code, _, body = get(server.port, "/healthz")
    assert code == 503 and json.loads(body)["reason"].startswith("the last look finished 35 s")

    current["status"] = dataclasses.replace(READY, cluster_error="list of eips: 403 Forbidden")
    code, _, body = get(server.port, "/readyz")
    assert (code, json.loads(body)) == (
        503,
        {"ready": False, "reason": "acting on its last view: list of eips: 403 Forbidden"},
    )
    code, _, body = get(server.port, "/status")
    assert code == 404 and b"try /healthz, /readyz, /metrics" in body


def test_the_metrics_read_the_status(
    served: tuple[probes.ProbeServer, dict[str, Status], _Clock],
) -> None:
    server, current, _ = served
    current["status"] = dataclasses.replace(
        READY,
        last_look_unix=1.8e9,
        kernel_errors=2,
        speaker=True,
        announced={"eth0": 3, "eth1": 1},
        bound_locally=2,
        replies=7,
        drops={"NOT_OURS": 5, "CONFLICT": 1},
        member=False,
    )
    code, content_type, body = get(server.port, "/metrics")
    assert code == 200 and content_type.startswith("text/plain; version=")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert samples[("eip_guard_agent_looks_total", ())] == 3
    assert samples[("eip_guard_agent_last_look_timestamp_seconds", ())] == 1.8e9
    assert samples[("eip_guard_agent_ready", ())] == 0  # not a member
    assert samples[("eip_guard_agent_member", ())] == 0
    assert samples[("eip_guard_agent_members", ())] == 3
    assert samples[("eip_guard_agent_kernel_read_errors_total", ())] == 2
    assert samples[("eip_guard_agent_speaker", ())] == 1
    assert samples[("eip_guard_agent_announced_ips", (("nic", "eth0"),))] == 3
    assert samples[("eip_guard_agent_announced_ips", (("nic", "eth1"),))] == 1
    assert samples[("eip_guard_agent_can_reach_bound_locally", ())] == 2
    assert samples[("eip_guard_agent_replies_total", ())] == 7
    assert samples[("eip_guard_agent_frames_ignored_total", (("reason", "NOT_OURS"),))] == 5


def test_idle_and_dripping_clients_are_cut_off_and_the_excess_dropped(
    served: tuple[probes.ProbeServer, dict[str, Status], _Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, _, _ = served
    monkeypatch.setattr(probes._Handler, "timeout", 0.5)
    monkeypatch.setattr(probes, "CONNECTION_SECONDS", 1.0)
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(16)]
    try:
        time.sleep(0.2)  # all accepted and waiting for a request
        extra = socket.create_connection(("127.0.0.1", server.port))
        extra.settimeout(5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(100) == b""  # over the cap: closed unanswered
        extra.close()
        # The idle ones are dropped, and the slots serve again.
        eventually(lambda: answers(server.port), "a free slot after idling")
    finally:
        for sock in held:
            sock.close()

    drip = socket.create_connection(("127.0.0.1", server.port))
    drip.settimeout(5)
    started = time.monotonic()
    cut = False
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
        try:
            drip.sendall(bytes([byte]))
        except OSError:
            cut = True
            break
        time.sleep(0.3)  # under the idle timeout each time
        if time.monotonic() - started > 4:
            break
    drip.close()
    assert cut, "a client sending a byte every 0.3 s was not cut off after 1 s"


class RunningAgent:
    """An `eip-guard agent` process with its probe port, its output read by a thread."""

    def __init__(self, argv: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self._found: dict[str, int] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "probes on http://" in line:
                self._found["port"] = int(line.split("probes on http://")[1].split(":")[-2])

    @property
    def port(self) -> int:
        port: int = eventually(lambda: self._found.get("port"), "the probes log line")
        return port

    def finish(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@contextmanager
def running_agent(
    examples: Path, address: str = "127.0.0.1", netns: str | None = None
) -> Iterator[RunningAgent]:
    where = [] if netns is None else ["ip", "netns", "exec", netns]
    agent = RunningAgent([*where, sys.executable, "-m", "app.cli.main", "agent", "--cluster",
                          str(examples / "cluster.yaml"), "--node-name", "node1",
                          "--probe-port", "0", "--probe-address", address])  # fmt: skip
    try:
        yield agent
    finally:
        agent.finish()


def test_a_real_agent_serves_its_probes_and_stops_with_them(examples: Path) -> None:
    with running_agent(examples) as agent:
        port = agent.port
        assert get(port, "/healthz")[0] == 200
        eventually(lambda: get(port, "/readyz")[0] == 200, "ready after the first look")
        _, _, metrics = get(port, "/metrics")
        checked = subprocess.run([promtool(), "check", "metrics"], input=metrics,
                                 capture_output=True, check=False, timeout=60)  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert b"eip_guard_agent_looks_total" in metrics
        # Clients that pipeline requests and reset: their business, not a traceback each.
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", port)) as rude:
                rude.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
                rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert get(port, "/healthz")[0] == 200
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(timeout=15) == 0
        with pytest.raises(OSError):
            get(port, "/healthz")
    assert any(line.endswith("stopped\n") for line in agent.lines), agent.lines
    assert not [line for line in agent.lines if "Traceback" in line or "Exception" in line]


HOLD = """
import json, socket, sys, time
port, held = int(sys.argv[1]), []
for _ in range(16):  # every slot of the clients off this node, held idle
    s = socket.socket()
    s.bind(("10.77.0.2", 0))
    s.connect(("10.77.0.1", port))
    held.append(s)
time.sleep(0.3)
extra = socket.socket()
extra.bind(("10.77.0.2", 0))
extra.settimeout(5)
extra.connect(("10.77.0.1", port))
extra.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
try:
    others = extra.recv(100).decode()
except OSError as exc:
    others = repr(exc)
kubelet = socket.create_connection(("10.77.0.1", port), timeout=5)  # from the node itself
kubelet.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
answer = kubelet.recv(1000).decode()
print(json.dumps({"others": others, "kubelet": answer.split("\\r\\n")[0],
                  "from": kubelet.getsockname()[0]}))
"""


@pytest.fixture
def two_address_netns() -> Iterator[str]:
    """A network namespace whose lo holds 10.77.0.1 (the node's address) and 10.77.0.2 (a
    client elsewhere, as far as the probe server can tell)."""
    name = f"probes-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for argv in (["link", "set", "lo", "up"], ["addr", "add", "10.77.0.1/32", "dev", "lo"],
                     ["addr", "add", "10.77.0.2/32", "dev", "lo"]):  # fmt: skip
            subprocess.run(["ip", "-n", name, *argv], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_clients_elsewhere_never_turn_kubelets_probes_away(
    examples: Path, two_address_netns: str
) -> None:
    """Sixteen idle connections from elsewhere used to fill the one pool of slots, and every
    kubelet probe was closed unanswered: three missed liveness probes restart the agent."""
    with running_agent(examples, "10.77.0.1", two_address_netns) as agent:
        port = agent.port
        held = subprocess.run(
            ["ip", "netns", "exec", two_address_netns, sys.executable, "-c", HOLD, str(port)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert held.returncode == 0, held.stderr
        found = json.loads(held.stdout)
        assert found["from"] == "10.77.0.1"  # a local connection comes from the address itself
        assert found["others"] == ""  # a seventeenth client from elsewhere: closed unanswered
        assert found["kubelet"] == "HTTP/1.1 200 OK"


def test_every_address_means_both_families(examples: Path) -> None:
    """`::` listened on IPv6 only (IPV6_V6ONLY), and kubelet probes the node's first address,
    IPv4 on most clusters: every probe failed."""
    with probes.listen("::", 0) as sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("::1", port)):
            pass


def test_a_thread_that_cannot_start_gives_its_slot_back(
    served: tuple[probes.ProbeServer, dict[str, Status], _Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a pids limit a connection's thread may not start: its slot and socket go back."""
    server, _, _ = served

    class NoThread(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading, "Thread", NoThread)
    for _ in range(probes.MAX_CONNECTIONS + 4):
        assert not answers(server.port)
    monkeypatch.undo()
    assert answers(server.port)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--probe-port", "70000"], "--probe-port 70000: expected 0-65535"),
        (["--probe-port", "0", "--probe-address", "203.0.113.9"], "cannot listen on 203.0.113.9"),
        (["--probe-port", "0", "--probe-address", "no such host."], "cannot listen on no such"),
    ],
)
def test_bad_probe_flags_are_exit_2(
    capsys: pytest.CaptureFixture[str], examples: Path, argv: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, "agent", "--cluster", str(examples / "cluster.yaml"),
                           "--node-name", "node1", *argv)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err


def test_a_taken_probe_port_is_exit_2(capsys: pytest.CaptureFixture[str], examples: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        code, _, err = run_cli(capsys, "agent", "--cluster", str(examples / "cluster.yaml"),
                               "--node-name", "node1", "--probe-port", port,
                               "--probe-address", "127.0.0.1")  # fmt: skip
    assert code == 2 and f"cannot listen on 127.0.0.1 port {port} (--probe-port)" in err
