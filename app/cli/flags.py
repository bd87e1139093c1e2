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


MAX_SECONDS = 86_400  # a day: every interval here is far shorter; waits past ~9e9 s overflow


def seconds(flag: str, value: float, *, zero: bool = False) -> float:
    """``value`` when it is a number of seconds above 0 (or 0, with ``zero``) and at most a
    day; else an InputError. ``float`` reads 'nan' and 'inf': nan passes every comparison,
    and a wait of nan seconds returns at once, a loop that never waits; a wait of inf, or of
    1e10 (past what the platform's timers take), raises or never ends."""
    if math.isfinite(value) and (value > 0 or (zero and value == 0)) and value <= MAX_SECONDS:
        return value
    least = "0 or more" if zero else "above 0"
    raise InputError(
        f"{flag} {value}: expected a finite number of seconds, {least}, at most {MAX_SECONDS}"
    )
