"""Retry-After on 202s: from the next due time, the limiter's booked slots and the request's own calls, 2-300 s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.core.pacing import RateLimit
from shared.core.poll_hint import retry_after
from shared.core.records import CallRecord, RequestRecord
from shared.core.vocabulary import CallStatus, RequestStatus
from shared.usecases import poll_hint

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
LIMIT = RateLimit(5, 10.0)


def test_a_request_due_now_with_one_call_is_polled_at_the_minimum() -> None:
    assert retry_after(NOW, NOW, 1, None, LIMIT) == 2


def test_a_request_due_later_is_polled_when_due() -> None:
    assert retry_after(NOW, NOW + timedelta(seconds=45), 1, None, LIMIT) == 45


def test_a_request_scheduled_days_ahead_is_polled_every_5_minutes() -> None:
    assert retry_after(NOW, NOW + timedelta(days=3), 1, None, LIMIT) == 300


def test_a_booked_limiter_and_many_own_calls_add_up() -> None:
    # the scope is booked 20 s ahead, and 11 calls of its own take 20 s more at 5 per 10 s
    assert retry_after(NOW, NOW, 11, NOW + timedelta(seconds=20), LIMIT) == 40


@given(
    due=st.integers(-10_000, 10**7),
    calls=st.integers(0, 10_000),
    free=st.integers(-10_000, 10**7),
    rate=st.sampled_from([RateLimit(5, 10.0), RateLimit(1000, 1.0), RateLimit(1, 3600.0)]),
)
def test_always_between_2_and_300(due: int, calls: int, free: int, rate: RateLimit) -> None:
    hint = retry_after(NOW, NOW + timedelta(seconds=due), calls, NOW + timedelta(seconds=free), rate)
    assert 2 <= hint <= 300


class Booked:
    def __init__(self, free_in: float) -> None:
        self.free_in = free_in
        self.keys: list[str] = []

    @property
    def limit(self) -> RateLimit:
        return LIMIT

    async def next_free(self, key: str) -> float:
        self.keys.append(key)
        return NOW.timestamp() + self.free_in


async def test_the_hint_reads_the_limiter_of_the_requests_scope() -> None:
    request = RequestRecord("r", RequestStatus.PENDING, service_principal_id="sp", job_id="job")
    calls = [
        CallRecord("r", "call-0001", status=CallStatus.SUCCEEDED),
        CallRecord("r", "call-0002", status=CallStatus.QUEUED, next_attempt_at=NOW),
        CallRecord(
            "r",
            "call-0003",
            status=CallStatus.WAITING,
            next_attempt_at=NOW + timedelta(seconds=5),
            reserved_at=NOW + timedelta(seconds=8),
        ),
    ]
    limiter = Booked(12.0)
    assert await poll_hint.retry_after(request, calls, limiter, "tenant", NOW) == 14  # 12 s booked + 1 more call
    assert limiter.keys == ["tenant"]


async def test_a_limiter_that_cannot_be_read_still_gives_a_hint() -> None:
    class Broken(Booked):
        async def next_free(self, key: str) -> float:
            raise OSError("down")

    request = RequestRecord("r", RequestStatus.PENDING, service_principal_id="sp", job_id="job")
    calls = [CallRecord("r", "call-0001", status=CallStatus.SCHEDULED, next_attempt_at=NOW + timedelta(seconds=30))]
    assert await poll_hint.retry_after(request, calls, Broken(0), "tenant", NOW) == 30
