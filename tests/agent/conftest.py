"""Fixtures for the agent's kernel tests: skipped only when not root."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .lab import NOT_ROOT, Lab

__all__ = ["NOT_ROOT", "lab"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    lab = Lab()
    try:
        yield lab.setup()
    finally:
        lab.close()
