"""Where the webhook gets its inventory: a protocol, and the fixed source of a snapshot.

The HTTP app depends on this protocol only, so the same app serves a snapshot file
(``StaticSource``) or a live cluster (``app.kube``), and tests pass in whatever they need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.core.inventory import Inventory


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str = ""  # why not ready, in words for /readyz and the denial message


class InventorySource(Protocol):
    def current(self) -> Inventory:
        """The inventory to judge against now: never blocks, never half-applied."""
        ...

    def readiness(self) -> Readiness:
        """Whether ``current()`` reflects the cluster (every source listed at least once)."""
        ...


@dataclass(frozen=True, slots=True)
class StaticSource:
    """A snapshot that never changes: ready from the start."""

    inventory: Inventory

    def current(self) -> Inventory:
        return self.inventory

    def readiness(self) -> Readiness:
        return Readiness(True)
