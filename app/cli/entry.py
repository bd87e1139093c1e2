"""The ``eip-guard`` console script: the command line, imported with the cyclic GC paused.

What an import makes survives, so a collection it triggers walks it for nothing. The
command line itself is light (flags only); the heavy imports (FastAPI, pydantic, uvicorn,
the kubernetes client) come with a command's runtime, which :mod:`app.cli.lazy` imports
paused the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.sources.gc_pause import gc_paused


def main(argv: Sequence[str] | None = None) -> int:
    with gc_paused():
        from app.cli import main as cli  # noqa: PLC0415 - the point: imported while paused
    return cli.main(argv)
