"""Pausing the cyclic garbage collector around work that makes objects which all survive.

Its own module, light to import: the console entry point pauses the collector before it
imports anything heavy.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside: parsing a snapshot makes millions of objects that all
    survive, and each collection would walk them for nothing (half of a 47 MB load)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
