"""The node agent's Kubernetes calls, with the official client: its Lease, the Lease list,
the node report annotation on its Node, and Warning Events on Eips.

Calls go by path (``app.kube.rest``) with plain dicts in and out, the form the pure core
reads. Every failure becomes a :class:`KubeError` with one readable line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from app.kube import rest
from app.kube.agent_leases import SELECTOR, lease_body, lease_name, micro_time, renewal_patch
from app.kube.config import KubeError, api_client
from app.kube.resources import EIPS

__all__ = ["AgentApi", "KubeError", "make_client"]

LEASES = "coordination.k8s.io/v1"
EVENT_NAMESPACE = "default"  # where kubectl looks for Events of cluster-scoped objects


def make_client(
    kubeconfig: str | None = None, server: str | None = None, context: str | None = None
) -> client.ApiClient:
    """The shared credential rules (app.kube.config); ``server`` skips them (an API stand-in
    in tests, or ``kubectl proxy``). Four watches and the Lease calls share the pool."""
    return api_client(kubeconfig, context, host=server, pool_size=8)


def _why(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__


class AgentApi:
    def __init__(self, api: client.ApiClient, namespace: str, timeout: float = 10.0) -> None:
        self.api, self.namespace, self.timeout = api, namespace, timeout
        self._leases = rest.path(LEASES, "leases", namespace)

    def call(
        self,
        what: str,
        method: str,
        where: str,
        *,
        body: Any = None,
        content_type: str = rest.JSON,
        query: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """One API call, its JSON body as plain data; errors become KubeError."""
        try:
            answer = rest.request(self.api, method, where, query=query, body=body,
                                  content_type=content_type, timeout=self.timeout)  # fmt: skip
            return rest.read_json(answer)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{what}: {_why(exc)}") from exc
        except ValueError as exc:
            raise KubeError(f"{what}: the API server answered something that is not JSON") from exc

    def renew_lease(self, node: str, duration: int, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        name = lease_name(node)
        try:
            self.call(f"renew Lease {self.namespace}/{name}", "PATCH",
                      rest.path(LEASES, "leases", self.namespace, name),
                      body=renewal_patch(node, duration, now),
                      content_type=rest.MERGE_PATCH)  # fmt: skip
        except KubeError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, ApiException) and cause.status == 404):
                raise
            self.call(f"create Lease {self.namespace}/{name}", "POST", self._leases,
                      body=lease_body(node, self.namespace, duration, now))  # fmt: skip

    def list_leases(self) -> list[Mapping[str, Any]]:
        body = self.call(f"list Leases in {self.namespace}", "GET", self._leases,
                         query=(("labelSelector", SELECTOR),))  # fmt: skip
        return list(body.get("items") or [])

    def annotate_node(self, node: str, key: str, value: str) -> None:
        patch = {"metadata": {"annotations": {key: value}}}
        self.call(f"annotate Node {node}", "PATCH", rest.path("v1", "nodes", name=node),
                  body=patch, content_type=rest.MERGE_PATCH)  # fmt: skip

    def warn_eip(self, eip: str, uid: str, node: str, reason: str, message: str) -> None:
        now = micro_time(datetime.now(UTC))
        stamp = now[:19] + "Z"  # Event timestamps are whole seconds (Time, not MicroTime)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{eip}.", "namespace": EVENT_NAMESPACE},
            "involvedObject": {"apiVersion": EIPS.api_version, "kind": "Eip", "name": eip,
                               "uid": uid},
            "reason": reason,
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": "eip-guard-agent", "host": node},
            "reportingComponent": "eip-guard.io/agent",
            "reportingInstance": node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }  # fmt: skip
        self.call(f"record an Event on Eip {eip}", "POST",
                  rest.path("v1", "events", EVENT_NAMESPACE), body=event)  # fmt: skip
