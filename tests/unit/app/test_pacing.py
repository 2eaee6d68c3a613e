"""The limiter's decisions: never more than N starts in any window, as early as that allows."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import pacing
from shared.core.pacing import (
    HORIZON_SECONDS,
    LimiterState,
    RateLimit,
    count_in_any_window,
    lateness_for,
    margin_for,
    reserve,
    spacing_for,
    throttled,
)
from shared.core.records import CallRecord

LIMIT = RateLimit(5, 10.0)


def test_an_idle_limiter_grants_now_and_a_burst_is_spread_over_windows_up_to_its_bound() -> None:
    state = LimiterState()
    granted = []
    for _ in range(10):
        r = reserve(state, 1000.0, LIMIT)
        assert r.start is not None
        granted.append(r.start)
        state = r.state
    window = LIMIT.window_seconds + margin_for(LIMIT)
    assert granted[:5] == [1000.0] * 5
    assert granted[5:10] == [1000.0 + window] * 5
    # one window's worth of future starts is the bound: the next call waits in the backlog instead
    assert reserve(state, 1000.0, LIMIT).start is None
    assert reserve(state, 1000.0 + window, LIMIT).start == 1000.0 + 2 * window


def test_a_throttle_blocks_new_reservations() -> None:
    state = throttled(LimiterState(), 1000.0, 30.0)
    assert reserve(state, 1000.0, LIMIT).start == 1030.0


def test_beyond_the_horizon_no_slot_is_taken() -> None:
    state = LimiterState(blocked_until=1000.0 + HORIZON_SECONDS + 60)
    r = reserve(state, 1000.0, LIMIT)
    assert r.start is None
    assert r.state.starts == ()
    assert r.retry_at > 1000.0


def test_state_round_trips_and_tolerates_garbage() -> None:
    state = LimiterState((1.5, 2.25), 3.0)
    assert LimiterState.from_json(state.to_json()) == state
    assert LimiterState.from_json("not json") == LimiterState()
    assert LimiterState.from_json(None) == LimiterState()


limits = st.builds(RateLimit, st.integers(1, 8), st.sampled_from([0.5, 1.0, 10.0]))
events = st.lists(st.tuples(st.floats(0, 5), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=300)
@given(limits, events, st.floats(0, 3))
def test_no_window_ever_holds_more_than_the_limit(
    limit: RateLimit, steps: list[tuple[float, bool]], lateness: float
) -> None:
    """Reservations from many interleaved callers, at moving clocks, started up to the allowed lateness late."""
    state = LimiterState()
    now = 0.0
    started: list[float] = []
    for advance, throttle in steps:
        now += advance
        if throttle:
            state = throttled(state, now, 1.0)
            continue
        r = reserve(state, now, limit)
        state = r.state
        if r.start is not None:
            assert r.start >= now
            started.append(r.start + min(lateness, lateness_for(limit)))
    assert count_in_any_window(started, limit.window_seconds) <= limit.calls


@settings(max_examples=200)
@given(limits, st.integers(1, 40))
def test_a_backlog_drains_at_close_to_the_limit(limit: RateLimit, n: int) -> None:
    state = LimiterState()
    starts = []
    for _ in range(n):
        r = reserve(state, 0.0, limit)
        if r.start is None:
            break
        starts.append(r.start)
        state = r.state
    window = limit.window_seconds + margin_for(limit)
    # ideal: n calls need ceil(n / calls) - 1 full windows before the last one starts
    assert max(starts) <= ((len(starts) - 1) // limit.calls) * window + 1e-9


@settings(max_examples=200)
@given(limits, st.integers(1, 200))
def test_the_dispatcher_hands_slots_out_evenly_spaced_at_the_same_rate(limit: RateLimit, n: int) -> None:
    state, now, pumps = LimiterState(), 0.0, 0
    starts: list[float] = []
    while len(starts) < n:
        slots, state = pacing.reserve_many(state, now, limit, n - len(starts), pacing.Span(0.1))
        starts += slots
        # the dispatcher pumps again once a place frees up: the row's soonest future start has passed
        now = min((t for t in state.starts if t > now), default=now) + 1e-3
        pumps += 1
    spacing = spacing_for(limit)
    window = limit.window_seconds + margin_for(limit)
    ordered = sorted(starts)
    assert all(b - a >= spacing - 1e-6 for a, b in itertools.pairwise(ordered)), "never two at once"
    assert count_in_any_window(starts, limit.window_seconds) <= limit.calls
    assert max(starts) - min(starts) <= (len(starts) - 1) * window / limit.calls + 1e-6, "the widened window's rate"


def test_a_missed_slot_is_given_back() -> None:
    state = LimiterState()
    for _ in range(5):
        state = reserve(state, 100.0, LIMIT).state
    late = reserve(state, 100.5, LIMIT)
    assert late.start is not None
    assert late.start > 100.5
    # one holder of a 100.0 slot arrived too late and never started: giving it back frees the budget now
    again = reserve(state, 100.5, LIMIT, release=100.0)
    assert again.start == 100.5
    assert len(again.state.starts) == 5


@settings(max_examples=300)
@given(limits, st.lists(st.tuples(st.floats(0, 3), st.booleans()), min_size=1, max_size=50))
def test_released_slots_never_let_a_window_overflow(limit: RateLimit, steps: list[tuple[float, bool]]) -> None:
    """Some holders miss their slot and re-reserve giving it back; the calls that did start still fit."""
    state = LimiterState()
    now = 0.0
    started: list[float] = []
    missed: list[float] = []
    for advance, miss in steps:
        now += advance
        release = missed.pop() if missed and missed[-1] < now else None
        r = reserve(state, now, limit, release=release)
        state = r.state
        if r.start is None:
            continue
        if miss:
            missed.append(r.start)
        else:
            started.append(r.start)
    assert count_in_any_window(started, limit.window_seconds) <= limit.calls


def test_sweeper_decisions() -> None:
    from datetime import UTC, datetime, timedelta

    from shared.adapters.ledger_codec import call_from_entity
    from shared.usecases.sweeper import due_for_enqueue, needs_redrive

    def c(**row: Any) -> CallRecord:
        return call_from_entity({"PartitionKey": "r", "RowKey": "call-0001", "status": "queued", **row})

    now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    grace = timedelta(minutes=5)
    assert needs_redrive(c(**{"status": "queued", "nextAttemptAt": now - timedelta(minutes=10)}), now, grace)
    assert not needs_redrive(c(**{"status": "queued", "nextAttemptAt": now - timedelta(minutes=1)}), now, grace)
    assert not needs_redrive(c(**{"status": "succeeded"}), now, grace)
    assert needs_redrive(c(**{"status": "running", "claimedUntil": now - timedelta(minutes=6)}), now, grace)
    assert not needs_redrive(c(**{"status": "running", "claimedUntil": now + timedelta(minutes=1)}), now, grace)
    old = now - timedelta(minutes=10)
    assert not needs_redrive(c(**{"status": "waiting", "nextAttemptAt": old, "redrivenAt": now}), now, grace)
    assert not needs_redrive(c(**{"status": "scheduled", "nextAttemptAt": old, "enqueued": False}), now, grace)
    assert due_for_enqueue(c(**{"enqueued": False, "nextAttemptAt": now + timedelta(days=6)}), now)
    assert not due_for_enqueue(c(**{"enqueued": False, "nextAttemptAt": now + timedelta(days=8)}), now)
    assert not due_for_enqueue(c(**{"nextAttemptAt": now + timedelta(days=1)}), now)


def test_a_wake_comes_before_a_windows_places_only_when_no_call_would_pump_then() -> None:
    limit = RateLimit(5, 10.0)
    burst, state = pacing.reserve_many(LimiterState(), 0.0, limit, 5)
    assert burst == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert pacing.wake_at(state, 1.0, limit, 2.0, 5.0) == pytest.approx(10.4 - 5.0), "the next window's places"
    assert pacing.wake_at(state, -1.0, limit, 2.0, 5.0) is None, "the row is full: the calls on it pump"
    assert pacing.wake_at(LimiterState(), 0.0, limit, 2.0, 5.0) is None, "the place is due now: the pass takes it"
    fast = RateLimit(200, 10.0)
    _, busy = pacing.reserve_many(LimiterState(), 0.0, fast, 115, pacing.Span(2.0, 6.0))
    assert pacing.wake_at(busy, 0.5, fast, 2.0, 5.0) is None, "a call on a later start pumps first"
