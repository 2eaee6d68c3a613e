"""Intake: a validated request becomes ledger rows and work items.

The caller gets its answer as soon as the request is durably recorded and its calls are queued; the Graph
calls themselves are paced by the workers. Intake never waits behind Graph's rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared import telemetry
from shared.contract import cloudevents, normalise
from shared.contract.problems import FieldError, Problem, from_validation_error
from shared.core import aggregate, fanout, request_ids
from shared.core.backlog import is_parked
from shared.core.idempotency import event_key, fingerprint
from shared.core.models import ProvisioningRequest
from shared.core.ports import MAX_VISIBILITY_DELAY_SECONDS, EventIndex, Ledger, PendingIndex, WorkItem, WorkQueue
from shared.core.records import CallRecord, RequestRecord
from shared.core.vocabulary import CallStatus, RequestStatus, RuleSource, Source
from shared.settings import Settings, Target
from shared.usecases.dispatcher import AT_ONCE, Dispatcher

log = telemetry.get_logger(__name__)

_SEND_CONCURRENCY = 16
MAX_NOT_BEFORE_DAYS = 365
#: Requests of more than :data:`AT_ONCE` calls whose rows one process writes at the same time, at most; the
#: others wait their turn in the process rather than in the storage service. A request's rows, index and
#: backlog entries are a few 100-entity transactions, and 16 of them at once (a burst of big POSTs) put every
#: storage request of the drain behind them: on Azurite, whose one thread serves every request in turn, the
#: drain ran at 0.3 of the limit for the 78 s of a 20,000-call intake. Table Storage serves more in parallel,
#: but the drain's next requests (claims, slots) still queue behind an instance's own writes.
BIG_INTAKES_AT_ONCE = 2


@dataclass(frozen=True)
class Accepted:
    """The request is recorded and its calls are queued (or it already was: ``duplicate``)."""

    request_id: str
    status: RequestStatus
    calls: int
    duplicate: bool = False
    #: The rows just written (a new request): what the caller's ``Retry-After`` is worked out from, unread.
    written: tuple[RequestRecord, tuple[CallRecord, ...]] | None = field(default=None, compare=False, repr=False)


def validate(
    data: Any,
    *,
    default_event_id: str | None = None,
    pointer: Callable[[str], str] = lambda p: p,
    notes: list[str] | None = None,
) -> ProvisioningRequest:
    """The request model from (normalised) JSON, or a 400 Problem naming each field in the caller's terms."""
    if default_event_id is not None and isinstance(data, dict) and "eventId" not in data:
        data = {**data, "eventId": default_event_id}
        if notes is not None:
            notes.append("eventId taken from the CloudEvent's source and id")
    try:
        return ProvisioningRequest.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        raise from_validation_error(exc).repointed(pointer) from exc


def provision_request(
    content_type: str, headers: Mapping[str, str], data: Any
) -> tuple[ProvisioningRequest, list[str]]:
    """The pure part of ``POST /api/provision``: envelope, normalisation, validation (a Problem names each field)."""
    envelope = cloudevents.unwrap(content_type, headers, data)
    body, notes = normalise.provisioning_request(envelope.data)
    prefix = "/data" if envelope.mode == "structured" else ""
    request = validate(
        body,
        default_event_id=envelope.event_id,
        pointer=lambda p: prefix + normalise.caller_pointer(envelope.data, p),
        notes=notes,
    )
    return request, notes


def graph_compatible_request(
    data: Any, service_principal_id: str, job_id: str
) -> tuple[ProvisioningRequest, list[str]]:
    """The pure part of the Graph-compatible route, once the path's ids are checked: Graph's body, validated."""
    body, notes = normalise.graph_body(data, service_principal_id, job_id)
    wrapped = isinstance(data, dict) and "parameters" in data
    request = validate(
        body, pointer=lambda p: normalise.caller_pointer(data, normalise.graph_pointer(p, wrapped)), notes=notes
    )
    return request, notes


