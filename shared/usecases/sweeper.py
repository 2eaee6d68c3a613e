"""The sweeper: finds calls whose work message is gone, and puts one back on the queue.

Runs on a timer over the small index of in-flight requests (:mod:`shared.adapters.pending`), never over the
ledger. A call is re-driven when its message should have arrived a grace period ago and nothing has
touched it since: queued/scheduled/waiting past its due time, or running past its claim. Far-future
calls (notBefore beyond the queue's 7-day delay) are enqueued here once they come within reach.
Re-driving is always safe: a duplicate message finds the call finished or claimed and does nothing.

A call parked in the backlog (``waitingFor: slot``) has no message on purpose and is not stranded: the
dispatcher hands it a slot and a message. Only if its backlog entry is missing (it cannot be lost by the
app's own steps, but storage can be restored or edited) is it parked again, at the same place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shared import telemetry
from shared.core.errors import StaleWrite
from shared.core.ports import (
    MAX_VISIBILITY_DELAY_SECONDS,
    Ledger,
    Parked,
    PendingIndex,
    WaitingRoom,
    WorkItem,
    WorkQueue,
)
from shared.core.records import CallRecord
from shared.core.vocabulary import CallStatus, RequestStatus, WaitingFor

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
    reparked: int = 0


def needs_redrive(call: CallRecord, now: datetime, grace: timedelta) -> bool:
    """A call whose message should have come by now and that nobody has touched since (pure)."""
    if call.status.is_terminal or call.enqueued is False or parked(call):
        return False
    if call.redriven_at is not None and call.redriven_at > now - grace:
        return False
    if call.status is CallStatus.RUNNING:
        return call.claimed_until is None or call.claimed_until < now - grace
    due = call.reserved_at or call.next_attempt_at
    return due is None or due < now - grace


def parked(call: CallRecord) -> bool:
    """The call waits in the backlog for a slot: the dispatcher, not a message, moves it on (pure)."""
    return call.status is CallStatus.WAITING and call.waiting_for is WaitingFor.SLOT


def due_for_enqueue(call: CallRecord, now: datetime) -> bool:
    """A far-future call that has come within the queue's maximum delay (pure)."""
    due = call.next_attempt_at
    return (
        call.enqueued is False
        and due is not None
        and (due - now).total_seconds() < (MAX_VISIBILITY_DELAY_SECONDS - 3600)
    )


async def sweep(
    ledger: Ledger, queue: WorkQueue, pending: PendingIndex, *, now: datetime, grace_seconds: float = GRACE_SECONDS
) -> Swept:
    """One pass over the in-flight requests (without a backlog to check: see :class:`Sweeper`)."""
    return await Sweeper(ledger, queue, pending).sweep(now=now, grace_seconds=grace_seconds)


@dataclass
class Sweeper:
    """The sweeper use case over its ports, built once per process in ``shared.runtime``: one pass per timer run;
    with the backlog whose lost entries it puts back (None: parked calls are only left alone)."""

    ledger: Ledger
    queue: WorkQueue
    pending: PendingIndex
    room: WaitingRoom | None = None
    grace_seconds: float = GRACE_SECONDS
    _keys: dict[str, set[str]] = field(default_factory=dict)

    async def run(self, now: datetime) -> Swept:
        """One pass over the in-flight requests (see :meth:`sweep`)."""
        return await self.sweep(now=now, grace_seconds=self.grace_seconds)

    async def sweep(self, *, now: datetime, grace_seconds: float = GRACE_SECONDS) -> Swept:
        """One pass over the in-flight requests."""
        ledger, pending = self.ledger, self.pending
        grace = timedelta(seconds=grace_seconds)
        redriven = far = removed = reparked = 0
        self._keys = {}  # the backlog's keys per scope, read once per sweep (one query, not one per call)
        entries = await pending.list(MAX_REQUESTS_PER_RUN)
        for request_id, added_at in entries:
            request = await ledger.read_request(request_id)
            if request is None:
                if added_at < now - timedelta(seconds=ORPHAN_SECONDS):
                    await pending.remove(request_id)
                    removed += 1
                continue
            # a glance at the pending calls only: a deep backlog's sweep reads a few properties per waiting call
            calls = [] if request.status.is_terminal else await ledger.unfinished_calls(request_id)
            if request.status is RequestStatus.PENDING and not calls:
                # every call is done but the request row was not updated (its worker died in between)
                request = await ledger.refresh_request(request_id, now) or request
            if request.status.is_terminal:
                await pending.remove(request_id)
                removed += 1
                continue
            for call in calls:
                sent = await self._sweep_call(call, now, grace)
                far += sent == "far"
                redriven += sent == "redriven"
                reparked += sent == "reparked"
        return Swept(len(entries), redriven, far, removed, reparked)

    async def _sweep_call(
        self, call: CallRecord, now: datetime, grace: timedelta
    ) -> Literal["far", "redriven", "reparked"] | None:
        """Enqueue a far-future call that came within reach, re-drive a stranded one, or re-park a parked one
        whose backlog entry is gone; what was done, if anything."""
        ledger, queue = self.ledger, self.queue
        item = WorkItem(call.request_id, call.call_id)
        if due_for_enqueue(call, now):
            marked = await _mark(ledger, item, lambda c: due_for_enqueue(c, now), {"enqueued": True})
            if marked is not None and marked.next_attempt_at is not None:
                await queue.send(item, (marked.next_attempt_at - now).total_seconds())
                return "far"
        elif parked(call):
            return "reparked" if await self._repark(call, now, grace) else None
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

    async def _repark(self, seen: CallRecord, now: datetime, grace: timedelta) -> bool:
        """Put a parked call's lost entry back, if the call (read again) still waits there.

        The entry goes back at the call's own place, so it keeps its turn; if the dispatcher hands the call a
        slot in between, the entry is stale and the dispatcher drops it when it reaches it. Not within the grace
        period of its parking: intake writes a new request's rows first and their entries after, so a sweep
        during a big intake saw hundreds of calls "lost" for a moment (155 in a 20,000-call bench, each a
        warning and a write), and an entry really lost is put back by a sweep a few minutes later.
        """
        scope, key = seen.backlog_scope, seen.backlog_key
        if self.room is None or scope is None or key is None:
            return False
        if seen.next_attempt_at is not None and seen.next_attempt_at > now - grace:
            return False  # parked moments ago: its entry may be on its way
        if scope not in self._keys:
            self._keys[scope] = await self.room.keys(scope)
        if key in self._keys[scope]:
            return False
        call = await self.ledger.get_call(seen.request_id, seen.call_id)
        if call is None or not parked(call) or call.backlog_key != key:
            return False
        await self.room.park(Parked(scope, key, call.request_id, call.call_id))
        log.warning("parked call had lost its backlog entry; parked again", extra={"requestId": call.request_id})
        return True


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
