"""Decision cost against inventory size: ``app.core.rules.check`` alone, per verdict.

Every size's inventory is held at once and the sizes are timed in interleaved rounds, so
a burst of load from another process on this shared machine hits every size alike.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.eips import Eip
from app.core.inventory import Inventory, build
from app.core.rules import check
from bench import synth
from bench.stats import ratio, summary_us

KINDS = ("allowed", "denied")


@dataclass
class Prepared:
    shape: synth.Shape
    inventory: Inventory
    objects: int
    build_s: float
    candidates: dict[str, list[Eip]]
    samples: dict[str, list[int]]  # CPU time of this thread: what the decision costs
    wall: dict[str, list[int]]  # wall clock: adds time other processes took the core


def prepare(shape: synth.Shape, count: int, seed: int) -> Prepared:
    """Build the inventory and parse the candidates; check each verdict is the expected one."""
    objects = synth.cluster(shape, seed)
    start = time.perf_counter()
    inventory = build(objects)
    build_s = time.perf_counter() - start
    raw = synth.candidates(shape, count, seed)
    cands = {kind: [Eip.from_object(o) for o in raw[kind]] for kind in KINDS}
    for kind, eips in cands.items():
        for eip in eips:
            verdict = check(eip, None, inventory)
            if verdict.allowed != (kind == "allowed"):
                raise RuntimeError(
                    f"synthetic {kind} candidate {eip.name} in {shape.name} got "
                    f"allowed={verdict.allowed}: {verdict.message or verdict.warnings}"
                )
    return Prepared(
        shape,
        inventory,
        len(objects),
        build_s,
        cands,
        {k: [] for k in KINDS},
        {k: [] for k in KINDS},
    )


def _time_batch(p: Prepared, kind: str) -> None:
    cpu, wall = time.thread_time_ns, time.perf_counter_ns
    inventory = p.inventory
    out, out_wall = p.samples[kind], p.wall[kind]
    for eip in p.candidates[kind]:
        start_wall = wall()
        start = cpu()
        check(eip, None, inventory)
        out.append(cpu() - start)
        out_wall.append(wall() - start_wall)


def _summary(p: Prepared, kind: str) -> dict[str, float]:
    wall = summary_us(p.wall[kind])
    samples, count = p.samples[kind], len(p.candidates[kind])
    # Each candidate's fastest round is its cost with the machine's noise removed; the
    # slowest of those is the intrinsic worst case (p99 also holds other processes' bursts).
    best = [min(samples[i::count]) for i in range(count)]
    return {
        **summary_us(samples),
        "worst_best_us": round(max(best) / 1000, 2),
        "wall_median_us": wall["median_us"],
        "wall_p99_us": wall["p99_us"],
    }


def run(
    shapes: Sequence[synth.Shape],
    count: int,
    rounds: int,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    prepared = []
    for shape in shapes:
        p = prepare(shape, count, seed)
        log(
            f"  {shape.name}: {p.objects} objects, {p.inventory.fact_count} facts, "
            f"built in {p.build_s:.2f} s"
        )
        prepared.append(p)
    gc.collect()
    for p in prepared:  # warm-up: first calls pay for lazy caches
        for kind in KINDS:
            _time_batch(p, kind)
            p.samples[kind].clear()
            p.wall[kind].clear()
    for _ in range(rounds):
        for p in prepared:
            for kind in KINDS:
                _time_batch(p, kind)
    sizes: list[dict[str, Any]] = [
        {
            "name": p.shape.name,
            "nodes": p.shape.nodes,
            "eips": p.shape.eips,
            "services": p.shape.services,
            "objects": p.objects,
            "facts": p.inventory.fact_count,
            "build_s": round(p.build_s, 3),
            **{kind: _summary(p, kind) for kind in KINDS},
        }
        for p in prepared
    ]
    small, large = sizes[0], sizes[-1]
    ratios = {
        f"{kind}_{stat}": ratio(large[kind][f"{stat}_us"], small[kind][f"{stat}_us"])
        for kind in KINDS
        for stat in ("median", "p99")
    }
    return {"candidates": count, "rounds": rounds, "sizes": sizes, "ratio": ratios}
