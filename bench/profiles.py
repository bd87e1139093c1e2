"""Where the served webhook and its start-up spend their time, sampled by py-spy.

The HTTPS section says *how much* deciding costs when served; this section says *where* a
busy server's time goes, for the webhook and for the floor under the same load, and for
``eip-guard serve`` from start to ready. py-spy samples the running processes from outside
(``--nonblocking``: the server is never paused, so the load it serves is the real one; a
sample that could not be read consistently counts as an error and is left out).

Each sample is put in one *part* by its innermost frame that belongs to a known part (see
``SERVED_PARTS`` and ``STARTUP_PARTS``): native code (OpenSSL, uvloop, pydantic-core) has no
Python frame of its own, so it counts for the Python code that called it. The raw stacks
are written next to the JSON (``profile-*.txt``, collapsed stacks that speedscope.app,
flamegraph.pl and inferno read), so every number can be looked into.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from app.webhook.app import VALIDATE_PATH
from bench import serving

CONCURRENCY = 16  # where the throughput target is missed furthest
RATE_HZ = 500
STARTUP_RATE_HZ = 250

# (part, what it holds, where its frames live: a file path fragment, or file:function).
Part = tuple[str, str, tuple[str, ...]]
SERVED_PARTS: tuple[Part, ...] = (
    (
        "decision",
        "Eip.from_object, the rules, the answer's text",
        ("app/core/", "app/webhook/admission.py", "app/webhook/responses.py"),
    ),
    (
        "record",
        "metrics and the decision line",
        ("app/webhook/app.py:record", "app/webhook/logs.py", "app/webhook/metrics.py"),
    ),
    (
        "answer",
        "the AdmissionReview around the response (its JSON is pydantic's part)",
        ("app/webhook/reviews.py",),
    ),
    (
        "handler",
        "our handler's own lines: the content type, reading the body, the Response",
        ("app/webhook/app.py", "bench/floor.py", "bench/no_decision.py"),
    ),
    (
        "pydantic",
        "pydantic-core parsing the review and writing the answer's JSON (native, under "
        "pydantic's model_validate_json and dump_json)",
        ("pydantic/",),
    ),
    (
        "Starlette",
        "routing, Request and Response, FastAPI's exit stack",
        ("starlette/", "fastapi/", "contextlib.py:__aexit__"),
    ),
    (
        "uvicorn",
        "HTTP/1.1 and the connection, with uvloop's TLS and sockets under it",
        ("uvicorn/", "uvloop/", "asyncio/"),
    ),
)
STARTUP_PARTS: tuple[Part, ...] = (
    ("snapshot read", "reading and parsing the JSON snapshot", ("app/sources/files.py",)),
    ("inventory build", "facts into indexes", ("app/core/",)),
    (
        "freeing the snapshot",
        "the parsed JSON, once built into the inventory",
        ("app/cli/check_run.py:snapshot_inventory",),
    ),
    (
        "GC",
        "one collection before loading, the freeze after",
        ("app/cli/serve_run.py:_frozen_snapshot_inventory", "app/sources/gc_pause.py"),
    ),
    ("TLS and server", "certificates, uvicorn's start", ("uvicorn/", "ssl.py", "app/pki/")),
)
IMPORTS = "imports"  # start-up: any sample under an import, whatever runs inside it
OTHER = "other"
NATIVE = "no Python frame"  # uvloop's own loop, or the interpreter starting
OTHER_THREADS = "other threads"  # the log writer, watches: not the event loop

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _part_of(function: str, file: str, parts: tuple[Part, ...]) -> str | None:
    for name, _, places in parts:
        for place in places:
            where, _, only = place.partition(":")
            if where in file and (not only or function.rpartition(".")[2] == only):
                return name
    return None


def shares(lines: Iterable[str], parts: tuple[Part, ...], *, imports: bool = False) -> Counter[str]:
    """Samples per part, from py-spy's raw output (``--threads``: each stack starts with its
    thread, which has no name until ``threading`` names it MainThread). Frames are read
    innermost first; the first that belongs to a part names it.
    With ``imports``, a sample with an import anywhere on its stack counts as one."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, number = line.rstrip("\n").rpartition(" ")
        if not stack or not number.isdigit():
            continue
        thread, *frames = stack.split(";")
        n = int(number)
        # A named thread other than the main one (which is unnamed until threading starts).
        if ":" in thread and not thread.endswith(": MainThread"):
            counts[OTHER_THREADS] += n
            continue
        if imports and any(f.startswith("_find_and_load ") for f in frames):
            counts[IMPORTS] += n
            continue
        part = OTHER if frames else NATIVE
        for frame in reversed(frames):
            match = _FRAME.match(frame)
            found = match and _part_of(match["function"], match["file"], parts)
            if found:
                part = found
                break
        counts[part] += n
    return counts


