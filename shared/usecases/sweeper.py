"""The sweeper: finds calls whose work message is gone, and puts one back on the queue.

Runs on a timer over the small index of in-flight requests (:mod:`shared.adapters.pending`), never over the
ledger. A call is re-driven when its message should have arrived a grace period ago and nothing has
touched it since: queued/scheduled/waiting past its due time, or running past its claim. Far-future
calls (notBefore beyond the queue's 7-day delay) are enqueued here once they come within reach.
Re-driving is always safe: a duplicate message finds the call finished or claimed and does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared import telemetry
from shared.core import aggregate
from shared.core.errors import StaleWrite
from shared.core.ports import MAX_VISIBILITY_DELAY_SECONDS, Ledger, PendingIndex, WorkItem, WorkQueue

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


def _dt(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def needs_redrive(call: dict[str, Any], now: datetime, grace: timedelta) -> bool:
    """A call whose message should have come by now and that nobody has touched since (pure)."""
    status = str(call.get("status"))
    if status in aggregate.TERMINAL_CALL_STATUSES or call.get("enqueued") is False:
        return False
    last_redrive = _dt(call.get("redrivenAt"))
    if last_redrive is not None and last_redrive > now - grace:
        return False
    if status == "running":
        claimed_until = _dt(call.get("claimedUntil"))
        return claimed_until is None or claimed_until < now - grace
    due = _dt(call.get("reservedAt")) or _dt(call.get("nextAttemptAt"))
    return due is None or due < now - grace


def due_for_enqueue(call: dict[str, Any], now: datetime) -> bool:
    """A far-future call that has come within the queue's maximum delay (pure)."""
    due = _dt(call.get("nextAttemptAt"))
    return (
        call.get("enqueued") is False
        and due is not None
        and (due - now).total_seconds() < (MAX_VISIBILITY_DELAY_SECONDS - 3600)
    )


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
        if request.get("status") == aggregate.PENDING and all(
            str(c.get("status")) in aggregate.TERMINAL_CALL_STATUSES for c in calls
        ):
            # every call is done but the request row was not updated (its worker died in between)
            request = await ledger.refresh_request(request_id, now) or request
        if request.get("status") != aggregate.PENDING:
            await pending.remove(request_id)
            removed += 1
            continue
        for call in calls:
            item = WorkItem(request_id, str(call["RowKey"]))
            if due_for_enqueue(call, now):
                marked = await _mark(ledger, item, lambda c: due_for_enqueue(c, now), {"enqueued": True})
                if marked is not None:
                    await queue.send(item, (marked["nextAttemptAt"] - now).total_seconds())
                    far += 1
            elif needs_redrive(call, now, grace):
                marked = await _mark(ledger, item, lambda c: needs_redrive(c, now, grace), {"redrivenAt": now})
                if marked is not None:
                    await queue.send(item, 0)
                    redriven += 1
                    log.warning(
                        "stranded call re-driven",
                        extra={"requestId": request_id, "callId": item.call_id, "status": marked.get("status")},
                    )
    return Swept(len(entries), redriven, far, removed)


async def _mark(
    ledger: Ledger, item: WorkItem, still: Callable[[dict[str, Any]], bool], changes: dict[str, Any]
) -> dict[str, Any] | None:
    """Record what the sweeper is about to do on the call; the row as written, or None to leave the call alone.

    The partition query the decision was made on may be stale by now (a worker may have claimed or finished
    the call since), so the call is read again, the condition checked on that fresh row, and the write made
    conditional on the fresh row's ETag: a worker's claim or answer in between makes the write fail, and the
    call is left to the worker. The sweeper never writes over a row it did not judge.
    """
    call = await ledger.get_call(item.request_id, item.call_id)
    if call is None or not still(call):
        return None
    try:
        return await ledger.update_call(call, changes)
    except StaleWrite:
        return None
