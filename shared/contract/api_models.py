"""Response and envelope models: what the API answers, for the OpenAPI document and its tests.

The request model lives in :mod:`shared.core.models`; these describe the answers. Tests validate the real
responses against them, so the published document cannot drift from what the app sends.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.core.models import MAX_SUBJECTS, LinkedSubject, ProvisioningRequest, RuleId, Subject


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Accepted(_Doc):
    """``202 Accepted``: where and how soon to poll."""

    requestId: str = Field(pattern=r"^[0-9a-f]{32}$")
    status: Literal["pending", "succeeded", "failed", "rejected", "cancelled"]
    calls: int = Field(ge=0)
    links: dict[str, str] | None = Field(default=None, description="retry: when this eventId's request failed")
    advice: str | None = None


class CallOutcome(_Doc):
    """One Graph call and what Graph answered."""

    callId: str
    subject: dict[str, Any] | None
    status: Literal[
        "queued", "scheduled", "waiting", "running", "succeeded", "skipped", "failed", "rejected", "cancelled"
    ]
    attempts: int
    ruleId: str | None = None
    ruleSource: Literal["request", "target", "schema"] | None = None
    notBefore: str | None = None
    nextAttemptAt: str | None = None
    result: str | None = None
    action: str | None = None
    errorCode: str | None = None
    errorMessage: str | None = None
    recommendedAction: str | None = None
    changeId: str | None = None
    reportableIdentifier: str | None = None
    targetObjectId: str | None = None
    failedStep: str | None = None
    graphRequestId: str | None = None
    httpStatus: int | None = None
    completedAt: str | None = None
    rawKey: str | None = None
    provisioningLog: str | None = Field(default=None, description="Only with ?include=provisioningLog")
    attemptHistory: list[dict[str, Any]] | None = Field(
        default=None, description="Only with ?include=attempts: the rounds before a retry, oldest first"
    )


class RequestStatus(_Doc):
    """A request and every call it made."""

    requestId: str
    status: Literal["pending", "succeeded", "failed", "rejected", "cancelled"]
    source: Literal["http", "queue", "graph-compatible", "schedule"]
    eventId: str | None = None
    target: str | None = None
    servicePrincipalId: str | None = None
    jobId: str | None = None
    ruleId: str | None = None
    reason: str | None = None
    errors: list[dict[str, str]] | None = None
    normalisations: list[str] | None = None
    createdAt: str
    updatedAt: str
    counts: dict[str, int]
    calls: list[CallOutcome]


class CloudEvent(_Doc):
    """A CloudEvents 1.0 structured-mode envelope whose ``data`` is a provisioning request."""

    # Extension attributes are allowed; their names are ASCII lowercase letters and digits (as the app checks).
    model_config = ConfigDict(json_schema_extra={"propertyNames": {"pattern": "^[a-z0-9]+$"}})

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    data: ProvisioningRequest


class GraphParameters(_Doc):
    """Graph's ``synchronizationJobApplicationParameters``."""

    model_config = ConfigDict(extra="forbid")
    odataType: Any = Field(default=None, alias="@odata.type", description="Accepted and ignored")
    ruleId: RuleId | None = None
    subjects: list[Subject] = Field(min_length=1, max_length=MAX_SUBJECTS)


class GraphProvisionBody(_Doc):
    """Graph's provisionOnDemand request body."""

    model_config = ConfigDict(extra="forbid")
    parameters: list[GraphParameters] = Field(min_length=1, max_length=1)


class StringKeyStringValuePair(_Doc):
    """Graph's answer: ``key`` (usually JSON with the result) and ``value`` (the provisioning log)."""

    key: str | None
    value: str | None


class GraphErrorDetail(_Doc):
    """Graph's ``error`` member."""

    code: str
    message: str
    innerError: dict[str, Any] | None = None


class GraphError(_Doc):
    """Graph's error answer, relayed by the Graph-compatible route with ``Prefer: wait`` when the call failed."""

    error: GraphErrorDetail


class ProblemDetails(_Doc):
    """RFC 9457 problem details with one entry per offending field."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


class Health(_Doc):
    """``GET /api/health``."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "unreachable", "invalid"]]
    invalidSetting: str | None = Field(
        default=None, description="The app setting that is invalid (its name only, never its value)"
    )


EXPORTED = (
    ProvisioningRequest,
    Subject,
    LinkedSubject,
    Accepted,
    RequestStatus,
    CallOutcome,
    CloudEvent,
    GraphProvisionBody,
    StringKeyStringValuePair,
    GraphError,
    ProblemDetails,
    Health,
)
