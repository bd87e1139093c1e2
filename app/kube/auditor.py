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
and each change made another Event. While a finding holds, its Event is recorded again every
``REFRESH_SECONDS``: its message follows the cluster, and it outlives the API server's
``--event-ttl`` (1 h), after which an Event is gone.

Recording, as client-go's recorder (``tools/record``) does it: an Event this process made is
patched (``count`` + 1, ``lastTimestamp``, message), and made again, its count and
``firstTimestamp`` carried on, when the patch finds it gone; one made elsewhere (another
replica, before a restart: 409 AlreadyExists) gets its ``lastTimestamp`` and message. At most
``EVENT_BURST`` writes at once, then ``EVENT_QPS`` a second: the others wait for later passes
(newly violating Eips first). Every call has a timeout. A refusal that every Event would get
alike (403, 429, 5xx, no connection) ends the pass's writes; failed Events are tried again
with a backoff, and logged once per pass.
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
CONFLICT, NOT_FOUND = 409, 404
# What the API answers about one Event only (its name, its body): the others may still be made.
# Any other failure (403, 404 for the namespace, 429, 5xx, a timeout) would meet them all.
EVENT_SPECIFIC = frozenset({400, CONFLICT, 413, 422})
REFRESH_SECONDS = 1800.0
RETRY_MAX_SECONDS = 300.0  # failed Events: tried again after 2, 4, 8... audit intervals, to this
# Event writes: at most EVENT_BURST at once (client-go's EventCorrelator lets a source burst
# 25 about an object), then EVENT_QPS a second (client-go's default client QPS, 5).
EVENT_BURST = 25
EVENT_QPS = 5.0
# Connect and read timeouts of an Event call: without one, a connection gone silent (a NAT or
# load balancer that dropped it) held the audit thread for good.
EVENT_TIMEOUT = (10.0, 30.0)


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


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the API holds of an Event after a write: its count and its firstTimestamp."""

    count: int
    first: str


def _recorded(answer: Any, fallback: Recorded) -> Recorded:
    if not isinstance(answer, dict):
        return fallback
    count, first = answer.get("count"), answer.get("firstTimestamp")
    return Recorded(
        count if isinstance(count, int) and count > 0 else fallback.count,
        first if isinstance(first, str) and first else fallback.first,
    )


def event_body(
    finding: Finding, now: datetime, instance: str, last: Recorded | None = None
) -> dict[str, Any]:
    """A new Event; ``last``: one that expired, whose count and first time carry on."""
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
        "count": 1 if last is None else last.count + 1,
        "firstTimestamp": stamp if last is None else last.first,
        "lastTimestamp": stamp,
        "source": {"component": COMPONENT, "host": instance},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
    }


class EventSink(Protocol):
    def record(self, finding: Finding, last: Recorded | None = None) -> Recorded:
        """Make the Event exist (``last``: what this sink answered for it the last time);
        raise when that failed (it is tried again in a later pass)."""
        ...


class KubeEvents:
    """Warning Events through the API, as client-go's recorder writes them."""

    def __init__(
        self,
        api: client.ApiClient,
        instance: str | None = None,
        *,
        timeout: tuple[float, float] = EVENT_TIMEOUT,
    ) -> None:
        self._api, self._timeout = api, timeout
        self._events = rest.path("v1", "events", EVENT_NAMESPACE)
        self._instance = instance or socket.gethostname()

    def _write(self, method: str, where: str, body: dict[str, Any]) -> Any:
        # Answers are read whole (read_json), as urllib3 asks before a connection is reused.
        if method == "PATCH":
            return rest.read_json(rest.merge_patch(self._api, where, body, timeout=self._timeout))
        return rest.read_json(
            rest.request(self._api, method, where, body=body, timeout=self._timeout)
        )

    def record(self, finding: Finding, last: Recorded | None = None) -> Recorded:
        now = datetime.now(UTC)
        stamp = _timestamp(now)
        where = rest.path("v1", "events", EVENT_NAMESPACE, finding.event_name)
        if last is not None:  # made by this process: one more occurrence
            seen = Recorded(last.count + 1, last.first)
            change = {"count": seen.count, "lastTimestamp": stamp, "message": finding.message}
            try:
                return _recorded(self._write("PATCH", where, change), seen)
            except ApiException as exc:
                if exc.status != NOT_FOUND:
                    raise
            # Gone (the API server's --event-ttl): made again below, its count carried on.
        body = event_body(finding, now, self._instance, last)
        made = Recorded(body["count"], body["firstTimestamp"])
        try:
            return _recorded(self._write("POST", self._events, body), made)
        except ApiException as exc:
            if exc.status != CONFLICT:
                raise
        # Made by another replica, or before a restart: brought up to date, its count kept.
        refresh = {"lastTimestamp": stamp, "message": finding.message}
        return _recorded(self._write("PATCH", where, refresh), made)


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` a second on the given clock."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        self._burst, self._rate, self._clock = float(burst), rate, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def next_at(self) -> float:
        """When a token is there (the clock's time)."""
        return self._at + max(0.0, 1.0 - self._tokens) / self._rate


def _for_every_event(exc: Exception) -> bool:
    """Whether the other Events of the pass would meet the same failure."""
    return not (isinstance(exc, ApiException) and exc.status in EVENT_SPECIFIC)


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
    failed: int  # Events not recorded for a failure (those the failure ended the pass for too)
    waiting: int = 0  # Events left for a later pass: the write rate, or a retry not due yet


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
        # Event names known to exist for current findings -> when recorded (monotonic), and
        # what the API answered then
        self._recorded: dict[str, tuple[float, Recorded]] = {}
        self._bucket = TokenBucket(EVENT_BURST, EVENT_QPS, clock)
        # Failed Events wait for _retry_at (the audit itself does not: the gauge and the
        # log follow the cluster); _due is when a pass is needed with no change: a retry,
        # Events the write rate held back, or the oldest Event's refresh.
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
        self._recorded = {n: r for n, r in self._recorded.items() if n in found}
        now = self._clock()
        # Newly violating Eips first (found is in Eip name order), then the oldest refreshes.
        fresh = [f for n, f in found.items() if n not in self._recorded]
        stale = sorted(
            (r[0], n) for n, r in self._recorded.items() if now - r[0] >= REFRESH_SECONDS
        )
        todo = fresh + [found[n] for _, n in stale]
        recorded: list[str] = []
        failed, waiting, first, limited = 0, 0, "", False
        if now < self._retry_at:  # the last pass failed: its backoff is not over
            waiting, todo = len(todo), []
        for i, finding in enumerate(todo):
            if not self._bucket.take():
                waiting, limited = len(todo) - i, True
                break
            had = self._recorded.get(finding.event_name)
            try:
                answer = self._events.record(finding, None if had is None else had[1])
            except Exception as exc:
                failed += 1
                first = first or f"Eip {finding.eip}: {rest.why(exc)}"
                if _for_every_event(exc):  # not one request per Eip for a missing RBAC grant
                    failed += len(todo) - i - 1
                    break
                continue
            self._recorded[finding.event_name] = (now, answer)
            recorded.append(finding.event_name)
            if had is None:
                log.warning("Eip %s: %s", finding.eip, finding.message)
        if failed:  # one line a pass, not one per Eip (a missing RBAC grant fails them all)
            self._failures += 1
            delay = retry_delay(self._interval, self._failures)
            self._retry_at = now + delay
            log.warning(
                "cannot record %d Warning Event(s), trying again in %g s; %s", failed, delay, first
            )
        elif now >= self._retry_at:
            self._failures, self._retry_at = 0, float("-inf")
        due = []
        if failed or (waiting and not limited):
            due.append(self._retry_at)
        elif limited:
            due.append(self._bucket.next_at())
        if self._recorded:
            due.append(min(at for at, _ in self._recorded.values()) + REFRESH_SECONDS)
        self._due = min(due, default=float("inf"))
        self.passes += 1
        return Pass(published.generation, len(found), tuple(recorded), failed, waiting)

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
