"""The operator's routes, tried as an operator would against the stack: find a failed request and retry it,
cancel a scheduled one before Graph sees it, read the targets' health, requeue a poison message."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devhost.stack import Stack
from tests.integration.conftest import wait_done
from tests.integration.timeouts import HTTP_TIMEOUT, wait_until

pytestmark = pytest.mark.integration

#: Users of the emulator's tenant in a group the seed SCIM app is assigned (Graph provisions them).
_USERS = {1: "10", 2: "12", 3: "09", 4: "01", 5: "02", 6: "03"}


def _user(n: int) -> str:
    return f"c0ffee00-0000-4000-8000-0000000000{_USERS[n]}"


def _graph_calls(stack: Stack, needle: str) -> list[dict[str, Any]]:
    calls = httpx.get(
        f"{stack.emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=HTTP_TIMEOUT
    ).json()
    return [c for c in calls["calls"] if needle in json.dumps(c["body"])]


def _body(n: int, **more: Any) -> dict[str, Any]:
    return {"target": "seed-scim-app", "subjects": [{"objectId": _user(n), "objectTypeName": "User"}], **more}


def _fail_next_call() -> dict[str, Any]:
    key = json.dumps({"result": "Failure", "details": {"errorCode": "EntryConflict", "errorMessage": "Two match"}})
    return {"clearFaults": True, "faults": [{"kind": "answer", "key": key, "value": "{}"}]}


def _list(stack: Stack, **params: str) -> dict[str, Any]:
    answer = httpx.get(f"{stack.base_url}/api/provision", params=params, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_failed_request_is_found_retried_and_succeeds_with_both_attempts_readable(stack: Stack) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    calls_before = len(_graph_calls(stack, _user(1)))
    httpx.post(f"{stack.emulator_url}/_emulator/config", json=_fail_next_call(), timeout=HTTP_TIMEOUT)
    body = _body(1, eventId="operator-retry-1")
    posted = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert posted.status_code == 202, posted.text
    request_id = posted.json()["requestId"]
    assert wait_done(posted.headers["Location"])["status"] == "failed"

    found = _list(stack, status="failed", since=since)["value"]
    assert request_id in [s["requestId"] for s in found]
    (summary,) = [s for s in found if s["requestId"] == request_id]
    assert summary["eventId"] == "operator-retry-1"
    assert summary["objectIds"] == [_user(1)]
    assert (summary["callCount"], summary["counts"]["failed"]) == (1, 1)
    assert request_id not in [s["requestId"] for s in _list(stack, status="pending", since=since)["value"]]
    assert [s["requestId"] for s in _list(stack, objectId=_user(1).upper(), since=since)["value"]] == [request_id]

    again = httpx.post(f"{stack.base_url}/api/provision", json=body, timeout=HTTP_TIMEOUT)
    assert again.json()["requestId"] == request_id
    retry_link = again.json()["links"]["retry"]
    assert retry_link == f"{stack.base_url}/api/provision/{request_id}/retry"
    assert "links.retry" in again.json()["advice"]

    retried = httpx.post(retry_link, timeout=HTTP_TIMEOUT)
    assert retried.status_code == 202, retried.text
    assert retried.headers["Location"] == f"{stack.base_url}/api/provision/{request_id}"
    done = wait_done(retried.headers["Location"], include="attempts")
    assert done["status"] == "succeeded"
    (call,) = done["calls"]
    assert call["status"] in ("succeeded", "skipped")
    (earlier,) = call["attemptHistory"]
    assert (earlier["status"], earlier["errorCode"], earlier["attemptNumber"]) == ("failed", "EntryConflict", 1)
    assert len(_graph_calls(stack, _user(1))) == calls_before + 2, "one Graph call per attempt"
    assert request_id in [s["requestId"] for s in _list(stack, status="succeeded", since=since)["value"]]
    assert request_id not in [s["requestId"] for s in _list(stack, status="failed", since=since)["value"]]

    nothing = httpx.post(retry_link, timeout=HTTP_TIMEOUT)
    assert nothing.status_code == 409
    assert nothing.headers["Content-Type"].startswith("application/problem+json")


def test_a_scheduled_request_is_cancelled_and_graph_never_sees_it(stack: Stack) -> None:
    not_before = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    before = _backlog(stack)
    calls_before = len(_graph_calls(stack, _user(2)))
    posted = httpx.post(f"{stack.base_url}/api/provision", json=_body(2, notBefore=not_before), timeout=HTTP_TIMEOUT)
    request_id = posted.json()["requestId"]
    assert _backlog(stack)["scheduled"] == before["scheduled"] + 1

    cancelled = httpx.post(f"{stack.base_url}/api/provision/{request_id}/cancel", timeout=HTTP_TIMEOUT)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert [c["status"] for c in cancelled.json()["calls"]] == ["cancelled"]
    assert _backlog(stack)["scheduled"] == before["scheduled"]
    status = httpx.get(f"{stack.base_url}/api/provision/{request_id}", timeout=HTTP_TIMEOUT)
    assert (status.status_code, status.json()["status"]) == (200, "cancelled")
    assert [s["requestId"] for s in _list(stack, status="cancelled", top="1")["value"]] == [request_id]
    again = httpx.post(f"{stack.base_url}/api/provision/{request_id}/cancel", timeout=HTTP_TIMEOUT)
    assert again.status_code == 409
    assert len(_graph_calls(stack, _user(2))) == calls_before


def _backlog(stack: Stack) -> dict[str, int]:
    targets = httpx.get(f"{stack.base_url}/api/targets", timeout=HTTP_TIMEOUT)
    assert targets.status_code == 200, targets.text
    (scim,) = [t for t in targets.json()["value"] if t["name"] == "seed-scim-app"]
    backlog: dict[str, int] = scim["backlog"]
    return backlog


def test_targets_show_every_configured_target_with_its_job_status(stack: Stack) -> None:
    answer = httpx.get(f"{stack.base_url}/api/targets", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200
    targets = {t["name"]: t for t in answer.json()["value"]}
    assert set(targets) == {"seed-scim-app", "seed-cloud-sync", "seed-group-app", "workday-to-ad"}
    scim = targets["seed-scim-app"]
    assert scim["servicePrincipalId"] == "c8c95753-f628-48e1-9fab-76c2d4cf624c"
    assert scim["jobStatus"]["code"] in ("Active", "NotRun", "Paused", "Quarantine")
    assert set(scim["backlog"]) == {"queued", "scheduled", "waiting", "running"}
    assert scim["estimatedDrainSeconds"] >= 0


def _queue(stack: Stack, name: str) -> QueueClient:
    return QueueClient.from_connection_string(stack.env["AzureWebJobsStorage"], name)


def test_poison_messages_are_listed_with_their_reason_and_a_requeued_one_is_processed(stack: Stack) -> None:
    rejected = json.dumps({"eventId": "operator-bad-1", "target": "seed-scim-app", "subjects": []})
    _queue(stack, "provisioning-requests").send_message(base64.b64encode(rejected.encode()).decode())
    # as if the host had given up on a good message during an outage: on the poison queue with no record
    good = json.dumps({"eventId": "operator-poison-1", **_body(3)})
    poison = _queue(stack, "provisioning-requests-poison")
    with contextlib.suppress(ResourceExistsError):
        poison.create_queue()
    sent = poison.send_message(base64.b64encode(good.encode()).decode())
    # what the host poisons without the app seeing it: a message that is not base64 at all
    work_poison = _queue(stack, "provisioning-work-poison")
    with contextlib.suppress(ResourceExistsError):
        work_poison.create_queue()
    work_poison.send_message("plain text, not base64!")

    def listed() -> dict[str, dict[str, Any]] | None:
        answer = httpx.get(f"{stack.base_url}/api/poison", timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200, answer.text
        by_body = {m["body"]: m for m in answer.json()["value"]}
        wanted = (rejected, good, "plain text, not base64!")
        return by_body if all(body in by_body for body in wanted) else None

    messages = wait_until(listed, "both messages on the poison queue")
    assert "subjects" in messages[rejected]["reason"]
    assert messages[rejected]["requestId"]
    assert "host" in messages[good]["reason"]
    assert messages[good]["messageId"] == sent.id
    assert "Not a work item" in messages["plain text, not base64!"]["reason"]

    moved = httpx.post(
        f"{stack.base_url}/api/poison/requeue",
        json={"queue": "provisioning-requests-poison", "messageIds": [sent.id]},
        timeout=HTTP_TIMEOUT,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"queue": "provisioning-requests-poison", "requeued": 1}

    def processed() -> dict[str, Any] | None:
        value = _list(stack, eventId="operator-poison-1")["value"]
        return value[0] if value and value[0]["status"] == "succeeded" else None

    assert wait_until(processed, "the requeued request processed")["source"] == "queue"
    assert rejected in listed_bodies(stack), "a message not named stays on the poison queue"


def listed_bodies(stack: Stack) -> list[str]:
    answer = httpx.get(f"{stack.base_url}/api/poison", timeout=HTTP_TIMEOUT)
    return [m["body"] for m in answer.json()["value"]]


def test_bad_filters_are_400_naming_the_parameter(stack: Stack) -> None:
    for params, name in (({"status": "done"}, "/status"), ({"top": "500"}, "/top"), ({"since": "yesterday"}, "/since"),
                         ({"target": "nope"}, "/target"), ({"continuation": "!!"}, "/continuation")):  # fmt: skip
        answer = httpx.get(f"{stack.base_url}/api/provision", params=params, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 400, params
        assert answer.json()["errors"][0]["pointer"] == name


def test_pages_follow_next_link_newest_first(stack: Stack) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    ids = []
    for _ in range(3):  # one user: a request made meanwhile by an earlier test's requeued message is not ours
        posted = httpx.post(f"{stack.base_url}/api/provision", json=_body(4), timeout=HTTP_TIMEOUT)
        ids.append(posted.json()["requestId"])
    first = _list(stack, since=since, objectId=_user(4), top="2")
    assert [s["requestId"] for s in first["value"]] == ids[::-1][:2]
    assert first["nextLink"].startswith(f"{stack.base_url}/api/provision?")
    second = httpx.get(first["nextLink"], timeout=HTTP_TIMEOUT).json()
    assert [s["requestId"] for s in second["value"]] == ids[::-1][2:]
    assert "nextLink" not in second
