"""The backlog's writers racing on one parked call, against real Azurite: one call, one record, nothing lost.

A parked call has three writers besides Graph's answer: the worker that parks it (its backlog entry, then its
row), the dispatcher that hands it a slot (its row, then a message, then the entry goes) and the sweeper that
puts a lost entry back. Each interleaving below is forced with the pauses of ``test_races`` and ends with
exactly one provisionOnDemand, its answer recorded, and no entry left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.lease import TableLease
from shared.adapters.ledger import TableLedger
from shared.adapters.limiter import LIMITER_TABLE, TableLimiter
from shared.adapters.waiting_room import BACKLOG_TABLE, TableWaitingRoom
from shared.core.backlog import is_parked
from shared.core.pacing import RateLimit
from shared.core.ports import WorkItem
from shared.usecases import sweeper
from shared.usecases.dispatcher import Dispatcher
from shared.usecases.rule_discovery import RuleDiscovery
from shared.usecases.worker import Worker, WorkerPolicy
from tests.integration import test_races
from tests.integration.test_races import Bed, Pause, Paused, finish, started

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

SCOPE = "tenant"
# the race bed of test_races: Azurite, the emulator behind the real SDK, the real ledger adapters
emulator, bed = test_races.emulator, test_races.bed  # azurite: tests/integration/conftest.py


@dataclass
class Backlog:
    """The real limiter, backlog and lease on the bed's Azurite, on the bed's clock."""

    bed: Bed
    limiter: TableLimiter
    room: TableWaitingRoom
    lease: TableLease

    def dispatcher(self, *, room: Any = None, ledger: Any = None) -> Dispatcher:
        return Dispatcher(
            cast(TableLedger, ledger or self.bed.ledger),
            cast(Any, self.bed.queue),
            self.limiter,
            room or self.room,
            self.lease,
            clock=lambda: self.bed.clock().timestamp(),
        )

    def worker(self, *, room: Any = None) -> Worker:
        bed = self.bed
        return Worker(
            ledger=bed.ledger,
            queue=cast(Any, bed.queue),
            graph=bed.graph,
            rules=RuleDiscovery(bed.graph),
            logs=cast(Any, None),
            limiter=self.limiter,
            pending=bed.pending,
            policy=WorkerPolicy(),
            backlog=self.dispatcher(room=room),
            clock=bed.clock,
        )

    async def parked_call(self, room: Any = None) -> tuple[str, WorkItem]:
        """A call that finds calls waiting already, so it parks: its request id and work item."""
        await self.limiter.mark_waiting(SCOPE)  # calls wait: a newcomer queues behind them
        accepted = await self.bed.submit()
        item, _ = self.bed.queue.sent.pop(0)
        assert await self.worker(room=room).process(item) == "parked"  # before any claim: calls wait already
        return accepted.request_id, item

    async def keys(self) -> set[str]:
        return await self.room.keys(SCOPE)


@pytest.fixture
async def backlog(bed: Bed, azurite: str) -> AsyncIterator[Backlog]:
    limiter_table = TableClient.from_connection_string(azurite, table_name=LIMITER_TABLE)
    lease_table = TableClient.from_connection_string(azurite, table_name=LIMITER_TABLE)
    room_table = TableClient.from_connection_string(azurite, table_name=BACKLOG_TABLE)
    async with limiter_table, lease_table, room_table:
        clock = bed.clock
        yield Backlog(
            bed,
            TableLimiter(limiter_table, RateLimit(1000, 1.0), clock=lambda: clock().timestamp()),
            TableWaitingRoom(room_table),
            TableLease(lease_table, clock=lambda: clock().timestamp()),
        )


async def test_a_parked_call_is_dispatched_once_and_its_entry_goes(backlog: Backlog) -> None:
    request_id, item = await backlog.parked_call()
    call = await backlog.bed.ledger.get_call(request_id, item.call_id)
    assert call is not None
    assert is_parked(call)
    assert await backlog.keys() == {call.backlog_key}
    assert backlog.bed.queue.sent == [], "a parked call has no message: it does not circle"

    assert await backlog.dispatcher().pump(SCOPE) == 1
    assert await backlog.keys() == set()
    assert await backlog.bed.drain(backlog.worker()) == ["succeeded"]
    await backlog.bed.assert_one_answer_one_record(request_id)


async def test_a_dispatcher_between_the_parking_writes_leaves_the_entry(backlog: Backlog) -> None:
    """The worker has written the entry but not yet the row (the call is still ``queued``): a pump
    that reads the entry now must keep it, or the call would wait with no entry until the sweeper came."""
    written = Pause("worker wrote the backlog entry, not yet the row")
    room = Paused(backlog.room, "park", written)
    parking = await started(backlog.parked_call(room=room), written)
    assert await backlog.dispatcher().pump(SCOPE) == 0, "the call is not parked yet: nothing to hand a slot"
    assert len(await backlog.keys()) == 1, "and its entry stays"
    request_id, _ = await finish(parking, written)

    assert await backlog.dispatcher().pump(SCOPE) == 1
    assert await backlog.bed.drain(backlog.worker()) == ["succeeded"]
    await backlog.bed.assert_one_answer_one_record(request_id)
    assert await backlog.keys() == set()


async def test_a_duplicate_message_while_the_dispatcher_hands_the_slot_makes_no_second_call(backlog: Backlog) -> None:
    """The dispatcher has read the parked row and holds it; a duplicate message for the call arrives: the worker
    leaves a parked call alone. Then the dispatcher's conditional write goes through and the call runs once."""
    request_id, item = await backlog.parked_call()
    read = Pause("dispatcher has read the parked call")
    pump = await started(backlog.dispatcher(ledger=Paused(backlog.bed.ledger, "get_call", read)).pump(SCOPE), read)
    assert await backlog.worker().process(item) == "parked"
    assert await finish(pump, read) == 1
    assert await backlog.bed.drain(backlog.worker()) == ["succeeded"]
    await backlog.bed.assert_one_answer_one_record(request_id)


