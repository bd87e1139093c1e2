"""The console script imports the command line with the cyclic GC paused, and restores it."""

from __future__ import annotations

import gc
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from app.cli import entry
from tests.support import gc_probe


def test_the_command_line_is_imported_with_the_collector_paused() -> None:
    out = subprocess.run(
        [sys.executable, "-c", gc_probe("app.cli.main"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[-1] == "[False] True 0"


def test_the_collector_is_left_as_it_was_found() -> None:
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            with pytest.raises(SystemExit):
                entry.main(["--version"])
            assert gc.isenabled() is enabled
        finally:
            gc.enable()


def test_the_installed_script_is_the_entry_point() -> None:
    (script,) = entry_points(group="console_scripts", name="eip-guard")
    assert script.value == "app.cli.entry:main"
