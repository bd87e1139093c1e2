"""The background audit of a live cluster: gauges by rule and one Warning Event per finding.

Existing Eips were never checked by a webhook (or the world changed around them: a Service
given the ``can_reach`` IP as externalIP, a kube-vip installed later). Whenever the inventory
changes, at most once per ``interval``, every Eip is judged as if created now
(``app.core.rules.audit``).

Events: core v1 ``Event`` objects (not events.k8s.io/v1), because ``kubectl describe eip``
and every dashboard read them and the API is served everywhere. An Eip is cluster-scoped, so
its Events live in namespace ``default``, as client-go's recorder does for cluster-scoped
objects. Deduplication: one Event per (Eip uid, set of violated rules). The Event name is
derived from exactly that, not from the messages: they name other objects and suggest a
free IP, which change with the cluster (and their order with how the inventory was made),
and each change made another Event. A restarted eip-guard that meets its own earlier Event
(409 AlreadyExists) patches its ``lastTimestamp`` and message. While a finding holds, its
Event is recorded again every ``REFRESH_SECONDS``: its message follows the cluster, and it
outlives the API server's ``--event-ttl`` (1 h), after which an Event is gone. Failed
Events are tried again with a backoff, and logged once per pass.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from app.core.rules import RULE_IDS, audit
from app.core.verdict import Policy, Verdict
from app.kube import rest
from app.kube.live import LiveInventory
from app.kube.metrics import AuditMetrics
from app.kube.resources import EIPS

log = logging.getLogger("eip_guard.kube")

REASON = "EipGuardViolation"
EVENT_NAMESPACE = "default"
COMPONENT = "eip-guard"
MESSAGE_LIMIT = 1024  # events.k8s.io rejects longer notes; core v1 Events keep the same bound
CONFLICT = 409
REFRESH_SECONDS = 1800.0
RETRY_MAX_SECONDS = 300.0  # failed Events: tried again after 2, 4, 8... audit intervals, to this


@dataclass(frozen=True, slots=True)
class Finding:
    eip: str
    uid: str
    rules: tuple[str, ...]
    message: str
    event_name: str


def event_name(eip: str, uid: str, rules: tuple[str, ...]) -> str:
    """Same Eip, same rules violated: same name (the dedup key lives in the API too)."""
    digest = hashlib.sha256("\n".join((uid, *sorted(rules))).encode()).hexdigest()[:16]
    # A DNS subdomain, as the API server wants an Event's name: a long Eip name cut after a
    # "-" or a "." made a label that ends with one (422 Invalid, on every pass).
    return f"{eip[:200].rstrip('.-')}.{digest}"


def findings(verdicts: Mapping[str, Verdict], uids: Mapping[str, str]) -> dict[str, Finding]:
    """The violating Eips of one audit pass, keyed by Event name."""
    out: dict[str, Finding] = {}
    for name, verdict in verdicts.items():
        if verdict.allowed:
            continue
        uid = uids.get(name, "")
        rules = tuple(dict.fromkeys(v.rule for v in verdict.denied_by))
        text = f"eip-guard audit ({', '.join(rules)}): {verdict.message}"
        if len(text) > MESSAGE_LIMIT:
            text = text[: MESSAGE_LIMIT - 3] + "..."
        finding = Finding(name, uid, rules, text, event_name(name, uid, rules))
        out[finding.event_name] = finding
    return out


def violations_by_rule(verdicts: Mapping[str, Verdict]) -> dict[str, int]:
    counts = dict.fromkeys(sorted(RULE_IDS), 0)
    for verdict in verdicts.values():
        for rule in dict.fromkeys(v.rule for v in verdict.denied_by):
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(finding: Finding, now: datetime, instance: str) -> dict[str, Any]:
    stamp = _timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": finding.event_name, "namespace": EVENT_NAMESPACE},
        "involvedObject": {
            "apiVersion": EIPS.api_version,
            "kind": EIPS.kind,
            "name": finding.eip,
            "uid": finding.uid,
        },
        "reason": REASON,
        "message": finding.message,
        "type": "Warning",
        "count": 1,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": COMPONENT, "host": instance},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
    }


class EventSink(Protocol):
    def record(self, finding: Finding) -> None:
        """Make the Event exist; raise when that failed (it is tried again next pass)."""
        ...


class KubeEvents:
    """Warning Events through the API: create, or patch ``lastTimestamp`` when it exists."""

    def __init__(self, api: client.ApiClient, instance: str | None = None) -> None:
        self._api = api
        self._events = rest.path("v1", "events", EVENT_NAMESPACE)
        self._instance = instance or socket.gethostname()

    def record(self, finding: Finding) -> None:
        now = datetime.now(UTC)
        body = event_body(finding, now, self._instance)
        # Answers are read whole (read_json), as urllib3 asks before a connection is reused.
        try:
            rest.read_json(rest.request(self._api, "POST", self._events, body=body))
        except ApiException as exc:
            if exc.status != CONFLICT:
                raise
            where = rest.path("v1", "events", EVENT_NAMESPACE, finding.event_name)
            refresh = {"lastTimestamp": _timestamp(now), "message": finding.message}
            rest.read_json(rest.merge_patch(self._api, where, refresh))


def retry_delay(interval: float, failures: int) -> float:
    """The pause before trying failed Events again: doubling from two audit intervals (of
    at least a second each: an interval of 0 would retry in a loop), at most
    RETRY_MAX_SECONDS (a missing RBAC grant must not cost a POST per Eip a pass)."""
    return float(min(max(interval, 1.0) * 2 ** min(failures, 30), RETRY_MAX_SECONDS))


@dataclass(frozen=True, slots=True)
class Pass:
    generation: int
    violating: int
    recorded: tuple[str, ...]  # Event names created (or refreshed) in this pass
    failed: int


class Auditor:
    def __init__(
        self,
        source: LiveInventory,
        policy: Policy,
        metrics: AuditMetrics,
        events: EventSink,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source, self._policy, self._metrics = source, policy, metrics
        self._events, self._interval, self._clock = events, interval, clock
        # Event names known to exist for current findings -> when recorded (monotonic)
        self._recorded: dict[str, float] = {}
        # Failed Events wait for _retry_at (the audit itself does not: the gauge and the
        # log follow the cluster); _due is when a pass is needed with no change: a retry,
        # or the oldest Event's refresh.
        self._failures, self._retry_at, self._due = 0, float("-inf"), float("inf")
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        source.on_change(self._changed.set)

    def run_once(self) -> Pass | None:
        """One audit of the current inventory; None while the inventory is not ready."""
        published = self._source.published
        if not published.complete:
            return None
        verdicts = audit(published.inventory, self._policy)
        for rule, count in violations_by_rule(verdicts).items():
            self._metrics.violations.labels(rule).set(count)
        found = findings(verdicts, published.eip_uids)
        # Forget what no longer holds (it may come back: a new Event then).
        self._recorded = {n: at for n, at in self._recorded.items() if n in found}
        recorded, failed, waiting, first = [], 0, 0, ""
        now = self._clock()
        may_record = now >= self._retry_at
        for name, finding in found.items():
            at = self._recorded.get(name)
            if at is not None and now - at < REFRESH_SECONDS:
                continue
            if not may_record:
                waiting += 1
                continue
            try:
                self._events.record(finding)
            except Exception as exc:
                failed += 1
                first = first or f"Eip {finding.eip}: {rest.why(exc)}"
                continue
            self._recorded[name] = now
            recorded.append(name)
            if at is None:
                log.warning("Eip %s: %s", finding.eip, finding.message)
        if failed:  # one line a pass, not one per Eip (a missing RBAC grant fails them all)
            self._failures += 1
            delay = retry_delay(self._interval, self._failures)
            self._retry_at = now + delay
            log.warning(
                "cannot record %d Warning Event(s), trying again in %g s; %s", failed, delay, first
            )
        elif may_record:
            self._failures, self._retry_at = 0, float("-inf")
        due = [self._retry_at] if failed or waiting else []
        if self._recorded:
            due.append(min(self._recorded.values()) + REFRESH_SECONDS)
        self._due = min(due, default=float("inf"))
        self.passes += 1
        return Pass(published.generation, len(found), tuple(recorded), failed)

    def _loop(self) -> None:
        last = float("-inf")
        while not self._stop.is_set():
            changed = self._changed.wait(timeout=5.0)
            if self._stop.is_set():
                break  # stop() sets _changed too: it wakes this thread at once
            if not changed and self._clock() < self._due:
                continue  # nothing changed, no Event to retry or refresh yet
            wait = last + self._interval - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            self._changed.clear()
            try:
                self.run_once()
            except Exception:
                log.exception("the background audit failed; trying again at the next change")
            last = time.monotonic()

    def start(self) -> Auditor:
        self._thread = threading.Thread(target=self._loop, name="eip-guard audit", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout)
