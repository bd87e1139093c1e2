"""Live mode end to end: agents in two node namespaces, Leases on an emulated API server
(kmock, over real HTTP on the lab bridge), and a client that watches the failover."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.agent.election import elect

from .lab import SUBNET4, Lab

API_IP, API_PORT = f"{SUBNET4}.2", 6443
IP4 = f"{SUBNET4}.101"
EMULATOR = str(Path(__file__).with_name("kube_emulator.py"))


def seed() -> list[Any]:
    nodes = [["v1", "nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}]
             for n in ("node1", "node2")]  # fmt: skip
    eip = {"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
           "metadata": {"name": "pool", "uid": "uid-pool"},
           "spec": {"address": f"{SUBNET4}.100-{SUBNET4}.120", "protocol": "layer2",
                    "interface": f"can_reach:{SUBNET4}.1"},
           "status": {"used": {IP4: "shop/web"}}}  # fmt: skip
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"namespace": "shop", "name": "web"}, "spec": {}}  # fmt: skip
    endpoints = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"namespace": "shop", "name": "web-1"}, "endpoints": []}  # fmt: skip
    return [
        *nodes,
        ["network.kubesphere.io/v1alpha2", "eips", eip],
        ["v1", "services", service],
        ["discovery.k8s.io/v1", "endpointslices", endpoints],
    ]


@pytest.fixture
def api_server(lab: Lab, tmp_path: Path) -> Iterator[str]:
    ns = lab.ns.get("api") or lab.add_host("api", "eth0", 2)
    lab.ns["api"] = ns
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed()))
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, EMULATOR, API_IP, str(API_PORT),
         str(seed_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == "ready", first + proc.stdout.read()
        yield f"http://{API_IP}:{API_PORT}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_live_failover_moves_the_clients_neighbor_entry(lab: Lab, api_server: str) -> None:
    first = elect(IP4, ("node1", "node2"))
    assert first is not None
    second = "node2" if first == "node1" else "node1"
    live = ("--live", "--server", api_server, "--namespace", "eip-guard",
            "--lease-renew", "0.5", "--lease-duration", "2")  # fmt: skip
    agents = {first: lab.start_live_agent(first, *live)}
    try:
        agents[first].wait_for(lambda line: f"announce {IP4} on " in line, timeout=15)
        # The second agent joins: it warms up until the first has seen its Lease, so the
        # two never answer together (both answering shows as two MACs below).
        agents[second] = lab.start_live_agent(second, *live)
        agents[second].wait_for(lambda line: "node report" in line, timeout=15)
        assert lab.arping(IP4) == {lab.mac(first)}
        lab.resolve_neighbor(IP4)
        entry = lab.neighbor(IP4)
        assert entry is not None and entry.get("lladdr") == lab.mac(first), entry
        agents[first].proc.kill()  # dies without a word: its Lease simply stops
        agents[first].stop()
        agents[second].wait_for(lambda line: f"announce {IP4} on " in line, timeout=15)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            entry = lab.neighbor(IP4)
            if entry is not None and entry.get("lladdr") == lab.mac(second):
                break
            time.sleep(0.1)
        assert entry is not None and entry.get("lladdr") == lab.mac(second), entry
        assert lab.arping(IP4) == {lab.mac(second)}
    finally:
        for agent in agents.values():
            agent.stop()
        lab.ip(lab.client, "neigh", "flush", "dev", "eth0", check=False)
