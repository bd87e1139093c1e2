"""The harness's emulator for the self-managed certificate tests.

Every create and patch gets a new resourceVersion, and a patch carrying a stale
``metadata.resourceVersion`` fails with 409 Conflict, as on a real API server
(``PagedEmulator`` in the shared harness); that is what lets several replicas race for one
Secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests import kmock_harness as harness

SECRETS = "v1/secrets"
VWCS = "admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@contextlib.contextmanager
def running_api() -> Iterator[harness.FakeApi]:
    """The shared harness (its own loop in a thread). The code under test uses the
    synchronous client from the test's thread, as in production."""
    with harness.running() as api:
        yield api


@contextlib.contextmanager
def running() -> Iterator[str]:
    """``running_api``'s base URL."""
    with running_api() as api:
        yield api.direct_url
