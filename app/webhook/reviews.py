"""AdmissionReview (admission.k8s.io v1 and v1beta1) at the HTTP edge, through pydantic.

Requests are validated pydantic models; answers are TypedDicts that pydantic serialises
(see below). Only what eip-guard reads or writes is modelled; unknown fields are ignored so
that a newer API server never breaks us. Field names follow the wire format (camelCase).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

ApiVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]
OperationName = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
# An API server's uid is a UUID (36 characters). Every answer echoes it: a client that sent
# 6 MB uids and read no answer had the server hold 6 MB per connection for up to a minute
# (40 connections: 665 MB). A longer one is no AdmissionReview (400).
MAX_UID_LENGTH = 256


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class GroupVersionKind(_Tolerant):
    group: str = ""
    version: str = ""
    kind: str = ""


class UserInfo(_Tolerant):
    username: str = ""
    uid: str = ""
    groups: list[str] | None = None


class AdmissionRequest(_Tolerant):
    uid: Annotated[str, Field(max_length=MAX_UID_LENGTH)]
    kind: GroupVersionKind | None = None
    subResource: str = ""
    name: str = ""
    namespace: str = ""
    operation: OperationName
    userInfo: UserInfo | None = None
    object: dict[str, Any] | None = None
    oldObject: dict[str, Any] | None = None
    dryRun: bool | None = None


class AdmissionReviewRequest(_Tolerant):
    """What the API server POSTs."""

    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


# Outgoing: TypedDicts, so mypy checks each answer's shape where it is built, serialised by
# pydantic from their schema. (Validated models cost 5-15 us per review to build and dump,
# validating what our own typed constructors made; a key left out is a field left unset.)


class StatusCause(TypedDict):
    reason: str
    message: str
    field: str


class StatusDetails(TypedDict):
    name: str
    group: str
    kind: str
    causes: list[StatusCause]


class Status(TypedDict):
    """metav1.Status as an admission response carries it."""

    status: Literal["Success", "Failure"]
    code: int
    reason: NotRequired[str]
    message: str
    details: NotRequired[StatusDetails]


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]


class AdmissionReviewResponse(TypedDict):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"]
    response: AdmissionResponse


_WIRE = TypeAdapter(AdmissionReviewResponse)


def review_json(api_version: ApiVersion, response: AdmissionResponse) -> bytes:
    """The AdmissionReview answering a request of ``api_version``, as JSON."""
    review: AdmissionReviewResponse = {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": response,
    }
    return _WIRE.dump_json(review)