def percentages(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(100 * v / total, 1) for k, v in counts.most_common()} if total else {}


def _recorded(output: str) -> dict[str, int]:
    """py-spy's own count of samples and errors, from its last words."""
    found = re.search(r"Samples: (\d+) Errors: (\d+)", output)
    return {"samples": int(found[1]), "errors": int(found[2])} if found else {}


def record_served(
    spy: str, server: serving.Started, url: str, script: Path, *, duration: float, raw: Path
) -> dict[str, Any]:
    """Sample ``server`` while wrk loads it at ``CONCURRENCY``."""
    seconds = max(1, round(duration))
    argv = [spy, "record", "--pid", str(server.proc.pid), "--rate", str(RATE_HZ)]
    argv += ["--nonblocking", "--threads", "--format", "raw", "--duration", str(seconds + 1)]
    spying = subprocess.Popen(
        [*argv, "--output", str(raw)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    time.sleep(0.5)  # py-spy attaches before the load starts
    load = serving.measured(server, url, script, CONCURRENCY, seconds)
    said, _ = spying.communicate(timeout=60)
    if spying.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed on {server.argv[:3]}: {said[-500:]}")
    parts = percentages(shares(raw.read_text().splitlines(), SERVED_PARTS))
    cpu_us = load["cpu_s"] / load["requests"] * 1e6
    return {
        **_recorded(said),
        "rps": round(load["requests"] / (load["duration_us"] / 1e6)),
        "cpu_us": round(cpu_us, 1),
        "shares": parts,
        # The server's CPU per request shared out as its busy samples are.
        "us_per_request": {part: round(pct * cpu_us / 100, 1) for part, pct in parts.items()},
    }


def record_startup(spy: str, argv: list[str], port: int, ca: Path, raw: Path) -> dict[str, Any]:
    """Sample ``eip-guard serve`` from its first instruction to its first /readyz 200
    (``--nonblocking`` too: pausing it for each sample tripled what its imports took)."""
    spied = [spy, "record", "--rate", str(STARTUP_RATE_HZ), "--nonblocking", "--threads"]
    spied += ["--format", "raw"]
    log = raw.with_suffix(".log")
    spying = serving.start([*spied, "--output", str(raw), "--", *argv], port, log)
    try:
        ready_s = serving.wait_ready(spying, ca)
    finally:
        for child in _children(spying.proc.pid):  # the server: py-spy writes when it ends
            os.kill(child, signal.SIGTERM)
        try:
            spying.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spying.proc.kill()
            spying.proc.wait()
    if not raw.exists():
        raise RuntimeError(f"py-spy wrote no profile; see {log}")
    parts = percentages(shares(raw.read_text().splitlines(), STARTUP_PARTS, imports=True))
    return {
        **_recorded(log.read_text()),
        "ready_s": round(ready_s, 2),
        "shares": parts,
        # Start-up is busy from end to end: the time to ready shared out as the samples are.
        "seconds": {part: round(pct * ready_s / 100, 2) for part, pct in parts.items()},
    }


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def run(
    snapshot: Path,
    size: str,
    out: Path,
    *,
    duration: float,
    seed: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (make venv installs it)"}
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk; `make bench` does)"}
    ca, cert, key = serving.certificates(out)
    script = serving.review_script(out, size, seed)
    result: dict[str, Any] = {"size": size, "concurrency": CONCURRENCY, "rate_hz": RATE_HZ}
    argv_of: dict[str, Callable[[int], list[str]]] = {
        "webhook": lambda port: serving.webhook_argv(snapshot, cert, key, port),
        "floor": lambda port: serving.floor_argv(cert, key, port),
    }
    for name, make_argv in argv_of.items():
        port = serving.free_port()
        server = serving.start(make_argv(port), port, out / "logs" / f"profile-{name}.log")
        try:
            serving.wait_ready(server, ca)
            url = f"https://127.0.0.1:{port}{VALIDATE_PATH}"
            serving.wrk(url, script, CONCURRENCY, 1.0)  # warm-up
            raw = out / f"profile-{name}.txt"
            result[name] = record_served(spy, server, url, script, duration=duration, raw=raw)
        finally:
            serving.stop(server)
        log(f"  {name} at c={CONCURRENCY}: {result[name]['shares']}")
    port = serving.free_port()
    argv = argv_of["webhook"](port)
    result["startup"] = record_startup(spy, argv, port, ca, out / "profile-startup.txt")
    log(f"  start-up: {result['startup']['shares']}")
    result["parts"] = {name: held for name, held, _ in SERVED_PARTS + STARTUP_PARTS}
    return result
