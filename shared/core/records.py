"""The ledger's records, typed (pure): a request and its Graph calls, as use cases read and change them.

Records are frozen; a change is ``dataclasses.replace(call, status=CallStatus.RUNNING, ...)``, written back with
``Ledger.update_call``. ``version`` is an opaque concurrency token from the ledger (the adapter's ETag): a
record read at one version is written only if the row is still at that version, so use cases pass it back
without knowing what it is.

The Table schema (keys, ETags, how long text is split, property names) is known only to the ledger adapter
(``shared.adapters.ledger_codec``): a property is named after its field (``error_code`` is ``errorCode``).

:class:`CallRecord` is the ONE definition of a call's fields. A field with ``metadata=SHOWN`` is part of what a
caller reads: the status view (``shared.contract.views``), the API model and the OpenAPI document
(``shared.contract.api_models``) are derived from these marks, in this order. Adding an outcome field: a field
here (``metadata=SHOWN`` if callers read it) and, when Graph's answer says it, its parsing in ``shared.core.outcome``
(whose ``Outcome`` fields are applied to the record by name); then regenerate the documents
(``python -m shared.contract.openapi``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from shared.core.vocabulary import CallbackStatus, CallStatus, Priority, RequestStatus, RuleSource, Source, WaitingFor

_SHOWN = "shown"
#: Metadata of a field callers read (status view, API model, OpenAPI).
SHOWN: Mapping[str, bool] = {_SHOWN: True}
_ROUND = "round"
#: A field of one round's outcome: an operator's retry archives it with the round and clears it on the call.
ROUND: Mapping[str, bool] = {_ROUND: True}
#: Both: callers read it, and it belongs to the round.
SHOWN_ROUND: Mapping[str, bool] = {_SHOWN: True, _ROUND: True}


@dataclass(frozen=True)
class CallRecord:
    """One Graph call of a request (ledger row ``call-0001``…)."""

    request_id: str
    call_id: str
    subject: Mapping[str, Any] | None = None
    service_principal_id: str | None = None
    job_id: str | None = None
    # -- what a caller reads, in the order they read it --
    status: CallStatus = field(default=CallStatus.QUEUED, metadata=SHOWN)
    rule_id: str | None = field(default=None, metadata=SHOWN)
    rule_source: RuleSource | None = field(default=None, metadata=SHOWN)
    attempts: int = field(default=0, metadata=SHOWN)
    not_before: datetime | None = field(default=None, metadata=SHOWN)
    next_attempt_at: datetime | None = field(default=None, metadata=SHOWN)
    #: ``slot`` while it waits in the backlog for a rate-limit slot (fair order: README, ADR 0007).
    waiting_for: WaitingFor | None = field(default=None, metadata=SHOWN)
    result: str | None = field(default=None, metadata=SHOWN_ROUND)
    action: str | None = field(default=None, metadata=SHOWN_ROUND)
    error_code: str | None = field(default=None, metadata=SHOWN_ROUND)
    error_message: str | None = field(default=None, metadata=SHOWN_ROUND)
    recommended_action: str | None = field(default=None, metadata=SHOWN_ROUND)
    change_id: str | None = field(default=None, metadata=SHOWN_ROUND)
    reportable_identifier: str | None = field(default=None, metadata=SHOWN_ROUND)
    target_object_id: str | None = field(default=None, metadata=SHOWN_ROUND)
    failed_step: str | None = field(default=None, metadata=SHOWN_ROUND)
    graph_request_id: str | None = field(default=None, metadata=SHOWN_ROUND)
    http_status: int | None = field(default=None, metadata=SHOWN_ROUND)
    completed_at: datetime | None = field(default=None, metadata=SHOWN_ROUND)
    #: A subject named by ``userPrincipalName``: that name and the object id it resolved to (at the last attempt).
    user_principal_name: str | None = field(default=None, metadata=SHOWN)
    object_id: str | None = field(default=None, metadata=SHOWN)
    #: How many of the attempts Graph answered 429 (the operator console charts throttling from it).
    throttled_attempts: int | None = field(default=None, metadata=SHOWN_ROUND)
    normalisations: tuple[str, ...] | None = field(default=None, metadata=SHOWN)
    raw_key: str | None = field(default=None, metadata=SHOWN_ROUND)
    # -- bookkeeping and evidence, not shown --
    graph_key: str | None = field(default=None, metadata=ROUND)
    graph_client_request_id: str | None = field(default=None, metadata=ROUND)
    created_at: datetime | None = None
    enqueued: bool | None = field(default=None, metadata=ROUND)
    claimed_until: datetime | None = field(default=None, metadata=ROUND)
    last_attempt_at: datetime | None = None
    attempt_reason: str | None = None
    reserved_at: datetime | None = field(default=None, metadata=ROUND)
    redriven_at: datetime | None = field(default=None, metadata=ROUND)
    first_failure_at: datetime | None = field(default=None, metadata=ROUND)
    failure_streak: int | None = field(default=None, metadata=ROUND)
    provisioning_log: str | None = field(default=None, metadata=ROUND)
    provisioning_log_blob: str | None = field(default=None, metadata=ROUND)
    provisioning_log_length: int | None = field(default=None, metadata=ROUND)
    raw_response: str | None = field(default=None, metadata=ROUND)
    #: The request's priority (None: normal), and the call's place and scope in the backlog once it parked.
    priority: Priority | None = None
    backlog_key: str | None = None
    backlog_scope: str | None = None
    #: Operator actions (``shared.usecases.operator.actions``): rounds a retry started, and who asked.
    retries: int | None = None
    retried_at: datetime | None = None
    retried_by: str | None = None
    cancelled_by: str | None = None
    version: str | None = field(default=None, compare=False)


#: The fields of a call its state and timing are judged by (the sweeper's glance at a request's pending calls):
#: a ledger may read only these for :meth:`~shared.core.ports.Ledger.unfinished_calls`, not a call's logs.
CALL_STATE_FIELDS = (
    "status",
    "waiting_for",
    "enqueued",
    "not_before",
    "next_attempt_at",
    "reserved_at",
    "claimed_until",
    "redriven_at",
    "backlog_scope",
    "backlog_key",
)


@dataclass(frozen=True)
class Attempt:
    """A finished round of a call, kept when a retry gave the call a new one (``number`` counts from 1)."""

    number: int
    call: CallRecord


@dataclass(frozen=True)
class Stamp:
    """Who retried or cancelled a request, and when (``action`` is ``retried`` or ``cancelled``)."""

    action: Literal["retried", "cancelled"]
    at: datetime
    by: str | None


def camel(name: str) -> str:
    """A field's name as callers and the ledger spell it: ``error_code`` is ``errorCode``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def round_call_fields() -> tuple[str, ...]:
    """The :class:`CallRecord` fields of one round's outcome (what a retry archives and clears), in order."""
    return tuple(f.name for f in fields(CallRecord) if f.metadata.get(_ROUND))


