"""The worker's retry policy end to end, against in-memory adapters and a fake clock.

Every failure of a call becomes a recorded outcome with its evidence; every attempt is counted and capped;
an outage is waited out over a time budget, not five quick tries; a held or throttled scope waits without
spending attempts; nothing leaves a call ``running`` without a reason.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.ledger_codec import call_from_entity
from shared.contract import views
from shared.core import aggregate, graph_errors, pacing, retry, textsplit
from shared.core.pacing import RateLimit
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus, WorkItem
from shared.core.records import CallRecord
from shared.core.rules import RuleInfo, TtlCache
from shared.usecases.rule_discovery import RuleDiscovery
from shared.usecases.worker import Worker, WorkerPolicy
from tests.fixtures import seed_response
from tests.unit.app.fakes import InMemoryLedger, InMemoryLogStore, InMemoryPending, InMemoryQueue, queued_call_row

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
RID = "r" * 32
ITEM = WorkItem(RID, "call-0001")
BUDGET = retry.Policy(budget_seconds=60 * 60.0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeLedger(InMemoryLedger):
    """Rows with versions as ETags, like Table Storage's conditional replace; a hook runs before a write."""

    def __init__(self) -> None:
        super().__init__()
        self.before_write: Callable[[], None] | None = None

    async def update_call(self, call: CallRecord) -> CallRecord:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        return await super().update_call(call)

    def stamp(self, changes: dict[str, Any]) -> None:
        """Another writer (the sweeper) changes the row behind the worker's back."""
        self.version += 1
        self.rows[(RID, "call-0001")] = {**self.rows[(RID, "call-0001")], **changes, "_v": self.version}

    @property
    def row(self) -> dict[str, Any]:
        return self.rows[(RID, "call-0001")]


FakeQueue = InMemoryQueue


Answer = GraphAnswer | GraphFailure | Exception


class FakeGraph:
    """Answers from a function of the clock, so an outage is a time range."""

    def __init__(self, answer: Callable[[datetime], Answer], clock: Clock) -> None:
        self.answer = answer
        self.clock = clock
        self.posts: list[datetime] = []
        self.job = JobStatus("Active")
        self.during_post: Callable[[], None] | None = None

    async def provision_on_demand(self, sp: str, job: str, rule: str, subject: dict[str, Any]) -> Any:
        self.posts.append(self.clock())
        if self.during_post is not None:
            self.during_post()
        result = self.answer(self.clock())
        if isinstance(result, Exception):
            raise result
        return result

    async def schema_rules(self, sp: str, job: str) -> list[RuleInfo]:
        return [RuleInfo("rule-1", "USER", True, ("User",))]

    async def job_status(self, sp: str, job: str) -> JobStatus:
        return self.job


@dataclass
class FakeLimiter:
    clock: Clock
    limit: RateLimit = field(default_factory=lambda: RateLimit(5, 10.0))
    blocked_until: datetime | None = None
    throttles: list[float] = field(default_factory=list)

    async def reserve(self, key: str, release: float | None = None) -> pacing.Reservation:
        now = self.clock()
        if self.blocked_until is not None and now < self.blocked_until:
            return pacing.Reservation(None, self.blocked_until.timestamp())
        return pacing.Reservation(now.timestamp(), now.timestamp())

    async def report_throttle(self, key: str, retry_after: float) -> None:
        self.throttles.append(retry_after)


SUCCESS = seed_response(2)


def success(client_request_id: str | None = "client-1") -> GraphAnswer:
    return GraphAnswer(SUCCESS["key"], SUCCESS["value"], "graph-req-ok", client_request_id=client_request_id)


def unavailable(_: datetime | None = None) -> GraphFailure:
    return GraphFailure(503, "ServiceUnavailable", "Service unavailable", "graph-req-503", None, "client-503")


@dataclass
class Harness:
    worker: Worker
    ledger: FakeLedger
    queue: FakeQueue
    graph: FakeGraph
    limiter: FakeLimiter
    clock: Clock

    async def run(self, max_steps: int = 1000) -> str:
        """Deliver the work item, then every message it sends, at its due time, until the call is final."""
        result = await self.worker.process(ITEM)
        for _ in range(max_steps):
            status = str(self.ledger.row["status"])
            if status in aggregate.TERMINAL_CALL_STATUSES:
                return status
            assert status != "running", "a call was left running"
            assert self.queue.sent, f"call is {status} with no message to carry it ({result})"
            _, delay = self.queue.sent.pop(0)
            assert not self.queue.sent, "one work item, one message"
            self.clock.now += timedelta(seconds=delay)
            result = await self.worker.process(ITEM)
        raise AssertionError("did not finish")


