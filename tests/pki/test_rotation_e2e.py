"""Self mode end to end: kmock as the API, the rotation loop on a real uvicorn TLS server.

A client that trusts only the caBundle found in the webhook configuration keeps one
keep-alive connection open while the serving certificate is renewed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

import kmock
import pytest

from app.kube.certs import run_rotation
from app.pki.certs import KeyPair
from app.pki.hot_tls import HotContext
from tests.pki.kube_emulator import VersionedEmulator
from tests.pki.test_self_managed import chart_objects, install, replica, state
from tests.pki.tls_helpers import Connection, der_sha, serving, trusting

pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=VersionedEmulator)]
__all__ = ["chart_objects"]  # the fixture, shared with test_self_managed
POLLS = 400  # bounded waits of 25 ms for the server thread to catch up; no timing asserted


async def until(condition: Any) -> None:
    for _ in range(POLLS):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the rotation loop did not get there")


async def test_renewal_swaps_the_served_certificate_without_dropping_a_connection(
    kmock: kmock.RawHandler, chart_objects: list[dict[str, Any]]
) -> None:
    await install(kmock, chart_objects)
    # The replica's clock starts 310 days back: its first certificate, fresh to it, is
    # valid today and 55 days from expiry. Moving the clock to today makes renewal due,
    # and the renewed certificate is valid for the real client too.
    today = dt.datetime.now(dt.UTC)
    now = [today - dt.timedelta(days=310)]
    certs = replica(kmock, clock=lambda: now[0])
    hot = HotContext()
    assert not hot.valid_at(now[0])  # /readyz: not ready before the first certificate

    with serving(hot, lambda: run_rotation(certs, hot.load, interval=0.05)) as server:
        await until(lambda: hot.loaded is not None)
        stored, bundle = await state(kmock)
        context = trusting(base64.b64decode(bundle))
        first = hot.loaded

        old = await asyncio.to_thread(Connection, server.port, context)
        assert (await asyncio.to_thread(old.get)).startswith(b"HTTP/1.1 200")
        before = old.peer()
        assert before == der_sha(KeyPair(stored.data["tls.crt"], b""))

        now[0] = today
        await until(lambda: hot.loaded != first)
        renewed, bundle_after = await state(kmock)
        assert renewed.data["tls.crt"] != stored.data["tls.crt"]
        assert bundle_after == bundle  # same CA: nothing for the API server to relearn

        # The open connection still works and still has the certificate it negotiated ...
        assert (await asyncio.to_thread(old.get)).startswith(b"HTTP/1.1 200")
        assert old.peer() == before
        # ... and a new one gets the renewed certificate, trusted by the same caBundle.
        new = await asyncio.to_thread(Connection, server.port, context)
        assert (await asyncio.to_thread(new.get)).startswith(b"HTTP/1.1 200")
        assert new.peer() == der_sha(KeyPair(renewed.data["tls.crt"], b"")) != before
        old.close()
        new.close()
