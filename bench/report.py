"""The benchmark's output: a JSON file, a terminal table and a PNG plot.

The JSON file (``bench/results/bench.json``) has these top-level keys, each section
either filled or ``{"skipped": "<why>"}``:

- ``schema``: ``"eip-guard-bench/1"``; ``when`` (UTC, ISO 8601); ``mode`` (quick|full);
  ``machine``: cpus, cpu (model, family and model number), python, platform, load_avg
  (1/5/15 min at the start).
- ``decision``: candidates, rounds, ``sizes`` (one per synthetic cluster: name, nodes,
  eips, services, objects, facts, build_s, ``allowed`` and ``denied`` each with n,
  median_us and p99_us (CPU time of the thread), worst_best_us (the slowest candidate's
  fastest round: the worst case without machine noise), wall_median_us and wall_p99_us
  (wall clock, which adds time other processes held the core)) and ``ratio`` (largest
  size over smallest: allowed_median, allowed_p99, denied_median, denied_p99).
- ``memory``: size, facts, baseline_mb, rss_mb, inventory_mb, bytes_per_fact (inventory
  built from a stream of objects in a fresh process).
- ``startup``: size, snapshot_mb, load_s, build_s, rss_mb, peak_rss_mb (snapshot loaded
  and built in a fresh process), ready_s (``eip-guard serve`` start to /readyz 200 with
  that snapshot: the median of three starts, each in ready_s_runs), ready_s_m (the same
  with the ``m`` snapshot, full mode only) and ready_s_floor (the floor server:
  interpreter, imports and TLS only).
- ``http``: size, duration_s, rounds, workers, bodies, ``runs`` (one per concurrency:
  concurrency; ``webhook``, ``webhook_quiet`` (``--log-level warning``: no line per
  decision), ``webhook_no_decision`` (``bench/no_decision.py``: the webhook with a fixed
  answer in place of its decision) and ``floor``, each with rps, p50_ms, p99_ms,
  requests, errors, cpu_us (the server process's CPU per request, all threads); then
  rps_ratio and p99_ratio (webhook over floor), quiet_rps_ratio and quiet_p99_ratio,
  no_decision_rps_ratio and no_decision_p99_ratio, cpu_ratio, quiet_cpu_ratio and
  no_decision_cpu_ratio (floor CPU per request over the server's: steadier than req/s on
  a shared machine), and decision_cpu_us (webhook CPU per request minus the no-decision
  webhook's: what deciding costs, served) and decision_budget_us (what it may cost for
  the webhook to serve 0.75 of the floor by CPU: floor CPU / 0.75 minus no-decision CPU));
  ``rss_mb``: each server process's resident MB (``ready`` and ``after`` the runs);
  ``two_processes``: two identical webhook processes, each with its own wrk at half the
  top concurrency (concurrency, rps, p50_ms, p99_ms, rps_vs_one: over one process).
- ``breakdown``: median CPU microseconds per review with no socket or TLS (see
  ``bench/breakdown.py``): floor_app, webhook_app_quiet, webhook_app, decide,
  from_object, check, parse_review.
- ``profile``: py-spy's samples of the webhook and of the floor at concurrency 16, and of
  ``eip-guard serve`` from start to ready (see ``bench/profiles.py``): size, concurrency,
  rate_hz; ``webhook``, ``floor`` (samples, errors, rps, cpu_us, ``shares``: percent of
  the busy samples per part, ``us_per_request``: that share of cpu_us) and ``startup``
  (samples, errors, ready_s, ``shares``, ``seconds``: that share of ready_s); ``parts``:
  what each part holds. The raw stacks
  are ``profile-webhook.txt``, ``profile-floor.txt`` and ``profile-startup.txt`` beside
  the JSON.
- ``sync``: the live inventory syncing a cluster from kmock (``l``; ``m`` when quick):
  size, objects, facts, ready_s (start of the watches to readiness); ``serve``: ``eip-guard
  serve`` in live mode against kmock holding the largest cluster (size, ready_s,
  ready_cpu_s: the CPU seconds the serve process used until ready, rss_mb when ready,
  rss_after_changes_mb after three changes, each a rebuild; whole_rebuild_ms, the CPU of
  an inventory assembled from every extract, change_rebuild_ms of one made after a change,
  change_rebuilds, how many, and whole_after_change, whether one of them was assembled
  whole).
- ``agent``: the node agent with the objects kept as live mode keeps them (``bench/agent.py``):
  ``ipvs_node`` (ipvs_addresses and pod_veths of the network namespace the ticks ran in,
  or null when not root) and ``rows``, one per size: eips, services, members, kept_mb (the
  kept objects), rss_mb (the process after the imports, the objects and its views),
  view_whole_s (a view read whole), first_tick_s (view and election), tick_ms and
  tick_max_ms (ticks with nothing changed), change_tick_s (the tick after an Eip's change).
- ``targets``: name, target, value, met (true, false, or null when not measured).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from bench.stats import THROUGHPUT_TARGET

SCHEMA = "eip-guard-bench/1"
TOP_KEYS = (
    "schema",
    "when",
    "mode",
    "machine",
    "decision",
    "memory",
    "startup",
    "http",
    "breakdown",
    "profile",
    "sync",
    "agent",
    "targets",
)
SERVER_STYLES = (
    ("webhook", "tab:blue", "o-"),
    ("webhook_quiet", "tab:cyan", "^-"),
    ("webhook_no_decision", "tab:olive", "v-"),
    ("floor", "tab:gray", "s--"),
)
SECTIONS = ("decision", "memory", "startup", "http", "breakdown", "profile", "sync", "agent")


def skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


def _get(result: dict[str, Any], *path: Any) -> Any:
    node: Any = result
    for key in path:
        if (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node)
        ):
            node = node[key]
        else:
            return None
    return node


def _target(name: str, target: str, value: Any, ok: bool | None) -> dict[str, Any]:
    return {"name": name, "target": target, "value": value, "met": ok}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value; ``met`` is None when unmeasured."""
    out = []
    largest = _get(result, "decision", "sizes", -1)
    if largest is not None:
        p99 = max(largest["allowed"]["p99_us"], largest["denied"]["p99_us"])
        out.append(_target(f"verdict p99 at {largest['name']} (us)", "< 50", p99, p99 < 50))
    ratios = _get(result, "decision", "ratio")
    if ratios is not None:
        worst = max(ratios["allowed_median"], ratios["denied_median"])
        out.append(_target("verdict median largest/smallest", "< 3", worst, worst < 3))
    rss = _get(result, "startup", "rss_mb")
    if rss is not None:
        out.append(_target("resident MB holding the largest snapshot", "< 150", rss, rss < 150))
    live = _get(result, "sync", "serve", "rss_after_changes_mb")
    if live is not None:
        name = f"resident MB of live `eip-guard serve` at {result['sync']['serve']['size']}"
        out.append(_target(name, "< 150", live, live < 150))
    served = _get(result, "http", "rss_mb", "webhook", "after")
    if served is not None:
        out.append(
            _target("resident MB of `eip-guard serve` after load", "< 150", served, served < 150)
        )
    ready = _get(result, "startup", "ready_s")
    out.append(
        _target("start to /readyz 200 (s)", "< 3", ready, None if ready is None else ready < 3)
    )
    for run in _get(result, "http", "runs") or ():
        c = run["concurrency"]
        rps, p99 = run["rps_ratio"], run["p99_ratio"]
        goal = THROUGHPUT_TARGET
        out.append(_target(f"throughput webhook/floor at c={c}", f">= {goal}", rps, rps >= goal))
        out.append(_target(f"p99 webhook/floor at c={c}", "<= 1.5", p99, p99 <= 1.5))
    if not _get(result, "http", "runs"):
        out.append(_target("webhook vs floor over HTTPS", "measured", None, None))
    return out