def harness(answer: Callable[[datetime], Answer], policy: retry.Policy = BUDGET, **row: Any) -> Harness:
    clock = Clock()
    ledger, queue, graph, limiter = FakeLedger(), FakeQueue(), FakeGraph(answer, clock), FakeLimiter(clock)
    ledger.rows[(RID, "call-0001")] = queued_call_row(RID, T0, **row)

    async def no_sleep(_: float) -> None:
        return None

    worker = Worker(
        ledger=ledger,
        queue=queue,
        graph=graph,
        rules=RuleDiscovery(graph),
        logs=InMemoryLogStore(),
        limiter=limiter,
        pending=InMemoryPending(),
        policy=WorkerPolicy(retry_policy=policy),
        clock=clock,
        sleep=no_sleep,
        job_cache=TtlCache(15.0, clock=lambda: clock().timestamp()),
    )
    return Harness(worker, ledger, queue, graph, limiter, clock)


# --- item 2: nothing escapes, nothing loops ----------------------------------------------------------------


async def test_a_managed_identity_failure_ends_failed_at_once_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[int | None, str | None, str | None]] = []
    real = graph_errors.recommended_action

    def spy(status: int | None, code: str | None, message: str | None = None) -> str | None:
        asked.append((status, code, message))
        return real(status, code, message) or "check AZURE_CLIENT_ID"

    monkeypatch.setattr(graph_errors, "recommended_action", spy)
    message = "No User Assigned or Delegated Managed Identity found for specified ClientId (AZURE_CLIENT_ID)."
    h = harness(lambda _: GraphFailure(None, "ManagedIdentityUnavailable", message))
    assert await h.run() == "failed"
    row = h.ledger.row
    assert (row["errorCode"], row["errorMessage"], row["attempts"]) == ("ManagedIdentityUnavailable", message, 1)
    assert row["recommendedAction"]
    assert asked == [(None, "ManagedIdentityUnavailable", message)], "advice follows the code and the message"
    assert len(h.graph.posts) == 1


async def test_an_unreadable_200_ends_failed_at_once_with_the_raw_text_kept() -> None:
    html = "<html><body>" + "Front door says hello. " * 3000 + "</body></html>"  # > one property's 32 K units
    h = harness(lambda _: GraphFailure(200, "UnparseableResponse", "not JSON", "rid", None, "crid", html))
    assert await h.run() == "failed"
    row = h.ledger.row
    assert row["errorCode"] == "UnparseableResponse"
    assert textsplit.from_properties("rawResponse", row) == html
    assert row["rawResponseParts"] > 1
    assert row["graphClientRequestId"] == "crid"
    assert len(h.graph.posts) == 1
    status, body = views.graph_answer(call_from_entity(row), "https://graph.microsoft.com/beta", None)
    assert status == 502, "no pair to give back: the Graph-compatible route answers an error, not an empty 200"
    assert body["error"]["code"] == "UnparseableResponse"


async def test_an_expired_token_is_retried_once_at_once_then_failed() -> None:
    expired = GraphFailure(401, "TokenExpired", "Lifetime validation failed, the token is expired.")
    h = harness(lambda _: expired)
    assert await h.run() == "failed"
    assert len(h.graph.posts) == 2, "one retry with a fresh token, not a loop"
    assert h.graph.posts[1] == h.graph.posts[0], "the retry goes at once"
    assert h.ledger.row["attempts"] == 2
    assert h.ledger.row["attemptReason"] == "retry after TokenExpired"


async def test_an_expired_token_then_success_succeeds() -> None:
    answers: list[Answer] = [GraphFailure(401, "TokenExpired", "token expired"), success()]
    h = harness(lambda _: answers.pop(0))
    assert await h.run() == "succeeded"
    assert len(h.graph.posts) == 2


async def test_an_exception_escaping_the_adapter_is_a_counted_transient_failure() -> None:
    answers: list[Answer] = [RuntimeError("kiota blew up"), success()]
    h = harness(lambda _: answers.pop(0))
    assert await h.worker.process(ITEM) == "waiting"
    row = h.ledger.row
    assert (row["status"], row["errorCode"], row["attempts"]) == ("waiting", "UnexpectedError", 1)
    assert "RuntimeError" in row["errorMessage"]
    assert row["firstFailureAt"] == T0
    h.clock.now += timedelta(seconds=h.queue.sent.pop()[1])
    assert await h.run() == "succeeded"
    assert h.ledger.row["attempts"] == 2
    assert "firstFailureAt" not in h.ledger.row, "a success ends the failure streak"
    assert "rawResponse" not in h.ledger.row


