"""Deep backlogs: the bounded limiter row, the fairness order, and calls parked and dispatched instead of circling.

The end-to-end tests run the real worker and dispatcher over in-memory ports and a simulated queue and clock:
every message is processed when it becomes visible, every sleep moves the clock. So they show, without I/O,
what the integration benches measure: the limit is respected, a newcomer is not stuck behind a big request,
and the storage operations per call do not grow with the depth.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters import ledger_codec as codec
from shared.core import pacing, send_deadline
from shared.core.backlog import Place, call_index, is_parked, place_for
from shared.core.models import ProvisioningRequest
from shared.core.pacing import LimiterState, RateLimit, ahead_for, count_in_any_window, margin_for, reserve
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus, Parked, Wake, WorkItem
from shared.core.records import CallRecord, RequestRecord
from shared.core.rules import RuleInfo
from shared.core.vocabulary import CallStatus, Priority, Source
from shared.settings import Settings
from shared.usecases import dispatcher as dispatcher_module
from shared.usecases import sweeper
from shared.usecases.dispatcher import Dispatcher
from shared.usecases.intake import AcceptCommand, Intake
from shared.usecases.rule_discovery import RuleDiscovery
from shared.usecases.worker import Worker
from tests.fixtures import seed_response
from tests.unit.app.backlog_fakes import InMemoryLease, InMemorySlotBank, InMemoryWaitingRoom
from tests.unit.app.fakes import InMemoryEventIndex, InMemoryLedger, InMemoryLogStore, InMemoryPending, queued_call_row

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
LIMIT = RateLimit(5, 10.0)
SUCCESS = seed_response(2)
SP, JOB = "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612"

# --- the order ----------------------------------------------------------------------------------------------

places = st.builds(
    Place,
    st.sampled_from(list(Priority)),
    st.integers(0, 10**9),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.integers(1, 9999).map(lambda i: f"call-{i:04d}"),
)
_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


@given(places, places)
def test_keys_sort_as_the_policy_orders(a: Place, b: Place) -> None:
    def policy(p: Place) -> tuple[int, int, str, str]:
        return _RANK[p.priority], p.round, p.request_id, p.call_id

    assert (a.key < b.key) == (policy(a) < policy(b))
    assert Place.parse(a.key) == a


def test_a_place_is_the_scope_round_plus_the_call_index_and_priority_defaults_to_normal() -> None:
    assert call_index("call-0001") == 0
    assert place_for(None, 40, "r", "call-0003") == Place(Priority.NORMAL, 42, "r", "call-0003")
    assert place_for("high", 40, "r", "call-0001").priority is Priority.HIGH
    assert place_for("bogus", 0, "r", "call-0001").priority is Priority.NORMAL


def test_a_one_call_request_is_placed_within_one_round_of_a_big_one() -> None:
    big = [place_for(None, 100, "0" * 32, f"call-{i + 1:04d}").key for i in range(1000)]
    # the scope has handed out 10 rounds since the big request parked: the newcomer goes into round 110
    single = place_for(None, 110, "f" * 32, "call-0001").key
    order = sorted([*big[10:], single])
    assert order.index(single) <= 1
    assert sorted([*big, place_for("low", 0, "1" * 32, "call-0001").key])[-1].startswith("2-")


# --- the bounded limiter row --------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.builds(RateLimit, st.integers(1, 60), st.sampled_from([0.5, 1.0, 10.0])), st.integers(1, 400))
def test_the_row_never_holds_more_than_a_window_of_future_starts(limit: RateLimit, asks: int) -> None:
    state = LimiterState()
    for i in range(asks):
        state = reserve(state, i * 0.01, limit).state
        assert state.ahead(i * 0.01) <= ahead_for(limit)
        # the last window's starts kept for the feasibility check (one more at its closed edge) plus the
        # bounded future, ~15 bytes each
        assert len(state.starts) <= limit.calls + 1 + ahead_for(limit)
    assert len(state.to_json()) < 64 * 1024


def test_a_refusal_says_when_a_place_frees_up() -> None:
    state = LimiterState()
    for _ in range(ahead_for(LIMIT) + LIMIT.calls):
        state = reserve(state, 0.0, LIMIT).state
    r = reserve(state, 0.0, LIMIT)
    assert r.start is None
    window = LIMIT.window_seconds + margin_for(LIMIT)
    assert 0.0 < r.retry_at <= window + 0.01


def test_newcomers_queue_behind_waiting_calls_but_the_dispatcher_does_not() -> None:
    state = pacing.mark_waiting(LimiterState(), True)
    assert reserve(state, 0.0, LIMIT).start is None
    assert reserve(state, 0.0, LIMIT, queue_behind=False).start == 0.0
    slots, after = pacing.reserve_many(state, 0.0, LIMIT, 7)
    spacing = pacing.spacing_for(LIMIT)
    window = LIMIT.window_seconds + margin_for(LIMIT)
    assert slots == pytest.approx([i * spacing for i in range(5)] + [window]), "together, then the next"
    within, _ = pacing.reserve_many(state, 0.0, LIMIT, 7, pacing.Span(0.0, 5.0))
    assert within == slots[:5], "no slot past the span: the next window's places are handed out just in time"
    assert pacing.next_slot(pacing.reserve_many(state, 0.0, LIMIT, 5)[1], 1.0, LIMIT) == pytest.approx(window)
    assert pacing.advance_round(after, 12).round == 12
    assert pacing.advance_round(pacing.advance_round(after, 12), 3).round == 12, "the round never goes back"
    later, _ = pacing.reserve_many(LimiterState(), 0.0, LIMIT, 2, pacing.Span(2.0))
    assert later == pytest.approx([2.0, 2.0 + spacing]), "no dispatched slot sooner than its message can get there"
    missed = pacing.reserve(after, 0.5, LIMIT, release=0.0, queue_behind=False)
    assert missed.start is not None, "a call giving back the slot it missed is not held to the bound"


def test_the_old_row_format_still_reads_and_the_new_one_round_trips() -> None:
    assert LimiterState.from_json('{"s": [1.5, 2.25], "b": 3.0}') == LimiterState((1.5, 2.25), 3.0)
    state = LimiterState((1.5,), 0.0, 7, True)
    assert LimiterState.from_json(state.to_json()) == state


# --- the dispatcher over fakes ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def ts(self) -> float:
        return self.now.timestamp()


class CountingLedger(InMemoryLedger):
    """Counts reads and writes, as a stand-in for storage operations."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    async def get_call(self, request_id: str, call_id: str) -> CallRecord | None:
        self.ops["ledger.get_call"] += 1
        return await super().get_call(request_id, call_id)

    async def parked_calls(self, request_id: str, call_ids: Collection[str]) -> list[CallRecord]:
        self.ops["ledger.parked_calls"] += 1
        return await super().parked_calls(request_id, call_ids)

    async def update_call(self, call: CallRecord) -> CallRecord:
        self.ops["ledger.update_call"] += 1
        return await super().update_call(call)

    async def refresh_request(self, request_id: str, now: datetime) -> RequestRecord | None:
        self.ops["ledger.refresh"] += 1
        return await super().refresh_request(request_id, now)

    def record(self, request_id: str, call_id: str) -> CallRecord:
        row = self.rows[(request_id, call_id)]
        return codec.call_from_entity(row, str(row["_v"]))


