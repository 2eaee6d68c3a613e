"""How a call changes after each thing that can happen to an attempt (pure).

Each function returns the changes to make (record field names → values, applied with
``dataclasses.replace``), so the worker can apply them again to a fresher version of the call when the row
changed underneath it. ``None`` clears a field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any

from shared.core import graph_errors, outcome, retry
from shared.core.ports import GraphAnswer, GraphFailure
from shared.core.records import CallRecord
from shared.core.vocabulary import CallStatus

Changes = Mapping[str, Any]
"""Fields of :class:`CallRecord` to set, by name (``dataclasses.replace`` rejects any other name)."""


def apply(call: CallRecord, changes: Changes) -> CallRecord:
    """``call`` with ``changes`` made (its version kept: the write is conditional on it)."""
    return replace(call, **changes)


def status_of(changes: Changes) -> CallStatus | None:
    """The status ``changes`` sets, if any."""
    status = changes.get("status")
    return CallStatus(status) if status is not None else None


def claimed(attempts: int, now: datetime, claim_seconds: float, reason: str) -> Changes:
    """The call claimed by attempt ``attempts``: running until its claim runs out."""
    return {
        "status": CallStatus.RUNNING,
        "attempts": attempts,
        "claimed_until": now + timedelta(seconds=claim_seconds),
        "last_attempt_at": now,
        "attempt_reason": reason,
    }


def attempt_reason(call: CallRecord) -> str:
    """Why this attempt happens, recorded with it (no Graph call is ever repeated without saying why)."""
    if call.status is CallStatus.RUNNING:
        return "the previous attempt left no outcome (its claim ran out: the worker stopped or its write failed)"
    if not call.attempts:
        return "first attempt"
    return f"retry after {call.error_code}" if call.error_code else "retry"


def exhausted(call: CallRecord, attempts: int, now: datetime) -> Changes:
    """A call already at the hard cap of attempts ends ``failed``, without another Graph call."""
    last = f"; the last ended with {call.error_code}: {call.error_message}" if call.error_code else ""
    return {
        "status": CallStatus.FAILED,
        "error_code": "AttemptsExhausted",
        "error_message": f"{attempts} attempts were made without a final outcome{last}",
        "recommended_action": "The call was attempted as often as the service allows. Check the earlier error, "
        "Graph's service health and the job, then submit the request again.",
        "completed_at": now,
        "claimed_until": None,
        "reserved_at": None,
    }


def waiting(attempts: int, until: datetime) -> Changes:
    """Back to ``waiting`` until ``until`` without spending an attempt (``attempts`` is the count before it)."""
    return {"status": CallStatus.WAITING, "attempts": attempts, "claimed_until": None, "next_attempt_at": until}


def rejected(reason: str, now: datetime) -> Changes:
    """No rule of the job fits the subject: the call is refused without a Graph call."""
    return {
        "status": CallStatus.REJECTED,
        "error_code": "NoMatchingRule",
        "error_message": reason,
        "completed_at": now,
        "claimed_until": None,
    }


def released(exc: Exception, now: datetime, delay: float) -> Changes:
    """Something of ours failed before Graph was called: waiting, with the reason, for ``delay`` seconds."""
    return {
        "status": CallStatus.WAITING,
        "claimed_until": None,
        "reserved_at": None,
        "next_attempt_at": now + timedelta(seconds=delay),
        "error_code": "InternalError",
        "error_message": f"Preparing the call failed ({type(exc).__name__}); Graph was not called.",
    }


def normalised(subject: dict[str, Any], notes: Sequence[str]) -> Changes:
    """The subject as sent, and that it differs in spelling from the one requested."""
    return {"subject": subject, "normalisations": tuple(notes)}


_OUTCOME_FIELDS = tuple(f.name for f in fields(outcome.Outcome))


def answered(answer: GraphAnswer, now: datetime) -> Changes:
    """Graph's ``200``, read (:mod:`shared.core.outcome`): every outcome field by name, and the evidence."""
    parsed = outcome.parse(answer.key, answer.value)
    return {
        **{name: getattr(parsed, name) for name in _OUTCOME_FIELDS},
        "status": CallStatus(parsed.status),
        "graph_key": answer.key,
        "graph_request_id": answer.request_id,
        "graph_client_request_id": answer.client_request_id,
        "http_status": answer.http_status,
        "completed_at": now,
        "claimed_until": None,
        "first_failure_at": None,
        "failure_streak": None,
        "raw_response": None,
    }


def failed(
    failure: GraphFailure, call: CallRecord, attempts: int, now: datetime, policy: retry.Policy
) -> tuple[Changes, float | None]:
    """The call after a failed attempt, and the delay before the next one (None: the failure is final)."""
    kind = retry.classify(failure.http_status, failure.code)
    throttles = (call.throttled_attempts or 0) + (1 if kind == "throttled" else 0)
    streak_started = call.first_failure_at
    streak = ((call.failure_streak or 0) if streak_started else 0) + (1 if kind == "transient" else 0)
    history = retry.History(
        attempts=attempts,
        throttles=throttles,
        streak_started=streak_started,
        previous_code=call.error_code or None,
        streak=streak,
    )
    decision = retry.decide(kind, history, now, retry_after=failure.retry_after_seconds, policy=policy)
    common: dict[str, Any] = {
        "error_code": failure.code,
        "error_message": failure.message,
        "graph_request_id": failure.request_id,
        "graph_client_request_id": failure.client_request_id,
        "http_status": failure.http_status,
        "claimed_until": None,
        "throttled_attempts": throttles or None,
        "raw_response": failure.raw_body,
    }
    if decision.retry:
        return {
            **common,
            "status": CallStatus.WAITING,
            "next_attempt_at": now + timedelta(seconds=decision.delay_seconds),
            # the outage clock runs through transient failures only: Graph answering anything ends the streak
            "first_failure_at": (history.streak_started or now) if kind == "transient" else None,
            "failure_streak": streak if kind == "transient" else None,
        }, decision.delay_seconds
    advice = graph_errors.recommended_action(failure.http_status, failure.code, failure.message)
    if decision.reason:
        advice = f"{decision.reason} {advice}" if advice else decision.reason
    return {**common, "status": CallStatus.FAILED, "recommended_action": advice, "completed_at": now}, None
