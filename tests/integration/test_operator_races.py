"""An operator and a worker on the same call, interleaved exactly (see test_races.py for the bed).

Cancel and the worker's claim both write the call row conditionally on the ETag they read: whichever writes
first wins, and the other re-reads and decides again. So a call a worker claimed first runs to its end (the
cancel leaves it), and a call cancelled first is never sent (the worker finds it finished). Two retries of
one failed call give it one new round.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from shared.adapters.ledger import TableLedger
from shared.contract.problems import Problem
from shared.core.ports import WorkItem
from shared.core.records import CallRecord, RequestRecord
from shared.core.vocabulary import CallStatus
from shared.usecases.operator.actions import RequestActions
from tests.integration.test_races import (  # noqa: F401  (bed and emulator are fixtures; azurite is in conftest)
    Bed,
    Pause,
    Paused,
    bed,
    emulator,
    finish,
    started,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]


def _actions(on: Bed, ledger: Any = None) -> RequestActions:
    return RequestActions(cast(TableLedger, ledger or on.ledger), cast(Any, on.queue), on.pending)


async def _cancel(on: Bed, request_id: str, ledger: Any = None) -> tuple[RequestRecord, list[CallRecord]]:
    return await _actions(on, ledger).cancel(request_id, by="operator-1")


async def test_a_cancel_leaves_a_call_the_worker_claimed_after_the_cancel_read_it(bed: Bed) -> None:  # noqa: F811
    accepted = await bed.submit()
    item, _ = bed.queue.sent.pop(0)
    read = Pause("cancel has read the queued call")
    cancel = await started(_cancel(bed, accepted.request_id, Paused(bed.ledger, "get_call", read)), read)
    answered = Pause("worker holds Graph's answer")
    work = await started(bed.worker(graph=Paused(bed.graph, "provision_on_demand", answered)).process(item), answered)

    request, calls = await finish(cancel, read)
    assert [c.status for c in calls] == ["running"], "the claim came first: the running call finishes"
    assert request.status == "pending"
    assert await finish(work, answered) == "succeeded"
    assert await bed.drain(bed.worker()) == []
    await bed.assert_one_answer_one_record(accepted.request_id)


async def test_a_call_cancelled_after_the_worker_read_it_is_never_sent(bed: Bed) -> None:  # noqa: F811
    accepted = await bed.submit()
    item, _ = bed.queue.sent.pop(0)
    read = Pause("worker has read the queued call")
    work = await started(bed.worker(ledger=Paused(bed.ledger, "get_call", read)).process(item), read)

    request, calls = await _cancel(bed, accepted.request_id)
    assert (request.status, [c.status for c in calls]) == ("cancelled", ["cancelled"])
    assert request.cancelled_by == "operator-1"

    assert await finish(work, read) == "duplicate", "the claim met the cancel's ETag; the call is finished"
    assert await bed.drain(bed.worker()) == []
    assert bed.posts() == [], "Graph never saw the cancelled call"
    call = await bed.ledger.get_call(accepted.request_id, "call-0001")
    assert call is not None
    assert (call.status, call.attempts) == ("cancelled", 0)


async def test_two_retries_of_one_failed_call_give_it_one_new_round(bed: Bed) -> None:  # noqa: F811
    accepted = await bed.submit()
    item, _ = bed.queue.sent.pop(0)
    call = await bed.ledger.get_call(accepted.request_id, item.call_id)
    assert call is not None
    await bed.ledger.update_call(
        replace(call, status=CallStatus.FAILED, error_code="EntryConflict", completed_at=call.created_at)
    )
    await bed.ledger.refresh_request(accepted.request_id, datetime.now(UTC))

    def retry(ledger: Any) -> Any:
        return _actions(bed, ledger).retry(accepted.request_id, by="operator-1")

    read = Pause("retry A has read the failed call")
    first = await started(retry(Paused(bed.ledger, "get_call", read)), read)
    second = await retry(bed.ledger)
    assert second.call_ids == ("call-0001",)
    with pytest.raises(Problem) as refused:
        await finish(first, read)
    assert (refused.value.status, refused.value.title) == (409, "Nothing to retry")
    assert bed.queue.sent == [(WorkItem(accepted.request_id, "call-0001"), 0)], "one new round, one work item"
    assert [a.number for a in await bed.ledger.attempts(accepted.request_id)] == [1]
    assert await bed.drain(bed.worker()) == ["succeeded"]
    await bed.assert_one_answer_one_record(accepted.request_id)
