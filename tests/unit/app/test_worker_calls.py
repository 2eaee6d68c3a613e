"""The worker's one transition (write, re-queue, refresh) and how a failing Table write reaches it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from shared.adapters.ledger import TableLedger
from shared.core.errors import StaleWrite, StoreUnavailable
from shared.core.records import CallRecord
from shared.core.vocabulary import CallStatus
from shared.usecases.worker_calls import MAX_STORAGE_RETRIES, CallWriter
from tests.unit.app.fakes import InMemoryLedger, InMemoryPending, InMemoryQueue, queued_call_row

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
RID = "a" * 32


class FlakyLedger(InMemoryLedger):
    """Fails the next ``failures`` writes as an unreachable Table service would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def update_call(self, call: CallRecord) -> CallRecord:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("Table service did not answer")
        return await super().update_call(call)


def writer(ledger: InMemoryLedger) -> tuple[CallWriter, InMemoryQueue, list[float]]:
    queue, slept = InMemoryQueue(), []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return CallWriter(ledger, queue, InMemoryPending(), sleep), queue, slept


async def test_a_transition_writes_requeues_and_refreshes() -> None:
    ledger = InMemoryLedger()
    ledger.rows[(RID, "call-0001")] = queued_call_row(RID, T0)
    w, queue, _ = writer(ledger)
    call = await ledger.get_call(RID, "call-0001")
    assert call is not None
    saved = await w.transition(call, {"status": CallStatus.WAITING}, owner=0, now=T0, requeue=5.0)
    assert saved is not None
    assert saved.status is CallStatus.WAITING
    assert ledger.rows[(RID, "call-0001")]["status"] == "waiting"
    assert [(item.call_id, delay) for item, delay in queue.sent] == [("call-0001", 5.0)]


async def test_a_transient_store_failure_is_retried_briefly_then_raised() -> None:
    ledger = FlakyLedger(failures=MAX_STORAGE_RETRIES)
    ledger.rows[(RID, "call-0001")] = queued_call_row(RID, T0)
    w, _, slept = writer(ledger)
    call = await ledger.get_call(RID, "call-0001")
    assert call is not None
    assert await w.save(call, {"status": CallStatus.FAILED}, owner=None) is not None
    assert slept == [0.5, 1.0, 2.0]

    ledger.failures = MAX_STORAGE_RETRIES + 1
    fresh = await ledger.get_call(RID, "call-0001")
    assert fresh is not None
    with pytest.raises(StoreUnavailable):
        await w.save(fresh, {"status": CallStatus.FAILED}, owner=None)


class FailingTable:
    """A TableClient whose update fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def create_table(self) -> None:
        return None

    async def update_entity(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise self.error


def http_error(status: int | None) -> HttpResponseError:
    error = HttpResponseError(message="table said no")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (ServiceRequestError("connection refused"), StoreUnavailable),
        (http_error(503), StoreUnavailable),
        (http_error(None), StoreUnavailable),
        (http_error(412), StaleWrite),
        (http_error(400), HttpResponseError),
    ],
)
async def test_the_ledger_adapter_names_what_a_failed_write_means(error: Exception, raised: type[Exception]) -> None:
    ledger = TableLedger(FailingTable(error))  # type: ignore[arg-type]
    with pytest.raises(raised):
        await ledger.update_call(CallRecord(RID, "call-0001", version="v1"))


class ContendedLedger(InMemoryLedger):
    """Every status refresh loses to other workers of the same request."""

    async def refresh_request(self, request_id: str, now: datetime) -> Any:
        raise StaleWrite(f"{request_id}: request row kept changing")


async def test_losing_the_request_row_to_other_workers_does_not_fail_the_transition() -> None:
    """Raising here failed the invocation after the call was written (or claimed), so its message came back
    only after the whole claim; the request row is derived state that the other workers and the sweeper redo."""
    ledger = ContendedLedger()
    ledger.rows[(RID, "call-0001")] = queued_call_row(RID, T0)
    w, queue, _ = writer(ledger)
    call = await ledger.get_call(RID, "call-0001")
    assert call is not None
    saved = await w.transition(call, {"status": CallStatus.WAITING}, owner=0, now=T0, requeue=5.0)
    assert saved is not None
    assert ledger.rows[(RID, "call-0001")]["status"] == "waiting"
    assert [(item.call_id, delay) for item, delay in queue.sent] == [("call-0001", 5.0)]