async def test_a_claim_at_the_hard_cap_fails_without_calling_graph() -> None:
    cap = retry.Policy(budget_seconds=3600, max_attempts=7)
    h = harness(lambda _: success(), cap, status="waiting", attempts=7, errorCode="ServiceUnavailable")
    assert await h.worker.process(ITEM) == "failed"
    row = h.ledger.row
    assert row["errorCode"] == "AttemptsExhausted"
    assert "ServiceUnavailable" in row["errorMessage"]
    assert row["recommendedAction"]
    assert h.graph.posts == []


async def test_an_abandoned_claim_is_attempted_again_with_its_reason_and_counted() -> None:
    h = harness(
        lambda _: success(), status="running", attempts=1, claimedUntil=T0 - timedelta(seconds=1), lastAttemptAt=T0
    )
    assert await h.worker.process(ITEM) == "succeeded"
    assert h.ledger.row["attempts"] == 2
    assert "previous attempt left no outcome" in h.ledger.row["attemptReason"]


async def test_a_failure_before_the_call_releases_the_claim_with_a_reason() -> None:
    h = harness(lambda _: success())

    async def broken(key: str, release: float | None = None) -> pacing.Reservation:
        raise ConnectionResetError("limiter table unreachable")

    cast(Any, h.limiter).reserve = broken
    assert await h.worker.process(ITEM) == "waiting"
    row = h.ledger.row
    assert (row["status"], row["errorCode"], row["attempts"]) == ("waiting", "InternalError", 1)
    assert "ConnectionResetError" in row["errorMessage"]
    assert h.queue.sent
    assert h.graph.posts == []


async def test_the_raw_text_of_an_old_failure_goes_when_a_shorter_one_replaces_it() -> None:
    long_text, short_text = "x" * 70_000, "short"
    answers: list[Answer] = [
        GraphFailure(502, "BadGateway", "bad gateway", raw_body=long_text),
        GraphFailure(502, "BadGateway", "bad gateway", raw_body=short_text),
    ]
    h = harness(lambda _: answers.pop(0))
    await h.worker.process(ITEM)
    assert textsplit.from_properties("rawResponse", h.ledger.row) == long_text
    h.clock.now += timedelta(seconds=h.queue.sent.pop()[1])
    await h.worker.process(ITEM)
    row = h.ledger.row
    assert textsplit.from_properties("rawResponse", row) == short_text
    assert not [k for k in row if k.startswith("rawResponse_")]


# --- item 3 (unit level): an answer survives a conflicting write -------------------------------------------


async def test_an_answer_is_kept_when_the_sweeper_stamped_the_row_meanwhile() -> None:
    h = harness(lambda _: success())
    h.graph.during_post = lambda: h.ledger.stamp({"redrivenAt": T0})
    assert await h.worker.process(ITEM) == "succeeded"
    row = h.ledger.row
    assert row["status"] == "succeeded"
    assert row["graphRequestId"] == "graph-req-ok"
    assert "claimedUntil" not in row


async def test_an_answer_does_not_overwrite_one_another_worker_recorded() -> None:
    h = harness(lambda _: success())
    h.graph.during_post = lambda: h.ledger.stamp({"status": "skipped", "graphRequestId": "the-other"})
    assert await h.worker.process(ITEM) == "duplicate"
    assert h.ledger.row["graphRequestId"] == "the-other"


async def test_a_retry_is_not_written_over_a_newer_attempt() -> None:
    h = harness(unavailable)
    h.graph.during_post = lambda: h.ledger.stamp({"attempts": 2, "claimedUntil": T0 + timedelta(minutes=5)})
    assert await h.worker.process(ITEM) == "duplicate"
    assert h.ledger.row["status"] == "running"
    assert h.ledger.row["attempts"] == 2
    assert h.queue.sent == [], "the newer attempt carries the call"


async def test_a_claim_that_ran_low_before_the_call_is_renewed_first() -> None:
    """A worker stalled in the limiter (a loaded host) renews its claim before calling, so no other worker
    takes the call over while it is made."""
    h = harness(lambda _: success())
    real_reserve = h.limiter.reserve
    stalls = [True]

    async def slow_reserve(key: str, release: float | None = None) -> pacing.Reservation:
        if stalls and stalls.pop():
            h.clock.now += timedelta(seconds=WorkerPolicy().claim_seconds * 0.9)
        return await real_reserve(key, release)

    cast(Any, h.limiter).reserve = slow_reserve
    writes: list[tuple[CallRecord, CallRecord]] = []
    real_update = h.ledger.update_call

    async def spy(call: CallRecord) -> CallRecord:
        before = await h.ledger.get_call(call.request_id, call.call_id)
        assert before is not None
        writes.append((before, call))
        return await real_update(call)

    cast(Any, h.ledger).update_call = spy
    assert await h.worker.process(ITEM) == "succeeded"
    renewals = [after for before, after in writes if before == replace(after, claimed_until=before.claimed_until)]
    assert len(renewals) == 1
    assert renewals[0].claimed_until == h.graph.posts[0] + timedelta(seconds=WorkerPolicy().claim_seconds)


