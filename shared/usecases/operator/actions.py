"""Retry and cancel: what an operator may do to one request (``POST /api/provision/{id}/retry|cancel``).

Both change call rows only through the ledger's ETag-conditional ``update_call``, re-reading and deciding again
when a worker changed the row in between, so an operator and a worker can never both win: a call a worker
claimed first runs (a cancel leaves it), a call cancelled first is never sent (the worker finds it terminal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import telemetry
from shared.contract.problems import Problem
from shared.core.errors import StaleWrite
from shared.core.ports import OperatorLedger, PendingIndex, Row, WorkItem, WorkQueue
from shared.core.vocabulary import CallStatus, RequestStatus

log = telemetry.get_logger(__name__)

#: Read-decide-write rounds per call before the operator is told to try again.
MAX_TRIES = 5
CANCELLABLE = frozenset({CallStatus.QUEUED, CallStatus.SCHEDULED, CallStatus.WAITING})
#: What a retry clears from a failed call: the outcome of the round it archives, and the bookkeeping of its
#: attempts (the new round starts from zero, so the retry budget and the attempt cap apply to it afresh).
_OUTCOME = (
    "result",
    "action",
    "errorCode",
    "errorMessage",
    "recommendedAction",
    "changeId",
    "reportableIdentifier",
    "targetObjectId",
    "failedStep",
    "rawKey",
    "graphKey",
    "graphRequestId",
    "graphClientRequestId",
    "httpStatus",
    "completedAt",
    "claimedUntil",
    "reservedAt",
    "firstFailureAt",
    "failureStreak",
    "throttledAttempts",
    "redrivenAt",
    "enqueued",
)
_SPLIT_PREFIXES = ("provisioningLog", "rawResponse")


@dataclass(frozen=True)
class Retried:
    """A retry was recorded: the request's status now, and the calls that get a new round."""

    status: str
    call_ids: tuple[str, ...]


def _unknown() -> Problem:
    return Problem(404, "Unknown request", "No request has this id.", "unknown-request")


async def _change(
    ledger: OperatorLedger, request_id: str, call_id: str, when: frozenset[str], changes: Mapping[str, Any]
) -> Row | None:
    """Apply ``changes`` if the call (read fresh) is in a status of ``when``; the row as written, or None."""
    for _ in range(MAX_TRIES):
        call = await ledger.get_call(request_id, call_id)
        if call is None or str(call.get("status")) not in when:
            return None
        try:
            return await ledger.update_call(call, changes)
        except StaleWrite:
            continue  # a worker (or another operator) changed it: read again and decide again
    raise StaleWrite(f"{request_id}/{call_id} kept changing; try again")


@dataclass
class RequestActions:
    """Retry and cancel over the ledger, the work queue and the in-flight index."""

    ledger: OperatorLedger
    queue: WorkQueue
    pending: PendingIndex
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def cancel(self, request_id: str, by: str | None = None) -> tuple[Row, list[Row]]:
        """Cancel every call not yet started (see :func:`cancel`)."""
        return await cancel(request_id, ledger=self.ledger, pending=self.pending, now=self.clock(), by=by)

    async def retry(self, request_id: str, by: str | None = None) -> Retried:
        """Give every failed call a new round (see :func:`retry`)."""
        return await retry(request_id, ports=(self.ledger, self.queue, self.pending), now=self.clock(), by=by)


async def cancel(
    request_id: str, *, ledger: OperatorLedger, pending: PendingIndex, now: datetime, by: str | None
) -> tuple[Row, list[Row]]:
    """Cancel every call not yet started; the request as it is afterwards. 409 when it is already final."""
    request, calls = await ledger.get_request(request_id)
    if request is None:
        raise _unknown()
    if str(request.get("status")) != RequestStatus.PENDING:
        raise Problem(
            409,
            "Request already finished",
            f"The request is {request.get('status')}: there is nothing left to cancel.",
            "request-finished",
        )
    changes = {
        "status": CallStatus.CANCELLED,
        "completedAt": now,
        "claimedUntil": None,
        "reservedAt": None,
        "cancelledBy": by,
    }
    cancelled = 0
    for call in calls:
        if str(call.get("status")) in CANCELLABLE:
            written = await _change(ledger, request_id, str(call["RowKey"]), CANCELLABLE, {**changes})
            cancelled += written is not None
    await ledger.stamp_request(request_id, {"cancelledAt": now, "cancelledBy": by})
    refreshed = await ledger.refresh_request(request_id, now)
    if refreshed is not None and str(refreshed.get("status")) != RequestStatus.PENDING:
        await pending.remove(request_id)
    log.info("request cancelled", extra={"requestId": request_id, "cancelledCalls": cancelled})
    after, after_calls = await ledger.get_request(request_id)
    if after is None:
        raise _unknown()
    return after, after_calls


async def retry(
    request_id: str, *, ports: tuple[OperatorLedger, WorkQueue, PendingIndex], now: datetime, by: str | None
) -> Retried:
    """Give every failed call a new round: its finished round archived, back to ``queued``, a new work item.

    Order for a crash at any point: the request is marked in flight first (the sweeper then re-drives a call
    whose work item was never sent), each round is archived before its call is cleared (archiving twice
    writes the same row), and the work items go last.
    """
    ledger, queue, pending = ports
    request, calls = await ledger.get_request(request_id)
    if request is None:
        raise _unknown()
    failed = [str(c["RowKey"]) for c in calls if str(c.get("status")) == CallStatus.FAILED]
    if not failed:
        raise Problem(
            409,
            "Nothing to retry",
            f"The request is {request.get('status')} and none of its calls failed: there is nothing to retry.",
            "nothing-to-retry",
        )
    await pending.add(request_id, now)
    retried: list[str] = []
    only_failed = frozenset({CallStatus.FAILED.value})
    for call_id in failed:
        call = await ledger.get_call(request_id, call_id)
        if call is None or str(call.get("status")) != CallStatus.FAILED:
            continue
        number = int(call.get("retries") or 0) + 1
        await ledger.archive_attempt(call, number)
        changes: dict[str, Any] = {name: None for name in _OUTCOME}
        changes.update({k: None for k in call if k.startswith(_SPLIT_PREFIXES)})
        changes.update(
            {
                "status": CallStatus.QUEUED,
                "attempts": 0,
                "retries": number,
                "nextAttemptAt": now,
                "retriedAt": now,
                "retriedBy": by,
            }
        )
        written = await _change(ledger, request_id, call_id, only_failed, changes)
        if written is not None:
            retried.append(call_id)
    if not retried:
        raise Problem(409, "Nothing to retry", "Another retry took these calls first.", "nothing-to-retry")
    await ledger.stamp_request(request_id, {"retriedAt": now, "retriedBy": by})
    refreshed = await ledger.refresh_request(request_id, now)
    for call_id in retried:
        await queue.send(WorkItem(request_id, call_id))
    log.info("request retried", extra={"requestId": request_id, "retriedCalls": len(retried)})
    status = str(refreshed.get("status")) if refreshed is not None else RequestStatus.PENDING
    return Retried(status, tuple(retried))
