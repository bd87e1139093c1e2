"""Every admission outcome, built by small constructors (as controller-runtime does).

``allowed`` (maybe with warnings), ``denied`` (a Verdict's violations as a Kubernetes
``Invalid`` status with one cause per violation), ``unavailable`` (not ready) and
``errored`` (we failed). The last two are no verdict: the HTTP layer sends their status
as a failed call (:func:`failure_json`), so the API server applies ``failurePolicy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from app.core.addresses import shown
from app.core.eips import GROUP
from app.core.verdict import Verdict, Violation, aggregate, clean_warning, invalid_value
from app.webhook.reviews import AdmissionResponse, Status, StatusCause

CODE_INVALID = 422
CODE_UNAVAILABLE = 503
CODE_ERROR = 500
CODE_BAD_REQUEST = 400
# The longest name Kubernetes allows (a DNS subdomain), which the API server checks before
# any validating webhook: a longer one in a denial's details is a client's, echoed no further
# (see reviews.MAX_UID_LENGTH).
NAME_LENGTH = 253


def _with_warnings(response: AdmissionResponse, texts: Iterable[str]) -> AdmissionResponse:
    # kubectl prints each as "Warning: ..."; the API server drops ones with control chars.
    cleaned = list(dict.fromkeys(clean_warning(t) for t in texts if t))
    if cleaned:
        response["warnings"] = cleaned
    return response


def allowed(uid: str, warnings: Iterable[str] = ()) -> AdmissionResponse:
    return _with_warnings({"uid": uid, "allowed": True}, warnings)


def violation_body(v: Violation) -> str:
    """A field error without its field (Kubernetes ``ErrorBody``), ending with the rule id.

    The rule id is what an admin writes in ``eip-guard.io/allow-rules`` or a policy file,
    so the denial names it.
    """
    return f"{invalid_value(v.value)}: {v.detail} (eip-guard rule {v.rule})"


def violation_message(v: Violation) -> str:
    return f"{v.field}: {violation_body(v)}"


def denied_message(verdict: Verdict) -> str:
    """Every denial in Kubernetes' aggregate form, each naming its rule."""
    return aggregate([violation_message(v) for v in verdict.denied_by])


def denied(uid: str, name: str, verdict: Verdict) -> AdmissionResponse:
    """A 422 Invalid status shaped like apierrors.NewInvalid, so kubectl lists the causes."""
    causes: list[StatusCause] = [
        {"reason": "FieldValueInvalid", "message": violation_body(v), "field": v.field}
        for v in verdict.denied_by
    ]
    status: Status = {
        "status": "Failure",
        "code": CODE_INVALID,
        "reason": "Invalid",
        "message": denied_message(verdict),
        "details": {
            "name": shown(name, NAME_LENGTH),
            "group": GROUP,
            "kind": "Eip",
            "causes": causes,
        },
    }
    return _with_warnings({"uid": uid, "allowed": False, "status": status}, verdict.warnings)


def unavailable(uid: str, reason: str) -> AdmissionResponse:
    """Not ready to judge, saying it is worth a retry."""
    message = (
        f"eip-guard is not ready to check Eips yet ({reason or 'starting'}); "
        "nothing was wrong with the request: retry in a few seconds"
    )
    status: Status = {
        "status": "Failure",
        "code": CODE_UNAVAILABLE,
        "reason": "ServiceUnavailable",
        "message": message,
    }
    return {"uid": uid, "allowed": False, "status": status}


_REASONS = {CODE_BAD_REQUEST: "BadRequest", CODE_ERROR: "InternalError"}


def errored(uid: str, code: int, message: str) -> AdmissionResponse:
    """We could not judge the request (bad request content, or a bug of ours)."""
    status: Status = {
        "status": "Failure",
        "code": code,
        "reason": _REASONS.get(code, "InternalError"),
        "message": message,
    }
    return {"uid": uid, "allowed": False, "status": status}


def failure_json(status: Status) -> bytes:
    """``status`` as the body of an HTTP error: a ``v1`` ``Status``, which the API server's
    client decodes into the error it reports (any other body it replaces with a generic
    "the server is currently unable to handle the request")."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": status["message"],
        "reason": status.get("reason", "InternalError"),
        "code": status["code"],
    }
    return json.dumps(body, separators=(",", ":")).encode()
