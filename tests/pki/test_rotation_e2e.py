"""Self mode end to end: the API emulator, the rotation loop on a real uvicorn TLS server.

A client that trusts only the caBundle found in the webhook configuration keeps one
keep-alive connection open while the serving certificate is renewed.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from app.kube.certs import run_rotation
from app.pki.certs import KeyPair
from app.pki.hot_tls import HotContext
from tests.pki.test_self_managed import install, replica, state
from tests.pki.tls_helpers import Connection, der_sha, serving, trusting

POLLS = 400  # bounded waits of 25 ms for the server thread to catch up; no timing asserted


def until(condition: Callable[[], bool]) -> None:
    for _ in range(POLLS):
        if condition():
            return
        threading.Event().wait(0.025)
    raise AssertionError("the rotation loop did not get there")


def test_renewal_swaps_the_served_certificate_without_dropping_a_connection(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    install(api, chart_objects)
    # The replica's clock starts 310 days back: its first certificate, fresh to it, is
    # valid today and 55 days from expiry. Moving the clock to today makes renewal due,
    # and the renewed certificate is valid for the real client too.
    today = dt.datetime.now(dt.UTC)
    now = [today - dt.timedelta(days=310)]
    certs = replica(api, clock=lambda: now[0])
    hot = HotContext()
    assert not hot.valid_at(today)  # /readyz: not ready before the first certificate

    with serving(hot, lambda: run_rotation(certs, hot.load, interval=0.05)) as server:
        until(lambda: hot.loaded is not None)
        stored, bundle = state(api)
        context = trusting(base64.b64decode(bundle))
        first = hot.loaded

        old = Connection(server.port, context)
        assert old.get("/").startswith(b"HTTP/1.1 200")
        before = old.peer()
        assert before == der_sha(KeyPair(stored.data["tls.crt"], b""))

        now[0] = today  # 55 days before expiry: renewal is due
        until(lambda: hot.loaded != first)
        renewed, bundle_after = state(api)
        assert renewed.data["tls.crt"] != stored.data["tls.crt"]
        assert bundle_after == bundle  # same CA: nothing for the API server to relearn

        # The open connection still works and still has the certificate it negotiated ...
        assert old.get("/").startswith(b"HTTP/1.1 200")
        assert old.peer() == before
        # ... and a new one gets the renewed certificate, trusted by the same caBundle.
        new = Connection(server.port, context)
        assert new.get("/").startswith(b"HTTP/1.1 200")
        assert new.peer() == der_sha(KeyPair(renewed.data["tls.crt"], b"")) != before
        old.close()
        new.close()
