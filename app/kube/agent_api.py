"""The node agent's Kubernetes calls, with the official client: its Lease, the Lease list,
the node report annotation on its Node, and Warning Events on Eips.

Calls go by path (``app.kube.rest``) with plain dicts in and out, the form the pure core
reads. Every failure becomes a :class:`KubeError` with one readable line.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from app.kube import rest
from app.kube.agent_leases import (
    SELECTOR,
    Held,
    lease_body,
    lease_name,
    micro_time,
    renewal_patch,
)
from app.kube.config import KubeError, api_client
from app.kube.reflector import backoff_delay
from app.kube.resources import EIPS

__all__ = ["AgentApi", "KubeError", "Writes", "conflict", "make_client"]

LEASES = "coordination.k8s.io/v1"
EVENT_NAMESPACE = "default"  # where kubectl looks for Events of cluster-scoped objects


def make_client(
    kubeconfig: str | None = None, server: str | None = None, context: str | None = None
) -> client.ApiClient:
    """The shared credential rules (app.kube.config); ``server`` skips them (an API stand-in
    in tests, or ``kubectl proxy``). Four watches and the Lease calls share the pool."""
    return api_client(kubeconfig, context, host=server, pool_size=8)


def _status_is(exc: KubeError, status: int) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ApiException) and cause.status == status


def _not_found(exc: KubeError) -> bool:
    return _status_is(exc, 404)


def conflict(exc: KubeError) -> bool:
    """409: a precondition (uid, resourceVersion) failed, or a create found the object."""
    return _status_is(exc, 409)


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
        except ApiException as exc:
            message = rest.status_message(exc)
            raise KubeError(f"{what}: {rest.why(exc)}{f': {message}' if message else ''}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # The URL named: an answer that is not HTTP raises an error without the host.
            raise KubeError(
                f"{what}: {rest.unreachable(exc, self.api.configuration.host)}"
            ) from exc
        except ValueError as exc:
            server = self.api.configuration.host
            raise KubeError(
                f"{what}: the API server at {server} answered something that is not JSON"
            ) from exc

    def renew_lease(
        self,
        node: str,
        duration: int,
        now: datetime | None = None,
        *,
        create: Callable[[], bool] = lambda: True,
        version: str | None = None,
    ) -> Mapping[str, Any]:
        """Patch our Lease (only if still at ``version``, when given: else 409); make it
        when it is missing, if ``create()`` still says so. The Lease as written."""
        now = now or datetime.now(UTC)
        name = lease_name(node)
        try:
            written = self.call(f"renew Lease {self.namespace}/{name}", "PATCH",
                                rest.path(LEASES, "leases", self.namespace, name),
                                body=renewal_patch(node, duration, now, version),
                                content_type=rest.MERGE_PATCH)  # fmt: skip
        except KubeError as exc:
            if not _not_found(exc) or not create():
                raise
            try:
                body = lease_body(node, self.namespace, duration, now)
                written = self.call(f"create Lease {self.namespace}/{name}", "POST",
                                    self._leases, body=body)  # fmt: skip
            except KubeError as missing:
                if not _not_found(missing):
                    raise
                # Nothing but the namespace can be missing when a create answers 404.
                raise KubeError(f"{missing} (create that namespace, or give the agents' own "
                                "with --namespace)") from missing.__cause__  # fmt: skip
        return written if isinstance(written, Mapping) else {}

    def read_lease(self, node: str) -> Mapping[str, Any] | None:
        """Our Lease as it is now, or None. A list by name: the agents' Role grants list,
        not get."""
        name = lease_name(node)
        body = self.call(f"read Lease {self.namespace}/{name}", "GET", self._leases,
                         query=(("fieldSelector", f"metadata.name={name}"),))  # fmt: skip
        found = [
            i for i in body.get("items") or [] if (i.get("metadata") or {}).get("name") == name
        ]
        return found[0] if found else None

    def delete_lease(self, node: str, held: Held | None = None) -> None:
        """Give our Lease up (a graceful stop): the others take our IPs at their next list
        instead of when it runs out. Gone already is fine. ``held``: only if it is still as
        we last wrote it (its uid and resourceVersion), else KubeError with a 409."""
        name = lease_name(node)
        options = None
        if held is not None:
            preconditions = {"uid": held.uid, "resourceVersion": held.version}
            options = {"apiVersion": "v1", "kind": "DeleteOptions",
                       "preconditions": {k: v for k, v in preconditions.items() if v}}  # fmt: skip
        try:
            self.call(f"delete Lease {self.namespace}/{name}", "DELETE",
                      rest.path(LEASES, "leases", self.namespace, name), body=options)  # fmt: skip
        except KubeError as exc:
            if not _not_found(exc):
                raise

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


Write = Callable[[], None]


class Writes:
    """The agent's writes (its node report, Warning Events) from a thread of their own.

    The tick that decides what this node announces must fence in time however long an API
    call hangs (a timeout of 10 s, more with retries), so it never makes one: it hands the
    write over and goes on. The node report keeps only its latest text and is tried again
    after a backoff from ``retry`` seconds doubling up to ``MAX_RETRY`` (refused by RBAC or
    a policy, a thousand nodes retrying every 2 s were 500 writes a second) until it is
    written, or handed over ``at_once`` (the Node made again). Events go meanwhile; one that
    fails is logged and dropped; at most ``MAX_EVENTS`` wait (a node binding thousands of
    can_reach IPs while the API is down must not grow without end).
    """

    MAX_EVENTS = 1_000
    MAX_RETRY = 300.0

    def __init__(
        self, log: Callable[[str], None], retry: float, rand: Callable[[], float] = random.random
    ) -> None:
        self._log, self._retry, self._rand = log, retry, rand
        self._report_failures = 0  # in a row: the wait before the next try grows
        self._cond = threading.Condition()
        self._report: Write | None = None
        self._events: list[Write] = []
        self._failed = ""  # the last failure logged: each once, not every retry
        self._at_once = False  # a report handed over to be written now: ends the backoff
        self._report_due = 0.0  # monotonic: the report is not tried again before

    def start(self, stop: threading.Event) -> None:
        threading.Thread(target=self._run, args=(stop,), name="writes", daemon=True).start()

    def report(self, write: Write, *, at_once: bool = False) -> None:
        """Hand the latest report over. ``at_once``: written now, whatever the backoff (the
        Node made again, or its report edited away: the failures before say nothing of it)."""
        with self._cond:
            self._report = write  # an older text still waiting is replaced: the latest wins
            self._at_once = self._at_once or at_once
            self._cond.notify()

    def event(self, write: Write) -> None:
        with self._cond:
            full = len(self._events) >= self.MAX_EVENTS
            if not full:
                self._events.append(write)
            self._cond.notify()
        if full:
            self._attempt_failed(f"an Event dropped: {self.MAX_EVENTS} wait for the API server")

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._cond:
                if self._at_once:  # what failed before starts no backoff of this one
                    self._at_once, self._report_failures, self._report_due = False, 0, 0.0
                wait = self._report_due - time.monotonic() if self._report is not None else 0.2
                if wait > 0 and not self._events:
                    self._cond.wait(min(wait, 0.2))  # 0.2: stop is an Event of its own
                    continue
                report = None
                if wait <= 0:
                    report, self._report = self._report, None
                events, self._events = self._events, []
            # The report first: Events that time out one by one must not hold it back.
            if report is not None:
                if self._attempt(report):
                    self._report_failures = 0
                else:
                    self._report_failures += 1
                    with self._cond:
                        if self._report is None:  # no newer text meanwhile: this one again
                            self._report = report
                            self._report_due = time.monotonic() + self._backoff()
            # Not held back by the report's backoff: a report refused for good (RBAC, a
            # policy) delayed every Event up to MAX_RETRY.
            for write in events:
                self._attempt(write)

    def _backoff(self) -> float:
        """How long the report waits after ``_report_failures`` failures in a row."""
        return backoff_delay(self._report_failures, self._retry, self.MAX_RETRY, self._rand)

    def _attempt(self, write: Write) -> bool:
        try:
            write()
        except Exception as exc:  # a bug must not end the thread, and with it every write
            self._attempt_failed(str(exc) if isinstance(exc, KubeError) else repr(exc))
            return False
        self._failed = ""
        return True

    def _attempt_failed(self, why: str) -> None:
        if why != self._failed:
            self._log(why)
        self._failed = why
