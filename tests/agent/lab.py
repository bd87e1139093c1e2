"""A small layer2 lab in real network namespaces: a bridge, a client and two nodes.

    client (eth0) ─┐
    node1  (ens3) ─┼─ br0 (in its own namespace)
    node2  (enp0s8)┘

Node NICs have different names on purpose (the reason can_reach exists). In node1 the
can_reach IP is also bound on ``kube-ipvs0`` (a veth stands in for the dummy device the
kernel may lack: its address still lands in the local table), so ``ip route get`` says
``lo``. Names are unique per run; :meth:`Lab.close` deletes everything, also after a
failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from app.agent.netlink import HostNet, NetlinkError

ROOT = Path(__file__).resolve().parents[2]
EIP_GUARD = str(ROOT / ".venv" / "bin" / "eip-guard")
SUBNET4, SUBNET6 = "198.51.100", "2001:db8:77"
CAN_REACH4 = f"{SUBNET4}.100"  # in the Eip pool, bound on node1's kube-ipvs0: the #331 trap
NODES = {"node1": ("ens3", 11), "node2": ("enp0s8", 12)}
TOOLS = {"ip": "iproute2", "arping": "iputils-arping", "ndisc6": "ndisc6"}  # as the Makefile
MISSING_TOOLS = f"the lab needs Debian's {', '.join(TOOLS.values())} (`make test` installs them)"


def sh(*argv: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


class NoNics:
    """A kernel with no NIC and no route: what an agent won is a problem of its plan."""

    def host(self, probe: Any = ()) -> HostNet:
        return HostNet((), (), ())

    def route_get(self, ip: Any) -> Any:
        raise NetlinkError("no routes in this test")


NOT_ROOT = "needs root: creates network namespaces, veth pairs and raw packet sockets"
# What the lab's namespace names start with: set it when several runs share a machine, so
# each can tell (and clean up) its own.
LAB_PREFIX = os.environ.get("EIP_GUARD_LAB_PREFIX", "eg")


def sh_batch(ns: str, lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n",
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@contextlib.contextmanager
def batch_netns(prefix: str, lines: list[str], *sysctls: str) -> Iterator[str]:
    """A network namespace named ``prefix-<random>`` made by ``ip -batch`` of ``lines`` (after
    ``sysctls``, "key=value"), deleted after use; skips the test when not root."""
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    sh("ip", "netns", "add", name)
    try:
        for setting in sysctls:
            sh("ip", "netns", "exec", name, "sysctl", "-qw", setting)
        result = sh_batch(name, lines)
        assert result.returncode == 0, result.stderr
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


@dataclass
class AgentProcess:
    node: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def start_reader(self) -> None:
        assert self.proc.stdout is not None
        self.reader = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self.proc.poll() is not None and not any(predicate(x) for x in self.lines):
                break
            time.sleep(0.05)
        raise AssertionError(f"agent on {self.node} never logged it; output:\n" + self.output)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.reader is not None:
            self.reader.join(5)  # EOF once the process is gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


class Lab:
    def __init__(self) -> None:
        tag = f"{LAB_PREFIX}{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
        self.bridge, self.client = f"{tag}-br", f"{tag}-client"
        self.ns = {node: f"{tag}-{node}" for node in NODES}
        self.created: list[str] = []
        self.agents: list[AgentProcess] = []
        self.macs: dict[str, str] = {}

    def ip(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "-n", ns, *argv, check=check)

    def run(self, ns: str, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        result = sh("ip", "netns", "exec", ns, *argv, check=False, timeout=timeout)
        # A missing tool exits 1, as "no answer" does: a test expecting silence would pass.
        if result.stderr.startswith("exec of"):
            raise RuntimeError(f"{result.stderr.strip()}: {MISSING_TOOLS}")
        return result

    def _namespace(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        for key, value in (
            ("ipv6/conf/all/accept_dad", "0"),  # addresses usable at once
            ("ipv6/conf/default/accept_dad", "0"),
            ("ipv4/conf/all/arp_ignore", "1"),  # what kube-proxy sets in IPVS mode
            ("ipv4/conf/all/arp_announce", "2"),
        ):
            # /proc/sys/net shows the namespace of the process that reads it.
            sh("ip", "netns", "exec", name, "sh", "-c", f"echo {value} > /proc/sys/net/{key}")
        self.ip(name, "link", "set", "lo", "up")

    def _plug(self, ns: str, nic: str, host: int) -> None:
        port = f"p{len(self.created)}{nic}"[:15]
        self.ip(ns, "link", "add", nic, "type", "veth", "peer", "name", port,
                "netns", self.bridge)  # fmt: skip
        self.ip(self.bridge, "link", "set", port, "master", "br0", "up")
        self.ip(ns, "addr", "add", f"{SUBNET4}.{host}/24", "dev", nic)
        self.ip(ns, "addr", "add", f"{SUBNET6}::{host}/64", "dev", nic, "nodad")
        self.ip(ns, "link", "set", nic, "up")
        link = json.loads(self.ip(ns, "-j", "link", "show", nic).stdout)[0]
        self.macs[ns] = link["address"]

    def setup(self) -> Lab:
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not found: {MISSING_TOOLS}")
        self._namespace(self.bridge)
        # No multicast snooping: without an MLD querier a snooping bridge floods anyway;
        # switching it off keeps the lab independent of the kernel's defaults.
        self.ip(self.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        self.ip(self.bridge, "link", "set", "br0", "up")
        self._namespace(self.client)
        self._plug(self.client, "eth0", 10)
        for node, (nic, host) in NODES.items():
            self._namespace(self.ns[node])
            self._plug(self.ns[node], nic, host)
        node1 = self.ns["node1"]
        self.ip(node1, "link", "add", "kube-ipvs0", "type", "veth", "peer", "name", "veth-ipvs")
        self.ip(node1, "addr", "add", f"{CAN_REACH4}/32", "dev", "kube-ipvs0")
        self.ip(node1, "link", "set", "kube-ipvs0", "up")
        return self

    def add_host(self, label: str, nic: str, host: int) -> str:
        """Another namespace on the bridge (e.g. an API server the agents can reach)."""
        ns = f"{self.bridge[:-3]}-{label}"
        self._namespace(ns)
        self._plug(ns, nic, host)
        return ns

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        self.created.clear()

    def mac(self, node: str) -> str:
        return self.macs[self.ns[node]]

    def start_agent(self, node: str, snapshot: Path, *extra: str) -> AgentProcess:
        return self.start_live_agent(node, "--cluster", str(snapshot), *extra)

    def start_live_agent(self, node: str, *extra: str) -> AgentProcess:
        # These agents speak unless told otherwise (the command's default is report-only).
        speaker = () if "--speaker" in extra else ("--speaker", "on")
        argv = ["ip", "netns", "exec", self.ns[node], EIP_GUARD, "agent", "--node-name", node,
                "--interval", "0.2", *speaker, *extra]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        agent = AgentProcess(node, proc)
        agent.start_reader()
        self.agents.append(agent)
        return agent

    def arping(self, ip: str, count: int = 2) -> set[str]:
        """MACs that answered ARP requests for ``ip`` from the client."""
        out = self.run(self.client, "arping", "-c", str(count), "-w", str(count),
                       "-I", "eth0", ip).stdout  # fmt: skip
        return {
            line.split("[", 1)[1].split("]", 1)[0].lower()
            for line in out.splitlines()
            if "reply from" in line
        }

    def ndisc(self, ip: str) -> str | None:
        """The MAC the client's Neighbor Solicitation for ``ip`` got back, if any."""
        result = self.run(self.client, "ndisc6", "-q", "-1", "-r", "2", "-w", "700", ip, "eth0")
        return result.stdout.strip().lower() if result.returncode == 0 else None

    def resolve_neighbor(self, ip: str) -> None:
        """Make the client's kernel resolve ``ip`` (a UDP datagram to it needs its MAC)."""
        code = (
            "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.sendto(b'x', ({ip!r}, 9)); time.sleep(0.5)"
        )
        self.run(self.client, sys.executable, "-c", code)

    def neighbor(self, ip: str) -> dict[str, Any] | None:
        entries = json.loads(self.ip(self.client, "-j", "neigh", "show", ip).stdout or "[]")
        return entries[0] if entries else None

    def neighbor_moves_to(self, ip: str, mac: str, within: float) -> dict[str, Any] | None:
        """The client's neighbour entry for ``ip`` once it holds ``mac`` (the gratuitous
        messages moved it), else the last entry seen after ``within`` s: the caller asserts."""
        deadline = time.monotonic() + within
        entry = self.neighbor(ip)
        while time.monotonic() < deadline:
            if entry is not None and entry.get("lladdr") == mac:
                break
            time.sleep(0.1)
            entry = self.neighbor(ip)
        return entry
