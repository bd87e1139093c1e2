"""``python -m bench`` (``make bench``): how fast eip-guard decides, serves and starts.

A benchmark, not a test: it prints a table and writes ``bench/results/bench.json`` and
``bench/results/bench.png``; it never fails on a number. It exits non-zero only when a
section could not run at all (the JSON then says why).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import breakdown, decision, memory, profiles, report, serving, synth

RESULTS = Path(__file__).resolve().parent / "results"
READY_STARTS = 3  # `eip-guard serve` starts timed with the largest snapshot


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cpu_model() -> str | None:
    """The CPU's name and family: virtual machines of one kind land on different hosts, and
    numbers from two CPU generations are not comparable."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or None
    found = dict(
        (key.strip(), value.strip())
        for key, sep, value in (line.partition(":") for line in text.splitlines()[:30])
        if sep
    )
    name = found.get("model name")
    family, model = found.get("cpu family"), found.get("model")
    return f"{name} (family {family}, model {model})" if name and family else name


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def snapshot_path(out: Path, shape: synth.Shape, seed: int) -> Path:
    """The largest cluster as a JSON snapshot, written once and reused (it is deterministic)."""
    path = out / "cache" / f"snapshot-{shape.name}-seed{seed}.json"
    if not path.exists():
        log(f"  writing {path} ...")
        synth.write_snapshot(shape, path, seed)
    return path


def run_decision(args: argparse.Namespace, shapes: tuple[synth.Shape, ...]) -> dict[str, Any]:
    count, rounds = (100, 5) if args.quick else (200, 10)
    return decision.run(shapes, count, rounds, args.seed, log)


def run_memory(args: argparse.Namespace, largest: synth.Shape) -> dict[str, Any]:
    return memory.measure("stream", largest.name)


def run_startup(args: argparse.Namespace, shapes: tuple[synth.Shape, ...]) -> dict[str, Any]:
    """Load and build in a fresh process; then time `serve` to /readyz 200 at a middle size,
    at the largest, and with no snapshot at all (the floor server)."""
    largest = shapes[-1]
    path = snapshot_path(args.out, largest, args.seed)
    result: dict[str, Any] = {"size": largest.name, **memory.measure("snapshot", str(path))}
    if not serving.can_serve():
        result["ready_s"] = None
        return result
    # Start-up is one sample of a few seconds; a burst from another tenant can add a second
    # to it. The median of three starts is the number; each start is kept beside it.
    runs = [serving.time_to_ready(path, args.out) for _ in range(READY_STARTS)]
    result["ready_s"] = round(statistics.median(runs), 3)
    result["ready_s_runs"] = runs
    middle = synth.QUICK_SIZES[-1]
    if middle != largest:
        middle_path = snapshot_path(args.out, middle, args.seed)
        result[f"ready_s_{middle.name}"] = serving.time_to_ready(middle_path, args.out)
    result["ready_s_floor"] = serving.time_to_ready(None, args.out)
    return result


def load_seconds(args: argparse.Namespace) -> float:
    """Seconds of each wrk run: ``--duration``, else 3 when quick and 6 in full."""
    return float(args.duration or (3.0 if args.quick else 6.0))


def run_http(args: argparse.Namespace, largest: synth.Shape) -> dict[str, Any]:
    if not serving.can_serve():
        return report.skipped("`eip-guard serve` is not available on this branch yet")
    path = snapshot_path(args.out, largest, args.seed)
    return serving.compare(
        path,
        largest.name,
        args.out,
        duration=load_seconds(args),
        rounds=1 if args.quick else 2,
        seed=args.seed,
        log=log,
    )


def run_profile(args: argparse.Namespace, largest: synth.Shape) -> dict[str, Any]:
    path = snapshot_path(args.out, largest, args.seed)
    return profiles.run(
        path, largest.name, args.out, duration=load_seconds(args), seed=args.seed, log=log
    )


def run_sync(args: argparse.Namespace, shapes: tuple[synth.Shape, ...]) -> dict[str, Any]:
    """Live mode against kmock: the inventory's sync at `l` (kmock is Python too), then
    `eip-guard serve` in live mode at the largest size; `m` for both if quick."""
    try:  # the live inventory lands separately; without it this section says so
        sync = importlib.import_module("bench.sync")
    except ImportError as exc:
        return report.skipped(f"the live inventory (app.kube) is not available: {exc}")
    shape = shapes[-1] if args.quick else shapes[3]
    result: dict[str, Any] = sync.run(shape, args.seed, log)
    largest = shapes[-1]
    live = sync.serve_live(largest, args.seed, args.out)
    log(f"  eip-guard serve, live, {largest.name}: {live}")
    result["serve"] = {"size": largest.name, **live}
    return result


def _duration(text: str) -> float:
    """--duration: wrk takes whole seconds, at least one; nan, inf and negatives ran anyway."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 1 <= value <= 3600):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds from 1 to 3600")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs (~1 min)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--only", action="append", choices=report.SECTIONS, help="run only these sections"
    )
    parser.add_argument("--seed", type=int, default=0, help="synthetic cluster seed")
    parser.add_argument("--duration", type=_duration, help="seconds per HTTP load run")
    args = parser.parse_args(argv)
    try:  # where results go, before minutes of measuring: a bad --out is said at once
        (args.out / "cache").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {args.out}: cannot make the results folder: {exc.strerror or exc}")
    shapes = synth.QUICK_SIZES if args.quick else synth.SIZES
    largest = shapes[-1]
    result: dict[str, Any] = {
        "schema": report.SCHEMA,
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
    }
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "decision": lambda: run_decision(args, shapes),
        "memory": lambda: run_memory(args, largest),
        "startup": lambda: run_startup(args, shapes),
        "http": lambda: run_http(args, largest),
        "breakdown": lambda: breakdown.run(largest.name, args.seed),
        "profile": lambda: run_profile(args, largest),
        "sync": lambda: run_sync(args, shapes),
        "agent": lambda: importlib.import_module("bench.agent").run(args.quick, log),
    }
    failed = False
    started = time.perf_counter()
    for name, fn in sections.items():
        if args.only and name not in args.only:
            result[name] = report.skipped("not selected (--only)")
            continue
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            result[name] = fn()
        except Exception as exc:  # a section that cannot run is reported, the rest go on
            traceback.print_exc()
            result[name] = report.skipped(f"error: {type(exc).__name__}: {exc}")
            failed = True
        log(f"{name} done in {time.perf_counter() - t0:.1f} s")
    result["targets"] = report.targets(result)
    result["total_s"] = round(time.perf_counter() - started, 1)
    json_path, png_path = args.out / "bench.json", args.out / "bench.png"
    report.write_json(result, json_path)
    report.plot(result, png_path)
    print(report.table(result))
    print(f"\nwrote {json_path} and {png_path} in {result['total_s']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
