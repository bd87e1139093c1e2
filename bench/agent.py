"""The node agent at scale: its memory, its view of the cluster and its tick.

Objects are kept as the agent's live source keeps them (``app.kube.agent_source``'s keep
functions): layer2 Eips naming one ``can_reach`` IP, each with one IP in ``status.used``,
one EndpointSlice per Service with two ready endpoints on random members, a tenth of
the Services ``externalTrafficPolicy: Local``, and a Node per member (Ready). Each size
runs in a process of its own, for a resident size of its own: ``python -m bench.agent EIPS
SERVICES`` prints one JSON object. As root, that process runs in a network namespace made
like a big IPVS node (20,000 Service IPs on ``kube-ipvs0``, 100 pod veths), so the tick
reads what such a node has.
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from app.agent import election, runner
from app.agent.pyroute2_netlink import Pyroute2Netlink
from app.kube.agent_source import keep_eip, keep_node, keep_service, keep_slice
from bench.memory import rss_mb

MEMBERS = 1_000
IPVS_ADDRESSES = 20_000
POD_VETHS = 100
TICKS = 20
SIZES = ((15_000, 40_000), (30_000, 75_000), (50_000, 100_000))
QUICK_SIZES = ((2_000, 5_000),)


def objects(eips: int, services: int, seed: int = 0) -> list[dict[str, Any]]:
    """The cluster as Kubernetes would send it (made, then kept by the caller)."""
    rng = random.Random(seed)
    found: list[dict[str, Any]] = []
    for i in range(eips):
        base = f"10.{i // 250 % 250}.{i % 250}"
        found.append({
            "apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip",
            "metadata": {"name": f"eip-{i}", "uid": str(uuid.UUID(int=rng.getrandbits(128)))},
            "spec": {"address": f"{base}.0/28", "protocol": "layer2",
                     "interface": "can_reach:192.168.0.1"},
            "status": {"used": {f"{base}.1": f"ns-{i % 200}/svc-{i}"}},
        })  # fmt: skip
    for i in range(services):
        ns, name = f"ns-{i % 200}", f"svc-{i}"
        found.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-x7k2p", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "endpoints": [{"nodeName": f"node-{rng.randrange(MEMBERS)}",
                           "conditions": {"ready": True}} for _ in range(2)],
        })  # fmt: skip
        if i % 10 == 0:
            found.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
            })  # fmt: skip
    conditions = [{"type": kind, "status": status, "reason": f"Kubelet{kind}",
                   "lastHeartbeatTime": "2026-11-27T10:00:00Z"}
                  for kind, status in (("MemoryPressure", "False"), ("DiskPressure", "False"),
                                       ("PIDPressure", "False"), ("Ready", "True"),
                                       ("NetworkUnavailable", "False"))]  # fmt: skip
    for i in range(MEMBERS):
        address = {"type": "InternalIP", "address": f"192.168.{i // 250}.{i % 250}"}
        found.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/os": "linux",
                                                           "kubernetes.io/hostname": f"node-{i}"}},
            "status": {"conditions": [dict(c) for c in conditions],
                       "addresses": [address]},
        })  # fmt: skip
    return found


def measure(eips: int, services: int) -> dict[str, Any]:
    """One size, in this process: what ``python -m bench.agent`` prints. The resident size
    counts from after the imports (what the agent imports in live mode)."""
    gc.collect()
    base = rss_mb()
    keep: dict[str, Callable[[dict[str, Any]], Any]] = {
        "Eip": keep_eip, "EndpointSlice": keep_slice, "Service": keep_service, "Node": keep_node,
    }  # fmt: skip
    kept = [k for o in objects(eips, services) if (k := keep[o["kind"]](o)) is not None]
    gc.collect()
    kept_mb = rss_mb() - base

    started = time.process_time()
    election.cluster_view(kept)
    whole_s = time.process_time() - started
    gc.collect()

    class Source:
        answer = kept

        def objects(self) -> list[Any]:
            return self.answer

        def members(self) -> frozenset[str]:
            return frozenset(f"node-{i}" for i in range(MEMBERS))

    source, now = Source(), [0.0]
    agent = runner.Agent(
        runner.Settings("node-7"), source, Pyroute2Netlink(), lambda _: None, clock=lambda: now[0]
    )
    started = time.process_time()
    agent.tick()
    first_s = time.process_time() - started
    ticks = []
    for _ in range(TICKS):
        started = time.process_time()
        agent.tick()
        ticks.append(time.process_time() - started)
    changed = list(kept)  # one Eip changes, as OpenELB writes status.used
    changed[0] = {**changed[0], "status": {"used": {"10.0.0.2": "ns-0/svc-0"}}}
    source.answer = changed
    now[0] += 3600.0  # past the wait after a view (runner.VIEW_SHARE): this tick makes one
    started = time.process_time()
    agent.tick()
    change_s = time.process_time() - started
    gc.collect()
    return {
        "eips": eips,
        "services": services,
        "members": MEMBERS,
        "kept_mb": round(kept_mb, 1),
        "rss_mb": round(rss_mb(), 1),
        "view_whole_s": round(whole_s, 2),
        "first_tick_s": round(first_s, 2),
        "tick_ms": round(statistics.median(ticks) * 1000, 1),
        "tick_max_ms": round(max(ticks) * 1000, 1),
        "change_tick_s": round(change_s, 3),
    }


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=120)


def ipvs_node() -> str | None:
    """A network namespace like a big IPVS node, or None when one cannot be made here."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return None
    name = f"eg-bench-agent-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    lines = [
        "link set lo up",
        "link add eth0 type veth peer name eth0-peer",
        "link set eth0 up", "link set eth0-peer up",
        "address add 192.168.0.5/24 dev eth0",
        "route add default via 192.168.0.1",
        # A veth stands in for kube-proxy's dummy device (not every kernel has dummy).
        "link add kube-ipvs0 type veth peer name ipvs-peer",
    ]  # fmt: skip
    lines += [f"link add cali{i} type veth peer name pod{i}" for i in range(POD_VETHS)]
    lines += [
        f"address add 10.96.{i // 250}.{i % 250 + 1}/32 dev kube-ipvs0"
        for i in range(IPVS_ADDRESSES)
    ]
    batch = subprocess.run(
        ["ip", "-n", name, "-batch", "-"], input="\n".join(lines) + "\n", text=True,
        capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    if batch.returncode != 0:
        _ip("netns", "del", name)
        raise RuntimeError(f"cannot make the IPVS namespace: {batch.stderr.strip()}")
    return name


def run(quick: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    namespace = ipvs_node()
    rows = []
    try:
        for eips, services in QUICK_SIZES if quick else SIZES:
            argv = [sys.executable, "-m", "bench.agent", str(eips), str(services)]
            if namespace is not None:
                argv = ["ip", "netns", "exec", namespace, *argv]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"bench.agent {eips} {services}: {done.stderr.strip()[-500:]}")
            rows.append(json.loads(done.stdout))
            log(f"  agent with {eips} Eips and {services} Services: {rows[-1]}")
    finally:
        if namespace is not None:
            _ip("netns", "del", namespace)
    node = {"ipvs_addresses": IPVS_ADDRESSES, "pod_veths": POD_VETHS} if namespace else None
    return {"ipvs_node": node, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
