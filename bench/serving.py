"""End to end over HTTPS: ``eip-guard serve`` against the floor server, driven by wrk.

Both servers run side by side on loopback with the same certificate (from ``eip-guard
certs``); wrk (one thread, keep-alive) POSTs a rotating set of AdmissionReviews, half
that the webhook allows and half that it denies, at each concurrency. For each
concurrency the runs go webhook, floor, floor, webhook, ... so drift of the shared
machine falls on both alike. Requests per second add up over the runs; p50 and p99 are
wrk's, averaged over the runs.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from app.webhook.app import VALIDATE_PATH
from bench import synth
from bench.stats import decision_budget_us, ratio

CONCURRENCY = (1, 16, 64)
READY_TIMEOUT = 120.0
WRK_THREADS = 1  # one core for wrk, one for the server: the machine has two
REVIEW_BODIES = 20  # of each kind
SERVERS = ("webhook", "webhook_quiet", "webhook_no_decision", "floor")


def eip_guard() -> str:
    here = Path(sys.executable).parent / "eip-guard"
    return str(here) if here.exists() else shutil.which("eip-guard") or "eip-guard"


def can_serve() -> bool:
    """Whether this checkout has ``eip-guard serve``."""
    done = subprocess.run([eip_guard(), "serve", "--help"], capture_output=True, check=False)
    return done.returncode == 0


def certificates(out: Path) -> tuple[Path, Path, Path]:
    """(ca.crt, tls.crt, tls.key) for 127.0.0.1 and localhost, made by ``eip-guard certs``."""
    folder = out / "cache" / "tls"
    if not (folder / "tls.key").exists():
        argv = [eip_guard(), "certs", "--out", str(folder), "--force"]
        subprocess.run(
            [*argv, "--dns", "localhost", "--ip", "127.0.0.1"],
            check=True,
            capture_output=True,
        )
    return folder / "ca.crt", folder / "tls.crt", folder / "tls.key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ready(port: int, ca: Path) -> bool:
    """One GET /readyz, verifying the server certificate against our CA."""
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics(port: int, ca: Path) -> Metrics:
    """The server's /metrics, parsed: (sample name, sorted labels) -> value."""
    context = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass
class Started:
    """A server process, and when it was started."""

    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes]
    at: float


def start(argv: list[str], port: int, log: Path) -> Started:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:  # the child keeps its own descriptor
        at = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    return Started(argv, port, log, proc, at)


def wait_ready(server: Started, ca: Path) -> float:
    """Seconds from the server's start to its first /readyz 200."""
    while not ready(server.port, ca):
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.argv[:3]} exited with {server.proc.returncode}; see {server.log}"
            )
        if time.perf_counter() - server.at > READY_TIMEOUT:
            raise RuntimeError(f"{server.argv[:3]} not ready after {READY_TIMEOUT} s")
        time.sleep(0.01)
    return time.perf_counter() - server.at


def wait_idle(server: Started, timeout: float = 600.0) -> None:
    """Until the server uses under a tenth of a core for a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        used = cpu_s(server)
        time.sleep(1.0)
        if cpu_s(server) - used < 0.1:
            return
    raise RuntimeError(f"{server.argv[:3]} is still busy {timeout} s after it was ready")


def rss_mb(server: Started) -> float:
    """The server process's resident size now, from /proc."""
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {server.proc.pid}")


