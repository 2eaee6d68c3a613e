"""The provisioning request as callers send it, validated with pydantic.

Strict on purpose: unknown fields are refused (a typo such as ``objectTypename`` must not silently drop
data), strings are bounded, and every id that may later reach a Graph URL is checked by :mod:`shared.core.ids`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from shared.core import ids, upn
from shared.core.vocabulary import Priority

MAX_SUBJECTS = 100
MAX_LINKED = 100


def _check(predicate: object, message: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not predicate(value):  # type: ignore[operator]
            raise ValueError(message)
        return value

    return AfterValidator(validate)


def _schema(pattern: str, max_length: int, **more: str) -> WithJsonSchema:
    """What the ``shared.core.ids`` check accepts, said in JSON Schema for the OpenAPI document (the check decides)."""
    return WithJsonSchema({"type": "string", "minLength": 1, "maxLength": max_length, "pattern": pattern, **more})


# Not blank at either end, no control characters (C0, DEL, C1): ids.is_object_id.
_TEXT_ID = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"

ObjectId = Annotated[
    str,
    _check(ids.is_object_id, "must be 1-1024 characters without control characters or edge spaces"),
    _schema(_TEXT_ID, ids.MAX_OBJECT_ID_LENGTH),
]
ObjectTypeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")]
ServicePrincipalId = Annotated[
    str,
    _check(ids.is_guid, "must be a GUID"),
    _schema(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", 36, format="uuid"),
]
JobId = Annotated[
    str,
    _check(ids.is_job_id, "must be a synchronization job id (letters, digits, '.', '_', '-')"),
    _schema(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$", 256),
]
RuleId = Annotated[
    str,
    _check(ids.is_rule_id, "must be a synchronization rule id (letters, digits, '.', '_', '-', '#')"),
    _schema(r"^[A-Za-z0-9][A-Za-z0-9._#-]{0,255}$", 256),
]
TargetName = Annotated[
    str,
    _check(ids.is_target_name, "must be the name of a configured target"),
    _schema(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", 64),
]
EventId = Annotated[
    str,
    _check(lambda s: 0 < len(s) <= 200 and ids.is_object_id(s), "must be 1-200 characters"),
    _schema(_TEXT_ID, 200),
]


UserPrincipalName = Annotated[
    str,
    _check(upn.is_user_principal_name, "must be a user principal name such as jane.doe@contoso.com"),
    _schema(r"^[A-Za-z0-9'._!#^~-]{1,64}@[A-Za-z0-9.-]{1,48}$", upn.MAX_LENGTH, format="email"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class LinkedSubject(_Strict):
    """A subject linked to another one (a group member, an owner, a manager)."""

    object_id: ObjectId = Field(alias="objectId")
    object_type_name: ObjectTypeName = Field(alias="objectTypeName")


class Links(_Strict):
    """``synchronizationLinkedObjects``: members (groups), owners and manager (metadata, passed through)."""

    members: list[LinkedSubject] | None = Field(default=None, max_length=MAX_LINKED)
    owners: list[LinkedSubject] | None = Field(default=None, max_length=MAX_LINKED)
    manager: LinkedSubject | None = None


class Subject(_Strict):
    """One object to provision; Graph takes one per call.

    Named by ``objectId``, or (Entra users) by ``userPrincipalName``, which the worker resolves through Graph
    right before the call: exactly one of the two.
    """

    object_id: ObjectId | None = Field(default=None, alias="objectId")
    user_principal_name: UserPrincipalName | None = Field(default=None, alias="userPrincipalName")
    object_type_name: ObjectTypeName = Field(alias="objectTypeName")
    links: Links | None = None

    @model_validator(mode="after")
    def _one_name(self) -> Subject:
        if (self.object_id is None) == (self.user_principal_name is None):
            raise ValueError("give exactly one of objectId and userPrincipalName")
        return self


class ProvisioningRequest(_Strict):
    """``POST /api/provision``: provision these subjects into this target (now or at ``notBefore``)."""

    event_id: EventId | None = Field(default=None, alias="eventId")
    target: TargetName | None = None
    service_principal_id: ServicePrincipalId | None = Field(default=None, alias="servicePrincipalId")
    job_id: JobId | None = Field(default=None, alias="jobId")
    rule_id: RuleId | None = Field(default=None, alias="ruleId")
    subjects: list[Subject] = Field(min_length=1, max_length=MAX_SUBJECTS)
    not_before: AwareDatetime | None = Field(default=None, alias="notBefore")
    priority: Priority | None = Field(
        default=None,
        description="Order against other requests waiting for the same rate limit: high, normal (default), low.",
    )
    #: Where to POST the status body once the request is finished (its host is allow-listed at intake).
    callback_url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, alias="callbackUrl"
    )

    def not_before_or(self, now: datetime) -> datetime:
        """When the first call may start."""
        return self.not_before if self.not_before and self.not_before > now else now
