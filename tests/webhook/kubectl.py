"""What the API server and kubectl make of a webhook's denial, transcribed from their Go code.

No API server or kubectl can run here, so the README's "what you see" text is produced by
feeding the real server's answer through these transcriptions (kubernetes/kubernetes):

- the API server, ``staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/errors/
  statuserror.go`` ``ToStatusErr``: codes below 400 become 400, the status becomes
  Failure, and the message is prefixed with ``admission webhook "<name>" denied the request``
  (the most recent version also prefixes ``<resource> "<name>" is forbidden: ``, which the
  Invalid rendering of kubectl below never shows);
- kubectl, ``staging/src/k8s.io/kubectl/pkg/cmd/util/helpers.go``: ``AddSourceToErr``
  prefixes ``error when creating "<file>"``; ``checkErr`` prints a reason-``Invalid`` status
  with details as ``The <Kind> "<name>" is invalid: `` and one ``field: message`` per cause
  (``MultilineError``: bullets when there are several), any other status through
  ``StandardErrorMessage`` as ``Error from server (<Reason>): <message>``; warnings are
  printed first as ``Warning: <text>``.
"""

from __future__ import annotations

import copy
import json
from typing import Any


def go_quote(text: str) -> str:
    """Go's %q for the plain strings at hand (names, file names)."""
    return json.dumps(text, ensure_ascii=False)


def api_server_status(webhook: str, result: dict[str, Any] | None) -> dict[str, Any]:
    """ToStatusErr: the Status the API server returns for a denying webhook response."""
    status: dict[str, Any] = copy.deepcopy(result) if result else {"status": "Failure"}
    if status.get("code", 0) < 400:
        status["code"] = 400
    if status.get("status", "") in ("", "Success"):
        status["status"] = "Failure"
    denied_by = f"admission webhook {go_quote(webhook)} denied the request"
    if status.get("message"):
        status["message"] = f"{denied_by}: {status['message']}"
    elif status.get("reason"):
        status["message"] = f"{denied_by}: {status['reason']}"
    else:
        status["message"] = f"{denied_by} without explanation"
    return status


def api_server_failed_call(webhook: str, body: dict[str, Any]) -> dict[str, Any]:
    """The Status the API server returns under ``failurePolicy: Fail`` when the webhook
    answers an HTTP error whose body is a ``v1`` Status.

    client-go ``rest.Result.Error`` decodes the body into a StatusError (its message);
    ``validating/dispatcher.go`` ``callHook`` wraps it in ``ErrCallingWebhook`` with the reason
    ``failed to call webhook: <err>``, whose ``Error()`` is ``failed calling webhook "<name>":
    <reason>``; failing closed, the dispatcher returns ``apierrors.NewInternalError(err)``.
    (Under ``Ignore`` the request is admitted and the API server logs the error.)
    """
    assert body["kind"] == "Status" and body["status"] == "Failure"
    err = f"failed calling webhook {go_quote(webhook)}: failed to call webhook: {body['message']}"
    return {
        "status": "Failure",
        "code": 500,
        "reason": "InternalError",
        "message": f"Internal error occurred: {err}",
        "details": {"causes": [{"message": err}]},
    }


def kubectl_stderr(status: dict[str, Any], verb: str, source: str, warnings: list[str]) -> str:
    """What `kubectl create|apply -f <source>` prints on stderr for that Status."""
    lines = "".join(f"Warning: {w}\n" for w in warnings)
    status = dict(status, message=f"error when {verb} {go_quote(source)}: {status['message']}")
    if status.get("reason") == "Invalid":
        details = status.get("details")
        text = "The request is invalid"
        if details is None:
            return lines + text + "\n"
        if details.get("kind") or details.get("name"):
            text = f"The {details.get('kind', '')} {go_quote(details.get('name', ''))} is invalid"
        causes = list(
            dict.fromkeys(
                f"{c.get('field', '')}: {c.get('message', '')}" for c in details.get("causes") or []
            )
        )
        if not causes:
            return lines + text + "\n"
        prefix = text + ": "
        if len(causes) == 1:
            return lines + prefix + causes[0] + "\n"
        return lines + prefix + "\n" + "".join(f"* {c}\n" for c in causes)
    if status.get("reason") == "Unauthorized":
        return lines + f"error: You must be logged in to the server ({status['message']})\n"
    if status.get("reason"):
        return lines + f"Error from server ({status['reason']}): {status['message']}\n"
    return lines + f"Error from server: {status['message']}\n"


def kubectl_created(warnings: list[str], resource: str, name: str) -> str:
    """What `kubectl apply -f` prints when the create is allowed: warnings, then the result."""
    return "".join(f"Warning: {w}\n" for w in warnings) + f"{resource}/{name} created\n"
