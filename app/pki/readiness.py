"""Readiness that also waits for a valid serving certificate (what ``/readyz`` reports)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from app.core.inventory import Inventory
from app.core.sources import InventorySource, Readiness
from app.pki.hot_tls import HotContext


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
            return Readiness(
                False,
                f"the TLS certificate is not valid now (valid {loaded.not_before:%Y-%m-%d} "
                f"to {loaded.not_after:%Y-%m-%d})",
            )
        return self.source.readiness()
