"""End to end over HTTPS: the webhook against a floor server (filled in once serve lands)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def eip_guard() -> str:
    here = Path(sys.executable).parent / "eip-guard"
    return str(here) if here.exists() else shutil.which("eip-guard") or "eip-guard"


def can_serve() -> bool:
    """Whether this checkout has `eip-guard serve` (the webhook lands separately)."""
    done = subprocess.run([eip_guard(), "serve", "--help"], capture_output=True, check=False)
    return done.returncode == 0
