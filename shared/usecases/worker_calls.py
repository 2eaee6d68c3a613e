"""The worker's writes to a call: one transition (write the call, re-queue it, refresh the request's status).

Every outcome of a work item ends the same way: the call's changes are written (kept when the row changed
underneath, within bounds), the item goes back on the queue when the call must run again, and the request's
status is recomputed (a request that is final leaves the sweeper's index). :class:`CallWriter` is that one
sequence, so no path forgets a step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared import telemetry
from shared.core import aggregate, transitions
from shared.core.backlog import call_index
from shared.core.errors import StaleWrite, StoreUnavailable
from shared.core.ports import Ledger, PendingIndex, WorkItem, WorkQueue
from shared.core.records import CallRecord

log = telemetry.get_logger(__name__)

#: Re-read-and-merge rounds of one ledger write before giving up (each needs another writer in between).
MAX_SAVE_TRIES = 8
#: Retries of one ledger write after a transient storage error (connection, 5xx).
MAX_STORAGE_RETRIES = 3
#: Requests whose call count this process remembers (a request's call count never changes).
KNOWN_SIZES = 4096


@dataclass
class CallWriter:
    """Writes a call's transitions through the ports the worker was given."""

    ledger: Ledger
    queue: WorkQueue
    pending: PendingIndex
    sleep: Callable[[float], Awaitable[None]]
    _sizes: OrderedDict[str, int] = field(default_factory=OrderedDict)

    async def transition(
        self,
        call: CallRecord,
        changes: transitions.Changes,
        *,
        owner: int | None,
        now: datetime,
        requeue: float | None = None,
    ) -> CallRecord | None:
        """Write ``changes`` (see :meth:`save`), re-queue the call's work item after ``requeue`` seconds if they
        were written, and refresh the request's status. Returns the call as written, or None when it was not."""
        saved = await self.save(call, changes, owner=owner)
        if saved is not None and requeue is not None:
            await self.queue.send(WorkItem(call.request_id, call.call_id), requeue)
        await self.refresh(call.request_id, now, call.call_id)
        return saved

    async def refresh(self, request_id: str, now: datetime, call_id: str | None = None) -> None:
        """Update the request's status; once it is final, it leaves the sweeper's index.

        After the transition of ``call_id``, a big request is recounted only when
        :func:`shared.core.aggregate.recount_due` says so or when no call of it is pending any more (a one-row
        query): its status is exact at its end, its counts lag by at most a tenth of its calls meanwhile
        (status views count the calls they read). Without ``call_id`` (or a size this process has not yet
        seen), it is recounted.

        The request row is derived from the call rows, so losing the race for it to other workers of the same
        request is not a failure of this work item: they recompute it from the same calls, and the sweeper
        finishes a request whose calls are all done while its row still says pending. Raising instead would
        fail the invocation and leave a call claimed (and its message hidden) for the whole claim.
        """
        size = self._sizes.get(request_id)
        if (
            call_id is not None
            and size is not None
            and not aggregate.recount_due(call_index(call_id), size)
            and await self.ledger.has_unfinished_calls(request_id)
        ):
            return
        try:
            request = await self.ledger.refresh_request(request_id, now)
        except StaleWrite:
            log.warning("the request row kept changing under other workers; its status is left to them and the sweeper")
            return
        if request is None:
            return
        if request.status.is_terminal:
            self._sizes.pop(request_id, None)
            await self.pending.remove(request_id)
        elif request.call_count:
            self._sizes[request_id] = request.call_count
            self._sizes.move_to_end(request_id)
            while len(self._sizes) > KNOWN_SIZES:
                self._sizes.popitem(last=False)

    async def save(self, call: CallRecord, changes: transitions.Changes, *, owner: int | None) -> CallRecord | None:
        """Write ``changes`` to the call, keeping them when the row changed underneath (bounded re-read and merge).

        ``owner`` None: the changes are a final outcome (Graph's answer, or a final failure). They win over
        whatever else changed on the row (a sweeper's ``redrivenAt``, a newer claim) except another final
        outcome, which is kept instead: one answer, one record. ``owner`` n: the changes belong to attempt n
        (a retry, a deferral) and are written only while that attempt still owns the call.

        Returns the call as written, or None when it was not written because someone else's result stands.
        A transient storage error is retried briefly; one that persists raises (the host retries the message).
        """
        current = call
        for attempt in range(MAX_SAVE_TRIES):
            try:
                return await self.ledger.update_call(transitions.apply(current, changes))
            except StaleWrite:
                fresh = await self.ledger.get_call(call.request_id, call.call_id)
            except StoreUnavailable as exc:
                if attempt >= MAX_STORAGE_RETRIES:
                    raise
                cause = exc.__cause__ or exc
                log.warning("ledger write failed; trying again", extra={"error": type(cause).__name__})
                await self.sleep(0.5 * 2**attempt)
                continue
            if fresh is None:
                log.error("call row disappeared while it was being recorded")
                return None
            if fresh.status.is_terminal:
                log.warning(
                    "the call was recorded by another worker meanwhile; its outcome is kept",
                    extra={"status": fresh.status, "discarded": transitions.status_of(changes)},
                )
                return None
            if owner is not None and fresh.attempts != owner:
                log.info("a newer attempt owns the call; this attempt's result is not written")
                return None
            log.info("the call row changed while this attempt ran; writing over the fresh row")
            current = fresh
        raise StaleWrite(f"{call.request_id}/{call.call_id} kept changing")