async def test_a_stalled_worker_whose_call_was_taken_over_does_not_call_graph() -> None:
    h = harness(lambda _: success())
    real_reserve = h.limiter.reserve

    async def stall_then_taken_over(key: str, release: float | None = None) -> pacing.Reservation:
        h.clock.now += timedelta(seconds=WorkerPolicy().claim_seconds + 1)
        h.ledger.stamp({"attempts": 2, "claimedUntil": h.clock.now + timedelta(minutes=5)})  # another worker
        return await real_reserve(key, release)

    cast(Any, h.limiter).reserve = stall_then_taken_over
    assert await h.worker.process(ITEM) == "superseded"
    assert h.graph.posts == []
    assert h.ledger.row["attempts"] == 2


# --- item 4: outages are waited out ------------------------------------------------------------------------


def outage(minutes: float) -> Callable[[datetime], Answer]:
    def answer(now: datetime) -> Answer:
        return unavailable() if now < T0 + timedelta(minutes=minutes) else success()

    return answer


async def test_an_outage_of_45_minutes_is_waited_out() -> None:
    h = harness(outage(45))
    assert await h.run() == "succeeded"
    posts = h.graph.posts
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(posts)]
    assert max(gaps) <= retry.MAX_DELAY_SECONDS
    assert posts[-1] - T0 >= timedelta(minutes=45)
    assert posts[-1] - T0 <= timedelta(minutes=45, seconds=retry.MAX_DELAY_SECONDS)
    assert 10 <= len(posts) <= 40, "backed off: not a hammering, not five quick tries"
    assert h.ledger.row["attempts"] == len(posts)


async def test_an_outage_of_70_minutes_ends_failed_at_the_budget_with_advice() -> None:
    h = harness(outage(70))
    assert await h.run() == "failed"
    row = h.ledger.row
    assert row["errorCode"] == "ServiceUnavailable"
    assert "GRAPH_RETRY_BUDGET_MINUTES" in row["recommendedAction"]
    assert h.graph.posts[-1] - T0 == timedelta(minutes=60), "the last try is at the budget's end, not after it"
    assert row["completedAt"] == T0 + timedelta(minutes=60)


async def test_the_budget_is_a_setting() -> None:
    h = harness(outage(70), retry.Policy(budget_seconds=90 * 60.0))
    assert await h.run() == "succeeded"


async def test_the_budget_counts_from_the_first_failure_of_the_current_streak() -> None:
    """A call that failed long ago but then got a 429 (Graph answered) starts a new streak on its next 5xx."""
    h = harness(
        unavailable,
        status="waiting",
        attempts=3,
        firstFailureAt=T0 - timedelta(hours=5),
        errorCode="TooManyRequests",
    )
    assert await h.worker.process(ITEM) == "failed", "an old streak that never ended is over budget"
    h2 = harness(lambda _: GraphFailure(429, "TooManyRequests", "slow down", retry_after_seconds=10.0))
    h2.ledger.row["firstFailureAt"] = T0 - timedelta(hours=5)
    assert await h2.worker.process(ITEM) == "waiting"
    assert "firstFailureAt" not in h2.ledger.row, "a 429 is an answer: the outage streak ended"


async def test_a_new_outage_after_an_ended_one_backs_off_from_the_start_again() -> None:
    """A call that went through a long outage and then a 429 (Graph answered) meets a dropped connection:
    that is the first failure of a new outage, retried in seconds, not after the old outage's minutes."""
    answers: list[Answer] = [unavailable() for _ in range(10)]
    answers += [GraphFailure(429, "TooManyRequests", "slow down", retry_after_seconds=5.0)]
    answers += [GraphFailure(None, "ConnectionError", "reset"), success()]
    h = harness(lambda _: answers.pop(0))
    assert await h.run() == "succeeded"
    posts = h.graph.posts
    assert (posts[10] - posts[9]).total_seconds() >= 150, "ten failures in a row: minutes apart by now"
    assert (posts[12] - posts[11]).total_seconds() <= retry.BASE_DELAY_SECONDS, "a new outage starts small"
    assert "failureStreak" not in h.ledger.row