async def test_an_entry_the_sweeper_puts_back_after_the_dispatch_is_dropped_not_dispatched(backlog: Backlog) -> None:
    """The sweeper saw the call parked with no entry (lost) and decided to put it back; before it does, the
    call is handed a slot and runs. The entry it then writes points at a finished call: the next pump drops it."""
    request_id, item = await backlog.parked_call()
    call = await backlog.bed.ledger.get_call(request_id, item.call_id)
    assert call is not None
    key = str(call.backlog_key)
    entries = await backlog.room.head(SCOPE, 10)
    await backlog.room.remove(entries[0])  # lost: a restore, a hand edit

    decided = Pause("sweeper re-read the parked call")
    paused = cast(TableLedger, Paused(backlog.bed.ledger, "get_call", decided))
    sweeping = sweeper.Sweeper(paused, cast(Any, backlog.bed.queue), backlog.bed.pending, backlog.room)
    later = datetime.now(UTC) + timedelta(seconds=sweeper.GRACE_SECONDS + 1)  # parked longer ago than the grace
    sweep = await started(sweeping.sweep(now=later), decided)
    # meanwhile the entry is back (the sweeper of another instance, say) and the call is dispatched and runs
    await backlog.room.park(entries[0])
    assert await backlog.dispatcher().pump(SCOPE) == 1
    assert await backlog.bed.drain(backlog.worker()) == ["succeeded"]
    swept = await finish(sweep, decided)
    assert swept.reparked == 1
    assert await backlog.keys() == {key}, "the stale decision wrote the entry again"

    assert await backlog.dispatcher().pump(SCOPE) == 0, "dropped: its call is finished"
    assert await backlog.keys() == set()
    await backlog.bed.assert_one_answer_one_record(request_id)
