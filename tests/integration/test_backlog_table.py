"""The dispatcher's bulk reads and removals on the real Table adapters and Azurite.

Handing out a window of slots reads the parked calls of a request in one query (the service filters what waits
for a slot) and removes their backlog entries in one transaction, falling back to one by one when an entry
changed or went meanwhile.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.ledger import TableLedger
from shared.adapters.waiting_room import BACKLOG_TABLE, TableWaitingRoom
from shared.core.ports import Parked
from shared.core.records import CallRecord, RequestRecord
from shared.core.vocabulary import CallStatus, RequestStatus, WaitingFor

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
RID = "e" * 32
SCOPE = "tenant"


def _call(i: int, status: CallStatus, waiting_for: WaitingFor | None = None) -> CallRecord:
    return CallRecord(RID, f"call-{i:04d}", status=status, waiting_for=waiting_for, next_attempt_at=T0)


async def test_a_requests_parked_calls_are_read_in_one_query_whole_and_with_their_versions(azurite: str) -> None:
    sent: list[str] = []

    def hook(request: Any) -> None:
        sent.append(request.http_request.method)

    async with TableClient.from_connection_string(azurite, "BacklogLedger", raw_request_hook=hook) as table:
        ledger = TableLedger(table)
        calls = [
            _call(i, CallStatus.WAITING, WaitingFor.SLOT) if i % 4 else _call(i, CallStatus.SUCCEEDED)
            for i in range(1, 41)
        ]
        calls[9] = _call(10, CallStatus.WAITING)  # waits for a time, not for a slot
        calls[10] = _call(11, CallStatus.RUNNING)
        await ledger.create(RequestRecord(RID, RequestStatus.PENDING, created_at=T0, call_count=40), calls)
        sent.clear()
        wanted = [f"call-{i:04d}" for i in (2, 3, 4, 10, 11, 12, 13, 39, 41)]
        found = await ledger.parked_calls(RID, wanted)
        assert sent == ["GET"], "one query"
        assert [c.call_id for c in found] == ["call-0002", "call-0003", "call-0013", "call-0039"]
        assert all(c.status is CallStatus.WAITING and c.waiting_for is WaitingFor.SLOT for c in found)
        # whole rows with their versions: the dispatcher writes them back conditionally
        point = await ledger.get_call(RID, "call-0002")
        assert point is not None
        assert found[0] == point
        assert found[0].version == point.version
        written = await ledger.update_call(replace(found[0], reserved_at=T0, waiting_for=None))
        assert written.version != found[0].version
        assert await ledger.parked_calls(RID, []) == []


async def test_entries_are_removed_in_one_transaction_or_one_by_one_when_one_changed(azurite: str) -> None:
    sent: list[str] = []

    def hook(request: Any) -> None:
        sent.append(request.http_request.url.rsplit("/", 1)[-1].split("?")[0])

    async with TableClient.from_connection_string(azurite, BACKLOG_TABLE, raw_request_hook=hook) as table:
        room = TableWaitingRoom(table)
        await room.park_many([Parked(SCOPE, f"k{i:03d}", RID, f"call-{i:04d}") for i in range(30)])
        head = await room.head(SCOPE, 10)
        sent.clear()
        await room.remove_many(head)
        assert sent == ["$batch"]
        assert [e.key for e in await room.head(SCOPE, 100)] == [f"k{i:03d}" for i in range(10, 30)]

        head = await room.head(SCOPE, 10)
        await room.park(replace(head[3], etag=None))  # parked again meanwhile: a new ETag
        gone = head[5]
        await room.remove(gone)
        sent.clear()
        await room.remove_many(head)
        assert sent[0] == "$batch"
        assert len(sent) == 1 + len(head), "the transaction failed whole: then one by one"
        assert [e.key for e in await room.head(SCOPE, 100)] == [head[3].key] + [f"k{i:03d}" for i in range(20, 30)]


def _spy_on_transactions(table: TableClient) -> list[list[str]]:
    """The operation kinds of every transaction the table client submits from now on."""
    kinds: list[list[str]] = []
    submit = table.submit_transaction

    async def spy(operations: Any, **kwargs: Any) -> Any:
        operations = list(operations)
        kinds.append([str(op[0]) for op in operations])
        return await submit(operations, **kwargs)

    table.submit_transaction = spy  # type: ignore[method-assign]
    return kinds


async def test_intake_creates_its_entries_and_a_retried_intake_upserts_the_same_ones(azurite: str) -> None:
    """Created, not upserted: on Azurite an upsert scans the whole table (see shared.adapters.new_rows)."""
    async with TableClient.from_connection_string(azurite, BACKLOG_TABLE) as table:
        room = TableWaitingRoom(table)
        kinds = _spy_on_transactions(table)
        entries = [Parked(SCOPE, f"k{i:03d}", RID, f"call-{i:04d}") for i in range(120)]
        await room.park_many(entries)
        assert kinds == [["create"] * 100, ["create"] * 20]
        kinds.clear()
        await room.park_many([*entries[95:105], Parked(SCOPE, "k999", RID, "call-0999")])  # a retry, and one new
        assert kinds == [["create"] * 11, ["upsert"] * 11], "one entry was there already: the same as upserts"
        head = await room.head(SCOPE, 1000)
        assert [e.key for e in head] == [*(f"k{i:03d}" for i in range(120)), "k999"]
        assert {(e.request_id, e.call_id) for e in head} == {(e.request_id, e.call_id) for e in [*entries, head[-1]]}


async def test_a_wake_is_a_base64_work_message_invisible_for_its_whole_seconds(azurite: str) -> None:
    """The dispatcher's wake rides on ``provisioning-work`` as the host reads it (base64), delayed by whole
    seconds rounded down (rather early than late: the pump then still finds the place within its horizon)."""
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    from shared.adapters.work_queue import StorageQueue
    from shared.core.ports import Wake, work_message

    encode, decode = TextBase64EncodePolicy(), TextBase64DecodePolicy()
    async with (
        QueueClient.from_connection_string(
            azurite, "wakes", message_encode_policy=encode, message_decode_policy=decode
        ) as client,
        QueueClient.from_connection_string(azurite, "wakes") as raw,
    ):
        queue = StorageQueue(client)
        await queue.wake(SCOPE, 0.9)  # rounded down: visible at once
        await queue.wake(SCOPE, 60.9)
        [message] = await raw.peek_messages(max_messages=32)
        assert work_message(base64.b64decode(message.content)) == Wake(SCOPE)
        properties = await client.get_queue_properties()
        assert properties.approximate_message_count == 2, "the later wake is there, not yet visible"
