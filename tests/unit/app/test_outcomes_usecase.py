"""Outcome announcements and callbacks over fakes: once per terminal transition, durable, retried with backoff."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contract.names import REQUEST_ROW
from shared.contract.outcome_events import FINISHED_TYPE, finished_event, fitted
from shared.core import callbacks
from shared.core.ports import CallbackResult
from shared.core.request_ids import new_request_id
from shared.core.vocabulary import CallbackStatus, CallStatus
from shared.usecases import sweeper
from shared.usecases.operator.actions import RequestActions
from shared.usecases.outcomes import AnnouncingPending, CallbackMessage, Outcomes
from tests.unit.app.fakes import InMemoryLedger, InMemoryPending, InMemoryQueue, queued_call_row, request_records
from tests.unit.app.outcome_fakes import InMemoryMessages, RecordingPublisher, ScriptedCallbacks

RID = "20261202T090000000Z-0123456789abcdef"
FINISHED = datetime(2026, 12, 2, 9, 0, 5, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _ledger(status: str = "succeeded", **request: Any) -> InMemoryLedger:
    ledger = InMemoryLedger()
    call = queued_call_row(RID, FINISHED, status=status, result="Success", _v=1)
    ledger.rows[(RID, "call-0001")] = call
    ledger.rows[(RID, REQUEST_ROW)] = {
        "PartitionKey": RID,
        "RowKey": REQUEST_ROW,
        "requestId": RID,
        "status": status,
        "updatedAt": FINISHED,
        "createdAt": FINISHED - timedelta(seconds=5),
        "callCount": 1,
        f"{status}Count": 1,
        "_v": 2,
        **request,
    }
    ledger.version = 2
    return ledger


def _outcomes(ledger: InMemoryLedger, *results: CallbackResult, grid: bool = False) -> Outcomes:
    return Outcomes(
        ledger=ledger,
        outcomes_queue=InMemoryMessages(),
        callbacks_queue=InMemoryMessages(),
        callbacks=ScriptedCallbacks(*results),
        event_grid=RecordingPublisher() if grid else None,
        public_base_url="https://func.example.net",
        clock=Clock(FINISHED + timedelta(seconds=1)),
    )


def _events(outcomes: Outcomes) -> list[dict[str, Any]]:
    assert isinstance(outcomes.outcomes_queue, InMemoryMessages)
    return [json.loads(text) for text, _ in outcomes.outcomes_queue.sent]


def _row(ledger: InMemoryLedger) -> dict[str, Any]:
    return ledger.rows[(RID, REQUEST_ROW)]


async def test_a_finished_request_emits_one_cloudevent_with_its_status_body() -> None:
    ledger = _ledger()
    outcomes = _outcomes(ledger, grid=True)
    assert await outcomes.request_finished(RID)
    assert await outcomes.request_finished(RID)  # a duplicate work item, the sweeper: nothing new
    [event] = _events(outcomes)
    assert event["specversion"] == "1.0"
    assert event["type"] == FINISHED_TYPE
    assert event["subject"] == RID
    assert event["source"] == "https://func.example.net/api/provision"
    assert event["id"] == f"{RID}:succeeded:20261202T090005000000Z"
    assert event["data"]["requestId"] == RID
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["calls"][0]["result"] == "Success"
    assert isinstance(outcomes.event_grid, RecordingPublisher)
    assert outcomes.event_grid.events == [event]
    assert _row(ledger)["notifiedFor"] == "succeeded@2026-12-02T09:00:05Z"
    assert "notifyClaimFor" not in _row(ledger)


async def test_a_big_request_announces_its_counts_and_where_to_read_its_calls() -> None:
    """A 300-call status body is past what one queue message holds (64 KiB, base64): Azure answered 413 and the
    announcement was retried at every sweep, forever. The event leaves the calls out and points to them."""
    ledger = _ledger()
    for n in range(2, 301):
        call = queued_call_row(RID, FINISHED, status="succeeded", result="Success", _v=1, RowKey=f"call-{n:04d}")
        ledger.rows[(RID, f"call-{n:04d}")] = {**call, "errorMessage": "x" * 100}
    _row(ledger).update({"callCount": 300, "succeededCount": 300})
    outcomes = _outcomes(ledger, grid=True)
    assert await outcomes.request_finished(RID)
    [text] = [text for text, _ in outcomes.outcomes_queue.sent]  # type: ignore[attr-defined]
    assert len(base64.b64encode(text.encode())) <= 64 * 1024
    event = json.loads(text)
    assert event["dataref"] == f"https://func.example.net/api/provision/{RID}"
    assert event["data"]["callsOmitted"] == 300
    assert event["data"]["counts"]["succeeded"] == 300
    assert "calls" not in event["data"]
    # a small request's event is whole, with no claim check
    small = _outcomes(_ledger())
    assert await small.request_finished(RID)
    [whole] = _events(small)
    assert "dataref" not in whole
    assert whole["data"]["calls"][0]["result"] == "Success"


def test_an_event_too_big_even_without_its_calls_keeps_the_essentials() -> None:
    event = finished_event(
        RID,
        "failed",
        FINISHED,
        {
            "requestId": RID,
            "status": "failed",
            "counts": {"failed": 1},
            "errors": [{"field": "x", "detail": "y" * 60_000}],
            "calls": [],
        },
        public_base_url=None,
    )
    small = fitted(event, f"/api/provision/{RID}")
    assert small["data"] == {"requestId": RID, "status": "failed", "counts": {"failed": 1}, "callsOmitted": 0}
    assert small["dataref"] == f"/api/provision/{RID}"


async def test_a_pending_request_is_not_announced() -> None:
    ledger = _ledger(status="pending")
    outcomes = _outcomes(ledger)
    assert not await outcomes.request_finished(RID)
    assert _events(outcomes) == []


async def test_a_sender_that_died_after_claiming_is_taken_over_once_its_claim_runs_out() -> None:
    ledger = _ledger(status="failed")
    outcomes = _outcomes(ledger)
    assert isinstance(outcomes.outcomes_queue, InMemoryMessages)
    outcomes.outcomes_queue.fail_next = 1
    with pytest.raises(OSError, match="unreachable"):
        await outcomes.request_finished(RID)  # claimed, then the queue failed: nothing sent
    assert not await outcomes.request_finished(RID)  # a second sender finds the claim held and leaves it
    assert _events(outcomes) == []
    assert isinstance(outcomes.clock, Clock)
    outcomes.clock.now += timedelta(minutes=2)
    assert await outcomes.request_finished(RID)
    assert [e["data"]["status"] for e in _events(outcomes)] == ["failed"]


async def test_settle_reports_a_failure_instead_of_raising_and_the_sweeper_keeps_the_request() -> None:
    ledger = _ledger()
    outcomes = _outcomes(ledger)
    assert isinstance(outcomes.outcomes_queue, InMemoryMessages)
    outcomes.outcomes_queue.fail_next = 1
    pending = InMemoryPending()
    await pending.add(RID, FINISHED)
    now = FINISHED + timedelta(minutes=10)
    announcing = AnnouncingPending(pending, outcomes)
    await sweeper.sweep(ledger, InMemoryQueue(), announcing, now=now)
    assert [rid for rid, _ in await pending.list(10)] == [RID]
    assert isinstance(outcomes.clock, Clock)
    outcomes.clock.now = now
    await sweeper.sweep(ledger, InMemoryQueue(), announcing, now=now)
    assert await pending.list(10) == []
    assert len(_events(outcomes)) == 1


async def test_a_request_that_was_never_written_still_leaves_the_index() -> None:
    outcomes = _outcomes(InMemoryLedger())
    pending = InMemoryPending()
    await pending.add(RID, FINISHED)
    await AnnouncingPending(pending, outcomes).remove(RID)
    assert await pending.list(10) == []


async def test_an_operator_retry_that_finishes_again_is_a_new_event() -> None:
    ledger = _ledger()
    outcomes = _outcomes(ledger)
    assert await outcomes.request_finished(RID)
    _row(ledger)["updatedAt"] = FINISHED + timedelta(hours=1)
    assert await outcomes.request_finished(RID)
    first, second = _events(outcomes)
    assert first["id"] != second["id"]


async def test_a_callback_is_queued_once_and_delivered_with_the_status_body() -> None:
    url = "https://prod-01.westeurope.logic.azure.com/workflows/x/runs/y?sig=secret"
    ledger = _ledger(callbackUrl=url)
    outcomes = _outcomes(ledger)
    assert await outcomes.request_finished(RID)
    assert await outcomes.request_finished(RID)
    assert isinstance(outcomes.callbacks_queue, InMemoryMessages)
    [(text, delay)] = outcomes.callbacks_queue.sent
    assert delay == 0
    message = CallbackMessage.from_json(text)
    assert await outcomes.deliver_callback(message) == "delivered"
    assert await outcomes.deliver_callback(message) == "done"  # a duplicate message posts nothing
    assert isinstance(outcomes.callbacks, ScriptedCallbacks)
    [(posted_url, body)] = outcomes.callbacks.posts
    assert posted_url == url
    assert json.loads(body) == _events(outcomes)[0]["data"]
    row = _row(ledger)
    assert (row["callbackStatus"], row["callbackAttempts"], row.get("callbackLastError")) == ("delivered", 1, None)


async def test_a_failing_callback_is_retried_with_backoff_then_given_up_after_24_hours() -> None:
    ledger = _ledger(callbackUrl="https://a.logic.azure.com/cb")
    outcomes = _outcomes(ledger, CallbackResult(False, 503, "answered 503"))
    assert await outcomes.request_finished(RID)
    assert isinstance(outcomes.callbacks_queue, InMemoryMessages)
    assert isinstance(outcomes.clock, Clock)
    message = CallbackMessage.from_json(outcomes.callbacks_queue.sent[0][0])
    delays = []
    while (result := await outcomes.deliver_callback(message)) == "retrying":
        delay = outcomes.callbacks_queue.sent[-1][1]
        delays.append(delay)
        outcomes.clock.now += timedelta(seconds=delay)
    assert result == "failed"
    assert delays[:4] == [15.0, 30.0, 60.0, 120.0]
    assert max(delays) == callbacks.MAX_RETRY_SECONDS
    assert outcomes.clock.now - FINISHED <= timedelta(hours=24)
    row = _row(ledger)
    assert row["callbackStatus"] == "failed"
    assert row["callbackAttempts"] == len(delays) + 1
    assert row["callbackLastError"] == "answered 503"


async def test_a_callback_the_receiver_refuses_for_good_is_not_retried() -> None:
    ledger = _ledger(callbackUrl="https://a.logic.azure.com/cb")
    outcomes = _outcomes(ledger, CallbackResult(False, 404, "answered 404", permanent=True))
    assert await outcomes.request_finished(RID)
    assert isinstance(outcomes.callbacks_queue, InMemoryMessages)
    message = CallbackMessage.from_json(outcomes.callbacks_queue.sent[0][0])
    assert await outcomes.deliver_callback(message) == "failed"
    assert len(outcomes.callbacks_queue.sent) == 1


async def test_an_attempt_in_flight_is_not_made_twice() -> None:
    ledger = _ledger(callbackUrl="https://a.logic.azure.com/cb")
    outcomes = _outcomes(ledger)
    assert await outcomes.request_finished(RID)
    assert isinstance(outcomes.callbacks_queue, InMemoryMessages)
    message = CallbackMessage.from_json(outcomes.callbacks_queue.sent[0][0])
    request = await ledger.read_request(RID)
    assert request is not None
    claim = FINISHED + timedelta(minutes=5)
    sending = replace(
        request.marks, callback_status=CallbackStatus.SENDING, callback_attempts=1, callback_claimed_until=claim
    )
    await ledger.update_marks(request, sending)
    assert await outcomes.deliver_callback(message) == "busy"
    assert isinstance(outcomes.callbacks, ScriptedCallbacks)
    assert outcomes.callbacks.posts == []


async def test_a_callback_message_for_an_older_transition_posts_nothing() -> None:
    ledger = _ledger(callbackUrl="https://a.logic.azure.com/cb")
    outcomes = _outcomes(ledger)
    stale = CallbackMessage(RID, "failed@2026-12-01T00:00:00Z")
    assert await outcomes.deliver_callback(stale) == "stale"


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"requestId": 1, "transition": "x"}', b"not json"])
def test_a_callback_message_that_is_not_ours_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError, match=r".+"):
        CallbackMessage.from_json(body)


async def test_operator_actions_announce_through_the_wrapper_a_cancel_and_each_retried_round() -> None:
    ledger, clock = InMemoryLedger(), Clock(FINISHED)
    outcomes = _outcomes(ledger)
    pending = AnnouncingPending(InMemoryPending(), outcomes)
    actions = RequestActions(ledger, InMemoryQueue(), pending, clock=clock)
    failed_id, scheduled_id = new_request_id(FINISHED), new_request_id(FINISHED + timedelta(seconds=1))
    for request_id, status in ((failed_id, CallStatus.FAILED), (scheduled_id, CallStatus.SCHEDULED)):
        request, calls = request_records(request_id, FINISHED - timedelta(minutes=1), [status])
        await ledger.create(request, calls)
    await pending.remove(failed_id)  # the worker's first failure, announced

    clock.now = FINISHED + timedelta(minutes=1)
    await actions.retry(failed_id)
    call = await ledger.get_call(failed_id, "call-0001")
    assert call is not None
    await ledger.update_call(replace(call, status=CallStatus.FAILED, error_code="Again"))
    await ledger.refresh_request(failed_id, FINISHED + timedelta(minutes=2))
    await pending.remove(failed_id)  # the retried round failed again: a new terminal transition

    clock.now = FINISHED + timedelta(minutes=3)
    await actions.cancel(scheduled_id)

    events = _events(outcomes)
    assert [(e["subject"], e["data"]["status"]) for e in events] == [
        (failed_id, "failed"),
        (failed_id, "failed"),
        (scheduled_id, "cancelled"),
    ]
    assert len({e["id"] for e in events}) == 3, "each terminal transition is its own event"