async def test_429s_wait_retry_after_without_using_the_outage_budget() -> None:
    """Two hours of 429s with Retry-After 120 s, then success: throttling is not an outage."""

    def answer(now: datetime) -> Answer:
        if now < T0 + timedelta(minutes=80):
            return GraphFailure(429, "TooManyRequests", "slow down", "rid", 120.0)
        return success()

    h = harness(answer)
    assert await h.run() == "succeeded"
    assert len(h.graph.posts) == 41
    assert all(t == 120.0 for t in h.limiter.throttles), "the shared limiter is told the full Retry-After"
    assert h.ledger.row["throttledAttempts"] == 40


async def test_a_bare_429_blocks_the_scope_briefly_even_for_a_call_with_many_attempts() -> None:
    """No Retry-After: our own backoff, grown by the call's 429s; ten earlier 5xx must not block the whole
    tenant for minutes."""
    answers: list[Answer] = [unavailable() for _ in range(10)]
    answers += [GraphFailure(429, "TooManyRequests", "slow down"), success()]
    h = harness(lambda _: answers.pop(0))
    assert await h.run() == "succeeded"
    assert len(h.limiter.throttles) == 1
    assert h.limiter.throttles[0] <= retry.BASE_DELAY_SECONDS


async def test_429s_have_a_cap_of_their_own() -> None:
    h = harness(lambda _: GraphFailure(429, "TooManyRequests", "slow down", "rid", 1.0))
    assert await h.run() == "failed"
    assert len(h.graph.posts) == retry.MAX_THROTTLED_ATTEMPTS
    assert "throttled" in h.ledger.row["recommendedAction"]


async def test_a_held_job_waits_without_spending_attempts() -> None:
    h = harness(lambda _: success())
    h.graph.job = JobStatus("Quarantine", "EncounteredQuarantineException")
    for _ in range(5):
        assert await h.worker.process(ITEM) == "held"
        assert h.ledger.row["attempts"] == 0
        h.clock.now += timedelta(seconds=h.queue.sent.pop()[1] + 60)
    assert h.ledger.row["errorCode"] == "JobQuarantined"
    h.graph.job = JobStatus("Active")
    assert await h.run() == "succeeded"
    assert h.ledger.row["attempts"] == 1


async def test_a_throttled_scope_keeps_items_waiting_without_spending_attempts() -> None:
    h = harness(lambda _: success())
    h.limiter.blocked_until = T0 + timedelta(minutes=30)
    assert await h.worker.process(ITEM) == "paced"
    assert h.ledger.row["attempts"] == 0
    h.clock.now += timedelta(seconds=h.queue.sent.pop()[1])
    assert await h.run() == "succeeded"
    assert h.ledger.row["attempts"] == 1
    assert h.graph.posts == [T0 + timedelta(minutes=30)]


# --- properties --------------------------------------------------------------------------------------------


failures = st.sampled_from(
    [
        GraphFailure(503, "ServiceUnavailable", "down"),
        GraphFailure(500, "InternalServerError", "oops"),
        GraphFailure(504, "GatewayTimeout", "slow"),
        GraphFailure(408, "RequestTimeout", "slow"),
        GraphFailure(None, "Timeout", "no answer"),
        GraphFailure(None, "ConnectionError", "reset"),
        GraphFailure(None, "UnexpectedError", "?"),
        GraphFailure(429, "TooManyRequests", "slow down", retry_after_seconds=30.0),
        GraphFailure(429, "TooManyRequests", "slow down"),
        GraphFailure(401, "TokenExpired", "expired"),
        GraphFailure(401, "Unauthorized", ""),
        GraphFailure(400, "RequestParameterInvalid", "bad rule"),
        GraphFailure(None, "ManagedIdentityUnavailable", "no identity"),
        GraphFailure(200, "UnparseableResponse", "html", raw_body="<html/>"),
        RuntimeError("escaped"),
        success(),
        GraphAnswer(None, None, None),
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(failures, min_size=1, max_size=400), st.integers(min_value=0, max_value=2**32))
async def test_every_sequence_of_answers_ends_recorded_and_bounded(answers: list[Answer], seed: int) -> None:
    random.seed(seed)
    queue = list(answers)
    h = harness(lambda _: queue.pop(0) if queue else unavailable())
    status = await h.run(max_steps=retry.HARD_MAX_ATTEMPTS + 10)
    row = h.ledger.row
    assert status in aggregate.TERMINAL_CALL_STATUSES
    assert row["attempts"] == len(h.graph.posts) <= retry.HARD_MAX_ATTEMPTS
    if status == "failed":
        assert row.get("errorCode"), "a failure says why"
