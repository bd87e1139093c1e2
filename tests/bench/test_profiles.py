"""bench/profiles.py: py-spy's stacks put in the parts of a review and of a start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import profiles

SERVED = profiles.SERVED_PARTS


def stack(thread: str, *frames: str, n: int = 1) -> str:
    return ";".join([thread, *frames]) + f" {n}"


LOOP = "thread (7): MainThread"
HANDLER = "validate (app/webhook/app.py:141)"


def test_the_innermost_known_frame_names_the_part() -> None:
    lines = [
        # Deciding, under our handler, under Starlette: the decision.
        stack(LOOP, "Router.app (starlette/routing.py:75)", HANDLER,
              "decide (app/webhook/admission.py:70)",
              "check (app/core/rules/judgement.py:40)", n=5),
        # The handler's own line; pydantic's wrapper around its native parse is pydantic's.
        stack(LOOP, "Router.app (starlette/routing.py:75)", HANDLER, n=3),
        stack(LOOP, HANDLER, "BaseModel.model_validate_json (pydantic/main.py:847)", n=2),
        # record() lives in app.py too, but is the record part, as are logs and metrics.
        stack(LOOP, HANDLER, "create_app.<locals>.record (app/webhook/app.py:104)", n=2),
        stack(LOOP, HANDLER, "emit (app/webhook/logs.py:130)", n=1),
        # An unknown frame under uvicorn: uvicorn.
        stack(LOOP, "RequestResponseCycle.send (uvicorn/protocols/http/h.py:551)",
              "dumps (json/__init__.py:231)", n=4),
        stack("thread (8): eip-guard-log", "Writer._run (app/webhook/logs.py:175)", n=6),
        stack(LOOP, n=2),  # native: uvloop with no Python code on the stack
        stack(LOOP, "<listcomp> (somewhere.py:1)", n=1),
        "not a stack line",
        "",
    ]  # fmt: skip
    counts = profiles.shares(lines, SERVED)
    assert counts == {
        "decision": 5,
        "handler": 3,
        "pydantic": 2,
        "record": 3,
        "uvicorn": 4,
        profiles.OTHER_THREADS: 6,
        profiles.NATIVE: 2,
        profiles.OTHER: 1,
    }
    assert profiles.percentages(counts)["decision"] == round(100 * 5 / 26, 1)
    assert next(iter(profiles.percentages(counts))) == profiles.OTHER_THREADS  # largest first


def test_start_up_counts_imports_whatever_runs_inside_them() -> None:
    unnamed = "thread (9)"  # the main thread before threading names it
    imp = "_find_and_load (<frozen importlib._bootstrap>:1176)"
    lines = [
        stack(
            unnamed,
            "main (app/cli/entry.py:19)",
            imp,
            "<module> (app/core/rules/__init__.py:1)",
            n=3,
        ),
        stack(LOOP, "build (app/core/inventory.py:307)", n=7),
        stack(LOOP, "snapshot_inventory (app/cli/check_run.py:38)", n=2),
    ]
    counts = profiles.shares(lines, profiles.STARTUP_PARTS, imports=True)
    assert counts == {"imports": 3, "inventory build": 7, "freeing the snapshot": 2}
    assert profiles.shares(lines[:1], profiles.STARTUP_PARTS) == {"inventory build": 3}


def test_every_part_says_what_it_holds() -> None:
    names = [name for name, _, _ in SERVED + profiles.STARTUP_PARTS]
    assert len(names) == len(set(names))
    assert all(held and places for _, held, places in SERVED + profiles.STARTUP_PARTS)


@pytest.mark.skipif(os.geteuid() != 0, reason="py-spy attaches with ptrace, which needs root")
def test_real_py_spy_output_is_read(tmp_path: Path) -> None:
    """py-spy itself, on a process that spends its time in an ``app/core/`` file: the
    raw format is what ``shares`` reads (thread labels, frames, counts)."""
    spy = profiles.py_spy()
    assert spy is not None, "py-spy is a dev dependency: `make venv` installs it"
    # A package of its own named like ours, so py-spy names the file as it names ours
    # (relative to its sys.path entry); -I keeps the installed eip-guard out of the way.
    busy = tmp_path / "app" / "core" / "busy.py"
    busy.parent.mkdir(parents=True)
    for package in (busy.parent, busy.parent.parent):
        (package / "__init__.py").touch()
    busy.write_text(
        "import time\n"
        "def spin(seconds):\n"
        "    end = time.process_time() + seconds\n"
        "    while time.process_time() < end:\n"
        "        sum(range(1000))\n"
    )
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from app.core import busy; "
    code += "busy.spin(1.5)"
    raw = tmp_path / "raw.txt"
    argv = [spy, "record", "--rate", "200", "--threads", "--format", "raw"]
    done = subprocess.run(
        [*argv, "--output", str(raw), "--", sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = profiles._recorded(done.stdout + done.stderr)
    assert recorded["samples"] > 50
    counts = profiles.shares(raw.read_text().splitlines(), profiles.STARTUP_PARTS)
    assert counts.most_common(1)[0][0] == "inventory build"  # the app/core/ part
