"""kmock's Kubernetes emulator on a real HTTP port, in a thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

import kmock

from app.kube.agent_api import AgentApi, make_client


class Emulator:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host, self.port = host, port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.handler: Any = None
        self.server: Any = None
        self.url = ""

    async def _start(self) -> None:
        self.handler = kmock.KubernetesEmulator()
        await self.handler.__aenter__()
        self.server = kmock.Server(self.handler, host=self.host, port=self.port)
        await self.server.__aenter__()
        self.url = str(self.server.url).rstrip("/")

    async def _stop(self) -> None:
        # Watch streams never end by themselves (aiohttp does not cancel handlers when a
        # client goes away), and the server waits for them on shutdown: end them first.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.server.__aexit__(None, None, None)
        await self.handler.__aexit__(None, None, None)

    def __enter__(self) -> Emulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def api(self, namespace: str = "eip-guard") -> AgentApi:
        return AgentApi(make_client(server=self.url), namespace, timeout=5)

    def put(self, group_version: str, plural: str, obj: Mapping[str, Any]) -> None:
        """Seed an object (no watch event: do this before the agent starts)."""
        group, _, version = group_version.rpartition("/")
        meta = obj["metadata"]
        key = (kmock.resource(group, version, plural), meta.get("namespace"), meta["name"])
        self.handler.objects[key] = dict(obj)

    def get(self, group_version: str, plural: str, namespace: str | None, name: str) -> Any:
        group, _, version = group_version.rpartition("/")
        return self.handler.objects[kmock.resource(group, version, plural), namespace, name]

    def objects(self, group_version: str, plural: str) -> list[dict[str, Any]]:
        group, _, version = group_version.rpartition("/")
        res = kmock.resource(group, version, plural)
        return [dict(obj.raw) for (r, _, _), obj in self.handler.objects.items() if r == res]


def serve(host: str, port: int, seed: str) -> None:
    """Run an emulator until killed, seeded from a JSON list of [group/version, plural, obj];
    used as a separate process inside a network namespace of the lab."""
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # delivered to sigwait below
    with Emulator(host, port) as emu, open(seed) as f:
        for group_version, plural, obj in json.load(f):
            emu.put(group_version, plural, obj)
        print("ready", flush=True)
        signal.sigwait(stop)
    sys.exit(0)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