def resolve_target(request: ProvisioningRequest, settings: Settings) -> Target:
    """The configured target the request names, by name or by ids; a Problem when there is none."""
    if request.target is not None:
        target = settings.targets.get(request.target)
        if target is None:
            raise Problem.unprocessable(
                "Unknown target",
                f"No target named {request.target!r} is configured.",
                FieldError("/target", "is not a configured target (PROVISIONING_TARGETS)"),
                slug="unknown-target",
            )
        mismatched = [
            FieldError(pointer, f"does not match target {target.name!r}")
            for pointer, sent, configured in (
                ("/servicePrincipalId", request.service_principal_id, target.service_principal_id),
                ("/jobId", request.job_id, target.job_id),
            )
            if sent is not None and sent.lower() != configured.lower()
        ]
        if mismatched:
            raise Problem.invalid("Target and ids disagree", "Send a target name or matching ids.", *mismatched)
        return target
    missing = [
        FieldError(pointer, "is required when no target is named")
        for pointer, value in (("/servicePrincipalId", request.service_principal_id), ("/jobId", request.job_id))
        if value is None
    ]
    if missing:
        raise Problem.invalid(
            "No target",
            "Name a configured target, or give servicePrincipalId and jobId.",
            FieldError("/target", "is required unless both ids are given"),
            *missing,
        )
    assert request.service_principal_id is not None
    assert request.job_id is not None
    configured = settings.target_for_ids(request.service_principal_id, request.job_id)
    if configured is not None:
        return configured
    if settings.allow_unlisted_targets:
        return Target("", request.service_principal_id, request.job_id, None)
    raise Problem.unprocessable(
        "Unknown target",
        "These ids are not a configured target and ALLOW_UNLISTED_TARGETS is off.",
        FieldError("/servicePrincipalId", "is not part of a configured target"),
        FieldError("/jobId", "is not part of a configured target"),
        slug="unknown-target",
    )


def check_callback(request: ProvisioningRequest, settings: Settings) -> None:
    """A 400 Problem naming ``/callbackUrl`` when its URL may not be called back (CALLBACK_ALLOWED_HOSTS)."""
    if request.callback_url is not None:
        reason = settings.callback_policy.url_problem(request.callback_url)
        if reason is not None:
            raise Problem.invalid(
                "Callback not allowed",
                f"callbackUrl {reason}.",
                FieldError("/callbackUrl", reason),
                slug="callback-not-allowed",
            )


@dataclass(frozen=True)
class AcceptCommand:
    """A validated request to accept, and how it came in.

    ``conflict_error`` names the caller's own field when its event id was already used with a different body
    (default ``/eventId``): the request the event made first may be someone else's, so its id is never shown.
    """

    request: ProvisioningRequest
    source: Source
    now: datetime
    normalisations: Sequence[str] = ()
    conflict_error: FieldError | None = None
    requested_by: str | None = None


@dataclass(frozen=True)
class _Plan:
    """Where and when the request's calls go."""

    target: Target
    start: datetime
    delay: float

    @property
    def on_queue(self) -> bool:
        """Up to 7 days ahead the queue's visibility delay holds the item; further out the sweeper enqueues it."""
        return self.delay <= MAX_VISIBILITY_DELAY_SECONDS