def cpu_s(server: Started) -> float:
    """CPU seconds the server process has used so far (every thread, user and system)."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(server: Started, url: str, script: Path, c: int, duration: float) -> dict[str, Any]:
    """One wrk run, with the server's CPU seconds during it: steadier than req/s on a shared
    machine, since time the other processes take shows in req/s but not here."""
    before = cpu_s(server)
    result = wrk(url, script, c, duration)
    return {**result, "cpu_s": cpu_s(server) - before}


def stop(server: Started) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@contextmanager
def running(argv: list[str], port: int, ca: Path, log: Path) -> Iterator[float]:
    """Start a server; yield the seconds from start to /readyz 200; stop it on exit."""
    server = start(argv, port, log)
    try:
        yield wait_ready(server, ca)
    finally:
        stop(server)


def serve_argv(source: list[str], cert: Path, key: Path, port: int) -> list[str]:
    """``eip-guard serve`` judging against ``source`` (``--cluster F`` or ``--kubeconfig F``)."""
    return [
        eip_guard(), "serve", *source,
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def webhook_argv(snapshot: Path, cert: Path, key: Path, port: int) -> list[str]:
    return serve_argv(["--cluster", str(snapshot)], cert, key, port)


def floor_argv(cert: Path, key: Path, port: int) -> list[str]:
    return _bench_server_argv("bench.floor", cert, key, port)


def no_decision_argv(cert: Path, key: Path, port: int) -> list[str]:
    return _bench_server_argv("bench.no_decision", cert, key, port)


def _bench_server_argv(module: str, cert: Path, key: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", module,
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--port", str(port),
    ]  # fmt: skip


def time_to_ready(snapshot: Path | None, out: Path) -> float:
    """Seconds from starting a server to /readyz 200: ``eip-guard serve --cluster SNAPSHOT``,
    or the floor server (no snapshot: interpreter, imports and TLS set-up only)."""
    ca, cert, key = certificates(out)
    port = free_port()
    if snapshot is None:
        argv, name = floor_argv(cert, key, port), "ready-floor"
    else:
        argv, name = webhook_argv(snapshot, cert, key, port), f"ready-{snapshot.stem}"
    with running(argv, port, ca, out / "logs" / f"{name}.log") as took:
        return round(took, 3)


def reviews(shape: synth.Shape, seed: int) -> list[str]:
    """AdmissionReview bodies: Eips the webhook allows and Eips it denies, alternating."""
    cands = synth.candidates(shape, REVIEW_BODIES, seed)
    bodies = []
    for i, (good, bad) in enumerate(zip(cands["allowed"], cands["denied"], strict=True)):
        for j, obj in enumerate((good, bad)):
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": f"00000000-0000-4000-8000-{2 * i + j:012d}",
                    "kind": {
                        "group": "network.kubesphere.io",
                        "version": "v1alpha2",
                        "kind": "Eip",
                    },
                    "resource": {
                        "group": "network.kubesphere.io",
                        "version": "v1alpha2",
                        "resource": "eips",
                    },
                    "name": obj["metadata"]["name"],
                    "operation": "CREATE",
                    "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
                    "object": obj,
                    "dryRun": False,
                },
            }
            bodies.append(json.dumps(review, separators=(",", ":")))
    return bodies


def lua_script(bodies: list[str]) -> str:
    """wrk script: POST the bodies in turn; print one JSON line of results at the end."""
    for body in bodies:
        if "]==]" in body:
            raise ValueError("a review body would end the Lua long string")
    listed = ",\n".join(f"[==[{b}]==]" for b in bodies)
    return f"""-- generated by bench/serving.py
