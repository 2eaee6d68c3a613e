"""Retry and cancel: what an operator may do to one request (``POST /api/provision/{id}/retry|cancel``).

Both change call records only through the ledger's version-conditional ``update_call``, re-reading and deciding
again when a worker changed the call in between, so an operator and a worker can never both win: a call a worker
claimed first runs (a cancel leaves it), a call cancelled first is never sent (the worker finds it terminal).

A request that becomes final here is removed from the in-flight index through the announcing wrapper
(``shared.usecases.outcomes.AnnouncingPending``), so a cancel is announced like any other outcome; a retry puts
the request back in flight, and its next terminal status is a new transition (announced again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared import telemetry
from shared.contract.problems import Problem
from shared.core.errors import StaleWrite
from shared.core.ports import OperatorLedger, PendingIndex, WorkItem, WorkQueue
from shared.core.records import CallRecord, RequestRecord, Stamp, round_call_fields
from shared.core.vocabulary import CallStatus, RequestStatus

log = telemetry.get_logger(__name__)

#: Read-decide-write rounds per call before the operator is told to try again.
MAX_TRIES = 5
CANCELLABLE = frozenset({CallStatus.QUEUED, CallStatus.SCHEDULED, CallStatus.WAITING})
#: What a retry clears from a failed call: the outcome of the round it archives, and the bookkeeping of its
#: attempts (the new round starts from zero, so the retry budget and the attempt cap apply to it afresh).
_OUTCOME: dict[str, Any] = dict.fromkeys(round_call_fields())


@dataclass(frozen=True)
class Retried:
    """A retry was recorded: the request's status now, and the calls that get a new round."""

    status: RequestStatus
    call_ids: tuple[str, ...]


async def _change(
    ledger: OperatorLedger, call: CallRecord, when: frozenset[CallStatus], change: Callable[[CallRecord], CallRecord]
) -> CallRecord | None:
    """Apply ``change`` if the call (read fresh) is in a status of ``when``; the call as written, or None."""
    for _ in range(MAX_TRIES):
        fresh = await ledger.get_call(call.request_id, call.call_id)
        if fresh is None or fresh.status not in when:
            return None
        try:
            return await ledger.update_call(change(fresh))
        except StaleWrite:
            continue  # a worker (or another operator) changed it: read again and decide again
    raise StaleWrite(f"{call.request_id}/{call.call_id} kept changing; try again")


@dataclass
class RequestActions:
    """Retry and cancel over the ledger, the work queue and the in-flight index."""

    ledger: OperatorLedger
    queue: WorkQueue
    pending: PendingIndex
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def cancel(self, request_id: str, by: str | None = None) -> tuple[RequestRecord, list[CallRecord]]:
        """Cancel every call not yet started; the request as it is afterwards. 409 when it is already final."""
        now = self.clock()
        request, calls = await self.ledger.get_request(request_id)
        if request is None:
            raise Problem.unknown_request()
        if request.status != RequestStatus.PENDING:
            raise Problem.state_conflict(
                "Request already finished",
                f"The request is {request.status.value}: there is nothing left to cancel.",
                "request-finished",
            )

        def cancelled(call: CallRecord) -> CallRecord:
            return replace(
                call,
                status=CallStatus.CANCELLED,
                completed_at=now,
                claimed_until=None,
                reserved_at=None,
                cancelled_by=by,
            )

        count = 0
        for call in calls:
            if call.status in CANCELLABLE:
                count += await _change(self.ledger, call, CANCELLABLE, cancelled) is not None
        await self.ledger.stamp_request(request_id, Stamp("cancelled", now, by))
        refreshed = await self.ledger.refresh_request(request_id, now)
        if refreshed is not None and refreshed.status != RequestStatus.PENDING:
            await self.pending.remove(request_id)  # announces the cancelled outcome
        log.info("request cancelled", extra={"requestId": request_id, "cancelledCalls": count})
        after, after_calls = await self.ledger.get_request(request_id)
        if after is None:
            raise Problem.unknown_request()
        return after, after_calls

    async def retry(self, request_id: str, by: str | None = None) -> Retried:
        """Give every failed call a new round: its finished round archived, back to ``queued``, a new work item.

        Order for a crash at any point: the request is marked in flight first (the sweeper then re-drives a call
        whose work item was never sent), each round is archived before its call is cleared (archiving twice
        writes the same row), and the work items go last.
        """
        now = self.clock()
        request, calls = await self.ledger.get_request(request_id)
        if request is None:
            raise Problem.unknown_request()
        failed = [c for c in calls if c.status == CallStatus.FAILED]
        if not failed:
            raise Problem.state_conflict(
                "Nothing to retry",
                f"The request is {request.status.value} and none of its calls failed: there is nothing to retry.",
                "nothing-to-retry",
            )
        await self.pending.add(request_id, now)
        retried: list[str] = []
        only_failed = frozenset({CallStatus.FAILED})
        for call in failed:
            fresh = await self.ledger.get_call(request_id, call.call_id)
            if fresh is None or fresh.status != CallStatus.FAILED:
                continue
            number = (fresh.retries or 0) + 1
            await self.ledger.archive_attempt(fresh, number)

            def new_round(current: CallRecord, number: int = number) -> CallRecord:
                return replace(
                    current,
                    **_OUTCOME,
                    status=CallStatus.QUEUED,
                    attempts=0,
                    retries=number,
                    next_attempt_at=now,
                    retried_at=now,
                    retried_by=by,
                )

            if await _change(self.ledger, fresh, only_failed, new_round) is not None:
                retried.append(call.call_id)
        if not retried:
            raise Problem.state_conflict(
                "Nothing to retry", "Another retry took these calls first.", "nothing-to-retry"
            )
        await self.ledger.stamp_request(request_id, Stamp("retried", now, by))
        refreshed = await self.ledger.refresh_request(request_id, now)
        for call_id in retried:
            await self.queue.send(WorkItem(request_id, call_id))
        log.info("request retried", extra={"requestId": request_id, "retriedCalls": len(retried)})
        return Retried(refreshed.status if refreshed is not None else RequestStatus.PENDING, tuple(retried))
