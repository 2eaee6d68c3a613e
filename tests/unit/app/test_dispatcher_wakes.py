"""Wakes: the dispatcher hands a window's places out just before they begin, woken by a delayed work message.

The drains run the real worker, intake and dispatcher on the simulated clock and queue of ``test_backlog``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core.pacing import LimiterState, RateLimit, count_in_any_window, scope_key
from shared.core.ports import Parked, Wake, WorkItem, work_message
from shared.triggers import queue_api
from shared.usecases.dispatcher import HAND_OUT_WITHIN_SECONDS
from shared.usecases.intake import BIG_INTAKES_AT_ONCE
from tests.unit.app.test_backlog import LIMIT, T0, sim

JOB_SCOPE = scope_key("job", "c8c95753-f628-48e1-9fab-76c2d4cf624c", "3f7565a3-fde6-4e4d-bda8-1bb70aba3612")


def test_a_wake_and_a_work_item_read_back_from_their_bodies() -> None:
    for scope in ("tenant", JOB_SCOPE):
        assert work_message(Wake(scope).to_json()) == Wake(scope)
    item = WorkItem("0" * 32, "call-0001")
    assert work_message(item.to_json().encode()) == item


@pytest.mark.parametrize(
    "body",
    [
        '{"wake": "job-abc"}',
        '{"wake": "Tenant"}',
        '{"wake": 1}',
        '{"wake": "tenant", "callId": "call-0001"}',
        '{"wake": "tenant\\n"}',
        "[]",
        "not json",
    ],
)
def test_a_body_that_is_neither_raises_value_error(body: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names what is wrong; the host poisons on any error
        work_message(body)


@given(st.one_of(st.text(max_size=200), st.dictionaries(st.text(max_size=10), st.text(max_size=50), max_size=3)))
def test_any_body_is_a_message_or_a_value_error(body: Any) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    try:
        parsed = work_message(text)
    except ValueError:
        return
    assert isinstance(parsed, (Wake, WorkItem))


class _Msg:
    id = "m1"

    def __init__(self, body: str) -> None:
        self.body = body.encode()

    def get_body(self) -> bytes:
        return self.body


async def test_the_work_trigger_wakes_the_dispatcher_or_runs_the_worker() -> None:
    seen: list[object] = []

    async def woken(scope: str) -> int:
        seen.append(("woken", scope))
        return 0

    async def process(item: WorkItem) -> None:
        seen.append(item)

    runtime: Any = SimpleNamespace(dispatcher=SimpleNamespace(woken=woken), worker=SimpleNamespace(process=process))
    await queue_api.on_work_message(_Msg(Wake("tenant").to_json()), runtime)  # type: ignore[arg-type]
    await queue_api.on_work_message(_Msg(WorkItem("0" * 32, "call-0001").to_json()), runtime)  # type: ignore[arg-type]
    assert seen == [("woken", "tenant"), WorkItem("0" * 32, "call-0001")]


async def test_a_drain_at_a_slow_limit_is_woken_about_once_a_window_and_a_fast_one_not_at_all() -> None:
    """At 5/10 s nobody pumps between a window's calls and the next window's places: a wake does. At 50/1 s the
    calls holding later starts pump first (the next place lies within the hand-out horizon): no wake."""
    slow = sim()
    await slow.accept("1" * 32, 30)
    await slow.run_with_timer(T0 + timedelta(seconds=120))
    assert len(slow.graph.posts) == 30
    assert 1 <= slow.queue.wakes <= 6, "at most a wake per window (the timer hands some out), not one per pump"
    fast = sim(RateLimit(50, 1.0))
    await fast.accept("1" * 32, 600)
    await fast.run_with_timer(T0 + timedelta(seconds=60))
    assert len(fast.graph.posts) == 600
    assert fast.queue.wakes == 0


async def test_a_wake_that_cannot_be_sent_or_fails_is_left_to_the_timer_and_the_drain_goes_on() -> None:
    s = sim()

    async def unreachable(scope: str, delay_seconds: float) -> None:
        raise ConnectionError("queue down")

    s.queue.wake = unreachable  # type: ignore[method-assign]
    await s.accept("1" * 32, 20)
    await s.run_with_timer(T0 + timedelta(seconds=120))
    starts = [t.timestamp() for t, _ in s.graph.posts]
    assert len(starts) == 20
    assert count_in_any_window(starts, LIMIT.window_seconds) <= LIMIT.calls

    async def broken(scope: str, limit: int) -> list[Parked]:
        raise ConnectionError("table down")

    s.room.head = broken  # type: ignore[method-assign]
    s.bank.states["tenant"] = s.bank.states["tenant"].__class__(waiting=True)
    assert await s.dispatcher.woken("tenant") == 0, "a failed wake is not retried into the poison queue"


async def test_a_burst_of_big_requests_is_written_two_at_a_time_and_small_ones_go_at_once() -> None:
    """A big request's rows are a few 100-entity transactions; 16 of them at once put the drain's storage requests
    behind them all. One process writes at most ``BIG_INTAKES_AT_ONCE`` big requests at a time; a one-call
    request does not wait for them."""
    s = sim()
    create = s.ledger.create
    writing: list[int] = []
    release = asyncio.Event()

    async def slow_create(request: Any, calls: Any, **kwargs: Any) -> Any:
        writing.append(len(calls))
        await release.wait()
        return await create(request, calls, **kwargs)

    s.ledger.create = slow_create  # type: ignore[method-assign]
    big = [asyncio.create_task(s.accept(f"{i:x}" * 32, 100)) for i in range(1, 7)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert writing == [100] * BIG_INTAKES_AT_ONCE, "the other big requests wait their turn in the process"
    small = asyncio.create_task(s.accept("a" * 32, 1))
    for _ in range(20):
        await asyncio.sleep(0)
    assert writing[-1] == 1, "a one-call request is written at once"
    release.set()
    await asyncio.gather(*big, small)
    assert sorted(writing) == [1] + [100] * 6


async def test_after_a_slow_pump_the_next_hands_out_further_ahead_so_the_drain_does_not_wait_for_pumps() -> None:
    """Places handed out just in time must last until the next pump: while pumps take long (the storage service
    is saturated), a pump hands out further ahead, up to the row's window; once they are quick again, 6 s."""

    async def second_pump_reach(first_pump_seconds: float) -> float:
        s = sim(RateLimit(200, 10.0))
        await s.accept("1" * 32, 800)
        read = s.bank.state

        async def slow_state(key: str) -> LimiterState:
            s.clock.now += timedelta(seconds=first_pump_seconds)
            return await read(key)

        s.bank.state = slow_state  # type: ignore[method-assign]
        await s.dispatcher.pump("tenant")
        s.bank.state = read  # type: ignore[method-assign]
        s.clock.now += timedelta(seconds=1)
        before = set(s.bank.states["tenant"].starts)
        await s.dispatcher.pump("tenant")
        handed = [t for t in s.bank.states["tenant"].starts if t not in before]
        return max(handed) - s.clock.ts()

    assert await second_pump_reach(0.0) <= HAND_OUT_WITHIN_SECONDS + 0.01
    assert await second_pump_reach(3.0) > HAND_OUT_WITHIN_SECONDS + 3
