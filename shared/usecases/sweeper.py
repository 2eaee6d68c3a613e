"""The sweeper: finds calls whose work message is gone, and puts one back on the queue.

Runs on a timer over the small index of in-flight requests (:mod:`shared.adapters.pending`), never over the
ledger. A call is re-driven when its message should have arrived a grace period ago and nothing has
touched it since: queued/scheduled/waiting past its due time, or running past its claim. Far-future
calls (notBefore beyond the queue's 7-day delay) are enqueued here once they come within reach.
Re-driving is always safe: a duplicate message finds the call finished or claimed and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shared import telemetry
from shared.core.errors import StaleWrite
from shared.core.ports import MAX_VISIBILITY_DELAY_SECONDS, Ledger, PendingIndex, WorkItem, WorkQueue
from shared.core.records import CallRecord
from shared.core.vocabulary import CallStatus, RequestStatus

log = telemetry.get_logger(__name__)

GRACE_SECONDS = 5 * 60
MAX_REQUESTS_PER_RUN = 2000
#: A request row that never appeared (intake crashed before writing it) is forgotten after this long.
ORPHAN_SECONDS = 10 * 60


@dataclass(frozen=True)
class Swept:
    """What one sweep did."""

    requests: int
    redriven: int
    enqueued_far_future: int
    finished_removed: int


def needs_redrive(call: CallRecord, now: datetime, grace: timedelta) -> bool:
    """A call whose message should have come by now and that nobody has touched since (pure)."""
    if call.status.is_terminal or call.enqueued is False:
        return False
    if call.redriven_at is not None and call.redriven_at > now - grace:
        return False
    if call.status is CallStatus.RUNNING:
        return call.claimed_until is None or call.claimed_until < now - grace
    due = call.reserved_at or call.next_attempt_at
    return due is None or due < now - grace


def due_for_enqueue(call: CallRecord, now: datetime) -> bool:
    """A far-future call that has come within the queue's maximum delay (pure)."""
    due = call.next_attempt_at
    return (
        call.enqueued is False
        and due is not None
        and (due - now).total_seconds() < (MAX_VISIBILITY_DELAY_SECONDS - 3600)
    )


class Sweeper:
    """The sweeper use case over its ports, built once per process in ``shared.runtime``: one pass per timer run."""

    def __init__(self, ledger: Ledger, queue: WorkQueue, pending: PendingIndex, grace_seconds: float = GRACE_SECONDS):
        self._ledger, self._queue, self._pending, self._grace_seconds = ledger, queue, pending, grace_seconds

    async def run(self, now: datetime) -> Swept:
        """One pass over the in-flight requests (see :func:`sweep`)."""
        return await sweep(self._ledger, self._queue, self._pending, now=now, grace_seconds=self._grace_seconds)


async def sweep(
    ledger: Ledger, queue: WorkQueue, pending: PendingIndex, *, now: datetime, grace_seconds: float = GRACE_SECONDS
) -> Swept:
    """One pass over the in-flight requests."""
    grace = timedelta(seconds=grace_seconds)
    redriven = far = removed = 0
    entries = await pending.list(MAX_REQUESTS_PER_RUN)
    for request_id, added_at in entries:
        request, calls = await ledger.get_request(request_id)
        if request is None:
            if added_at < now - timedelta(seconds=ORPHAN_SECONDS):
                await pending.remove(request_id)
                removed += 1
            continue
        if request.status is RequestStatus.PENDING and all(c.status.is_terminal for c in calls):
            # every call is done but the request row was not updated (its worker died in between)
            request = await ledger.refresh_request(request_id, now) or request
        if request.status.is_terminal:
            await pending.remove(request_id)
            removed += 1
            continue
        for call in calls:
            sent = await _sweep_call(ledger, queue, call, now, grace)
            far += sent == "far"
            redriven += sent == "redriven"
    return Swept(len(entries), redriven, far, removed)


async def _sweep_call(
    ledger: Ledger, queue: WorkQueue, call: CallRecord, now: datetime, grace: timedelta
) -> Literal["far", "redriven"] | None:
    """Enqueue a far-future call that came within reach, or re-drive a stranded one; what was done, if anything."""
    item = WorkItem(call.request_id, call.call_id)
    if due_for_enqueue(call, now):
        marked = await _mark(ledger, item, lambda c: due_for_enqueue(c, now), {"enqueued": True})
        if marked is not None and marked.next_attempt_at is not None:
            await queue.send(item, (marked.next_attempt_at - now).total_seconds())
            return "far"
    elif needs_redrive(call, now, grace):
        marked = await _mark(ledger, item, lambda c: needs_redrive(c, now, grace), {"redriven_at": now})
        if marked is not None:
            await queue.send(item, 0)
            log.warning(
                "stranded call re-driven",
                extra={"requestId": call.request_id, "callId": item.call_id, "status": marked.status},
            )
            return "redriven"
    return None


async def _mark(
    ledger: Ledger, item: WorkItem, still: Callable[[CallRecord], bool], changes: Mapping[str, Any]
) -> CallRecord | None:
    """Record what the sweeper is about to do on the call; the call as written, or None to leave it alone.

    The partition query the decision was made on may be stale by now (a worker may have claimed or finished
    the call since), so the call is read again, the condition checked on that fresh record, and the write made
    conditional on its version: a worker's claim or answer in between makes the write fail, and the call is
    left to the worker. The sweeper never writes over a call it did not judge.
    """
    call = await ledger.get_call(item.request_id, item.call_id)
    if call is None or not still(call):
        return None
    try:
        return await ledger.update_call(replace(call, **changes))
    except StaleWrite:
        return None