def shown_call_fields() -> tuple[str, ...]:
    """The :class:`CallRecord` fields callers read, in order."""
    return tuple(f.name for f in fields(CallRecord) if f.metadata.get(_SHOWN))


@dataclass(frozen=True)
class OutboxMarks:
    """The request's outbox (``shared.usecases.outcomes``): which terminal transition was announced, who is
    announcing it, and where its callback stands. Written only with ``Ledger.update_marks``."""

    notified_for: str | None = None
    notified_at: datetime | None = None
    notify_claim_for: str | None = None
    notify_claimed_until: datetime | None = None
    callback_for: str | None = None
    callback_status: CallbackStatus | None = None
    callback_attempts: int | None = None
    callback_last_error: str | None = None
    callback_claimed_until: datetime | None = None
    callback_next_at: datetime | None = None
    callback_delivered_at: datetime | None = None
    callback_http_status: int | None = None


@dataclass(frozen=True)
class RequestRecord:
    """A request (ledger row ``request``): where its calls go, and their status added up."""

    request_id: str
    status: RequestStatus
    source: Source | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    event_id: str | None = None
    target: str | None = None
    service_principal_id: str | None = None
    job_id: str | None = None
    rule_id: str | None = None
    call_count: int = 0
    counts: Mapping[CallStatus, int] = field(default_factory=dict)
    event_key: str | None = None
    normalisations: tuple[str, ...] | None = None
    reason: str | None = None
    errors: tuple[Mapping[str, str], ...] | None = None
    #: Who asked: the caller's name or object id under App Service Authentication (None with keys only).
    requested_by: str | None = None
    queue_message_id: str | None = None
    poison_queue: str | None = None
    priority: Priority | None = None
    #: Where to POST the status body once the request is finished (allow-listed at intake).
    callback_url: str | None = None
    #: A rejected queue message's text, hashed: how ``GET /api/poison`` finds this request again.
    message_hash: str | None = None
    retried_at: datetime | None = None
    retried_by: str | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    marks: OutboxMarks = field(default_factory=OutboxMarks)
    version: str | None = field(default=None, compare=False)
