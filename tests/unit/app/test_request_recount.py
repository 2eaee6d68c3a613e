"""A request's counts are recounted a bounded number of times, and its status is exact at its last call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shared.core import aggregate
from shared.core.records import CallRecord, RequestRecord
from shared.core.vocabulary import CallStatus, RequestStatus
from shared.usecases.worker_calls import CallWriter
from tests.unit.app.fakes import InMemoryLedger, InMemoryPending, InMemoryQueue

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
RID = "b" * 32


@given(st.integers(min_value=1, max_value=5000))
def test_a_request_is_recounted_at_most_a_bounded_number_of_times(count: int) -> None:
    due = [i for i in range(count) if aggregate.recount_due(i, count)]
    assert due[0] == 0  # the first call tells a process the request's size
    if count <= aggregate.RECOUNT_EVERY_CALL_UP_TO:
        assert len(due) == count
    else:
        assert len(due) <= aggregate.RECOUNTS_PER_REQUEST
        # the counts never lag by more than a tenth of the calls (plus one)
        assert max(b - a for a, b in zip(due, [*due[1:], count], strict=True)) <= -(-count // 10)


class CountingLedger(InMemoryLedger):
    def __init__(self) -> None:
        super().__init__()
        self.recounts = 0
        self.probes = 0

    async def refresh_request(self, request_id: str, now: datetime) -> RequestRecord | None:
        self.recounts += 1
        return await super().refresh_request(request_id, now)

    async def has_unfinished_calls(self, request_id: str) -> bool:
        self.probes += 1
        return await super().has_unfinished_calls(request_id)


async def _request(ledger: InMemoryLedger, count: int) -> list[CallRecord]:
    calls = [CallRecord(RID, f"call-{i + 1:04d}", status=CallStatus.QUEUED, next_attempt_at=T0) for i in range(count)]
    await ledger.create(RequestRecord(RID, RequestStatus.PENDING, created_at=T0, call_count=count), calls)
    return [c for c in [await ledger.get_call(RID, c.call_id) for c in calls] if c is not None]


def _writer(ledger: InMemoryLedger, pending: InMemoryPending | None = None) -> CallWriter:
    async def sleep(_: float) -> None:
        return None

    return CallWriter(ledger, InMemoryQueue(), pending or InMemoryPending(), sleep)


DONE: dict[str, Any] = {"status": CallStatus.SUCCEEDED, "completed_at": T0}


async def test_a_big_request_is_recounted_ten_times_and_exactly_at_its_end() -> None:
    ledger = CountingLedger()
    calls = await _request(ledger, 200)
    writer = _writer(ledger)
    for call in calls[:-1]:
        await writer.transition(call, DONE, owner=None, now=T0)
    request = await ledger.read_request(RID)
    assert request is not None
    assert request.status is RequestStatus.PENDING
    # the last recount was at call 181 (every 20th), so the counts lag by 19 calls at most
    assert request.counts[CallStatus.SUCCEEDED] == 181
    assert ledger.recounts == 10
    await writer.transition(calls[-1], DONE, owner=None, now=T0)
    request = await ledger.read_request(RID)
    assert request is not None
    assert request.status is RequestStatus.SUCCEEDED
    assert request.counts[CallStatus.SUCCEEDED] == 200
    assert ledger.recounts == 11


async def test_a_small_request_is_recounted_at_every_call() -> None:
    ledger = CountingLedger()
    calls = await _request(ledger, 10)
    writer = _writer(ledger)
    for n, call in enumerate(calls, start=1):
        await writer.transition(call, DONE, owner=None, now=T0)
        request = await ledger.read_request(RID)
        assert request is not None
        assert request.counts[CallStatus.SUCCEEDED] == n
    assert ledger.probes == 0


async def test_a_writer_that_has_not_seen_the_request_recounts_it() -> None:
    """A process that first meets a request at an undue call does not know its size: it recounts once."""
    ledger = CountingLedger()
    calls = await _request(ledger, 200)
    await _writer(ledger).transition(calls[5], DONE, owner=None, now=T0)
    assert ledger.recounts == 1
    request = await ledger.read_request(RID)
    assert request is not None
    assert request.counts[CallStatus.SUCCEEDED] == 1


async def test_the_last_two_calls_finishing_in_two_processes_end_the_request_in_every_order() -> None:
    """Each writer writes its call, then asks whether any call is pending: whoever asks after both writes
    recounts. Forced interleavings of two processes (each has seen the request's size)."""
    for order in (["a.save", "b.save", "a.end", "b.end"], ["a.save", "a.end", "b.save", "b.end"]):
        ledger = CountingLedger()
        pending = InMemoryPending()
        calls = await _request(ledger, 50)
        writers = {"a": _writer(ledger, pending), "b": _writer(ledger, pending)}
        for call in calls[:-2]:
            await writers["a"].transition(call, DONE, owner=None, now=T0)
        await writers["b"].refresh(RID, T0)  # b learns the size, as after any of its earlier calls
        last = {"a": calls[-2], "b": calls[-1]}
        for step in order:
            who, what = step.split(".")
            if what == "save":
                await writers[who].save(last[who], DONE, owner=None)
            else:
                await writers[who].refresh(RID, T0, last[who].call_id)
        request = await ledger.read_request(RID)
        assert request is not None
        assert request.status is RequestStatus.SUCCEEDED, order
        assert request.counts[CallStatus.SUCCEEDED] == 50
