"""The intake use case against fakes of its ports: what it writes, what it queues, and how an event id repeats."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.contract.problems import FieldError, Problem
from shared.core.models import ProvisioningRequest
from shared.core.vocabulary import RequestStatus, Source
from shared.settings import Settings
from shared.usecases.intake import AcceptCommand, Intake
from tests.unit.app.fakes import InMemoryEventIndex, InMemoryLedger, InMemoryPending, InMemoryQueue

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
SP, JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"
USER = {"objectId": "9bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "User"}
GROUP = {"objectId": "0bb0f679-a883-4a6f-8260-35b491b8b8c8", "objectTypeName": "Group"}
RID = "1" * 32


def intake() -> tuple[Intake, InMemoryLedger, InMemoryQueue, InMemoryPending]:
    targets = json.dumps({"scim": {"servicePrincipalId": SP, "jobId": JOB, "ruleId": "rule-1"}})
    settings = Settings.from_environ(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PROVISIONING_TARGETS": targets}
    )
    ledger, queue, pending = InMemoryLedger(), InMemoryQueue(), InMemoryPending()
    use_case = Intake(settings, ledger, queue, InMemoryEventIndex(), pending, new_request_id=lambda _: RID)
    return use_case, ledger, queue, pending


def command(now: datetime = T0, **body: object) -> AcceptCommand:
    request = ProvisioningRequest.model_validate_json(json.dumps({"target": "scim", "subjects": [USER, GROUP], **body}))
    return AcceptCommand(request, Source.HTTP, now, normalisations=["a note"])


async def test_a_request_is_written_as_the_ledger_contract_says_and_each_call_queued() -> None:
    use_case, ledger, queue, pending = intake()
    accepted = await use_case.accept(command())
    assert (accepted.request_id, accepted.status, accepted.calls, accepted.duplicate) == (RID, "pending", 2, False)
    request = ledger.rows[(RID, "request")]
    assert {k: v for k, v in request.items() if k != "_v"} == {
        "PartitionKey": RID,
        "RowKey": "request",
        "requestId": RID,
        "status": "pending",
        "source": "http",
        "createdAt": T0,
        "updatedAt": T0,
        "target": "scim",
        "servicePrincipalId": SP,
        "jobId": JOB,
        "ruleId": "rule-1",
        "callCount": 2,
        "normalisations": '["a note"]',
        **{f"{s}Count": 0 for s in ("scheduled", "waiting", "running", "succeeded", "skipped", "failed")},
        "queuedCount": 2,
        "rejectedCount": 0,
        "cancelledCount": 0,
    }
    call = ledger.rows[(RID, "call-0002")]
    assert {k: v for k, v in call.items() if k != "_v"} == {
        "PartitionKey": RID,
        "RowKey": "call-0002",
        "subject": json.dumps(GROUP, separators=(",", ":")),
        "servicePrincipalId": SP,
        "jobId": JOB,
        "ruleId": "rule-1",
        "ruleSource": "target",
        "status": "queued",
        "attempts": 0,
        "notBefore": T0,
        "nextAttemptAt": T0,
        "createdAt": T0,
    }
    assert sorted((item.call_id, delay) for item, delay in queue.sent) == [("call-0001", 0.0), ("call-0002", 0.0)]
    assert pending.entries == {RID: T0}


async def test_a_call_beyond_the_queues_reach_waits_for_the_sweeper() -> None:
    use_case, ledger, queue, _ = intake()
    later = T0 + timedelta(days=30)
    accepted = await use_case.accept(command(notBefore=later.isoformat()))
    assert accepted.status is RequestStatus.PENDING
    assert queue.sent == []
    call = ledger.rows[(RID, "call-0001")]
    assert (call["status"], call["enqueued"], call["nextAttemptAt"]) == ("scheduled", False, later)


async def test_not_before_too_far_ahead_is_a_400_naming_the_field() -> None:
    use_case, ledger, _, _ = intake()
    with pytest.raises(Problem) as raised:
        await use_case.accept(command(notBefore=(T0 + timedelta(days=400)).isoformat()))
    assert [e.pointer for e in raised.value.errors] == ["/notBefore"]
    assert ledger.rows == {}


async def test_a_repeated_event_answers_the_first_request_and_a_changed_body_is_a_409() -> None:
    use_case, ledger, queue, _ = intake()
    first = await use_case.accept(command(eventId="evt-1"))
    rows = dict(ledger.rows)
    use_case.new_request_id = lambda _: "2" * 32
    again = await use_case.accept(command(eventId="evt-1"))
    assert (again.request_id, again.calls, again.duplicate) == (first.request_id, 2, True)
    assert ledger.rows == rows
    assert len(queue.sent) == 2, "the repeat queues nothing"
    changed = AcceptCommand(
        ProvisioningRequest.model_validate({"target": "scim", "subjects": [USER], "eventId": "evt-1"}),
        Source.GRAPH_COMPATIBLE,
        T0,
        conflict_error=FieldError("client-request-id", "was already used with a different body"),
    )
    with pytest.raises(Problem) as raised:
        await use_case.accept(changed)
    assert raised.value.status == 409
    assert [e.pointer for e in raised.value.errors] == ["client-request-id"]
