"""Small helpers shared by test modules: run the CLI in-process, and poll until something holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from app.cli.main import main

DEADLINE = 15.0  # generous: eventual consistency on a loaded 2-core CI machine


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``eip-guard ARGV`` through main(): exit code, stdout, stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def eventually(predicate: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail with ``what`` when the deadline
    passes (the deadline only bounds a hung test, it is no speed claim)."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"not within {deadline}s: {what}")
        time.sleep(0.05)