@dataclass
class Intake:
    """Accepts requests: records them in the ledger and queues one work item per Graph call."""

    settings: Settings
    ledger: Ledger
    queue: WorkQueue
    events: EventIndex
    pending: PendingIndex
    new_request_id: Callable[[datetime], str] = request_ids.new_request_id
    #: The backlog: a request whose calls cannot all start now is parked there at once (None: all queued).
    backlog: Dispatcher | None = None
    _big: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def _turn(self, calls: int) -> AbstractAsyncContextManager[Any]:
        """A big request's turn to write (:data:`BIG_INTAKES_AT_ONCE`); a small one goes at once."""
        if calls <= AT_ONCE:
            return contextlib.nullcontext()
        if self._big is None:  # made on first use, on the loop that uses it
            self._big = asyncio.Semaphore(BIG_INTAKES_AT_ONCE)
        return self._big

    async def accept(self, command: AcceptCommand) -> Accepted:
        """Record the request and queue its calls; a repeated ``eventId`` answers the request it made first.

        Raises :class:`Problem` for an unknown target, a ``notBefore`` too far ahead, or an event id already
        used with a different body (``409``).
        """
        plan = self._plan(command)
        request_id = self.new_request_id(command.now)
        if command.request.event_id is not None:
            known = await self._known_event(command, plan, request_id)
            if isinstance(known, Accepted):
                return known
            request_id = known
        request, calls = _records(command, plan, request_id)
        async with self._turn(len(calls)):
            request, calls = await self._write(command, plan, request, calls)
        queued = [c for c in calls if not is_parked(c)]
        if plan.on_queue and queued:
            await self._enqueue(queued, plan.delay)
        log.info(
            "request accepted",
            extra={
                "requestId": request_id,
                "eventId": command.request.event_id,
                "calls": len(calls),
                "source": command.source,
            },
        )
        telemetry.request_accepted(command.source, duplicate=False)
        return Accepted(request_id, request.status, len(calls), written=(request, tuple(calls)))

    async def _write(
        self, command: AcceptCommand, plan: _Plan, request: RequestRecord, calls: list[CallRecord]
    ) -> tuple[RequestRecord, list[CallRecord]]:
        """The request's rows, parked in the backlog when its calls cannot all start now (then with no message)."""
        backlog = self.backlog if plan.delay <= 0 and calls else None
        admission = None
        if backlog is not None:
            admission = await backlog.admit(calls, self.settings.rate_scope, command.now)
            calls = list(admission.calls)
            request = replace(request, counts=aggregate.summarize(c.status for c in calls).counts)
        await self.pending.add(request.request_id, command.now)
        await self.ledger.create(request, calls, tolerate_existing=command.request.event_id is not None)
        if backlog is not None and admission is not None:
            await backlog.admitted(admission)
        return request, calls

    def _plan(self, command: AcceptCommand) -> _Plan:
        target = resolve_target(command.request, self.settings)
        check_callback(command.request, self.settings)
        start = command.request.not_before_or(command.now)
        delay = (start - command.now).total_seconds()
        if delay > MAX_NOT_BEFORE_DAYS * 86400:
            raise Problem.invalid(
                "notBefore too far ahead",
                f"notBefore may be at most {MAX_NOT_BEFORE_DAYS} days ahead.",
                FieldError("/notBefore", f"must be at most {MAX_NOT_BEFORE_DAYS} days from now"),
            )
        return _Plan(target, start, delay)

    async def _known_event(self, command: AcceptCommand, plan: _Plan, request_id: str) -> Accepted | str:
        """The answer for an event already seen, or the request id to write under (this one, or the first's)."""
        request, event = command.request, str(command.request.event_id)
        mark = fingerprint(request, f"{plan.target.service_principal_id}/{plan.target.job_id}".lower())
        known = await self.events.claim(event, request_id, mark, command.now)
        if known is None:
            return request_id
        if known.fingerprint != mark:
            raise Problem.conflict(
                "eventId already used",
                "This idempotency key was already used for a request with a different body. Send a new "
                "key for a new request, or the same body to read the request it made.",
                command.conflict_error or FieldError("/eventId", "was already used with a different body"),
                "event-conflict",
            )
        existing, _ = await self.ledger.get_request(known.request_id)
        if existing is not None:
            log.info(
                "duplicate event answered with its request", extra={"requestId": known.request_id, "eventId": event}
            )
            telemetry.request_accepted(command.source, duplicate=True)
            return Accepted(known.request_id, existing.status, existing.call_count, duplicate=True)
        # The first intake of this event has not finished writing (it is concurrent, or it crashed):
        # finish it under the same request id; every write tolerates rows that already exist.
        return known.request_id

    async def _enqueue(self, calls: Sequence[CallRecord], delay: float) -> None:
        semaphore = asyncio.Semaphore(_SEND_CONCURRENCY)

        async def send(call: CallRecord) -> None:
            async with semaphore:
                await self.queue.send(WorkItem(call.request_id, call.call_id), delay)

        await asyncio.gather(*(send(c) for c in calls))


def _records(command: AcceptCommand, plan: _Plan, request_id: str) -> tuple[RequestRecord, list[CallRecord]]:
    """The request and its calls as first written: one call per planned Graph call, all queued or scheduled."""
    request, target, now = command.request, plan.target, command.now
    rule_id = request.rule_id or target.rule_id  # None: the worker discovers it from the job schema
    rule_source = RuleSource.REQUEST if request.rule_id else RuleSource.TARGET if target.rule_id else None
    call_status = CallStatus.SCHEDULED if plan.delay > 0 else CallStatus.QUEUED
    calls = [
        CallRecord(
            request_id=request_id,
            call_id=fanout.call_id(i),
            subject=body,
            service_principal_id=target.service_principal_id,
            job_id=target.job_id,
            rule_id=rule_id,
            rule_source=rule_source,
            status=call_status,
            attempts=0,
            not_before=plan.start,
            next_attempt_at=plan.start,
            created_at=now,
            enqueued=None if plan.on_queue else False,
            priority=request.priority,
        )
        for i, body in enumerate(fanout.plan_calls(request.subjects))
    ]
    summary = aggregate.summarize([call_status] * len(calls))
    row = RequestRecord(
        request_id=request_id,
        event_id=request.event_id,
        source=command.source,
        target=target.name or None,
        service_principal_id=target.service_principal_id,
        job_id=target.job_id,
        rule_id=rule_id,
        created_at=now,
        updated_at=now,
        call_count=len(calls),
        event_key=event_key(request.event_id) if request.event_id is not None else None,
        normalisations=tuple(command.normalisations) or None,
        requested_by=command.requested_by,
        priority=request.priority,
        callback_url=request.callback_url,
        status=summary.status,
        counts=summary.counts,
    )
    return row, calls
