"""Readiness that also waits for a valid serving certificate (what ``/readyz`` reports)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from app.core.inventory import Inventory
from app.core.sources import InventorySource, Readiness
from app.pki.hot_tls import HotContext, validity_problem


@dataclass(frozen=True, slots=True)
class CertGatedSource:
    """``source``, not ready while ``hot`` presents no certificate valid now."""

    source: InventorySource
    hot: HotContext
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def current(self) -> Inventory:
        return self.source.current()

    def readiness(self) -> Readiness:
        if not self.hot.valid_at(self.clock()):
            loaded = self.hot.loaded
            if loaded is None:
                return Readiness(False, "no TLS certificate yet (self mode: see the log)")
            problem = validity_problem(loaded, self.clock())
            return Readiness(
                False, f"the TLS certificate presented is not valid now: {problem} (see the log)"
            )
        return self.source.readiness()
