"""The node agent's Kubernetes calls, with the official client: its Lease, the Lease list,
the node report annotation on its Node, and Warning Events on Eips.

Responses are read raw (``_preload_content=False``) into plain dicts, the form the pure
core reads. Every failure becomes a :class:`KubeError` with one readable line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from app.kube.agent_leases import SELECTOR, lease_body, lease_name, micro_time, renewal_patch
from app.kube.config import KubeError, api_client

__all__ = ["AgentApi", "KubeError", "make_client"]

EVENT_NAMESPACE = "default"  # where kubectl looks for Events of cluster-scoped objects
EIP_API_VERSION = "network.kubesphere.io/v1alpha2"


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
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call, its JSON body as plain data; errors become KubeError."""
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            data = resp.data
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{what}: {_why(exc)}") from exc
        try:
            return json.loads(data) if data else {}
        except ValueError as exc:
            raise KubeError(f"{what}: the API server answered something that is not JSON") from exc

    def renew_lease(self, node: str, duration: int, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        name = lease_name(node)
        try:
            self.call(f"renew Lease {self.namespace}/{name}",
                      self.coordination.patch_namespaced_lease, name, self.namespace,
                      renewal_patch(node, duration, now),
                      _content_type="application/merge-patch+json")  # fmt: skip
        except KubeError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, ApiException) and cause.status == 404):
                raise
            body = client.V1Lease.from_dict(lease_body(node, self.namespace, duration, now))
            self.call(f"create Lease {self.namespace}/{name}",
                      self.coordination.create_namespaced_lease, self.namespace, body)  # fmt: skip

    def list_leases(self) -> list[Mapping[str, Any]]:
        body = self.call(f"list Leases in {self.namespace}",
                         self.coordination.list_namespaced_lease, self.namespace,
                         label_selector=SELECTOR)  # fmt: skip
        return list(body.get("items") or [])

    def annotate_node(self, node: str, key: str, value: str) -> None:
        patch = {"metadata": {"annotations": {key: value}}}
        self.call(f"annotate Node {node}", self.core.patch_node, node, patch,
                  _content_type="application/merge-patch+json")  # fmt: skip

    def warn_eip(self, eip: str, uid: str, node: str, reason: str, message: str) -> None:
        now = micro_time(datetime.now(UTC))
        stamp = now[:19] + "Z"  # Event timestamps are whole seconds (Time, not MicroTime)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{eip}.", "namespace": EVENT_NAMESPACE},
            "involvedObject": {"apiVersion": EIP_API_VERSION, "kind": "Eip", "name": eip,
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
        self.call(f"record an Event on Eip {eip}", self.core.create_namespaced_event,
                  EVENT_NAMESPACE, client.CoreV1Event.from_dict(event))  # fmt: skip
