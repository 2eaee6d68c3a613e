"""Retry, cancel, targets' health and poison messages over in-memory ports."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.contract import operator_views
from shared.contract.problems import Problem
from shared.core import aggregate
from shared.core.operations import Health
from shared.core.pacing import RateLimit
from shared.core.ports import GraphFailure, JobStatus, PoisonMessage, WorkItem
from shared.core.records import Attempt, CallRecord
from shared.core.request_ids import new_request_id
from shared.core.rules import TtlCache
from shared.core.vocabulary import CallStatus, RequestStatus
from shared.settings import Target
from shared.usecases.operator import poison
from shared.usecases.operator.actions import RequestActions
from shared.usecases.operator.targets import TargetHealth, drain_seconds
from tests.unit.app.fakes import (
    FakePoisonQueue,
    InMemoryLedger,
    InMemoryPending,
    InMemoryQueue,
    JobsOnly,
    request_records,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


async def _setup(statuses: list[str], **more: object) -> tuple[RequestActions, InMemoryLedger, InMemoryQueue, str]:
    ledger = InMemoryLedger()
    request_id = new_request_id(NOW)
    request, calls = request_records(request_id, NOW - timedelta(minutes=5), statuses, **more)  # type: ignore[arg-type]
    await ledger.create(request, calls)
    queue = InMemoryQueue()
    return RequestActions(ledger, queue, InMemoryPending(), clock=lambda: NOW), ledger, queue, request_id


# --- cancel --------------------------------------------------------------------------------------------------


async def test_cancel_cancels_what_has_not_started_and_leaves_a_running_call() -> None:
    actions, _, _, request_id = await _setup(["queued", "scheduled", "waiting", "running", "succeeded"])
    request, calls = await actions.cancel(request_id, by="op-1")
    assert [c.status for c in calls] == ["cancelled"] * 3 + ["running", "succeeded"]
    assert request.status == "pending", "the running call still finishes"
    assert (request.cancelled_by, request.cancelled_at) == ("op-1", NOW)
    assert calls[0].cancelled_by == "op-1"


async def test_a_request_whose_calls_all_ended_or_were_cancelled_is_cancelled_unless_one_failed() -> None:
    actions, _, _, request_id = await _setup(["queued", "succeeded", "skipped"])
    request, _ = await actions.cancel(request_id)
    assert request.status == "cancelled"
    assert request.counts[CallStatus.CANCELLED] == 1
    actions, _, _, request_id = await _setup(["scheduled", "failed"], target="t2")
    request, _ = await actions.cancel(request_id)
    assert request.status == "failed"


async def test_cancelling_a_finished_request_is_409_and_an_unknown_one_404() -> None:
    actions, _, _, request_id = await _setup(["succeeded"])
    with pytest.raises(Problem) as refused:
        await actions.cancel(request_id)
    assert refused.value.status == 409
    with pytest.raises(Problem) as unknown:
        await actions.cancel(new_request_id(NOW))
    assert unknown.value.status == 404


async def test_a_cancelled_request_leaves_the_in_flight_index_and_its_targets_backlog() -> None:
    actions, ledger, _, request_id = await _setup(["scheduled", "scheduled"])
    assert (await ledger.index.backlog("t1"))["scheduled"] == 2
    await actions.cancel(request_id)
    assert (await ledger.index.backlog("t1"))["scheduled"] == 0
    assert isinstance(actions.pending, InMemoryPending)
    assert request_id in actions.pending.removed


# --- retry ---------------------------------------------------------------------------------------------------


async def test_retry_archives_each_failed_round_and_queues_a_new_one() -> None:
    actions, ledger, queue, request_id = await _setup(["failed", "succeeded", "failed"])
    call = await ledger.get_call(request_id, "call-0001")
    assert call is not None
    await ledger.update_call(
        replace(call, error_code="EntryConflict", attempts=3, provisioning_log="log" * 30_000, failure_streak=2)
    )
    retried = await actions.retry(request_id, by="op-2")
    assert (retried.status, retried.call_ids) == ("pending", ("call-0001", "call-0003"))
    assert queue.sent == [(WorkItem(request_id, "call-0001"), 0), (WorkItem(request_id, "call-0003"), 0)]
    fresh = await ledger.get_call(request_id, "call-0001")
    assert fresh is not None
    assert (fresh.status, fresh.attempts, fresh.retries, fresh.retried_by) == ("queued", 0, 1, "op-2")
    assert (fresh.error_code, fresh.provisioning_log, fresh.failure_streak) == (None, None, None)
    assert not any(k.startswith("provisioningLog") for k in ledger.rows[(request_id, "call-0001")])
    (first, _) = await ledger.attempts(request_id)
    assert (first.call.call_id, first.number, first.call.error_code, first.call.attempts) == (
        "call-0001",
        1,
        "EntryConflict",
        3,
    )
    assert first.call.provisioning_log == "log" * 30_000, "the archived round keeps its (split) log"
    request = await ledger.read_request(request_id)
    assert request is not None
    assert (request.status, request.retried_by) == ("pending", "op-2")


async def test_a_second_round_is_archived_as_number_two() -> None:
    actions, ledger, _, request_id = await _setup(["failed"])
    await actions.retry(request_id)
    call = await ledger.get_call(request_id, "call-0001")
    assert call is not None
    await ledger.update_call(replace(call, status=CallStatus.FAILED, error_code="Again"))
    await actions.retry(request_id)
    assert [(a.number, a.call.error_code) for a in await ledger.attempts(request_id)] == [
        (1, None),
        (2, "Again"),
    ]


@pytest.mark.parametrize("statuses", [["succeeded"], ["queued", "running"], []])
async def test_retry_with_no_failed_call_is_409(statuses: list[str]) -> None:
    actions, _, queue, request_id = await _setup(statuses)
    with pytest.raises(Problem) as refused:
        await actions.retry(request_id)
    assert (refused.value.status, refused.value.slug) == (409, "nothing-to-retry")
    assert queue.sent == []


def test_attempt_history_is_shown_per_call_oldest_first() -> None:
    body = {"calls": [{"callId": "call-0001"}, {"callId": "call-0002"}]}
    failed = CallRecord("r", "call-0001", status=CallStatus.FAILED)
    rows = [
        Attempt(1, replace(failed, error_code="A", completed_at=NOW)),
        Attempt(2, replace(failed, error_code="B", graph_key="internal")),
    ]
    shown = operator_views.attach_attempts(body, rows)
    assert shown["calls"][0]["attemptHistory"] == [
        {
            "attemptNumber": 1,
            "status": "failed",
            "attempts": 0,
            "errorCode": "A",
            "completedAt": "2026-12-02T10:00:00Z",
        },
        {"attemptNumber": 2, "status": "failed", "attempts": 0, "errorCode": "B"},
    ]
    assert shown["calls"][1]["attemptHistory"] == []


# --- the summarize rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["cancelled"], "cancelled"),
        (["cancelled", "succeeded", "skipped"], "cancelled"),
        (["cancelled", "failed"], "failed"),
        (["cancelled", "running"], "pending"),
        (["succeeded", "skipped"], "succeeded"),
    ],
)
def test_a_request_with_cancelled_calls(statuses: list[str], expected: str) -> None:
    assert aggregate.summarize(statuses).status == expected


# --- targets -------------------------------------------------------------------------------------------------


def test_drain_is_the_backlog_at_the_limit_rounded_up() -> None:
    assert drain_seconds(0, RateLimit(5, 10)) == 0
    assert drain_seconds(1, RateLimit(5, 10)) == 2
    assert drain_seconds(51, RateLimit(5, 10)) == 102


async def test_targets_show_job_status_backlog_and_drain_and_graph_is_asked_once_per_cache_period() -> None:
    ledger = InMemoryLedger()
    queued, scheduled = [CallStatus.QUEUED] * 8, [CallStatus.SCHEDULED]
    for i, statuses in enumerate((queued + scheduled, [CallStatus.WAITING, CallStatus.RUNNING])):
        request, calls = request_records(new_request_id(NOW + timedelta(seconds=i)), NOW, statuses, target=f"t{i + 1}")
        await ledger.create(request, calls)
    graph = JobsOnly(
        {"j1": JobStatus("Quarantine", "EncounteredQuarantineException"), "j2": GraphFailure(503, "x", "down")}
    )
    clock = [0.0]
    health = TargetHealth(graph, ledger.index, RateLimit(5, 10), cache=TtlCache(30.0, clock=lambda: clock[0]))
    targets = [Target("t1", "sp1", "j1", "r1"), Target("t2", "sp2", "j2")]
    first, second = await health.all(targets)
    assert first.backlog == {"queued": 8, "scheduled": 1, "waiting": 0, "running": 0}
    assert first.drain_seconds == drain_seconds(10, RateLimit(5, 10)), "one tenant budget: everything ahead counts"
    assert second.job is None
    assert second.job_error == "x: down"
    view = operator_views.target_view(first)
    assert view["jobStatus"] == {"code": "Quarantine", "quarantine": {"reason": "EncounteredQuarantineException"}}
    assert set(view) == {
        "name",
        "servicePrincipalId",
        "jobId",
        "ruleId",
        "jobStatus",
        "backlog",
        "estimatedDrainSeconds",
    }
    await health.all(targets)
    assert graph.asked == ["j1", "j2"]
    clock[0] = 31.0
    await health.all(targets)
    assert graph.asked == ["j1", "j2", "j1", "j2"]


async def test_with_a_budget_per_job_a_target_drains_its_own_backlog() -> None:
    ledger = InMemoryLedger()
    request, calls = request_records(new_request_id(NOW), NOW, [CallStatus.QUEUED] * 5, target="t1")
    await ledger.create(request, calls)
    graph = JobsOnly({"j1": JobStatus("Active"), "j2": JobStatus("Active")})
    health = TargetHealth(graph, ledger.index, RateLimit(5, 10), scope="job")
    first, second = await health.all([Target("t1", "sp1", "j1"), Target("t2", "sp2", "j2")])
    assert (first.drain_seconds, second.drain_seconds) == (10, 0)
    assert isinstance(first, Health)


# --- poison --------------------------------------------------------------------------------------------------


async def test_poison_messages_carry_the_ledgers_reason() -> None:
    ledger = InMemoryLedger()
    text = json.dumps({"subjects": []})
    request_id = new_request_id(NOW)
    request, _ = request_records(request_id, NOW, [])
    request = replace(
        request,
        status=RequestStatus.REJECTED,
        reason="The request body is not valid",
        errors=({"pointer": "/subjects", "detail": "too short"},),
        message_hash=poison.message_hash(text),
    )
    await ledger.create(request, [])

    failed_call_id = new_request_id(NOW + timedelta(seconds=1))
    failed, calls = request_records(failed_call_id, NOW, [CallStatus.FAILED])
    calls[0] = replace(calls[0], error_code="ServiceUnavailable", error_message="Graph was down")
    await ledger.create(failed, calls)

    def message(i: int, body: str) -> PoisonMessage:
        return PoisonMessage(f"m{i}", body, NOW, 5)

    requests_poison = FakePoisonQueue("provisioning-requests-poison", [message(1, text), message(2, "{}")])
    work_poison = FakePoisonQueue(
        "provisioning-work-poison",
        [message(3, WorkItem(failed_call_id, "call-0001").to_json()), message(4, "garbage")],
    )
    found = await poison.peek_all([requests_poison, work_poison], ledger=ledger, index=ledger.index)
    reasons = {p.message.message_id: p.reason for p in found}
    assert reasons["m1"] == "The request body is not valid (/subjects: too short)"
    assert "host" in reasons["m2"]
    assert reasons["m3"] == "call failed: ServiceUnavailable: Graph was down"
    assert "Not a work item" in reasons["m4"]
    view = operator_views.poison_view(found[2])
    assert (view["requestId"], view["callId"], view["dequeueCount"]) == (failed_call_id, "call-0001", 5)

    assert await poison.requeue(work_poison, ["m3"]) == 1
    assert work_poison.source == [WorkItem(failed_call_id, "call-0001").to_json()]
    assert [m.message_id for m in work_poison.messages] == ["m4"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ([], ""),
        ({"queue": "provisioning-work"}, "/queue"),
        ({"queue": "provisioning-work-poison", "messageIds": "m1"}, "/messageIds"),
        ({"queue": "provisioning-work-poison", "messageIds": None}, "/messageIds"),  # absent means all; null is not
        ({"queue": "provisioning-work-poison", "messageIds": ["ok", "no/slash"]}, "/messageIds/1"),
        ({"queue": "provisioning-work-poison", "extra": 1}, "/extra"),
    ],
)
def test_a_bad_requeue_body_is_400_naming_the_field(body: object, pointer: str) -> None:
    with pytest.raises(Problem) as refused:
        operator_views.requeue_body(body, ("provisioning-requests-poison", "provisioning-work-poison"))
    assert [e.pointer for e in refused.value.errors] == [pointer]