@dataclass
class SimQueue:
    """Messages become visible after their delay on the simulated clock."""

    clock: Clock
    heap: list[tuple[datetime, int, WorkItem | Wake]] = field(default_factory=list)
    seq: int = 0
    sent: int = 0
    wakes: int = 0

    async def ping(self) -> None:
        return None

    async def send_text(self, text: str) -> None:
        raise AssertionError("not used")

    async def send(self, item: WorkItem, delay_seconds: float = 0) -> None:
        self.seq += 1
        self.sent += 1
        heapq.heappush(self.heap, (self.clock() + timedelta(seconds=delay_seconds), self.seq, item))

    async def wake(self, scope: str, delay_seconds: float) -> None:
        self.seq += 1
        self.wakes += 1
        heapq.heappush(self.heap, (self.clock() + timedelta(seconds=int(delay_seconds)), self.seq, Wake(scope)))


class SimGraph:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.posts: list[tuple[datetime, str]] = []

    async def provision_on_demand(self, sp: str, job: str, rule: str, subject: dict[str, Any]) -> GraphAnswer:
        self.posts.append((self.clock(), str(subject["objectId"])))
        return GraphAnswer(SUCCESS["key"], SUCCESS["value"], "graph-req")

    async def schema_rules(self, sp: str, job: str) -> list[RuleInfo]:
        return [RuleInfo("rule-1", "USER", True, ("User",))]

    async def job_status(self, sp: str, job: str) -> JobStatus:
        return JobStatus("Active")


