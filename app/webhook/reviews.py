"""AdmissionReview (admission.k8s.io v1 and v1beta1) as pydantic models, at the HTTP edge.

Only what eip-guard reads or writes is modelled; unknown fields are ignored so that a newer
API server never breaks us. Field names follow the wire format (camelCase) on purpose.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
ApiVersion = Literal["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]
OperationName = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


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
    uid: str
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


class _Out(BaseModel):
    """Outgoing models: strict, and serialised without the fields left unset (None)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusCause(_Out):
    reason: str
    message: str
    field: str


class StatusDetails(_Out):
    name: str
    group: str
    kind: str
    causes: list[StatusCause]


class Status(_Out):
    """metav1.Status as an admission response carries it."""

    status: Literal["Success", "Failure"] | None = None
    code: int
    reason: str | None = None
    message: str | None = None
    details: StatusDetails | None = None


class AdmissionResponse(_Out):
    uid: str
    allowed: bool
    status: Status | None = None
    warnings: list[str] | None = None


class AdmissionReviewResponse(_Out):
    apiVersion: ApiVersion
    kind: Literal["AdmissionReview"] = "AdmissionReview"
    response: AdmissionResponse

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
