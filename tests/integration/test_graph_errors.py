"""Graph errors end to end: throttling and server errors are retried by us, permission errors are explained."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from devhost.stack import Stack
from tests.integration.timeouts import DEADLINE, HTTP_TIMEOUT

pytestmark = pytest.mark.integration

SP = "c8c95753-f628-48e1-9fab-76c2d4cf624c"


def _provision_and_wait(stack: Stack, object_id: str, timeout: float = DEADLINE) -> dict[str, Any]:
    posted = httpx.post(
        f"{stack.base_url}/api/provision",
        json={"target": "seed-scim-app", "subjects": [{"objectId": object_id, "objectTypeName": "User"}]},
        timeout=HTTP_TIMEOUT,
    )
    assert posted.status_code == 202, posted.text
    deadline = time.monotonic() + timeout
    while (status := httpx.get(posted.headers["Location"], timeout=HTTP_TIMEOUT)).status_code == 202:
        assert time.monotonic() < deadline, status.text
        time.sleep(0.2)
    assert status.status_code == 200, status.text
    result: dict[str, Any] = status.json()
    return result


def _inject(stack: Stack, fault: dict[str, Any]) -> None:
    httpx.post(
        f"{stack.emulator_url}/_emulator/config", json={"clearFaults": True, "faults": [fault]}, timeout=HTTP_TIMEOUT
    ).raise_for_status()


def _graph_calls_for(stack: Stack, object_id: str) -> list[dict[str, Any]]:
    calls = httpx.get(
        f"{stack.emulator_url}/_emulator/calls", params={"operation": "provisionOnDemand"}, timeout=HTTP_TIMEOUT
    ).json()
    return [c for c in calls["calls"] if object_id in str(c["body"])]


def test_a_503_is_retried_with_backoff_and_ends_succeeded(stack: Stack) -> None:
    user = "c0ffee00-0000-4000-8000-000000000001"
    _inject(stack, {"operation": "provisionOnDemand", "status": 503, "times": 1})
    result = _provision_and_wait(stack, user)
    (call,) = result["calls"]
    assert result["status"] == "succeeded"
    assert call["status"] == "succeeded"
    assert call["attempts"] == 2
    assert call["action"] == "Create"
    assert "errorCode" not in call, "the error of the failed attempt must not stick to the success"
    assert [c["status"] for c in _graph_calls_for(stack, user)] == [503, 200]


def test_a_429_waits_retry_after_and_ends_succeeded(stack: Stack) -> None:
    user = "c0ffee00-0000-4000-8000-000000000002"
    _inject(stack, {"kind": "429storm", "times": 1, "retryAfter": 1})
    result = _provision_and_wait(stack, user)
    (call,) = result["calls"]
    assert call["status"] == "succeeded"
    assert call["attempts"] == 2
    graph_calls = _graph_calls_for(stack, user)
    assert [c["status"] for c in graph_calls] == [429, 200]
    first, second = (time.mktime(time.strptime(c["time"][:19], "%Y-%m-%dT%H:%M:%S")) for c in graph_calls)
    assert second - first >= 1 - 1e-6, "the retry must wait Retry-After"


def test_a_403_fails_at_once_and_says_which_permission_to_grant(stack: Stack) -> None:
    user = "c0ffee00-0000-4000-8000-000000000003"
    _inject(
        stack,
        {"operation": "provisionOnDemand", "status": 403, "times": 1, "code": "Authorization_RequestDenied",
         "message": "Insufficient privileges to complete the operation."},
    )  # fmt: skip
    result = _provision_and_wait(stack, user)
    (call,) = result["calls"]
    assert result["status"] == "failed"
    assert call["status"] == "failed"
    assert call["attempts"] == 1
    assert call["httpStatus"] == 403
    assert call["errorCode"] == "Authorization_RequestDenied"
    assert call["errorMessage"] == "Insufficient privileges to complete the operation."
    assert "Synchronization.ReadWrite.All" in call["recommendedAction"]
    assert call["graphRequestId"]
