"""The shared limiter against real Azurite: one process's invocations take turns, instances still race safely.

A busy worker runs many invocations at once, all reserving on the same limiter row. They take turns per scope
inside the process and start from the row as the process last saw it, so they no longer lose ETag races to
each other; another instance's write in between is caught by the ETag and the row is read afresh. What must
hold whatever the interleaving: every reservation gets its own start, and no window holds more than the limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.limiter import LIMITER_TABLE, TableLimiter
from shared.core.pacing import RateLimit, count_in_any_window

pytestmark = pytest.mark.integration

LIMIT = RateLimit(50, 1.0)
SCOPE = "tenant"


class CountingTable:
    """The real async TableClient, counting the limiter row's reads and writes."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._table, name)
        if name in ("get_entity", "update_entity", "create_entity"):

            async def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return await attribute(*args, **kwargs)

            return counted
        return attribute


@pytest.fixture
async def tables(azurite: str) -> AsyncIterator[tuple[CountingTable, CountingTable]]:
    first = TableClient.from_connection_string(azurite, table_name=LIMITER_TABLE)
    second = TableClient.from_connection_string(azurite, table_name=LIMITER_TABLE)
    async with first, second:
        yield CountingTable(first), CountingTable(second)


async def reserve_all(limiter: TableLimiter, count: int) -> list[float]:
    reservations = await asyncio.gather(*(limiter.reserve(SCOPE, queue_behind=False) for _ in range(count)))
    return [r.start for r in reservations if r.start is not None]


async def test_one_process_invocations_take_turns_instead_of_losing_etag_races(
    tables: tuple[CountingTable, CountingTable],
) -> None:
    table, _ = tables
    limiter = TableLimiter(table, LIMIT)  # type: ignore[arg-type]  # the real client, counted
    starts = await reserve_all(limiter, 40)
    assert len(starts) == 40, "every invocation got a start"
    assert len(set(starts)) == 40
    assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls
    writes = table.calls["update_entity"] + table.calls["create_entity"]
    assert writes == 40, f"one write per reservation, no lost race inside the process: {table.calls}"
    assert table.calls["get_entity"] <= 2, f"the row is read once, then known: {table.calls}"


async def test_two_instances_racing_never_share_a_start_or_pass_the_limit(
    tables: tuple[CountingTable, CountingTable],
) -> None:
    first, second = tables
    one, other = TableLimiter(first, LIMIT), TableLimiter(second, LIMIT)  # type: ignore[arg-type]
    began = time.time()
    a, b = await asyncio.gather(reserve_all(one, 60), reserve_all(other, 60))
    starts = a + b
    assert len(starts) >= 100, "almost every reservation got a start (a few may find the row's bound full)"
    assert len(set(starts)) == len(starts), "no start handed out twice"
    assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls
    assert min(starts) >= began - 0.01


async def test_a_view_gone_stale_under_another_instance_is_caught_by_the_etag_and_read_afresh(
    tables: tuple[CountingTable, CountingTable],
) -> None:
    first, second = tables
    one, other = TableLimiter(first, LIMIT), TableLimiter(second, LIMIT)  # type: ignore[arg-type]
    starts = []
    for _ in range(10):  # strictly alternating: each instance's remembered row is always one write behind
        for limiter in (one, other):
            reservation = await limiter.reserve(SCOPE, queue_behind=False)
            assert reservation.start is not None
            starts.append(reservation.start)
    assert len(set(starts)) == 20
    assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls
    for table in (first, second):
        assert table.calls["get_entity"] >= 10, f"every turn after the other's write read afresh: {table.calls}"
        assert table.calls["update_entity"] + table.calls["create_entity"] <= 2 * 10 + 1, table.calls


async def test_a_stale_view_never_decides_to_write_nothing(tables: tuple[CountingTable, CountingTable]) -> None:
    first, second = tables
    one, other = TableLimiter(first, LIMIT), TableLimiter(second, LIMIT)  # type: ignore[arg-type]
    await one.mark_waiting(SCOPE)  # the row says calls wait, and `one` knows it
    assert (await other.state(SCOPE)).waiting
    await other.reserve_many(SCOPE, 0, waiting=False)  # another instance: nobody waits any more
    reads = first.calls["get_entity"]
    await one.mark_waiting(SCOPE)  # `one` remembers waiting=True: a no-op only on a fresh read, which says False
    assert first.calls["get_entity"] == reads + 1
    assert (await other.state(SCOPE)).waiting, "marked again, not skipped on the stale view"
