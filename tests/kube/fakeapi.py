"""The kmock harness moved to tests/kmock_harness.py (shared with tests/agent and tests/pki).

This name stays only for bench/sync.py, which another branch owns; new code imports
tests.kmock_harness. Drop this file once bench imports from there.
"""

from __future__ import annotations

from tests.kmock_harness import RESOURCES, FakeApi, running

__all__ = ["RESOURCES", "FakeApi", "running"]