@dataclass
class Sim:
    clock: Clock
    ledger: CountingLedger
    queue: SimQueue
    graph: SimGraph
    bank: InMemorySlotBank
    room: InMemoryWaitingRoom
    dispatcher: Dispatcher
    worker: Worker

    intake: Intake

    async def accept(self, request_id: str, calls: int, priority: str | None = None) -> None:
        """A request through the real intake (which parks what cannot start now), as a caller sends it."""

        def guid(i: int) -> str:
            return f"{request_id[:8]}-0000-4000-8000-{i:012d}"

        subjects: list[dict[str, Any]] = [{"objectId": guid(i), "objectTypeName": "User"} for i in range(calls)]
        if calls > 100:  # a request names at most 100 subjects: 100 groups, a call per 5 members each
            assert calls % 100 == 0
            per_group = 5 * (calls // 100)
            subjects = [
                {"objectId": guid(10**6 + g), "objectTypeName": "Group",
                 "links": {"members": [{"objectId": guid(g * 1000 + m), "objectTypeName": "User"}
                                       for m in range(per_group)]}}
                for g in range(100)
            ]  # fmt: skip
        body = {"target": "scim", "subjects": subjects, **({"priority": priority} if priority else {})}
        request = ProvisioningRequest.model_validate_json(json.dumps(body))
        self.intake.new_request_id = lambda _now: request_id
        await self.intake.accept(AcceptCommand(request, Source.HTTP, self.clock()))

    def submit(self, request_id: str, calls: int, priority: str | None = None) -> None:
        for i in range(calls):
            call_id = f"call-{i + 1:04d}"
            subject = json.dumps({"objectId": f"{request_id[:4]}-{i}", "objectTypeName": "User"})
            row = queued_call_row(request_id, self.clock(), RowKey=call_id, subject=subject, priority=priority)
            self.ledger.rows[(request_id, call_id)] = {k: v for k, v in row.items() if v is not None}
            self.queue.seq += 1
            heapq.heappush(self.queue.heap, (self.clock(), self.queue.seq, WorkItem(request_id, call_id)))

    async def step(self) -> bool:
        if not self.queue.heap:
            return False
        due, _, item = heapq.heappop(self.queue.heap)
        self.clock.now = max(self.clock.now, due)
        if isinstance(item, Wake):
            await self.dispatcher.woken(item.scope)
        else:
            await self.worker.process(item)
        return True

    async def park_some(self, count: int) -> list[str]:
        """Process messages until ``count`` calls wait in the backlog; their keys, in order."""
        while len(self.room.entries) < count:
            assert await self.step(), "nothing parked"
        return sorted(k for _, k in self.room.entries)

    async def run_until(self, when: datetime) -> None:
        while self.queue.heap and self.queue.heap[0][0] <= when:
            await self.step()
        self.clock.now = max(self.clock.now, when)

    async def run_with_timer(self, until: datetime, every: float = 10.0) -> None:
        """Messages as they become visible, and the timer's pump every ``every`` seconds, up to ``until``."""
        tick = self.clock() + timedelta(seconds=every)
        while self.clock() < until:
            if self.queue.heap and self.queue.heap[0][0] <= min(until, tick):
                await self.step()
                continue
            self.clock.now = min(until, tick)
            if self.clock() >= tick:
                await self.dispatcher.pump_all()
                tick = self.clock() + timedelta(seconds=every)

    async def drain(self, max_steps: int = 100_000) -> None:
        for _ in range(max_steps):
            if not await self.step():
                if not self.room.entries:
                    return
                self.clock.now += timedelta(seconds=10)  # the timer's safety net
                await self.dispatcher.pump_all()
        raise AssertionError("did not drain")


def sim(limit: RateLimit = LIMIT) -> Sim:
    clock = Clock()
    ledger, queue, graph = CountingLedger(), SimQueue(clock), SimGraph(clock)
    bank = InMemorySlotBank(clock.ts, limit)
    room = InMemoryWaitingRoom()
    dispatcher = Dispatcher(ledger, queue, bank, room, InMemoryLease(clock.ts), clock=clock.ts, alarm=queue)

    async def sleep(seconds: float) -> None:
        clock.now += timedelta(seconds=seconds)

    worker = Worker(
        ledger=ledger,
        queue=queue,
        graph=graph,
        rules=RuleDiscovery(graph),
        logs=InMemoryLogStore(),
        limiter=bank,
        pending=InMemoryPending(),
        backlog=dispatcher,
        clock=clock,
        sleep=sleep,
    )
    targets = json.dumps({"scim": {"servicePrincipalId": SP, "jobId": JOB, "ruleId": "rule-1"}})
    settings = Settings.from_environ(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PROVISIONING_TARGETS": targets}
    )
    intake = Intake(settings, ledger, queue, InMemoryEventIndex(), InMemoryPending(), backlog=dispatcher)
    return Sim(clock, ledger, queue, graph, bank, room, dispatcher, worker, intake)


async def test_a_backlog_parks_drains_within_the_limit_and_leaves_nothing_behind() -> None:
    s = sim()
    s.submit("1" * 32, 60)
    await s.drain()
    assert len(s.graph.posts) == 60
    starts = [t.timestamp() for t, _ in s.graph.posts]
    assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls
    window = LIMIT.window_seconds + margin_for(LIMIT)
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert max(gaps) <= window + 2.0, "no idle stretch: a window's slots, then the next (handed out 2 s ahead)"
    assert 60 / ((max(starts) - min(starts)) / window + 1) / LIMIT.calls >= 0.85, "drained close to the limit"
    assert all(str(r["status"]) == "succeeded" for r in s.ledger.rows.values())
    assert not s.room.entries
    assert all(len(st.starts) <= LIMIT.calls + ahead_for(LIMIT) for st in s.bank.states.values())


async def test_a_one_call_request_starts_within_a_few_slots_while_a_big_one_drains() -> None:
    s = sim()
    s.submit("1" * 32, 200)
    await s.run_until(T0 + timedelta(seconds=60))
    submitted = s.clock()
    s.submit("2" * 32, 1)
    await s.drain()
    [(started, _)] = [(t, who) for t, who in s.graph.posts if who.startswith("2222")]
    slot = (LIMIT.window_seconds + margin_for(LIMIT)) / LIMIT.calls
    waited = (started - submitted).total_seconds() / slot
    # the slots already handed out (one window ahead) go first, then the newcomer within about one round
    assert waited <= ahead_for(LIMIT) + 3, f"waited {waited:.1f} slots"
    assert waited <= 10, "the issue's bar: within 10 slots"


async def test_high_priority_goes_before_normal_and_low_after_it() -> None:
    s = sim()
    s.submit("1" * 32, 40, priority="low")
    s.submit("2" * 32, 40)
    s.submit("3" * 32, 40, priority="high")
    await s.drain()
    order = [who[:4] for _, who in s.graph.posts]
    tail = order[LIMIT.calls + ahead_for(LIMIT) :]  # after the slots taken before anyone parked (now, ahead)
    assert tail.index("1111") > max(i for i, w in enumerate(tail) if w == "3333")


async def test_storage_operations_per_call_do_not_grow_with_the_depth() -> None:
    per_call = []
    for depth in (50, 250):
        s = sim()
        s.submit("1" * 32, depth)
        await s.drain()
        ops = sum(s.ledger.ops.values()) + s.queue.sent + len(s.room.removed) * 2
        per_call.append(ops / depth)
    assert per_call[1] <= per_call[0] * 1.2, per_call


async def test_a_duplicate_message_leaves_a_parked_call_to_the_backlog() -> None:
    s = sim()
    s.submit("1" * 32, 30)
    [key] = await s.park_some(1)
    call_id = Place.parse(key).call_id
    assert is_parked(s.ledger.record("1" * 32, call_id))
    version = s.ledger.rows[("1" * 32, call_id)]["_v"]
    assert await s.worker.process(WorkItem("1" * 32, call_id)) == "parked"
    assert s.ledger.rows[("1" * 32, call_id)]["_v"] == version, "a parked call is left alone"


async def test_a_stale_entry_is_dropped_and_a_lost_one_is_parked_again_by_the_sweeper() -> None:
    s = sim()
    s.submit("1" * 32, 30)
    keys = await s.park_some(2)
    # one entry is lost (storage restored, a hand edit): the sweeper parks the call again, at its own place
    lost = s.room.entries.pop(("tenant", keys[0]))[0]
    pending = InMemoryPending()
    pending.entries["1" * 32] = T0
    s.ledger.rows[("1" * 32, "request")] = {"PartitionKey": "1" * 32, "RowKey": "request", "status": "pending", "_v": 0}
    sweep = sweeper.Sweeper(s.ledger, s.queue, pending, s.room)
    swept = await sweep.sweep(now=s.clock() + timedelta(hours=1))
    assert swept.reparked == 1, "a lost entry comes back"
    calls = [s.ledger.record(pk, rk) for (pk, rk) in s.ledger.rows if rk != "request"]
    parked_calls = [c for c in calls if is_parked(c)]
    assert len(parked_calls) == 2
    assert not any(c.redriven_at for c in parked_calls), "a parked call is not stranded: no message for it"
    assert ("tenant", lost.key) in s.room.entries
    # an entry whose call no longer waits (finished meanwhile) is dropped by the dispatcher, not dispatched
    row = s.ledger.rows[("1" * 32, lost.call_id)]
    s.ledger.rows[("1" * 32, lost.call_id)] = {**row, "status": "succeeded", "waitingFor": None}
    s.clock.now += timedelta(minutes=5)
    await s.dispatcher.pump("tenant")
    assert ("tenant", lost.key) not in s.room.entries
    assert s.ledger.rows[("1" * 32, lost.call_id)]["status"] == "succeeded"


async def test_the_sweeper_leaves_calls_intake_parked_moments_ago_while_their_entries_are_on_their_way() -> None:
    """Intake writes a new request's rows first and its entries after: a sweep in between must not take the
    calls for ones whose entries were lost (a warning and a write each), but one past the grace period does."""
    s = sim()
    await s.accept("1" * 32, 30)  # 5 handed out at once, 25 parked
    written = dict(s.room.entries)
    s.room.entries.clear()  # the rows are there, the entries not yet
    pending = InMemoryPending()
    pending.entries["1" * 32] = T0
    sweep = sweeper.Sweeper(s.ledger, s.queue, pending, s.room)
    assert (await sweep.sweep(now=s.clock())).reparked == 0, "parked moments ago: left to intake"
    later = s.clock() + timedelta(seconds=sweeper.GRACE_SECONDS + 1)
    assert (await sweep.sweep(now=later)).reparked == len(written) == 25, "still missing after the grace: put back"
    assert set(s.room.entries) == set(written), "each at its own place"


async def test_one_dispatcher_per_scope_at_a_time() -> None:
    s = sim()
    s.submit("1" * 32, 30)
    await s.park_some(3)
    token = await s.dispatcher.lease.acquire("dispatch-tenant", 15.0)
    assert token is not None
    s.clock.now += timedelta(seconds=30)  # places free up, but another instance holds the lease... for 15 s
    assert (
        await Dispatcher(s.ledger, s.queue, s.bank, s.room, s.dispatcher.lease, clock=lambda: T0.timestamp()).pump(
            "tenant"
        )
        == 0
    )
    assert await s.dispatcher.pump("tenant") == 3, "an expired lease is taken over (3 parked, places are free)"


async def test_a_pump_whose_storage_answers_slowly_begins_no_further_pass_and_leaves_the_rest_to_the_next() -> None:
    """The head holds entries of calls that are no longer parked: a pump drops them and takes another pass, but
    not once it has held its lease for a third of it (the next pump starts over from the limiter's state)."""

    async def scenario(seconds_per_pass: float) -> tuple[Sim, int]:
        s = sim()
        await s.accept("1" * 32, 30)  # intake handed the 5 free places out at once; 25 wait
        s.clock.now += timedelta(seconds=30)  # those slots have passed: 5 places are free
        for key in sorted(k for _, k in s.room.entries)[:5]:  # the five at the head finished: stale entries
            s.ledger.rows[("1" * 32, Place.parse(key).call_id)]["status"] = "succeeded"
        read = s.bank.state

        async def slow_state(key: str) -> LimiterState:
            s.clock.now += timedelta(seconds=seconds_per_pass)
            return await read(key)

        s.bank.state = slow_state  # type: ignore[method-assign]
        return s, await s.dispatcher.pump("tenant")

    _, handed = await scenario(0.0)
    assert handed == LIMIT.calls, "a second pass hands the places the stale entries did not take"
    slow, handed = await scenario(dispatcher_module.PASSES_WITHIN_SECONDS)
    assert handed == 0, "no second pass once the pump held its lease that long"
    assert len(slow.room.entries) == 20, "the stale entries were dropped; the parked ones still wait"
    slow.clock.now += timedelta(seconds=1)
    assert await slow.dispatcher.pump("tenant") == LIMIT.calls, "the next pump hands them out"


def test_a_parked_entry_points_at_its_call() -> None:
    entry = Parked("tenant", place_for(None, 0, "1" * 32, "call-0001").key, "1" * 32, "call-0001")
    assert Place.parse(entry.key).call_id == entry.call_id


# --- intake parks what cannot start now ---------------------------------------------------------------------


async def test_intake_parks_a_request_bigger_than_the_free_places_and_hands_those_out_at_once() -> None:
    s = sim()
    await s.accept("1" * 32, 60)
    ahead = ahead_for(LIMIT)
    assert s.queue.sent == ahead, "no message for a parked call: only the free places were handed out, at once"
    assert len(s.room.entries) == 60 - ahead
    assert s.room.transactions == 1, "the request's entries went out in one transaction"
    request = s.ledger.rows[("1" * 32, "request")]
    assert (request["status"], request["waitingCount"], request["queuedCount"]) == ("pending", 60, 0)
    await s.drain()
    assert len(s.graph.posts) == 60
    starts = sorted(t.timestamp() for t, _ in s.graph.posts)
    assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls
    window = LIMIT.window_seconds + margin_for(LIMIT)
    assert 60 / ((starts[-1] - starts[0]) / window + 1) / LIMIT.calls >= 0.85, "drained close to the limit"
    assert all(str(r["status"]) == "succeeded" for r in s.ledger.rows.values())
    assert not s.room.entries


async def test_requests_bigger_than_a_burst_are_parked_even_while_the_limiter_shows_free_places() -> None:
    """Intake reads the free places but does not take them: requests accepted before any worker reserved a slot
    all see the same ones. At 200/10 s, three 100-call requests used to go to the queue whole (300 messages); a
    request of more than a burst is parked, and the pump hands out what is free."""
    limit = RateLimit(200, 10.0)
    s = sim(limit)
    for n in (1, 2, 3):
        await s.accept(str(n) * 32, 100)
    assert s.queue.sent <= ahead_for(limit), "only what the pump handed out was sent"
    assert len(s.room.entries) == 300 - s.queue.sent
    await s.drain()
    assert len(s.graph.posts) == 300
    starts = sorted(t.timestamp() for t, _ in s.graph.posts)
    assert count_in_any_window(starts, limit.window_seconds) <= limit.calls


async def test_intake_queues_a_request_the_free_places_can_take_as_before() -> None:
    s = sim()
    await s.accept("1" * 32, 2)
    assert s.queue.sent == 2
    assert not s.room.entries
    assert {s.ledger.record("1" * 32, f"call-{i:04d}").status for i in (1, 2)} == {CallStatus.QUEUED}


async def test_a_one_call_request_through_intake_starts_within_a_few_slots_while_a_big_one_drains() -> None:
    s = sim()
    await s.accept("1" * 32, 200)
    await s.run_until(T0 + timedelta(seconds=60))
    submitted = s.clock()
    await s.accept("2" * 32, 1)
    assert s.queue.sent < 200, "the newcomer is parked behind nobody's messages"
    newcomer = s.ledger.record("2" * 32, "call-0001")
    assert newcomer.backlog_key is not None, "calls wait: the newcomer is parked at intake (or handed a slot)"
    await s.drain()
    [started] = [t for t, who in s.graph.posts if who.startswith("22222222")]
    slot = (LIMIT.window_seconds + margin_for(LIMIT)) / LIMIT.calls
    waited = (started - submitted).total_seconds() / slot
    assert waited <= 10, f"waited {waited:.1f} slots"


async def test_one_call_requests_arriving_at_any_moment_wait_about_a_window_of_slots_not_two() -> None:
    """Newcomers at 8 moments spread over a window while a big request drains (pumps after calls, wakes, a timer
    every 10 s): each waits at most a window and the hand-out horizon. When a window's places were handed out a
    window ahead, in one burst, one that arrived just after a hand-out waited for the next window's too: 11.5
    slots in this simulation, 10.2 measured at the real window (the issue's bar is 10)."""
    slot = (LIMIT.window_seconds + margin_for(LIMIT)) / LIMIT.calls
    waits = []
    for k in range(8):
        s = sim()
        await s.accept("1" * 32, 100)
        submitted = T0 + timedelta(seconds=60 + k * 1.3)
        await s.run_with_timer(submitted)
        await s.accept("2" * 32, 1)
        await s.run_with_timer(submitted + timedelta(seconds=30))
        [started] = [t for t, who in s.graph.posts if who.startswith("22222222")]
        waits.append((started - submitted).total_seconds() / slot)
        starts = [t.timestamp() for t, _ in s.graph.posts]
        assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls
        assert len(starts) >= 0.9 * LIMIT.calls * (s.clock.ts() - T0.timestamp()) / (LIMIT.window_seconds + 0.4)
    bound = 9  # a window (5 slots), the hand-out horizon (6 s: about 3 slots) and one more
    assert max(waits) <= bound, f"waited {max(waits):.1f} slots at most (p50 {sorted(waits)[4]:.1f})"


async def test_a_backlog_drains_in_whole_windows_so_its_last_call_starts_as_early_as_the_limit_allows() -> None:
    """60 calls through intake, as the real-window pacing bench sends them: on the bench's yardstick (calls per
    first-to-last start plus a window, against the limit) the drain reaches 0.95. Spaced evenly over each window
    it reached 0.90: the last window's calls came up to a window less one slot later. Each window's places are
    handed out by a wake timed just before they begin, not by the timer (which alone leaves gaps)."""
    s = sim()
    await s.accept("1" * 32, 60)
    await s.run_with_timer(T0 + timedelta(seconds=200))
    starts = sorted(t.timestamp() for t, _ in s.graph.posts)
    assert len(starts) == 60
    assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls
    rate = len(starts) / ((starts[-1] - starts[0] + LIMIT.window_seconds) * LIMIT.calls / LIMIT.window_seconds)
    assert rate >= 0.95, f"{rate:.3f} of the limit"
    assert 0 < s.queue.wakes <= 12, "about a wake per window, not one per pump"


async def test_parking_at_intake_costs_fewer_operations_per_call_than_parking_in_the_worker_and_stays_flat() -> None:
    def ops(s: Sim) -> int:
        return sum(s.ledger.ops.values()) + s.queue.sent + len(s.room.removed) + s.room.version

    per_call: dict[str, list[float]] = {"intake": [], "worker": []}
    for depth in (50, 300):
        through_intake, through_worker = sim(), sim()
        await through_intake.accept("1" * 32, depth)
        through_worker.submit("1" * 32, depth)
        for s in (through_intake, through_worker):
            await s.drain()
            assert len(s.graph.posts) == depth
        per_call["intake"].append(ops(through_intake) / depth)
        per_call["worker"].append(ops(through_worker) / depth)
    assert per_call["intake"][1] <= per_call["intake"][0] * 1.2, per_call
    assert per_call["intake"][1] < per_call["worker"][1] - 1.5, per_call


class LateOnceGraph(SimGraph):
    """The first paced request would leave past its send deadline: refused before the network, as the adapter does."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.deadlines: list[float | None] = []

    async def provision_on_demand(self, sp: str, job: str, rule: str, subject: dict[str, Any]) -> GraphAnswer:
        deadline = send_deadline.SEND_BY.get()
        self.deadlines.append(deadline)
        if len(self.deadlines) == 1:
            assert deadline is not None, "a paced call carries its deadline"
            self.clock.now = datetime.fromtimestamp(deadline + 0.5, UTC)  # the loop was busy past it
            return GraphFailure(None, send_deadline.SLOT_MISSED, "not sent")  # type: ignore[return-value]
        return await super().provision_on_demand(sp, job, rule, subject)


async def test_a_call_refused_at_its_send_deadline_takes_a_fresh_slot_without_spending_an_attempt() -> None:
    s = sim()
    s.graph = LateOnceGraph(s.clock)
    s.worker.graph = s.graph
    s.worker.preparer.graph = s.graph
    s.submit("1" * 32, 1)
    await s.drain()
    call = s.ledger.record("1" * 32, "call-0001")
    assert (call.status, call.attempts) == (CallStatus.SUCCEEDED, 1), "the refused request spent no attempt"
    assert len(s.graph.posts) == 1
    first, second = s.graph.deadlines
    assert first is not None
    assert second is not None
    assert second > first, "the second try had a slot of its own"
    assert send_deadline.SEND_BY.get() is None, "the deadline does not outlive the call"


async def test_the_dispatcher_reads_a_requests_parked_calls_in_one_query_and_removes_their_entries_together() -> None:
    s = sim()
    await s.accept("1" * 32, 60)  # the free places go out at intake, the rest are parked
    s.clock.now += timedelta(seconds=LIMIT.window_seconds * 2)
    s.ledger.ops.clear()
    removals = s.room.removals
    handed = await s.dispatcher.pump("tenant")
    assert handed == ahead_for(LIMIT)
    assert s.ledger.ops["ledger.parked_calls"] == 1, "one query for the request's calls at the head"
    assert s.ledger.ops["ledger.get_call"] == 0, "no point read per call"
    assert s.room.removals == removals + 1, "the handed calls' entries went in one removal"
    assert len(s.room.entries) == 60 - 2 * ahead_for(LIMIT)


async def test_a_request_with_one_entry_at_the_head_is_read_by_a_point_read_not_a_query() -> None:
    s = sim()
    await s.accept("1" * 32, 60)
    await s.accept("2" * 32, 2)  # parked behind the first: calls wait for the scope
    head = await s.room.head("tenant", 100)
    first = [e for e in head if e.request_id == "1" * 32][:3]
    second = [e for e in head if e.request_id == "2" * 32][:1]
    s.ledger.ops.clear()
    calls = await s.dispatcher._calls_of([*first, *second])
    assert [c.call_id if c else None for c in calls] == [e.call_id for e in [*first, *second]]
    assert s.ledger.ops["ledger.parked_calls"] == 1, "the request with three entries: one query"
    assert s.ledger.ops["ledger.get_call"] == 1, "the request with one entry: one point read"