def write_json(result: dict[str, Any], path: Path) -> None:
    missing = [k for k in TOP_KEYS if k not in result]
    if missing:
        raise ValueError(f"bench result lacks {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return None
    raise TypeError(f"not JSON: {value!r}")


def _rows(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _agent_lines(agent: dict[str, Any]) -> list[str]:
    out = ["Node agent (objects kept as live mode keeps them; CPU seconds and ms)"]
    if "skipped" in agent:
        return [*out, f"  skipped: {agent['skipped']}"]
    node = agent["ipvs_node"]
    out.append(
        f"  ticks in a namespace with {node['ipvs_addresses']} Service IPs on kube-ipvs0 and "
        f"{node['pod_veths']} pod veths"
        if node
        else "  ticks in this machine's own network namespace (not root)"
    )
    header = ["eips", "services", "members", "kept MB", "RSS MB", "view whole s"]
    header += ["first tick s", "tick ms", "max ms", "after a change s"]
    rows = [
        [r["eips"], r["services"], r["members"], r["kept_mb"], r["rss_mb"], r["view_whole_s"],
         r["first_tick_s"], r["tick_ms"], r["tick_max_ms"], r["change_tick_s"]]
        for r in agent["rows"]
    ]  # fmt: skip
    return out + _rows(header, rows)


def table(result: dict[str, Any]) -> str:
    """The whole result for a terminal, section by section."""
    out: list[str] = []
    m = result.get("machine") or {}
    out.append(
        f"Machine: {m.get('cpus')} CPUs, {m.get('cpu') or 'CPU unknown'}, Python "
        f"{m.get('python')}, load average {m.get('load_avg')} at the start"
    )
    out.append("")
    decision = result["decision"]
    out.append("Decision cost (app.core.rules.check, one verdict; CPU us; worst = slowest")
    out.append("candidate's fastest round, i.e. without machine noise)")
    if "skipped" in decision:
        out.append(f"  skipped: {decision['skipped']}")
    else:
        rows = [
            [
                s["name"], s["nodes"], s["eips"], s["services"], s["facts"], s["build_s"],
                s["allowed"]["median_us"], s["allowed"]["p99_us"], s["allowed"]["worst_best_us"],
                s["denied"]["median_us"], s["denied"]["p99_us"], s["denied"]["worst_best_us"],
            ]
            for s in decision["sizes"]
        ]  # fmt: skip
        header = ["size", "nodes", "eips", "services", "facts", "build s"]
        header += ["allow med", "p99", "worst", "deny med", "p99", "worst"]
        out += _rows(header, rows)
        r = decision["ratio"]
        out.append(
            f"  largest/smallest: allowed median x{r['allowed_median']} p99 x{r['allowed_p99']}"
            f", denied median x{r['denied_median']} p99 x{r['denied_p99']}"
        )
    for name, title in (("memory", "Memory"), ("startup", "Start-up")):
        section = result[name]
        out.append("")
        out.append(title)
        out.append("  " + ", ".join(f"{k}={v}" for k, v in section.items()))
    http = result["http"]
    out.append("")
    out.append("End to end over HTTPS, keep-alive (webhook vs floor)")
    if "skipped" in http:
        out.append(f"  skipped: {http['skipped']}")
    else:
        rows = []
        for r in http["runs"]:
            for name in ("webhook", "webhook_quiet", "webhook_no_decision", "floor"):
                if name not in r:  # a result from before the no-decision server
                    continue
                s = r[name]
                prefix = {
                    "webhook": "",
                    "webhook_quiet": "quiet_",
                    "webhook_no_decision": "no_decision_",
                }.get(name)
                ratios = (
                    ("", "", "")
                    if prefix is None
                    else tuple(r.get(f"{prefix}{k}_ratio", "") for k in ("rps", "p99", "cpu"))
                )
                row = [r["concurrency"], name, s["rps"], s["p50_ms"], s["p99_ms"]]
                rows.append([*row, s.get("cpu_us", ""), *ratios, s["errors"]])
        header = ["conc", "server", "req/s", "p50 ms", "p99 ms", "CPU us/req", "req/s / floor"]
        header += ["p99 / floor", "floor CPU / CPU", "errors"]
        out += _rows(header, rows)
        rss = http.get("rss_mb", {})
        if rss:
            out.append(
                "  resident MB (ready -> after the runs): "
                + ", ".join(f"{k} {v['ready']} -> {v['after']}" for k, v in rss.items())
            )
        decided = [r for r in http["runs"] if r.get("decision_cpu_us") is not None]
        if decided:
            out.append(
                "  the decision itself, served (webhook CPU minus no-decision CPU per review): "
                + ", ".join(f"c={r['concurrency']} {r['decision_cpu_us']} us" for r in decided)
            )
            out.append(
                f"  what it may cost for {THROUGHPUT_TARGET} of the floor (floor CPU / "
                f"{THROUGHPUT_TARGET} minus no-decision CPU): "
                + ", ".join(
                    f"c={r['concurrency']} {r.get('decision_budget_us')} us" for r in decided
                )
            )
            noisy = [str(r["concurrency"]) for r in decided if r["decision_cpu_us"] < 0]
            if noisy:
                out.append(
                    f"  NOISE at c={', '.join(noisy)}: the webhook without its decision cost more "
                    "CPU per review than with it, so the host disturbed those runs; their "
                    "ratios say nothing: run again"
                )
        two = http.get("two_processes")
        if two:
            out.append(
                f"  two webhook processes at c={two['concurrency']}: {two['rps']} req/s "
                f"(x{two['rps_vs_one']} of one), p99 {two['p99_ms']} ms"
            )
    out.append("")
    out.append("Where a review's CPU goes (ASGI app called directly, median us per review)")
    out.append("  " + ", ".join(f"{k}={v}" for k, v in result["breakdown"].items()))
    out.append("")
    out += _profile_lines(result["profile"])
    out.append("")
    out.append("Sync (live inventory from kmock)")
    sync = dict(result["sync"])
    live = sync.pop("serve", None)
    out.append("  " + ", ".join(f"{k}={v}" for k, v in sync.items()))
    if live:
        out.append(
            f"  eip-guard serve, live mode, {live['size']}: ready in {live['ready_s']} s "
            f"({live['ready_cpu_s']} s of its own CPU), "
            f"{live['rss_mb']} MB resident, {live['rss_after_changes_mb']} MB after three "
            "changes (each a rebuild)"
        )
        if "change_rebuild_ms" in live:
            out.append(
                f"  an inventory took {live['whole_rebuild_ms']} ms of CPU assembled whole, "
                f"{live['change_rebuild_ms']} ms after a change ({live['change_rebuilds']} "
                "rebuild(s)" + (", one or more whole)" if live["whole_after_change"] else ")")
            )
    out.append("")
    out += _agent_lines(result["agent"])
    out.append("")
    out.append("Targets (a benchmark reports; it never fails on a number)")
    marks = {True: "met", False: "MISSED", None: "not measured"}
    out += _rows(
        ["target", "goal", "measured", ""],
        [[t["name"], t["target"], t["value"], marks[t["met"]]] for t in result["targets"]],
    )
    return "\n".join(out)


def _profile_lines(profile: dict[str, Any]) -> list[str]:
    out = ["Where the time goes (py-spy: percent of the busy samples, and that share of the"]
    out.append("server's CPU per request in us)")
    if "skipped" in profile:
        return [*out, f"  skipped: {profile['skipped']}"]
    served = [name for name in ("webhook", "floor") if name in profile]
    parts = list(dict.fromkeys(p for name in served for p in profile[name]["shares"]))
    rows = [[part, *(_share(profile[name], part) for name in served)] for part in parts]
    out += _rows(["part", *(f"{name} c={profile['concurrency']}" for name in served)], rows)
    for name in served:
        run = profile[name]
        out.append(
            f"  {name}: {run.get('samples')} samples ({run.get('errors')} unreadable), "
            f"{run['rps']} req/s and {run['cpu_us']} us of CPU per request while sampled"
        )
    startup = profile.get("startup")
    if startup:
        seconds = startup.get("seconds", {})
        shares = ", ".join(
            f"{k} {v}% ({seconds.get(k, '?')} s)" for k, v in startup["shares"].items()
        )
        out.append(f"  start-up to ready ({startup['ready_s']} s under py-spy): {shares}")
    return out


def _share(run: dict[str, Any], part: str) -> str:
    return f"{run['shares'].get(part, 0.0)}% {run['us_per_request'].get(part, 0.0)} us"


def plot(result: dict[str, Any], path: Path) -> None:
    """Left: verdict latency against inventory size. Right: webhook against floor."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    sizes = _get(result, "decision", "sizes") or []
    if sizes:
        facts = [s["facts"] for s in sizes]
        styles = {"allowed": "tab:green", "denied": "tab:red"}
        for kind, color in styles.items():
            left.plot(facts, [s[kind]["median_us"] for s in sizes], "o-", color=color,
                      label=f"{kind}, median")  # fmt: skip
            left.plot(facts, [s[kind]["p99_us"] for s in sizes], "s--", color=color,
                      alpha=0.6, label=f"{kind}, p99")  # fmt: skip
        for s in sizes:
            left.annotate(
                s["name"], (s["facts"], s["denied"]["p99_us"]),
                textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8,
            )  # fmt: skip
        left.axhline(50, color="grey", linestyle=":", label="p99 target 50 µs")
        left.set_xscale("log")
        left.set_ylim(bottom=0)
    left.set_xlabel("inventory size (facts, log scale)")
    left.set_ylabel("time per verdict (µs)")
    left.set_title("Decision cost vs inventory size")
    left.grid(True, which="both", alpha=0.3)
    if sizes:
        left.legend(fontsize=8)

    runs = _get(result, "http", "runs") or []
    if runs:
        xs = list(range(len(runs)))
        shown = [style for style in SERVER_STYLES if style[0] in runs[0]]
        width = 0.8 / len(shown)
        offsets = [(i - (len(shown) - 1) / 2) * width for i in range(len(shown))]
        lat = right.twinx()
        for offset, (name, color, style) in zip(offsets, shown, strict=True):
            right.bar([x + offset for x in xs], [r[name]["rps"] for r in runs], width,
                      label=f"{name} req/s", color=color, alpha=0.8)  # fmt: skip
            lat.plot([x + offset for x in xs], [r[name]["p99_ms"] for r in runs], style,
                     color=color, label=f"{name} p99 ms")  # fmt: skip
        right.set_xticks(xs, [f"c={r['concurrency']}" for r in runs])
        right.set_ylabel("requests per second (bars)")
        lat.set_ylabel("p99 latency (ms, lines)")
        lat.set_ylim(bottom=0)
        lines = right.get_legend_handles_labels()
        more = lat.get_legend_handles_labels()
        right.legend(
            lines[0] + more[0], lines[1] + more[1], fontsize=8, ncol=3,
            loc="upper center", bbox_to_anchor=(0.5, -0.08),
        )  # fmt: skip
        right.set_title(f"HTTPS keep-alive, {_get(result, 'http', 'size')} snapshot")
    else:
        reason = _get(result, "http", "skipped") or "not measured"
        right.text(0.5, 0.5, f"HTTP: {reason}", ha="center", va="center", wrap=True)
        right.set_axis_off()
    fig.suptitle(f"eip-guard bench ({result['mode']}, {result['when']})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # keeps the legend under the bars
    plt.close(fig)
