"""What Graph really answers, recorded end to end: Failure in a 200, unparseable answers, large logs,
group fan-out, ruleId discovery, and retention."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devhost.stack import Stack
from shared.core.records import CallRecord, RequestRecord
from shared.core.request_ids import new_request_id
from shared.core.vocabulary import CallStatus, RequestStatus
from shared.runtime import Runtime
from shared.settings import Settings
from tests.integration.conftest import wait_done
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT

pytestmark = pytest.mark.integration

GROUP = "a0b1c2d3-0000-4000-8000-00000000a001"
FRESH_USER = "e1a2b3c4-0001-4a5b-8c6d-000000000001"
WORKDAY_RULE = "c4f1a2b3-5d6e-4f70-8a9b-0c1d2e3f4a5b"


def _post(stack: Stack, body: dict[str, Any]) -> str:
    posted = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    return str(posted.headers["Location"])


def _answer_next_call(stack: Stack, key: str | None, value: str | None) -> None:
    httpx.post(
        f"{stack.emulator_url}/_emulator/config",
        json={"clearFaults": True, "faults": [{"kind": "answer", "key": key, "value": value}]},
        timeout=HTTP_TIMEOUT,
    ).raise_for_status()


def _user(object_id: str) -> dict[str, Any]:
    return {"target": "seed-scim-app", "subjects": [{"objectId": object_id, "objectTypeName": "User"}]}


def test_a_failure_inside_a_200_is_failed_with_graphs_error_code(stack: Stack) -> None:
    key = json.dumps(
        {"result": "Failure", "details": {"errorCode": "EntryConflict", "errorMessage": "Two users match"}}
    )
    value = json.dumps(
        {
            "action": "Create",
            "changeId": "c-fail",
            "statusInfo": {"status": "Failure", "errorCode": "EntryConflict", "recommendedAction": "Fix matching"},
            "provisioningSteps": [
                {"name": "EntryImport", "status": "Success"},
                {"name": "EntryExportAdd", "status": "Failure"},
            ],
        }
    )
    _answer_next_call(stack, key, value)
    result = wait_done(_post(stack, _user("c0ffee00-0000-4000-8000-000000000004")))
    (call,) = result["calls"]
    assert result["status"] == "failed"
    assert (call["status"], call["httpStatus"], call["result"]) == ("failed", 200, "Failure")
    assert call["errorCode"] == "EntryConflict"
    assert call["errorMessage"] == "Two users match"
    assert call["recommendedAction"] == "Fix matching"
    assert call["failedStep"] == "EntryExportAdd"
    assert call["attempts"] == 1, "a Failure answer is final: retrying would touch the directory again"


def test_an_unparseable_answer_is_failed_and_the_raw_text_is_kept(stack: Stack) -> None:
    _answer_next_call(stack, "Microsoft.Identity.Health.Something", "<html>not json</html>")
    location = _post(stack, _user("c0ffee00-0000-4000-8000-000000000005"))
    result = wait_done(location, include="provisioningLog")
    (call,) = result["calls"]
    assert call["status"] == "failed"
    assert call["errorCode"] == "UnparseableResponse"
    assert call["rawKey"] == "Microsoft.Identity.Health.Something"
    assert call["provisioningLog"] == "<html>not json</html>"


@pytest.mark.parametrize("size_kb", [150, 900])
def test_a_large_provisioning_log_is_stored_whole(stack: Stack, size_kb: int) -> None:
    """150 KB is split over call-row properties; 900 KB exceeds a Table entity and goes to a blob."""
    attributes = {f"extensionAttribute{i}": "x" * 1000 + "é€😀" for i in range(size_kb)}
    value = json.dumps(
        {
            "action": "Create",
            "changeId": f"big-{size_kb}",
            "statusInfo": {"status": "Success"},
            "provisioningSteps": [{"name": "EntryImport", "status": "Success", "details": attributes}],
        },
        ensure_ascii=False,
    )
    assert len(value.encode()) >= size_kb * 1000
    _answer_next_call(stack, '{"result":"Success","details":{}}', value)
    location = _post(stack, _user(f"c0ffee00-0000-4000-8000-0000000000{size_kb % 90 + 10}"))
    result = wait_done(location, include="provisioningLog")
    (call,) = result["calls"]
    assert call["status"] == "succeeded"
    assert call["changeId"] == f"big-{size_kb}"
    assert call["provisioningLog"] == value
    assert "provisioningLog" not in wait_done(location)["calls"][0], "the log is only sent when asked for"


def test_a_group_with_12_members_becomes_3_calls_of_at_most_5(stack: Stack) -> None:
    members = [
        {"objectId": f"c0ffee00-0000-4000-8000-0000000000{i:02d}", "objectTypeName": "User"} for i in range(1, 13)
    ]
    location = _post(
        stack,
        {
            "target": "seed-scim-app",
            "subjects": [{"objectId": GROUP, "objectTypeName": "Group", "links": {"members": members}}],
        },
    )
    result = wait_done(location)
    assert result["status"] == "succeeded"
    calls = result["calls"]
    assert [c["callId"] for c in calls] == ["call-0001", "call-0002", "call-0003"]
    chunks = [c["subject"]["links"]["members"] for c in calls]
    assert [len(chunk) for chunk in chunks] == [5, 5, 2]
    assert [m for chunk in chunks for m in chunk] == members
    assert all(c["status"] == "succeeded" for c in calls)
    assert result["counts"]["succeeded"] == 3

    seen = httpx.get(
        f"{stack.emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=HTTP_TIMEOUT
    ).json()["calls"]
    group_calls = [c for c in seen if GROUP in json.dumps(c["body"])]
    sent = sorted(len(c["body"]["parameters"][0]["subjects"][0]["links"]["members"]) for c in group_calls[-3:])
    assert sent == [2, 5, 5], "the calls run in parallel, in any order"


def test_a_target_without_rule_id_gets_it_from_the_schema_once(stack: Stack) -> None:
    def schema_reads() -> int:
        calls = httpx.get(
            f"{stack.emulator_url}/_emulator/calls", params={"operation": "getSchema"}, timeout=HTTP_TIMEOUT
        ).json()["calls"]
        return len(calls)

    before = schema_reads()
    for worker_id in ("21001", "21002"):
        result = wait_done(
            _post(stack, {"target": "workday-to-ad", "subjects": [{"objectId": worker_id, "objectTypeName": "Worker"}]})
        )
        (call,) = result["calls"]
        assert call["status"] == "succeeded", call
        assert call["ruleId"] == WORKDAY_RULE
        assert call["ruleSource"] == "schema"
        assert call["action"] == "Create"
    assert schema_reads() - before == 1, "the schema is cached"


def test_no_fitting_rule_rejects_the_call_with_the_reason(stack: Stack) -> None:
    result = wait_done(
        _post(stack, {"target": "workday-to-ad", "subjects": [{"objectId": GROUP, "objectTypeName": "Group"}]})
    )
    (call,) = result["calls"]
    assert result["status"] == "failed", "a request whose call was refused failed; 'rejected' is for refused requests"
    assert call["status"] == "rejected"
    assert call["errorCode"] == "NoMatchingRule"
    assert "'Group'" in call["errorMessage"]
    assert "Worker" in call["errorMessage"]


def test_retention_timer_deletes_old_finished_requests_and_their_logs(stack: Stack) -> None:
    """Old and finished: deleted with its blob. Fresh, or old but still pending (far notBefore): kept."""

    async def scenario() -> tuple[str, str, str]:
        runtime = Runtime(Settings.from_environ(stack.env))
        now = datetime.now(UTC)
        old_time = now - timedelta(days=91)
        old, fresh, waiting = new_request_id(old_time), new_request_id(now), new_request_id(old_time)
        for request_id, status, updated in (
            (old, "succeeded", old_time),
            (fresh, "succeeded", now),
            (waiting, "pending", old_time),
        ):
            row = RequestRecord(request_id, RequestStatus(status), updated_at=updated)
            call = CallRecord(
                request_id, "call-0001", status=CallStatus.QUEUED if status == "pending" else CallStatus(status)
            )
            await runtime.ledger.create(row, [call])
            await runtime.log_store.put(request_id, "call-0001", "{}")
        return old, fresh, waiting

    async def exists(request_id: str) -> tuple[bool, bool]:
        runtime = Runtime(Settings.from_environ(stack.env))
        request, _ = await runtime.ledger.get_request(request_id)
        blob = await runtime.log_store.get(f"{request_id}/call-0001.json")
        return request is not None, blob is not None

    old, fresh, waiting = asyncio.run(scenario())
    invoked = httpx.post(f"{stack.base_url}/admin/functions/ledger_retention", json={"input": ""}, timeout=HTTP_TIMEOUT)
    assert invoked.status_code == 202
    deadline = time.monotonic() + DEADLINE
    while asyncio.run(exists(old)) != (False, False):
        assert time.monotonic() < deadline, "the old request was not purged"
        time.sleep(0.2)
    assert asyncio.run(exists(fresh)) == (True, True)
    assert asyncio.run(exists(waiting)) == (True, True), "a pending request is never purged"
