"""Bulk intake over a fake accept: each item answered on its own, problems pointing into the batch body."""

from __future__ import annotations

from typing import Any

import pytest

from shared.contract.problems import Problem
from shared.core.models import ProvisioningRequest
from shared.core.vocabulary import RequestStatus
from shared.usecases import batch, intake


def _item(i: int, **more: Any) -> dict[str, Any]:
    return {"eventId": f"e-{i}", "target": "t", "subjects": [{"objectId": f"u{i}", "objectTypeName": "User"}], **more}


class FakeAccept:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.accepted: list[ProvisioningRequest] = []
        self.fail = fail or set()

    async def __call__(self, request: ProvisioningRequest, notes: list[str]) -> intake.Accepted:
        if request.event_id in self.fail:
            raise OSError("storage down")
        if request.target == "unknown":
            raise Problem.unprocessable("Unknown target", "no such target", slug="unknown-target")
        self.accepted.append(request)
        return intake.Accepted(f"r-{request.event_id}", RequestStatus.PENDING, 1)


async def test_every_item_is_answered_in_order_each_on_its_own() -> None:
    items: list[Any] = [_item(i) for i in range(10)]
    items[2] = {"subjects": [{"objectId": "", "objectTypeName": "User"}]}
    items[5] = _item(5, target="unknown")
    items[7] = "not an object"
    accept = FakeAccept(fail={"e-9"})
    results = [r.to_body() for r in await batch.accept_all(items, accept)]
    assert [r["index"] for r in results] == list(range(10))
    assert [r["status"] for r in results] == [202, 202, 400, 202, 202, 422, 202, 400, 202, 503]
    assert results[0] == {"index": 0, "status": 202, "requestId": "r-e-0"}
    assert [e["pointer"] for e in results[2]["problem"]["errors"]] == ["/requests/2/subjects/0/objectId"]
    assert results[5]["problem"]["type"].endswith("unknown-target")
    assert "requestId" not in results[7]
    assert results[9]["problem"]["status"] == 503
    assert len(accept.accepted) == 6


async def test_items_refused_up_front_are_not_accepted() -> None:
    too_large = Problem.too_large(256 * 1024)
    results = await batch.accept_all([_item(0), _item(1)], FakeAccept(), refused={1: too_large})
    assert [r.status for r in results] == [202, 413]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ([], ""),
        ({"requests": []}, "/requests"),
        ({"requests": {}}, "/requests"),
        ({"requests": [_item(0)] * 1001}, "/requests"),
        ({"requests": [_item(0)], "extra": 1}, "/extra"),
    ],
)
def test_a_body_that_is_not_a_batch_is_a_400_naming_the_field(body: Any, pointer: str) -> None:
    with pytest.raises(Problem) as caught:
        batch.requests_of(body)
    assert caught.value.status == 400
    assert [e.pointer for e in caught.value.errors] == [pointer]


def test_a_thousand_requests_is_a_batch() -> None:
    assert len(batch.requests_of({"requests": [_item(0)] * 1000})) == 1000
