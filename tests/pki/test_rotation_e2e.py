"""Self mode end to end: the API emulator, the rotation loop on a real uvicorn TLS server.

A client that trusts only the caBundle found in the webhook configuration keeps one
keep-alive connection open while the serving certificate is renewed; one that trusts only
the caBundle from before a new CA keeps verifying the replica until that CA has settled.
"""

from __future__ import annotations

import base64
import datetime as dt
import ssl
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from app.kube.certs import SecretStore, run_rotation
from app.kube.config import api_client
from app.pki.certs import KeyPair
from app.pki.hot_tls import HotContext
from tests.pki.test_self_managed import NS, SECRET, install, replica, state
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


def test_a_new_ca_is_presented_only_once_the_ca_bundle_carrying_it_has_settled(
    api: str, chart_objects: list[dict[str, Any]]
) -> None:
    """The API server may verify with the caBundle it had before the patch for a moment:
    right after a new CA, the replica still presents what that old caBundle trusts."""
    install(api, chart_objects)
    elapsed = [0.0]  # the replica's monotonic clock, in seconds
    certs = replica(api, monotonic=lambda: elapsed[0])
    hot = HotContext()
    rounds = [0]

    def after_rounds(n: int) -> None:
        goal = rounds[0] + n
        until(lambda: rounds[0] >= goal)

    rotation = partial(
        run_rotation, certs, hot.load, 0.05, report=lambda: rounds.__setitem__(0, rounds[0] + 1)
    )
    with serving(hot, rotation) as server:
        until(lambda: hot.loaded is not None)
        stored, old_bundle = state(api)
        first = der_sha(KeyPair(stored.data["tls.crt"], b""))
        # What an API server whose informer has not yet seen the patch verifies with.
        stale_api_server = trusting(base64.b64decode(old_bundle))
        # The Secret loses its CA (removed by hand): the next round makes a new one.
        kube = api_client(host=api)
        kept = {k: v for k, v in stored.data.items() if k in ("tls.crt", "tls.key")}
        assert SecretStore(kube, NS, SECRET).replace(kept, stored.resource_version, stored.data)
        until(lambda: state(api)[1] != old_bundle)
        after_rounds(2)  # the new-CA round has ended, and one more
        moved, new_bundle = state(api)
        assert moved.data["tls.crt"] != stored.data["tls.crt"]  # signed by the new CA
        for api_server in (stale_api_server, trusting(base64.b64decode(new_bundle))):
            conn = Connection(server.port, api_server)  # raises on a failed verification
            assert conn.get("/").startswith(b"HTTP/1.1 200")
            assert conn.peer() == first
            conn.close()

        elapsed[0] += certs.settle - 0.1  # not yet
        after_rounds(2)
        conn = Connection(server.port, stale_api_server)
        assert conn.peer() == first
        conn.close()
        elapsed[0] += 0.1  # the caBundle with the new CA has been in place for the settle time
        new = der_sha(KeyPair(moved.data["tls.crt"], b""))
        until(lambda: presented(hot) == new)
        conn = Connection(server.port, trusting(base64.b64decode(new_bundle)))
        assert conn.get("/").startswith(b"HTTP/1.1 200")
        assert conn.peer() == new
        conn.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # what waiting spared the API server
            Connection(server.port, stale_api_server)


def presented(hot: HotContext) -> str:
    """The SHA-256 of the certificate ``hot`` presents, as :func:`der_sha` gives it."""
    return hot.loaded.fingerprint.replace(":", "").lower() if hot.loaded else ""