local bodies = {{
{listed}
}}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH {{"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def review_script(out: Path, size: str, seed: int) -> Path:
    """The wrk script POSTing the reviews of ``size`` in turn, written under ``out``."""
    shape = {s.name: s for s in synth.SIZES}[size]
    script = out / "cache" / f"reviews-{size}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(lua_script(reviews(shape, seed)), encoding="utf-8")
    return script


def wrk(url: str, script: Path, concurrency: int, duration: float) -> dict[str, Any]:
    threads = min(WRK_THREADS, concurrency)
    seconds = max(1, round(duration))  # wrk takes whole seconds
    argv = [
        "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout[-800:]} {done.stderr[-800:]}")
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, Any] = json.loads(line[len("BENCH ") :])
            return result
    raise RuntimeError(f"wrk printed no result: {done.stdout[-500:]} {done.stderr[-500:]}")


def two_processes(url_a: str, url_b: str, script: Path, duration: float) -> dict[str, Any]:
    """Two webhook processes, each driven by its own wrk at half of the top concurrency."""
    half = CONCURRENCY[-1] // 2
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda url: wrk(url, script, half, duration), (url_a, url_b))
    seconds = max(a["duration_us"], b["duration_us"]) / 1e6
    return {
        "concurrency": 2 * half,
        "rps": round((a["requests"] + b["requests"]) / seconds),
        "p50_ms": round(max(a["p50_us"], b["p50_us"]) / 1000, 3),
        "p99_ms": round(max(a["p99_us"], b["p99_us"]) / 1000, 3),
    }


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["duration_us"] for r in runs) / 1e6
    return {
        "rps": round(requests / seconds),
        "p50_ms": round(sum(r["p50_us"] for r in runs) / len(runs) / 1000, 3),
        "p99_ms": round(sum(r["p99_us"] for r in runs) / len(runs) / 1000, 3),
        "requests": requests,
        "errors": sum(r["socket_errors"] + r["status_errors"] for r in runs),
        # Server CPU per request, in microseconds (the process's every thread).
        "cpu_us": round(sum(r["cpu_s"] for r in runs) / requests * 1e6, 1) if requests else None,
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return round(a - b, 1) if a is not None and b is not None else None


def compare(
    snapshot: Path,
    size: str,
    out: Path,
    *,
    duration: float,
    rounds: int,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk; `make bench` does)"}
    script = review_script(out, size, seed)
    ca, cert, key = certificates(out)
    ports = {name: free_port() for name in (*SERVERS, "webhook_2")}
    argv = {
        "webhook": webhook_argv(snapshot, cert, key, ports["webhook"]),
        # The same webhook without its per-decision log line: what that line costs.
        "webhook_quiet": [
            *webhook_argv(snapshot, cert, key, ports["webhook_quiet"]),
            "--log-level",
            "warning",
        ],
        # The same webhook with a fixed answer in place of its decision: what deciding costs.
        "webhook_no_decision": no_decision_argv(cert, key, ports["webhook_no_decision"]),
        "floor": floor_argv(cert, key, ports["floor"]),
        # A second, identical webhook process: what one more worker buys on this machine.
        "webhook_2": webhook_argv(snapshot, cert, key, ports["webhook_2"]),
    }
    urls = {name: f"https://127.0.0.1:{port}{VALIDATE_PATH}" for name, port in ports.items()}
    servers = {name: start(argv[name], ports[name], out / "logs" / f"{name}.log") for name in argv}
    with ExitStack() as stack:
        for server in servers.values():
            stack.callback(stop, server)
        # Started together, so the builds overlap: each waits for its own /readyz.
        for name, server in servers.items():
            log(f"  {name} ready in {wait_ready(server, ca):.2f} s ({size} snapshot)")
        rss = {name: rss_mb(server) for name, server in servers.items()}
        for url in urls.values():  # warm-up: connections, caches, first-call costs
            wrk(url, script, 16, 1.0)
        two = two_processes(urls["webhook"], urls["webhook_2"], script, duration)
        rss_after = {name: rss_mb(server) for name, server in servers.items()}
        runs: list[dict[str, Any]] = []
        for c in CONCURRENCY:
            samples: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVERS}
            for r in range(rounds):
                # Rotate the order each round so no server always runs first or last.
                turn = r % len(SERVERS)
                for name in SERVERS[turn:] + SERVERS[:turn]:
                    samples[name].append(measured(servers[name], urls[name], script, c, duration))
            got = {name: _combine(samples[name]) for name in SERVERS}
            hook, quiet, floor = got["webhook"], got["webhook_quiet"], got["floor"]
            fixed = got["webhook_no_decision"]
            log(
                f"  c={c}: webhook {hook['rps']} req/s p99 {hook['p99_ms']} ms; "
                f"quiet {quiet['rps']} req/s p99 {quiet['p99_ms']} ms; "
                f"no decision {fixed['rps']} req/s p99 {fixed['p99_ms']} ms; "
                f"floor {floor['rps']} req/s p99 {floor['p99_ms']} ms; CPU per request "
                f"{hook['cpu_us']} / {quiet['cpu_us']} / {fixed['cpu_us']} / {floor['cpu_us']} us"
            )
            runs.append(
                {
                    "concurrency": c,
                    **got,
                    "rps_ratio": ratio(hook["rps"], floor["rps"]),
                    "p99_ratio": ratio(hook["p99_ms"], floor["p99_ms"]),
                    "quiet_rps_ratio": ratio(quiet["rps"], floor["rps"]),
                    "quiet_p99_ratio": ratio(quiet["p99_ms"], floor["p99_ms"]),
                    # Floor CPU over webhook CPU per request: the throughput ratio one core
                    # would give if CPU were all that counted (1.0: the decision is free).
                    "cpu_ratio": ratio(floor["cpu_us"], hook["cpu_us"]),
                    "quiet_cpu_ratio": ratio(floor["cpu_us"], quiet["cpu_us"]),
                    "no_decision_rps_ratio": ratio(fixed["rps"], floor["rps"]),
                    "no_decision_p99_ratio": ratio(fixed["p99_ms"], floor["p99_ms"]),
                    "no_decision_cpu_ratio": ratio(floor["cpu_us"], fixed["cpu_us"]),
                    # CPU per review of the decision itself, served: webhook minus the same
                    # webhook with a fixed answer.
                    "decision_cpu_us": _minus(hook["cpu_us"], fixed["cpu_us"]),
                    # What it may cost for the throughput target, by the same CPU measure.
                    "decision_budget_us": decision_budget_us(floor["cpu_us"], fixed["cpu_us"]),
                }
            )
    return {
        "size": size,
        "duration_s": duration,
        "rounds": rounds,
        "workers": 1,
        "bodies": 2 * REVIEW_BODIES,
        # Resident MB of each server process when ready and after every load run.
        "rss_mb": {name: {"ready": rss[name], "after": rss_after[name]} for name in rss},
        "runs": runs,
        "two_processes": {
            **two,
            "rps_vs_one": ratio(two["rps"], runs[-1]["webhook"]["rps"]),
        },
    }
