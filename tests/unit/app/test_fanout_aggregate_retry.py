"""Pure planning and decision logic: fan-out, status aggregation, retry policy, text splitting."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shared.core import aggregate, fanout, retry, textsplit
from shared.core.models import Subject
from shared.settings import MAX_RETRY_BUDGET_MINUTES


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
        (["succeeded", "cancelled"], "cancelled"),
        (["cancelled", "cancelled"], "cancelled"),
        (["cancelled", "failed"], "failed"),
        (["cancelled", "rejected"], "failed"),
        (["cancelled", "queued"], "pending"),
        (["skipped", "succeeded", "succeeded"], "succeeded"),
    ],
)
def test_request_status_from_calls(statuses: list[str], expected: str) -> None:
    summary = aggregate.summarize(statuses)
    assert summary.status == expected
    assert sum(summary.counts.values()) == len(statuses)


def test_unknown_call_status_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown call status"):
        aggregate.summarize(["done"])


NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_retry_policy() -> None:
    rng = random.Random(1)
    assert retry.classify(429) == "throttled"
    assert retry.classify(503) == "transient"
    assert retry.classify(None) == "transient"
    assert retry.classify(403) == "permanent"
    assert retry.decide("permanent", retry.History(1), NOW) == retry.Decision(False)
    assert retry.decide("throttled", retry.History(1, 1), NOW, retry_after=7.0) == retry.Decision(True, 7.0)
    assert (
        retry.decide("throttled", retry.History(1, 1), NOW, policy=retry.Policy(rng=rng)).delay_seconds
        <= retry.BASE_DELAY_SECONDS
    )
    delays = [
        retry.decide("transient", retry.History(n), NOW, policy=retry.Policy(rng=rng)).delay_seconds
        for n in range(1, 12)
    ]
    assert all(0 < d <= retry.MAX_DELAY_SECONDS for d in delays)
    assert delays[-1] > delays[0]
    assert delays[-1] > 100, "backoff grows to minutes: an outage is not met with quick tries"


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (None, "ManagedIdentityUnavailable", "permanent"),
        (200, "UnparseableResponse", "permanent"),
        (204, "UnparseableResponse", "permanent"),
        (401, "TokenExpired", "token_expired"),
        (401, "Unauthorized", "permanent"),
        (401, "InvalidAuthenticationToken", "permanent"),
        (None, "Timeout", "transient"),
        (None, "ConnectionError", "transient"),
        (None, "UnexpectedError", "transient"),
        (500, "InternalServerError", "transient"),
        (502, "BadGateway", "transient"),
        (503, "ServiceUnavailable", "transient"),
        (504, "GatewayTimeout", "transient"),
        (408, "RequestTimeout", "transient"),
        (429, "TooManyRequests", "throttled"),
        (400, "RequestParameterInvalid", "permanent"),
        (404, "UnknownError", "permanent"),
        (200, "EmptyResponse", "permanent"),
    ],
)
def test_classification_by_status_and_code(status: int | None, code: str, kind: str) -> None:
    assert retry.classify(status, code) == kind


def test_an_expired_token_is_retried_once_at_once() -> None:
    first = retry.decide("token_expired", retry.History(1), NOW)
    assert first == retry.Decision(True, 0.0)
    second = retry.decide("token_expired", retry.History(2, previous_code="TokenExpired"), NOW)
    assert second.retry is False
    assert second.reason


def test_the_hard_cap_stops_every_kind() -> None:
    policy = retry.Policy(budget_seconds=3600, max_attempts=10)
    for kind in ("transient", "throttled", "token_expired"):
        decision = retry.decide(kind, retry.History(10, 1, NOW), NOW, policy=policy)
        assert decision.retry is False, kind
        assert decision.reason is not None
        assert "hard cap" in decision.reason


def test_the_hard_cap_is_a_backstop_not_the_limit_that_bites() -> None:
    """With the largest budget the settings accept, the fastest backoff and every 429 allowed, a call stays below it."""
    budget = MAX_RETRY_BUDGET_MINUTES * 60.0
    elapsed, attempts = 0.0, 0
    while elapsed < budget:
        attempts += 1
        ceiling = min(retry.MAX_DELAY_SECONDS, retry.BASE_DELAY_SECONDS * 2 ** (attempts - 1))
        elapsed += ceiling / 2  # the shortest delay equal jitter can draw
    assert attempts + 1 + retry.MAX_THROTTLED_ATTEMPTS + 1 < retry.HARD_MAX_ATTEMPTS


moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC))


@given(
    attempts=st.integers(min_value=1, max_value=retry.HARD_MAX_ATTEMPTS - 1),
    streak=st.integers(min_value=0, max_value=retry.HARD_MAX_ATTEMPTS - 1),
    started_ago=st.floats(min_value=0, max_value=10 * 3600, allow_nan=False),
    budget=st.floats(min_value=60, max_value=MAX_RETRY_BUDGET_MINUTES * 60.0, allow_nan=False),
    now=moments,
    seed=st.integers(min_value=0, max_value=2**32),
)
@example(attempts=10, streak=1, started_ago=0.0, budget=3600.0, now=NOW, seed=1)  # a new outage, an old call
def test_transient_delay_is_within_bounds_and_never_past_the_budget(
    attempts: int, streak: int, started_ago: float, budget: float, now: datetime, seed: int
) -> None:
    started = now - timedelta(seconds=started_ago)
    policy = retry.Policy(budget_seconds=budget)
    history = retry.History(attempts, 0, started, streak=min(streak, attempts))
    decision = retry.decide("transient", history, now, policy=replace(policy, rng=random.Random(seed)))
    end = started + timedelta(seconds=budget)
    if now >= end:
        assert decision.retry is False
        assert decision.reason is not None
        assert "GRAPH_RETRY_BUDGET_MINUTES" in decision.reason
        return
    assert decision.retry is True
    assert 0 < decision.delay_seconds <= retry.MAX_DELAY_SECONDS
    assert now + timedelta(seconds=decision.delay_seconds) <= end, "no retry is scheduled past the budget's end"
    ceiling = min(retry.MAX_DELAY_SECONDS, retry.BASE_DELAY_SECONDS * 2 ** ((history.streak or attempts) - 1))
    assert decision.delay_seconds <= ceiling, "the backoff follows the length of the outage"
    assert decision.delay_seconds >= min(ceiling / 2, (end - now).total_seconds()), "never almost at once"


@given(attempts=st.integers(min_value=1, max_value=retry.HARD_MAX_ATTEMPTS - 1), now=moments)
def test_a_first_transient_failure_always_retries(attempts: int, now: datetime) -> None:
    """The streak starts with this failure, so the whole budget is ahead."""
    assert retry.decide("transient", retry.History(attempts), now).retry is True


@given(
    throttles=st.integers(min_value=1, max_value=retry.MAX_THROTTLED_ATTEMPTS + 5),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=10**6, allow_nan=False)),
    now=moments,
)
def test_throttled_delay_follows_retry_after_within_its_own_cap(
    throttles: int, retry_after: float | None, now: datetime
) -> None:
    long_ago = now - timedelta(days=3)  # a spent outage budget does not matter to a 429
    decision = retry.decide("throttled", retry.History(throttles, throttles, long_ago), now, retry_after=retry_after)
    if throttles >= retry.MAX_THROTTLED_ATTEMPTS:
        assert decision.retry is False
        return
    assert decision.retry is True
    if retry_after is not None:
        assert decision.delay_seconds == min(retry_after, retry.MAX_RETRY_AFTER_SECONDS)
    else:
        assert 0 < decision.delay_seconds <= retry.MAX_DELAY_SECONDS


@given(st.text(), st.integers(min_value=2, max_value=50))
def test_text_split_round_trips_and_respects_the_limit(text: str, units: int) -> None:
    props = textsplit.to_properties("log", text, units)
    assert textsplit.from_properties("log", props) == text
    for name, value in props.items():
        if isinstance(value, str):
            assert len(value.encode("utf-16-le")) // 2 <= units, name
