"""The ``eip-guard`` console script: the command line, imported with the cyclic GC paused.

Importing FastAPI, pydantic, uvicorn and the kubernetes client makes a few hundred thousand
objects that all survive; the collections the import triggered walked them for nothing,
about 0.1 s of every start (``eip-guard serve``'s time to ready, each ``eip-guard check``).
"""

from __future__ import annotations

from collections.abc import Sequence

from app.sources.gc_pause import gc_paused


def main(argv: Sequence[str] | None = None) -> int:
    with gc_paused():
        from app.cli import main as cli  # noqa: PLC0415 - the point: imported while paused
    return cli.main(argv)
