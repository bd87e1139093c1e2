"""A command's runtime, imported when the command runs, not when the parser is built.

Building the parser registers every subcommand; if each command module imported what it
runs, ``eip-guard check`` would load FastAPI, uvicorn, cryptography and the node agent it
never uses (about half of its start-up). So a ``*_cmd`` module holds flags only and names
its runtime (a ``*_run`` module) with :func:`lazy`.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from app.sources.gc_pause import gc_paused

Run = Callable[[argparse.Namespace], int]


def lazy(module: str, function: str) -> Run:
    """``function`` of ``module``, imported on the first call."""

    def run(args: argparse.Namespace) -> int:
        # Paused for the reason app.cli.entry pauses it: what these imports make survives.
        with gc_paused():
            target: Run = getattr(importlib.import_module(module), function)
        return target(args)

    run.__qualname__ = run.__name__ = function
    return run
