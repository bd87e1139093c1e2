"""Memory and start-up cost of holding an inventory, measured in a fresh process.

Run as ``python -m bench.memory stream SIZE`` (inventory built from objects generated one
at a time: what the inventory itself costs) or ``python -m bench.memory snapshot FILE``
(the path of ``eip-guard serve --cluster FILE``: load the snapshot and build with the
cyclic GC paused, drop the objects). Prints one JSON object. The parent
(``bench.__main__``) starts these, so no import of the parent's state skews the numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.core.inventory import build
from app.sources.files import load_objects
from app.sources.gc_pause import gc_paused
from bench import synth

MB = 1024 * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def stream(shape: synth.Shape) -> dict[str, Any]:
    gc.collect()
    before = rss_mb()
    inventory = build(synth.iter_cluster(shape))
    gc.collect()
    after = rss_mb()
    facts = inventory.fact_count
    return {
        "size": shape.name,
        "facts": facts,
        "baseline_mb": round(before, 1),
        "rss_mb": round(after, 1),
        "inventory_mb": round(after - before, 1),
        "bytes_per_fact": round((after - before) * MB / facts),
    }


def snapshot(path: Path) -> dict[str, Any]:
    gc.collect()  # as `eip-guard serve --cluster` does: collect, load and build, freeze
    start = time.perf_counter()
    with gc_paused():
        objects = load_objects(path)
        loaded = time.perf_counter()
        inventory = build(objects)
        built = time.perf_counter()
        del objects  # the parsed snapshot, freed (serve frees it before it freezes)
        freed = time.perf_counter()
    gc.collect()
    return {
        "snapshot_mb": round(path.stat().st_size / MB, 1),
        "load_s": round(loaded - start, 3),
        "build_s": round(built - loaded, 3),
        "free_s": round(freed - built, 3),
        "facts": inventory.fact_count,
        "rss_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(_status_kb("VmHWM") / 1024, 1),
    }


def run_module(module: str, *args: str) -> dict[str, Any]:
    """Run a bench module in a child process and return the JSON object it printed."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(*args: str) -> dict[str, Any]:
    return run_module("bench.memory", *args)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("stream")
    s.add_argument("size", choices=[shape.name for shape in synth.SIZES])
    f = sub.add_parser("snapshot")
    f.add_argument("file", type=Path)
    args = parser.parse_args()
    if args.mode == "stream":
        result = stream({shape.name: shape for shape in synth.SIZES}[args.size])
    else:
        result = snapshot(args.file)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
