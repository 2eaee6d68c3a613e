"""POST /api/provision/batch over the real stack: 300 requests with 3 invalid give 297 accepted and 3 precise
problems, resending is idempotent by eventId, and 1,000 requests are accepted within one HTTP exchange (timed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devhost.stack import Stack
from tests.integration.timeouts import HTTP_TIMEOUT

pytestmark = pytest.mark.integration

# far enough ahead that no Graph call is made while the suite runs: intake is what is measured here
LATER = (datetime.now(UTC) + timedelta(days=2)).isoformat()


def _item(run: str, i: int) -> dict[str, Any]:
    return {
        "eventId": f"batch-{run}-{i}",
        "target": "seed-scim-app",
        "notBefore": LATER,
        "subjects": [{"objectId": f"batch-user-{run}-{i}", "objectTypeName": "User"}],
    }


#: A batch of 1,000 is 1,000 intakes in one HTTP call: 56 s alone with one core kept busy, past 120 s when the
#: rest of the suite ran beside it (loaded CI run of stop 21). It must finish, not finish fast.
BATCH_TIMEOUT = 4 * HTTP_TIMEOUT


def _post(stack: Stack, items: list[Any]) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/api/provision/batch", json={"requests": items}, timeout=BATCH_TIMEOUT)


def test_300_with_3_invalid_gives_297_accepted_and_3_precise_problems(stack: Stack) -> None:
    items: list[Any] = [_item("a", i) for i in range(300)]
    items[10]["subjects"][0]["objectTypeName"] = "not a type!"
    items[150] = {**items[150], "target": "no-such-target"}
    del items[299]["subjects"]
    answer = _post(stack, items)
    assert answer.status_code == 200, answer.text
    value = answer.json()["value"]
    assert [v["index"] for v in value] == list(range(300))
    refused = {v["index"]: v for v in value if v["status"] != 202}
    assert sorted(refused) == [10, 150, 299]
    assert refused[10]["status"] == 400
    assert [e["pointer"] for e in refused[10]["problem"]["errors"]] == ["/requests/10/subjects/0/objectTypeName"]
    assert refused[150]["status"] == 422
    assert [e["pointer"] for e in refused[150]["problem"]["errors"]] == ["/requests/150/target"]
    assert refused[299]["status"] == 400
    assert [e["pointer"] for e in refused[299]["problem"]["errors"]] == ["/requests/299/subjects"]
    accepted = {v["index"]: v["requestId"] for v in value if v["status"] == 202}
    assert len(accepted) == 297
    assert len(set(accepted.values())) == 297

    # each accepted item is a request of its own, readable like any other
    status = httpx.get(f"{stack.base_url}/api/provision/{accepted[0]}", timeout=HTTP_TIMEOUT)
    assert status.status_code == 202
    assert status.json()["status"] == "pending"

    # resending the batch is idempotent by eventId: the same request ids, nothing new
    again = _post(stack, items).json()["value"]
    assert {v["index"]: v["requestId"] for v in again if v["status"] == 202} == accepted


def test_a_batch_is_not_read_as_a_request_id(stack: Stack) -> None:
    answer = httpx.post(f"{stack.base_url}/api/provision/batch", json={"requests": "nope"}, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 400
    assert [e["pointer"] for e in answer.json()["errors"]] == ["/requests"]


def test_a_thousand_requests_in_one_batch(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    items = [_item("k", i) for i in range(1000)]
    started = time.monotonic()
    answer = _post(stack, items)
    took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert [v["status"] for v in answer.json()["value"]] == [202] * 1000
    with capsys.disabled():
        print(f"\n1,000-request batch accepted in {took:.1f} s")
