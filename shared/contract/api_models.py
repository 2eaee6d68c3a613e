"""Response and envelope models: what the API answers, for the OpenAPI document and its tests.

The request model lives in :mod:`shared.core.models`; these describe the answers. Tests validate the real
responses against them, so the published document cannot drift from what the app sends.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from shared.core.models import MAX_SUBJECTS, LinkedSubject, ProvisioningRequest, RuleId, Subject
from shared.core.records import CallRecord, camel, shown_call_fields


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Accepted(_Doc):
    """``202 Accepted``: where and how soon to poll."""

    requestId: str = Field(pattern=r"^[0-9a-f]{32}$")
    status: Literal["pending", "succeeded", "failed", "rejected", "cancelled"]
    calls: int = Field(ge=0)
    links: dict[str, str] | None = Field(default=None, description="retry: when this eventId's request failed")
    advice: str | None = None


def _api_type(hint: Any) -> Any:
    """A record field's type as the JSON shows it: times as strings, vocabularies as their values."""
    optional = typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)] if optional else [hint]
    inner = args[0]
    if isinstance(inner, type) and issubclass(inner, Enum):
        inner = Literal[tuple(member.value for member in inner)]
    elif inner is datetime:
        inner = str
    elif typing.get_origin(inner) is tuple:
        inner = list[typing.get_args(inner)[0]]  # type: ignore[misc]
    return (inner | None, None) if optional else (inner, ...)


def _call_outcome() -> type[_Doc]:
    """The API model of a call, derived from the fields :class:`CallRecord` marks shown (same order)."""
    hints = typing.get_type_hints(CallRecord)
    derived = {camel(name): _api_type(hints[name]) for name in shown_call_fields()}
    return create_model(
        "CallOutcome",
        __base__=_Doc,
        __doc__="One Graph call and what Graph answered.",
        callId=(str, ...),
        subject=(dict[str, Any] | None, ...),
        **derived,
        provisioningLog=(str | None, Field(default=None, description="Only with ?include=provisioningLog")),
        attemptHistory=(
            list[dict[str, Any]] | None,
            Field(default=None, description="Only with ?include=attempts: the rounds before a retry, oldest first"),
        ),
    )


if TYPE_CHECKING:
    CallOutcome = _Doc
else:
    CallOutcome = _call_outcome()


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
    priority: Literal["high", "normal", "low"] | None = None
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
