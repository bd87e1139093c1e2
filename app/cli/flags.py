"""Checks of command-line values that argparse's types let through, shared by the commands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from app.sources.errors import InputError


def path(value: str) -> Path:
    """A path flag's type. ``Path("")`` is ``.``: an unset variable in ``--cluster "$SNAP"``
    would read the whole working directory as the cluster (or write certificates there)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return Path(value)


def seconds(flag: str, value: float, *, zero: bool = False) -> float:
    """``value`` when it is a finite number of seconds above 0 (or 0, with ``zero``); else an
    InputError. ``float`` reads 'nan' and 'inf': nan passes every comparison, and a wait of
    nan seconds returns at once, a loop that never waits; a wait of inf never ends."""
    if math.isfinite(value) and (value > 0 or (zero and value == 0)):
        return value
    least = "0 or more" if zero else "above 0"
    raise InputError(f"{flag} {value}: expected a finite number of seconds, {least}")
