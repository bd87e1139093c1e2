"""The harness's emulator plus the optimistic concurrency a real API server has.

Every create and patch gets a new resourceVersion (``PagedEmulator``); here a patch carrying
a stale ``metadata.resourceVersion`` fails with 409 Conflict, as on a real API server; that
is what lets several replicas race for one Secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, rendering

from tests import kmock_harness as harness

SECRETS = "v1/secrets"
VWCS = "admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@attrs.define(kw_only=True)
class VersionedEmulator(harness.PagedEmulator):
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == enums.action.UPDATE and request.name is not None:
                key = (request.resource, request.namespace, request.name)
                stored = self.objects[key] if key in self.objects else None  # noqa: SIM401 (no .get)
                want = meta.get("resourceVersion")
                if stored is not None and want is not None:
                    have = (stored.get("metadata") or {}).get("resourceVersion")
                    if want != have:
                        return await self._render_error(Conflict())
        return await super()._handle(request)


@attrs.frozen
class Conflict(kmock.KubernetesError):
    status: int = 409
    reason: str = "Conflict"
    message: str = "the object has been modified; please apply your changes to the latest version"


@contextlib.contextmanager
def running_api() -> Iterator[harness.FakeApi]:
    """A VersionedEmulator on the shared harness (its own loop in a thread). The code under
    test uses the synchronous client from the test's thread, as in production."""
    with harness.running(emulator=VersionedEmulator) as api:
        yield api


@contextlib.contextmanager
def running() -> Iterator[str]:
    """``running_api``'s base URL."""
    with running_api() as api:
        yield api.direct_url
