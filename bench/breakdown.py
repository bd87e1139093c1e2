"""Where a review's CPU time goes, without sockets or TLS: the ASGI apps called directly.

Run as ``python -m bench.breakdown SIZE`` (the parent starts it in a fresh process, since
the decision log setup is process-wide). Prints one JSON object of median CPU
microseconds per review, over the same AdmissionReview bodies as the HTTPS section:

- ``floor_app``: the floor's FastAPI app (read body, json.loads, fixed answer);
- ``webhook_app_quiet``: the webhook's app with decision logging off (level warning);
- ``webhook_app``: the webhook's app logging one JSON line per decision (to /dev/null);
- ``decide``: ``app.webhook.admission.decide`` (Eip parsing, check, the answer);
- ``from_object`` and ``check``: the core's two steps inside ``decide``;
- ``parse_review``: pydantic's ``AdmissionReviewRequest.model_validate_json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.core.eips import Eip
from app.core.inventory import build
from app.core.rules import check
from app.core.sources import StaticSource
from app.core.verdict import Policy
from app.webhook import logs
from app.webhook.admission import decide
from app.webhook.app import VALIDATE_PATH, create_app
from app.webhook.reviews import AdmissionReviewRequest
from bench import floor, memory, synth
from bench.serving import reviews
from bench.stats import percentile

ROUNDS = 15
Asgi = Callable[..., Awaitable[None]]


def _scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": VALIDATE_PATH,
        "raw_path": VALIDATE_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8443),
    }


async def _call(app: Asgi, body: bytes) -> int:
    """One request through the app; returns the HTTP status it answered."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # a client that stays connected; never reached
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(body), receive, send)
    return status


def _median_us(samples: list[int]) -> float:
    return round(percentile(samples, 50) / 1000, 1)


def time_app(app: Asgi, bodies: list[bytes]) -> float:
    async def run() -> list[int]:
        for body in bodies:  # warm-up, and every body must be answered 200
            if await _call(app, body) != 200:
                raise RuntimeError("the app did not answer 200")
        samples = []
        for _ in range(ROUNDS):
            for body in bodies:
                start = time.thread_time_ns()
                await _call(app, body)
                samples.append(time.thread_time_ns() - start)
        return samples

    return _median_us(asyncio.run(run()))


def time_calls(fn: Callable[[Any], object], args: list[Any]) -> float:
    for a in args:
        fn(a)
    samples = []
    for _ in range(ROUNDS):
        for a in args:
            start = time.thread_time_ns()
            fn(a)
            samples.append(time.thread_time_ns() - start)
    return _median_us(samples)


def measure(shape: synth.Shape, seed: int = 0) -> dict[str, Any]:
    inventory = build(synth.iter_cluster(shape, seed))
    source, policy = StaticSource(inventory), Policy()
    bodies = [b.encode() for b in reviews(shape, seed)]
    parsed = [AdmissionReviewRequest.model_validate_json(b) for b in bodies]
    objects = [r.request.object for r in parsed]
    eips = [Eip.from_object(o) for o in objects if o is not None]
    result: dict[str, Any] = {"size": shape.name, "reviews": len(bodies)}
    result["floor_app"] = time_app(floor.create_floor(), bodies)
    devnull = Path("/dev/null").open("w")  # noqa: SIM115 (held until the process ends)
    listener = logs.setup(logging.WARNING, devnull)
    result["webhook_app_quiet"] = time_app(create_app(source, policy), bodies)
    logging.getLogger().setLevel(logging.INFO)
    result["webhook_app"] = time_app(create_app(source, policy), bodies)
    listener.stop()
    result["decide"] = time_calls(lambda r: decide(r.request, source, policy), parsed)
    result["from_object"] = time_calls(Eip.from_object, objects)
    result["check"] = time_calls(lambda e: check(e, None, inventory, policy), eips)
    result["parse_review"] = time_calls(AdmissionReviewRequest.model_validate_json, bodies)
    return result


def run(size: str, seed: int) -> dict[str, Any]:
    """Measure in a fresh process (logging setup is process-wide)."""
    return memory.run_module("bench.breakdown", size, "--seed", str(seed))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown")
    parser.add_argument("size", choices=[s.name for s in synth.SIZES])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = {s.name: s for s in synth.SIZES}[args.size]
    print(json.dumps(measure(shape, args.seed)))


if __name__ == "__main__":
    main()
