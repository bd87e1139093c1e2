"""From an AdmissionRequest to an AdmissionResponse: the translation at the edge.

``decide`` is synchronous and does no I/O: it asks the inventory source for what it already
holds in memory, runs :func:`app.core.rules.check` and shapes the answer. The HTTP layer
(``app.webhook.app``) handles bodies, metrics and logs around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from app.core.addresses import shown
from app.core.eips import ALLOW_RULES_ANNOTATION, Eip, is_eip
from app.core.rules import check, may_override
from app.core.sources import InventorySource
from app.core.verdict import Operation, Policy, Verdict
from app.webhook import responses
from app.webhook.reviews import AdmissionRequest, AdmissionResponse

LOGGED_RULES = 32  # of the allow-rules annotation, in the decision line


# A review no API server sends (no object, an UPDATE without its oldObject): refused before
# judging, as a body that is no review is. Not `errored`, which alerts as a bug of ours.
MALFORMED = "malformed"


class Decision(NamedTuple):
    """What to answer, and what to record of it (a NamedTuple: made once per review)."""

    response: AdmissionResponse
    outcome: str  # a metrics.VERDICTS value, or MALFORMED
    name: str
    verdict: Verdict | None = None
    log: Mapping[str, Any] = MappingProxyType({})  # extra fields for the decision line


def _unchecked(obj: Mapping[str, Any]) -> str:
    """The warning for an object that is no Eip, naming what it is (or what it lacks)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    what = (
        f"{api_version or '(no apiVersion)'} {kind or '(no kind)'}"
        if api_version or kind
        else "an object without apiVersion and kind was"
    )
    return f"eip-guard checks network.kubesphere.io Eips only; {what} allowed unchecked"


def _old_eip(old_obj: Mapping[str, Any] | None, name: str) -> Eip | str:
    """The stored version of Eip ``name`` an UPDATE carries, or why it carries none."""
    if old_obj is None:
        return "request.oldObject is missing on an UPDATE request: nothing to compare with"
    if not is_eip(old_obj):
        return "request.oldObject of an UPDATE is not a network.kubesphere.io Eip"
    old = Eip.from_object(old_obj)
    if old.name != name:
        return (
            f"request.oldObject of an UPDATE names Eip {shown(old.name, 64)!r}, "
            f"not {shown(name, 64)!r}"
        )
    return old


def decide(request: AdmissionRequest, source: InventorySource, policy: Policy) -> Decision:
    uid, op = request.uid, request.operation
    if op == "CONNECT" or request.subResource:
        # Status writes by OpenELB go through the status subresource: spec cannot change.
        return Decision(responses.allowed(uid), "skipped", request.name)
    obj = request.oldObject if op == "DELETE" else request.object
    if obj is None:
        if op == "DELETE":
            return Decision(responses.allowed(uid), "skipped", request.name)
        message = f"request.object is missing on a {op} request: nothing to check"
        return Decision(responses.errored(uid, responses.CODE_BAD_REQUEST, message), MALFORMED, "")
    if not is_eip(obj):
        return Decision(responses.allowed(uid, [_unchecked(obj)]), "skipped", request.name)

    candidate = Eip.from_object(obj)
    name = candidate.name or request.name
    if op == "DELETE":
        # DELETE needs no cluster facts (only status.used of the Eip going away), so it is
        # answered even before the source is ready.
        verdict = check(candidate, None, source.current(), policy, Operation.DELETE)
        warnings = verdict.warnings
        outcome = "warned" if warnings else "allowed"
        return Decision(responses.allowed(uid, warnings), outcome, name, verdict)

    old: Eip | None = None
    if op == "UPDATE":
        # The API server always sends the stored object on UPDATE: without it (or with
        # another object) address-immutable and ratcheting cannot be judged, and a guess
        # (a create, the stored Eip) could admit what the real update breaks. Malformed.
        found = _old_eip(request.oldObject, name)
        if isinstance(found, str):
            status = responses.errored(uid, responses.CODE_BAD_REQUEST, found)
            return Decision(status, MALFORMED, name)
        old = found

    readiness = source.readiness()
    if not readiness.ready:
        response = responses.unavailable(uid, readiness.reason)
        return Decision(response, "unavailable", name, log={"reason": readiness.reason})

    verdict = check(candidate, old, source.current(), policy, Operation[op])
    log: dict[str, Any] = {}
    if candidate.allow_rules:
        # Overrides are audited: who turned which denial into a warning.
        # As written, but cut: a 3 MB annotation made a 3 MB decision line (rule ids are
        # short, and there are 22 of them).
        log["allow_rules"] = [shown(r) for r in candidate.allow_rules[:LOGGED_RULES]]
        log["overridden"] = (
            [
                v.rule
                for v in verdict.warned_by
                if v.rule in candidate.allow_rules and may_override(v.rule, candidate)
            ]
            if policy.allow_overrides
            else []
        )
        log["annotation"] = ALLOW_RULES_ANNOTATION
    if not verdict.allowed:
        return Decision(responses.denied(uid, name, verdict), "denied", name, verdict, log)
    warnings = verdict.warnings
    outcome = "warned" if warnings else "allowed"
    return Decision(responses.allowed(uid, warnings), outcome, name, verdict, log)
