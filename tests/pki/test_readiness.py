"""/readyz waits for a valid certificate before it asks the inventory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from app.core.inventory import build
from app.core.sources import Readiness, StaticSource
from app.pki.certs import make_ca, make_serving
from app.pki.hot_tls import HotContext
from app.pki.readiness import CertGatedSource


class NotReady(StaticSource):
    def readiness(self) -> Readiness:
        return Readiness(False, "nodes not listed yet")


def test_not_ready_without_or_outside_a_valid_certificate(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    hot = HotContext(scratch_dir=tmp_path)
    gated = CertGatedSource(StaticSource(build([])), hot, clock=lambda: now)
    assert gated.readiness() == Readiness(False, "no TLS certificate yet (self mode: see the log)")
    hot.load(make_serving(make_ca(), ["eip-guard.eip-guard.svc"]))
    assert gated.readiness() == Readiness(True)
    later = CertGatedSource(
        StaticSource(build([])), hot, clock=lambda: now + dt.timedelta(days=400)
    )
    ready = later.readiness()
    loaded = hot.loaded
    assert loaded is not None
    assert ready == Readiness(
        False,
        "the TLS certificate presented is not valid now: it expired on "
        f"{loaded.not_after:%Y-%m-%d %H:%M} UTC (see the log)",
    )
    early = CertGatedSource(StaticSource(build([])), hot, clock=lambda: now - dt.timedelta(days=1))
    assert "it is not valid before" in early.readiness().reason
    # With a valid certificate the inventory's own answer counts.
    assert CertGatedSource(NotReady(build([])), hot, clock=lambda: now).readiness() == Readiness(
        False, "nodes not listed yet"
    )
    assert gated.current() is gated.source.current()
