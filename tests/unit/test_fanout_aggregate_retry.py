"""Pure planning and decision logic: fan-out, status aggregation, retry policy, text splitting."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import aggregate, fanout, retry, textsplit
from shared.models import Subject


def _group(members: int) -> Subject:
    return Subject.model_validate(
        {
            "objectId": "8213fd99-d6b6-417b-8e13-af6334856215",
            "objectTypeName": "Group",
            "links": {
                "members": [{"objectId": f"user-{i}", "objectTypeName": "User"} for i in range(members)],
                "owners": [{"objectId": "owner-1", "objectTypeName": "User"}],
            },
        }
    )


def test_a_user_is_one_call_verbatim() -> None:
    subject = Subject.model_validate({"objectId": "u1", "objectTypeName": "User"})
    assert fanout.plan_calls([subject]) == [{"objectId": "u1", "objectTypeName": "User"}]


def test_a_group_of_12_members_is_3_calls_of_at_most_5() -> None:
    calls = fanout.plan_calls([_group(12)])
    assert [len(c["links"]["members"]) for c in calls] == [5, 5, 2]
    assert all(c["objectId"] == "8213fd99-d6b6-417b-8e13-af6334856215" for c in calls)
    assert all(c["links"]["owners"] == [{"objectId": "owner-1", "objectTypeName": "User"}] for c in calls)
    members = [m["objectId"] for c in calls for m in c["links"]["members"]]
    assert members == [f"user-{i}" for i in range(12)]


@given(st.integers(min_value=1, max_value=100))
def test_every_member_in_exactly_one_chunk(n: int) -> None:
    calls = fanout.plan_calls([_group(n)])
    assert all(1 <= len(c["links"]["members"]) <= fanout.MAX_MEMBERS_PER_CALL for c in calls)
    assert sum(len(c["links"]["members"]) for c in calls) == n


def test_call_ids() -> None:
    assert fanout.call_id(0) == "call-0001"
    assert fanout.call_id(41) == "call-0042"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["queued"], "pending"),
        (["succeeded", "running"], "pending"),
        (["succeeded", "skipped"], "succeeded"),
        (["succeeded", "failed"], "failed"),
        (["rejected"], "failed"),
        (["succeeded", "rejected"], "failed"),
        ([], "pending"),
    ],
)
def test_request_status_from_calls(statuses: list[str], expected: str) -> None:
    summary = aggregate.summarize(statuses)
    assert summary.status == expected
    assert sum(summary.counts.values()) == len(statuses)


def test_unknown_call_status_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown call status"):
        aggregate.summarize(["done"])


def test_retry_policy() -> None:
    rng = random.Random(1)
    assert retry.classify(429) == "throttled"
    assert retry.classify(503) == "transient"
    assert retry.classify(None) == "transient"
    assert retry.classify(403) == "permanent"
    assert retry.decide("permanent", 1, None) == retry.Decision(False)
    assert retry.decide("throttled", 1, 7.0) == retry.Decision(True, 7.0)
    assert retry.decide("throttled", 1, None, rng).delay_seconds <= retry.BASE_DELAY_SECONDS
    assert retry.decide("transient", retry.MAX_TRANSIENT_ATTEMPTS, None).retry is False
    delays = [retry.decide("transient", n, None, rng).delay_seconds for n in range(1, retry.MAX_TRANSIENT_ATTEMPTS)]
    assert all(0 < d <= retry.MAX_DELAY_SECONDS for d in delays)
    assert delays[-1] > delays[0]


@given(st.text(), st.integers(min_value=2, max_value=50))
def test_text_split_round_trips_and_respects_the_limit(text: str, units: int) -> None:
    props = textsplit.to_properties("log", text, units)
    assert textsplit.from_properties("log", props) == text
    for name, value in props.items():
        if isinstance(value, str):
            assert len(value.encode("utf-16-le")) // 2 <= units, name
