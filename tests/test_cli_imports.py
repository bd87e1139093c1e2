"""Each `eip-guard` subcommand imports only what it runs: `check` does not load FastAPI, `serve`
does not load the node agent, `--help` loads none of them (start-up time; README Performance).

Each case runs the console script's entry point in a fresh interpreter, which writes the
names in ``sys.modules`` to a file at exit (``atexit``: after ``serve`` has served and
stopped, or ``--help`` has exited through ``SystemExit``).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest

from app.webhook.app import VALIDATE_PATH
from tests.conftest import EXAMPLES, ROOT
from tests.core.objects import eip, node
from tests.kmock_harness import Writer, kubeconfig, running
from tests.support import eventually, gc_probe, log_lines, run_cli

# The console script, plus an exit hook that records what was imported.
WRAPPER = """
import atexit, json, os, sys

def record():
    with open(os.environ["EIP_GUARD_MODULES"], "w") as out:
        json.dump(sorted(sys.modules), out)

atexit.register(record)
from app.cli.entry import main
sys.exit(main(sys.argv[1:]))
"""

WEB = ("fastapi", "starlette", "uvicorn", "app.webhook")
KUBE = ("kubernetes", "app.kube.live", "app.kube.serving", "app.kube.snapshot")
AGENT = ("pyroute2", "app.agent")
# What a snapshot check/audit, and building the parser, never need.
HEAVY = (*WEB, *KUBE, *AGENT, "cryptography", "app.pki", "prometheus_client")
SNAPSHOT = ["--cluster", str(EXAMPLES / "cluster.yaml")]
# What only reading files and judging need: the parser alone (--help) loads none of it.
READERS = ("pydantic", "yaml", "app.sources.files", "app.core.inventory", "app.core.rules")


def command(argv: Iterable[str]) -> list[str]:
    return [sys.executable, "-c", WRAPPER, *argv]


def environment(modules: Path) -> dict[str, str]:
    # Not in a pod, whatever the machine running the tests is: no live-mode default.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    return {**env, "EIP_GUARD_MODULES": str(modules), "PYTHONUNBUFFERED": "1"}


def run(argv: list[str], tmp_path: Path) -> tuple[int, set[str]]:
    """``eip-guard ARGV`` in a fresh interpreter: its exit code and the modules it imported."""
    modules = tmp_path / "modules.json"
    done = subprocess.run(
        command(argv), check=False, cwd=ROOT, env=environment(modules),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, set(json.loads(modules.read_text()))


def loaded(modules: set[str], packages: Iterable[str]) -> list[str]:
    """The ``packages`` (or any of their submodules) among ``modules``."""
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in modules))


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["check", "-f", str(EXAMPLES / "eip-bad.yaml"), *SNAPSHOT], 1),
        (["check", "-f", str(EXAMPLES / "eip-good.yaml"), *SNAPSHOT, "-o", "json"], 0),
        (["audit", *SNAPSHOT], 0),
        (["rules"], 0),
    ],
    ids=["check-denied", "check-allowed", "audit", "rules"],
)
def test_a_snapshot_check_or_audit_loads_no_server_no_agent_no_kube_client(
    argv: list[str], code: int, tmp_path: Path
) -> None:
    got, modules = run(argv, tmp_path)
    assert got == code
    assert "app.cli.check_run" in modules  # it did run the check
    assert loaded(modules, HEAVY) == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"]]
    + [[cmd, "--help"] for cmd in ("check", "audit", "rules", "serve", "certs")]
    + [[cmd, "--help"] for cmd in ("resolve", "agent")],
    ids=" ".join,
)
def test_help_loads_no_runtime(argv: list[str], tmp_path: Path) -> None:
    code, modules = run(argv, tmp_path)
    assert code == 0
    assert "app.cli.main" in modules
    assert loaded(modules, (*HEAVY, *READERS)) == []
    assert [m for m in modules if m.startswith("app.cli.") and m.endswith("_run")] == []


def test_certs_loads_no_server_and_no_agent(tmp_path: Path) -> None:
    argv = ["certs", "--out", str(tmp_path / "certs"), "--dns", "localhost"]
    code, modules = run(argv, tmp_path)
    assert code == 0 and (tmp_path / "certs" / "tls.crt").is_file()
    assert loaded(modules, (*WEB, *KUBE, *AGENT, "prometheus_client")) == []


def test_resolve_loads_no_server(tmp_path: Path) -> None:
    code, modules = run(["resolve", "lo", "-o", "json"], tmp_path)
    assert code in (0, 1)  # lo may be down in a bare namespace: either answer is an answer
    assert "app.agent.resolve" in modules
    assert loaded(modules, (*WEB, *KUBE, "cryptography", "app.pki", "prometheus_client")) == []


def serve_until_ready(source: list[str], tmp_path: Path) -> set[str]:
    """``eip-guard serve SOURCE`` in a fresh interpreter, over verified TLS, until /readyz
    answers 200, then stopped with SIGTERM: the modules it imported."""
    certs = tmp_path / "certs"
    made, _ = run(
        ["certs", "--out", str(certs), "--dns", "localhost", "--ip", "127.0.0.1"], tmp_path
    )
    assert made == 0
    modules_file = tmp_path / "serve-modules.json"
    argv = [
        "serve", *source, "--host", "127.0.0.1", "--port", "0",
        "--tls-cert-file", str(certs / "tls.crt"), "--tls-key-file", str(certs / "tls.key"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command(argv), cwd=ROOT, env=environment(modules_file),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with log_lines(proc) as lines:
        address = lines.until("serving")["address"]
        readyz = address.removesuffix(VALIDATE_PATH) + "/readyz"
        trust = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        eventually(lambda: httpx.get(readyz, verify=trust, timeout=30).status_code == 200, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    return set(json.loads(modules_file.read_text()))


def test_serve_on_a_snapshot_loads_no_agent_and_no_kube_client(tmp_path: Path) -> None:
    modules = serve_until_ready(SNAPSHOT, tmp_path)
    assert "app.webhook.app" in modules  # it did serve
    assert loaded(modules, (*KUBE, *AGENT)) == []


def test_live_serve_loads_no_generated_api_class(tmp_path: Path) -> None:
    """Live mode calls the API by path through the client's ApiClient: the generated API
    classes (CoreV1Api alone, 1 s and 22 MB to import) and models stay unloaded."""
    with running() as api:
        writer = Writer(api)
        writer.create(eip("pool", "192.168.50.10-192.168.50.20", interface="can_reach:10.0.0.9"))
        writer.create(node("n1", "10.0.0.1"))
        writer.close()
        config = kubeconfig(tmp_path / "kubeconfig", api.url)
        modules = serve_until_ready(["--kubeconfig", str(config)], tmp_path)
        assert api.requests("GET", "/api/v1/nodes") >= 1  # ready means every list was read
    assert "app.kube.live" in modules  # it did run in live mode
    assert loaded(modules, ("kubernetes.client.api",)) == []
    # The models package is the client's own (its lazy names); no model module is loaded.
    assert [m for m in modules if m.startswith("kubernetes.client.models.")] == []


def test_serve_help_names_the_path_it_serves(capsys: pytest.CaptureFixture[str]) -> None:
    # serve_cmd spells the path out rather than import it with FastAPI.
    code, out, _ = run_cli(capsys, "serve", "--help")
    assert code == 0
    assert f"Serves POST {VALIDATE_PATH}, /healthz" in " ".join(out.split())


def test_a_runtime_is_imported_with_the_collector_paused() -> None:
    argv = ["audit", *SNAPSHOT, "-o", "json"]
    out = subprocess.run(
        [sys.executable, "-c", gc_probe("app.cli.check_run"), *argv], cwd=ROOT,
        capture_output=True, text=True, check=True, env=environment(Path(os.devnull)),
    ).stdout  # fmt: skip
    assert out.splitlines()[-1] == "[False] True 0"


@pytest.mark.parametrize("command", [[], ["check"], ["audit"], ["rules"]], ids=" ".join)
def test_help_says_what_the_command_does_and_its_exit_codes(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    # The top level showed the module's docstring ("Each subcommand lives in a module of its
    # own"), and a pipeline author found the exit codes in the README only.
    code, out, _ = run_cli(capsys, *command, "--help")
    text = " ".join(out.split())
    assert code == 0 and "module" not in text
    assert "Exit codes: 0 " in text and "2 bad input or usage" in text
