"""The benchmark's generator and report: shapes, determinism and the documented JSON keys.

Timings are never asserted (speed lives in `make bench`); these tests pin what the numbers
are measured on and what the JSON file promises to hold.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.core.eips import Eip
from app.core.inventory import build
from app.core.rules import check
from app.sources.files import load_objects
from bench import report, synth
from bench.__main__ import cpu_model
from bench.__main__ import main as bench_main
from bench.stats import decision_budget_us

TINY = synth.Shape("tiny", nodes=12, eips=20, services=40)
TWO_RACKS = synth.Shape("two-racks", nodes=250, eips=60, services=100)


def test_counts_follow_the_shape() -> None:
    kinds = Counter(o["kind"] for o in synth.cluster(TINY))
    assert kinds["Node"] == 12
    assert kinds["Eip"] == 20
    assert kinds["Service"] == 40
    assert kinds["ServiceCIDR"] == 1
    assert kinds["Pod"] == 3  # a kube-vip static pod per control-plane node
    assert kinds["DaemonSet"] == 1
    assert kinds["ConfigMap"] == 2  # kube-vip's address, kube-vip-cloud-provider's pools


def test_same_seed_same_cluster_other_seed_other_cluster() -> None:
    one = json.dumps(synth.cluster(TINY, seed=1))
    assert one == json.dumps(synth.cluster(TINY, seed=1))
    assert one != json.dumps(synth.cluster(TINY, seed=2))
    assert synth.candidates(TINY, 5, seed=1) == synth.candidates(TINY, 5, seed=1)


def test_the_cluster_has_the_shapes_that_matter() -> None:
    objs = synth.cluster(TWO_RACKS)
    addresses = [o["spec"]["address"] for o in objs if o["kind"] == "Eip"]
    assert any("/" in a and ":" not in a for a in addresses), "IPv4 CIDR pools"
    assert any("-" in a and ":" not in a for a in addresses), "IPv4 ranges"
    assert any(":" in a for a in addresses), "IPv6 pools"
    assert any("-" not in a and "/" not in a for a in addresses), "single-IP pools"
    nodes = [o for o in objs if o["kind"] == "Node"]
    assert {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes} == {
        "rack-0",
        "rack-1",
    }
    annotations = [n["metadata"]["annotations"] for n in nodes]
    assert any("projectcalico.org/IPv4Address" in a for a in annotations)
    assert any("flannel.alpha.coreos.com/public-ip" in a for a in annotations)
    assert all("eip-guard.io/network" in a for a in annotations)
    services = [o for o in objs if o["kind"] == "Service"]
    assert any(s["spec"].get("clusterIP") == "None" for s in services), "headless"
    assert any(len(s["spec"].get("clusterIPs", [])) == 2 for s in services), "dual-stack"
    assert any(s["spec"]["type"] == "LoadBalancer" for s in services)


def test_every_object_is_read_without_a_note() -> None:
    """No fact of the synthetic cluster is lost to a parse error or an unresolved name."""
    inventory = build(synth.cluster(TWO_RACKS))
    assert inventory.notes == ()
    assert inventory.gaps == ()
    assert len(inventory.eips) == 60


def test_candidates_get_the_verdict_their_name_promises() -> None:
    inventory = build(synth.cluster(TWO_RACKS))
    cands = synth.candidates(TWO_RACKS, 10)
    for kind in ("allowed", "denied"):
        assert len(cands[kind]) == 10
        for obj in cands[kind]:
            assert check(Eip.from_object(obj), None, inventory).allowed == (kind == "allowed")


def test_a_written_snapshot_loads_as_the_same_objects(tmp_path: Path) -> None:
    path = synth.write_snapshot(TINY, tmp_path / "snap.json")
    assert [dict(o) for o in load_objects(path)] == synth.cluster(TINY)


def result_with_every_section() -> dict[str, Any]:
    size = {"n": 1, "median_us": 1.0, "p99_us": 2.0, "worst_best_us": 1.5}
    size |= {"wall_median_us": 1.0, "wall_p99_us": 2.0}
    server = {"rps": 10, "p50_ms": 1.0, "p99_ms": 2.0, "requests": 100, "errors": 0}
    server |= {"cpu_us": 123.4}
    return {
        "schema": report.SCHEMA,
        "when": "2026-01-01T00:00:00Z",
        "mode": "quick",
        "machine": {"cpus": 2, "cpu": "AMD EPYC (family 26, model 2)", "python": "3.11.7"},
        "decision": {
            "candidates": 1,
            "rounds": 1,
            "sizes": [
                {
                    "name": n,
                    "nodes": 1,
                    "eips": 1,
                    "services": 1,
                    "objects": 1,
                    "facts": f,
                    "build_s": 0.1,
                    "allowed": size,
                    "denied": size,
                }
                for n, f in (("a", 10), ("b", 100))
            ],
            "ratio": {
                "allowed_median": 1.0,
                "allowed_p99": 1.0,
                "denied_median": 4.0,
                "denied_p99": 1.0,
            },
        },
        "memory": {"rss_mb": 1.0},
        "startup": {"rss_mb": 200.0, "ready_s": 1.0},
        "http": {
            "size": "b",
            "runs": [
                {
                    "concurrency": 1,
                    "webhook": server,
                    "webhook_quiet": server,
                    "webhook_no_decision": server,
                    "floor": server,
                    "rps_ratio": 0.5,
                    "p99_ratio": 1.0,
                    "quiet_rps_ratio": 1.0,
                    "quiet_p99_ratio": 1.0,
                    "cpu_ratio": 0.61,
                    "quiet_cpu_ratio": 0.72,
                    "no_decision_rps_ratio": 0.9,
                    "no_decision_p99_ratio": 1.0,
                    "no_decision_cpu_ratio": 0.83,
                    "decision_cpu_us": 98.7,
                    "decision_budget_us": -12.5,
                }
            ],
        },
        "breakdown": {"floor_app": 80.0, "webhook_app": 300.0},
        "profile": {
            "size": "b",
            "concurrency": 16,
            "rate_hz": 500,
            "webhook": {
                "samples": 900,
                "errors": 100,
                "rps": 2500,
                "cpu_us": 400.0,
                "shares": {"uvicorn": 60.0, "decision": 40.0},
                "us_per_request": {"uvicorn": 240.0, "decision": 160.0},
            },
            "floor": {
                "samples": 950,
                "errors": 50,
                "rps": 4000,
                "cpu_us": 250.0,
                "shares": {"uvicorn": 100.0},
                "us_per_request": {"uvicorn": 250.0},
            },
            "startup": {
                "samples": 800,
                "errors": 0,
                "ready_s": 3.9,
                "shares": {"imports": 20.5},
                "seconds": {"imports": 0.8},
            },
        },
        "sync": report.skipped("not here"),
        "agent": {
            "ipvs_node": {"ipvs_addresses": 20000, "pod_veths": 100},
            "rows": [
                {
                    "eips": 30000,
                    "services": 75000,
                    "members": 1000,
                    "kept_mb": 106.5,
                    "rss_mb": 224.5,
                    "view_whole_s": 1.9,
                    "first_tick_s": 2.1,
                    "tick_ms": 11.5,
                    "tick_max_ms": 18.25,
                    "change_tick_s": 0.125,
                }
            ],
        },
    }


def test_the_json_file_has_the_documented_keys(tmp_path: Path) -> None:
    result = result_with_every_section()
    result["targets"] = report.targets(result)
    path = tmp_path / "bench.json"
    report.write_json(result, path)
    written = json.loads(path.read_text())
    assert tuple(written) == report.TOP_KEYS
    for key in report.TOP_KEYS:
        assert f"``{key}``" in report.__doc__ or key in ("schema", "when", "mode", "machine")
    met = {t["name"]: t["met"] for t in written["targets"]}
    assert met["verdict median largest/smallest"] is False  # denied 4.0 >= 3
    assert met["resident MB holding the largest snapshot"] is False
    assert met["throughput webhook/floor at c=1"] is False
    assert met["p99 webhook/floor at c=1"] is True
    assert all(set(t) == {"name", "target", "value", "met"} for t in written["targets"])


def test_live_serve_memory_is_a_target_and_a_line() -> None:
    result = result_with_every_section()
    result["sync"] = {
        "size": "a",
        "ready_s": 1.0,
        "serve": {
            "size": "b",
            "ready_s": 9.5,
            "ready_cpu_s": 4.25,
            "rss_mb": 140.0,
            "rss_after_changes_mb": 151.0,
        },
    }
    result["targets"] = report.targets(result)
    met = {t["name"]: t["met"] for t in result["targets"]}
    assert met["resident MB of live `eip-guard serve` at b"] is False  # 151 >= 150
    line = "live mode, b: ready in 9.5 s (4.25 s of its own CPU)"
    assert f"{line}, 140.0 MB resident, 151.0 MB after" in report.table(result)


def test_the_agent_section_is_a_table() -> None:
    result = result_with_every_section()
    result["targets"] = report.targets(result)
    agent = report.table(result).split("Node agent")[1].split("Targets")[0]
    assert "20000 Service IPs on kube-ipvs0 and 100 pod veths" in agent
    assert "30000" in agent and "224.5" in agent and "18.25" in agent and "0.125" in agent
    result["agent"]["ipvs_node"] = None
    assert "own network namespace (not root)" in report.table(result)


def test_a_result_missing_a_section_is_refused(tmp_path: Path) -> None:
    result = result_with_every_section()
    with pytest.raises(ValueError, match="targets"):
        report.write_json(result, tmp_path / "bench.json")


def test_table_and_plot_render_every_section(tmp_path: Path) -> None:
    result = result_with_every_section()
    result["targets"] = report.targets(result)
    text = report.table(result)
    assert text.startswith("Machine: 2 CPUs, AMD EPYC (family 26, model 2), Python 3.11.7")
    assert "webhook_quiet" in text and "MISSED" in text and "skipped" not in text.split("Sync")[0]
    assert "CPU us/req" in text and "123.4" in text and "0.61" in text
    assert "webhook_no_decision" in text and "0.83" in text and "c=1 98.7 us" in text
    assert "c=1 -12.5 us" in text
    assert "NOISE" not in text  # the decision cost 98.7 us: a consistent run
    result["http"]["runs"][0]["decision_cpu_us"] = -43.4
    assert "NOISE at c=1: the webhook without its decision" in report.table(result)
    profile = text.split("Where the time goes")[1].split("Sync")[0]
    assert "40.0% 160.0 us" in profile and "0.0% 0.0 us" in profile  # the floor decides nothing
    assert "100 unreadable" in profile and "imports 20.5% (0.8 s)" in profile
    report.plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_decision_budget_is_what_keeps_the_webhook_at_the_target() -> None:
    # Floor 180 us a request: 0.75 of its throughput allows 240 us; the webhook costs 200
    # without deciding, so the decision may take 40.
    assert decision_budget_us(180.0, 200.0) == 40.0
    assert decision_budget_us(180.0, 250.0) == -10.0  # missed even without deciding
    assert decision_budget_us(None, 200.0) is None


def test_the_machine_names_its_cpu() -> None:
    model = cpu_model()
    assert model and "family" in model  # /proc/cpuinfo on x86 Linux names both


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--duration", "-1"], "argument --duration: '-1': expected seconds from 1 to 3600"),
        (["--duration", "nan"], "argument --duration: 'nan': expected seconds from 1 to 3600"),
        (["--out", "/dev/null/x"], "--out /dev/null/x: cannot make the results folder"),
    ],
)
def test_bad_bench_flags_are_refused_before_anything_runs(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A negative or nan duration ran every section anyway; a bad --out failed with a
    # traceback after the sections had run.
    with pytest.raises(SystemExit) as exit_info:
        bench_main([*argv, "--only", "decision", "--quick"])
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err
