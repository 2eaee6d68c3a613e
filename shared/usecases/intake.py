"""Intake: a validated request becomes ledger rows and work items.

The caller gets its answer as soon as the request is durably recorded and its calls are queued; the Graph
calls themselves are paced by the workers. Intake never waits behind Graph's rate limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared import telemetry
from shared.contract import cloudevents, normalise
from shared.contract.names import REQUEST_ROW
from shared.contract.problems import FieldError, Problem, from_validation_error
from shared.core import aggregate, fanout, request_ids
from shared.core.idempotency import event_key, fingerprint
from shared.core.models import ProvisioningRequest
from shared.core.ports import MAX_VISIBILITY_DELAY_SECONDS, EventIndex, Ledger, PendingIndex, WorkItem, WorkQueue
from shared.settings import Settings, Target

log = telemetry.get_logger(__name__)

_SEND_CONCURRENCY = 16
MAX_NOT_BEFORE_DAYS = 365


@dataclass(frozen=True)
class Accepted:
    """The request is recorded and its calls are queued (or it already was: ``duplicate``)."""

    request_id: str
    status: str
    calls: int
    duplicate: bool = False


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
        problem = from_validation_error(exc)
        errors = tuple(FieldError(pointer(e.pointer), e.detail) for e in problem.errors)
        raise Problem(problem.status, problem.title, problem.detail, problem.slug, errors) from exc


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
            raise Problem(
                422,
                "Unknown target",
                f"No target named {request.target!r} is configured.",
                "unknown-target",
                (FieldError("/target", "is not a configured target (PROVISIONING_TARGETS)"),),
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
            raise Problem(400, "Target and ids disagree", "Send a target name or matching ids.", errors=mismatched)
        return target
    missing = [
        FieldError(pointer, "is required when no target is named")
        for pointer, value in (("/servicePrincipalId", request.service_principal_id), ("/jobId", request.job_id))
        if value is None
    ]
    if missing:
        raise Problem(
            400,
            "No target",
            "Name a configured target, or give servicePrincipalId and jobId.",
            errors=[FieldError("/target", "is required unless both ids are given"), *missing],
        )
    assert request.service_principal_id is not None
    assert request.job_id is not None
    configured = settings.target_for_ids(request.service_principal_id, request.job_id)
    if configured is not None:
        return configured
    if settings.allow_unlisted_targets:
        return Target("", request.service_principal_id, request.job_id, None)
    raise Problem(
        422,
        "Unknown target",
        "These ids are not a configured target and ALLOW_UNLISTED_TARGETS is off.",
        "unknown-target",
        (
            FieldError("/servicePrincipalId", "is not part of a configured target"),
            FieldError("/jobId", "is not part of a configured target"),
        ),
    )


def check_callback(request: ProvisioningRequest, settings: Settings) -> None:
    """A 400 Problem naming ``/callbackUrl`` when its URL may not be called back (CALLBACK_ALLOWED_HOSTS)."""
    if request.callback_url is not None:
        reason = settings.callback_policy.url_problem(request.callback_url)
        if reason is not None:
            raise Problem(
                400,
                "Callback not allowed",
                f"callbackUrl {reason}.",
                "callback-not-allowed",
                (FieldError("/callbackUrl", reason),),
            )


async def accept(
    request: ProvisioningRequest,
    *,
    source: str,
    settings: Settings,
    ledger: Ledger,
    queue: WorkQueue,
    events: EventIndex,
    pending: PendingIndex,
    now: datetime,
    normalisations: Sequence[str] = (),
    new_request_id: Callable[[datetime], str] = request_ids.new_request_id,
    conflict_error: FieldError | None = None,
) -> Accepted:
    """Record the request and queue one work item per Graph call; a repeated ``eventId`` answers the first.

    The same ``eventId`` with a different body is a ``409`` that names only the caller's own field
    (``conflict_error``, default ``/eventId``): the request the event made first may be someone else's, so its
    id is never shown.
    """
    target = resolve_target(request, settings)
    check_callback(request, settings)
    rule_id = request.rule_id or target.rule_id  # None: the worker discovers it from the job schema
    rule_source = "request" if request.rule_id else "target" if target.rule_id else None
    start = request.not_before_or(now)
    delay = (start - now).total_seconds()
    if delay > MAX_NOT_BEFORE_DAYS * 86400:
        raise Problem(
            400,
            "notBefore too far ahead",
            f"notBefore may be at most {MAX_NOT_BEFORE_DAYS} days ahead.",
            errors=(FieldError("/notBefore", f"must be at most {MAX_NOT_BEFORE_DAYS} days from now"),),
        )
    # Up to 7 days ahead the queue's visibility delay holds the item; further out the sweeper enqueues it.
    on_queue = delay <= MAX_VISIBILITY_DELAY_SECONDS

    request_id = new_request_id(now)
    event = request.event_id
    if event is not None:
        mark = fingerprint(request, f"{target.service_principal_id}/{target.job_id}".lower())
        known = await events.claim(event, request_id, mark, now)
        if known is not None:
            if known.fingerprint != mark:
                raise Problem(
                    409,
                    "eventId already used",
                    "This idempotency key was already used for a request with a different body. Send a new "
                    "key for a new request, or the same body to read the request it made.",
                    "event-conflict",
                    (conflict_error or FieldError("/eventId", "was already used with a different body"),),
                )
            existing, _ = await ledger.get_request(known.request_id)
            if existing is not None:
                log.info(
                    "duplicate event answered with its request", extra={"requestId": known.request_id, "eventId": event}
                )
                telemetry.request_accepted(source, duplicate=True)
                return Accepted(
                    known.request_id, str(existing["status"]), int(existing.get("callCount") or 0), duplicate=True
                )
            # The first intake of this event has not finished writing (it is concurrent, or it crashed):
            # finish it under the same request id; every write below tolerates rows that already exist.
            request_id = known.request_id
    bodies = fanout.plan_calls(request.subjects)
    call_status = "scheduled" if delay > 0 else "queued"
    calls: list[dict[str, Any]] = [
        {
            "PartitionKey": request_id,
            "RowKey": fanout.call_id(i),
            "subject": json.dumps(body, separators=(",", ":")),
            "servicePrincipalId": target.service_principal_id,
            "jobId": target.job_id,
            "ruleId": rule_id,
            "ruleSource": rule_source,
            "status": call_status,
            "attempts": 0,
            "notBefore": start,
            "nextAttemptAt": start,
            "createdAt": now,
            "enqueued": None if on_queue else False,
        }
        for i, body in enumerate(bodies)
    ]
    summary = aggregate.summarize([call_status] * len(calls))
    row: dict[str, Any] = {
        "PartitionKey": request_id,
        "RowKey": REQUEST_ROW,
        "requestId": request_id,
        "eventId": request.event_id,
        "source": source,
        "target": target.name or None,
        "servicePrincipalId": target.service_principal_id,
        "jobId": target.job_id,
        "ruleId": rule_id,
        "createdAt": now,
        "updatedAt": now,
        "callCount": len(calls),
        "eventKey": event_key(event) if event is not None else None,
        "normalisations": json.dumps(list(normalisations)) if normalisations else None,
        "callbackUrl": request.callback_url,
        **summary.as_properties(),
    }
    await pending.add(request_id, now)
    await ledger.create(row, calls, tolerate_existing=event is not None)

    semaphore = asyncio.Semaphore(_SEND_CONCURRENCY)

    async def send(call: dict[str, Any]) -> None:
        async with semaphore:
            await queue.send(WorkItem(request_id, call["RowKey"]), delay)

    if on_queue:
        await asyncio.gather(*(send(c) for c in calls))
    log.info(
        "request accepted",
        extra={"requestId": request_id, "eventId": request.event_id, "calls": len(calls), "source": source},
    )
    telemetry.request_accepted(source, duplicate=False)
    return Accepted(request_id, summary.status, len(calls))
