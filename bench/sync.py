"""Live inventory: time from starting the watches to ready, against kmock holding a cluster.

kmock (the Kubernetes API stand-in the tests use, ``tests/kmock_harness.py``) is loaded
with a synthetic cluster straight into its storage; then live mode starts over real HTTP
and the clock runs until ``readiness()`` says every stream has listed and the inventory
is assembled. kmock is itself Python on the same two cores, so this is an upper bound
on what a real API server would cost. ``serve_live`` runs ``eip-guard serve`` in live mode
as a process of its own against kmock, for its time to ready and its resident size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from app.core.inventory import Options
from app.core.verdict import Policy
from app.kube.config import api_client
from app.kube.serving import LiveSettings, start_live
from bench import serving, synth
from tests.core.objects import service
from tests.kmock_harness import RESOURCES, FakeApi, Writer, kubeconfig, running

TIMEOUT = 600.0
BY_KIND = {kind: name for name, (kind, _) in RESOURCES.items()}


def preload(api: FakeApi, objects: list[dict[str, Any]]) -> None:
    """Every object into kmock's storage at once (no HTTP create per object, no watch
    event), each with a resourceVersion of its own, as an API server restarted holds them."""

    def put() -> None:
        km = api.km
        for obj in objects:
            meta = obj["metadata"]
            km.rv += 1
            meta["resourceVersion"] = str(km.rv)
            km.objects[BY_KIND[obj["kind"]], meta.get("namespace"), meta["name"]] = obj
        km.compact()  # no events of these: a watch from before them is answered 410

    api.call(put)


def serve_live(shape: synth.Shape, seed: int, out: Path) -> dict[str, Any]:
    """``eip-guard serve`` in live mode, a process of its own, against kmock holding the
    cluster: seconds from its start to /readyz 200 and the CPU seconds it used meanwhile
    (kmock, in this process, serves the lists on the same two cores: the wall time is both
    sides', the CPU time is eip-guard's), its resident size once ready and after three
    changes (each one rebuild of the inventory), and the CPU each inventory took."""
    ca, cert, key = serving.certificates(out)
    objects = synth.cluster(shape, seed)
    with running() as api:
        preload(api, objects)
        del objects
        config = kubeconfig(out / "cache" / "kubeconfig-kmock.yaml", api.url)
        port = serving.free_port()
        argv = serving.serve_argv(["--kubeconfig", str(config)], cert, key, port)
        argv += ["--log-level", "warning"]
        server = serving.start(argv, port, out / "logs" / f"live-{shape.name}.log")
        try:
            ready_s = serving.wait_ready(server, ca)
            ready_cpu_s = serving.cpu_s(server)
            ready_mb = serving.rss_mb(server)
            serving.wait_idle(server)  # the first watches opened, nothing left to read
            before = serving.metrics(port, ca)
            writer = Writer(api)
            try:
                for i in range(CHANGES):  # one rebuild each: the next waits for it
                    done = serving.metrics(port, ca)[REBUILDS] + 1
                    writer.create(service(f"bench-{i}", cluster_ip=f"10.255.0.{i + 1}"))
                    deadline = time.monotonic() + CHANGE_TIMEOUT
                    while serving.metrics(port, ca)[REBUILDS] < done:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"no rebuild {CHANGE_TIMEOUT} s after a change")
                        time.sleep(0.1)
            finally:
                writer.close()
            after = serving.metrics(port, ca)
            after_mb = serving.rss_mb(server)
        finally:
            serving.stop(server)
    return {
        "ready_s": round(ready_s, 2),
        "ready_cpu_s": round(ready_cpu_s, 2),
        "rss_mb": ready_mb,
        "rss_after_changes_mb": after_mb,
        **rebuild_costs(before, after),
    }


CHANGES = 3
CHANGE_TIMEOUT = 60.0
REBUILDS = ("eip_guard_inventory_rebuilds_total", ())


def _cpu(how: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("eip_guard_inventory_rebuild_cpu_seconds_total", (("how", how),))


def rebuild_costs(before: serving.Metrics, after: serving.Metrics) -> dict[str, Any]:
    """CPU milliseconds per inventory: assembled whole until ready, and made after a change
    (patched from the last one, or whole when it could not be), from the server's metrics."""
    whole = before[_cpu("whole")] / max(before[REBUILDS], 1)
    rebuilds = after[REBUILDS] - before[REBUILDS]
    spent = sum(after[_cpu(how)] - before[_cpu(how)] for how in ("whole", "changes"))
    return {
        "whole_rebuild_ms": round(whole * 1000, 1),
        "change_rebuilds": int(rebuilds),
        "change_rebuild_ms": round(spent / rebuilds * 1000, 1) if rebuilds else None,
        "whole_after_change": after[_cpu("whole")] > before[_cpu("whole")],
    }


def run(shape: synth.Shape, seed: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    objects = synth.cluster(shape, seed)
    with running() as api:
        preload(api, objects)
        client = api_client(host=api.url)
        settings = LiveSettings(audit=False)
        start = time.perf_counter()
        live = start_live(
            client, CollectorRegistry(), Policy(), options=Options(), settings=settings
        )
        try:
            while not live.source.readiness().ready:
                if time.perf_counter() - start > TIMEOUT:
                    raise RuntimeError(f"not ready after {TIMEOUT} s")
                time.sleep(0.05)
            took = time.perf_counter() - start
            facts = live.source.current().fact_count
        finally:
            live.stop()
            client.close()  # type: ignore[no-untyped-call]
    log(f"  live inventory of {shape.name} ready in {took:.2f} s")
    return {"size": shape.name, "objects": len(objects), "facts": facts, "ready_s": round(took, 3)}
