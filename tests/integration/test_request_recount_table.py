"""The one-row question "is any call of this request pending?" on the real Table adapter and Azurite."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableClient

from shared.adapters.ledger import TableLedger
from shared.core.records import CallRecord, RequestRecord
from shared.core.vocabulary import CallStatus, RequestStatus, WaitingFor
from shared.usecases.worker_calls import CallWriter
from tests.unit.app.fakes import InMemoryPending, InMemoryQueue

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
RID = "c" * 32


async def test_pending_calls_are_found_by_status_and_the_last_one_ends_the_request(azurite: str) -> None:
    async with TableClient.from_connection_string(azurite, "RecountLedger") as table:
        ledger = TableLedger(table)
        count = 60
        calls = [
            CallRecord(RID, f"call-{i + 1:04d}", status=CallStatus.QUEUED, next_attempt_at=T0) for i in range(count)
        ]
        await ledger.create(RequestRecord(RID, RequestStatus.PENDING, created_at=T0, call_count=count), calls)
        # a call row of another request, and the request row itself, never count
        await ledger.create(
            RequestRecord("d" * 32, RequestStatus.PENDING, created_at=T0, call_count=1),
            [CallRecord("d" * 32, "call-0001", status=CallStatus.QUEUED)],
        )

        async def sleep(_: float) -> None:
            return None

        writer = CallWriter(ledger, InMemoryQueue(), InMemoryPending(), sleep)
        rows = [c for c in [await ledger.get_call(RID, c.call_id) for c in calls] if c is not None]
        assert await ledger.has_unfinished_calls(RID) is True
        finished = {"status": CallStatus.SUCCEEDED, "completed_at": T0}
        for row in rows[:-1]:
            await writer.transition(row, finished, owner=None, now=T0)
        assert await ledger.has_unfinished_calls(RID) is True
        for status in (CallStatus.RUNNING, CallStatus.WAITING, CallStatus.SCHEDULED):
            current = await ledger.get_call(RID, rows[-1].call_id)
            assert current is not None
            await ledger.update_call(replace(current, status=status))
            assert await ledger.has_unfinished_calls(RID) is True, status
        (request, _) = await ledger.get_request(RID)
        assert request is not None
        assert request.status is RequestStatus.PENDING
        assert request.counts[CallStatus.SUCCEEDED] == 55  # recounted at every 6th call: 0, 6, …, 54
        last = await ledger.get_call(RID, rows[-1].call_id)
        assert last is not None
        await writer.transition(last, {"status": CallStatus.FAILED, "completed_at": T0}, owner=None, now=T0)
        assert await ledger.has_unfinished_calls(RID) is False
        (request, _) = await ledger.get_request(RID)
        assert request is not None
        assert request.status is RequestStatus.FAILED
        assert request.counts[CallStatus.SUCCEEDED] == 59
        assert request.counts[CallStatus.FAILED] == 1
        assert await ledger.has_unfinished_calls("d" * 32) is True


async def test_the_sweepers_glance_reads_pending_calls_state_only(azurite: str) -> None:
    """``unfinished_calls``: finished calls are filtered out by the service, and a pending call's log and subject
    are not read (a call row may carry a 600 KB log; a deep backlog is swept every five minutes)."""
    async with TableClient.from_connection_string(azurite, "GlanceLedger") as table:
        ledger = TableLedger(table)
        log = "x" * 100_000  # split over several properties by the codec
        calls = [
            CallRecord(RID, "call-0001", status=CallStatus.SUCCEEDED, completed_at=T0, provisioning_log=log),
            CallRecord(
                RID,
                "call-0002",
                subject={"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8"},
                status=CallStatus.WAITING,
                waiting_for=WaitingFor.SLOT,
                backlog_scope="scope",
                backlog_key="0000000001",
                provisioning_log=log,
                attempts=1,
            ),
            CallRecord(RID, "call-0003", status=CallStatus.RUNNING, claimed_until=T0, reserved_at=T0),
            CallRecord(RID, "call-0004", status=CallStatus.REJECTED, completed_at=T0),
        ]
        await ledger.create(RequestRecord(RID, RequestStatus.PENDING, created_at=T0, call_count=4), calls)
        glance = await ledger.unfinished_calls(RID)
        assert [c.call_id for c in glance] == ["call-0002", "call-0003"]
        parked, running = glance
        assert (parked.status, parked.waiting_for, parked.backlog_scope, parked.backlog_key) == (
            CallStatus.WAITING,
            WaitingFor.SLOT,
            "scope",
            "0000000001",
        )
        assert (parked.provisioning_log, parked.subject, parked.attempts) == (None, None, 0)
        assert (running.status, running.claimed_until, running.reserved_at) == (CallStatus.RUNNING, T0, T0)
        assert await ledger.unfinished_calls("e" * 32) == []
