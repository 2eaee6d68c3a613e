"""Pacing decisions for the shared rate limiter (pure).

Graph allows ``N`` provisionOnDemand calls per window (5 per 10 s, scope undocumented). Every instance of
the app shares one budget through a limiter row in Table Storage; this module decides, from that row's
state, when the next call may start. It hands out *reservations*: the earliest start time ``t`` such that no
window (widened by a safety margin) holds more than ``N`` starts. A worker whose slot is far off re-enqueues
its item to arrive just before ``t`` (a short lead), then sleeps the rest, so a backlog drains at the limit
with no 429s and no worker ever sleeps for long.

The row stays small whatever the rate and the depth: it holds the starts of the last (widened) window and at
most :func:`ahead_for` reserved starts in the future (one window's worth). A call that finds those taken
gets no slot; it waits in the backlog (:mod:`shared.core.backlog`) until a dispatcher hands it one, instead
of coming back to ask. The row also carries the scope's fairness ``round`` (the round of the last call
handed a slot from the backlog) and whether calls are ``waiting`` there, so a newcomer queues behind them.

Why a margin: instances stamp starts with their own clocks and Graph counts arrivals; clock skew, network
jitter and a start up to ``lateness`` after its reserved time all shift starts. Widening the window by
``margin`` keeps any real ``window`` of starts at or under ``N``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from dataclasses import dataclass, field, replace

from shared.core.errors import SettingsError

#: How late after its reserved time a call may still start on that reservation (at most).
LATENESS_SECONDS = 0.25
#: How far apart two instances' clocks (and their paths to Graph) may be, at most. Azure hosts take their time
#: from Microsoft's GPS-backed stratum 1 servers and pass it to the VMs they run
#: (https://learn.microsoft.com/azure/virtual-machines/linux/time-sync); measured host-derived errors reach
#: tens of milliseconds, so two instances may differ by up to about 0.1 s, plus network jitter to Graph.
SKEW_SECONDS = 0.15
#: How far ahead slots are handed out at most; beyond, the caller is told to come back later without a slot.
HORIZON_SECONDS = 15 * 60
#: How many windows' worth of future starts the limiter row holds at most (see :func:`ahead_for`).
AHEAD_WINDOWS = 1
#: The most time between two slots the dispatcher hands out back to back (see :func:`spacing_for`).
BURST_GAP_SECONDS = 0.1


@dataclass(frozen=True)
class RateLimit:
    """At most ``calls`` provisionOnDemand calls may start in any ``window_seconds``."""

    calls: int
    window_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Parse ``5/10s`` or ``5/1500ms``."""
        match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d+(?:\.\d+)?)\s*(ms|s|m)\s*", text)
        if not match:
            raise SettingsError(f"GRAPH_RATE_LIMIT must look like '5/10s', got {text!r}")
        calls = int(match.group(1))
        amount = float(match.group(2))
        unit = match.group(3)
        seconds = amount / 1000 if unit == "ms" else amount * 60 if unit == "m" else amount
        if calls < 1 or seconds <= 0:
            raise SettingsError(f"GRAPH_RATE_LIMIT must allow at least one call per positive window: {text!r}")
        return cls(calls, seconds)


def lateness_for(limit: RateLimit) -> float:
    """How late a call may start on its reservation: 0.25 s, or 5 % of a short window."""
    return min(LATENESS_SECONDS, 0.05 * limit.window_seconds)


def margin_for(limit: RateLimit) -> float:
    """Safety margin added to the window: the clock skew between instances, plus the allowed lateness.

    Both are sized from what they stand for, not from the window: at Graph's 5/10 s that is 0.15 s of skew
    (:data:`SKEW_SECONDS`) and 0.25 s of lateness, a 10.4 s window, so a backlog can drain at 0.96 of the
    limit (it was 0.75 s, 0.93). A compressed window (benches, tests) scales both down to 5 % of itself.
    """
    return min(SKEW_SECONDS, 0.05 * limit.window_seconds) + lateness_for(limit)


def ahead_for(limit: RateLimit) -> int:
    """Reserved future starts the limiter row holds at most: one window's worth.

    Enough that the dispatcher hands a whole window of slots out in one pass; small enough that the row stays
    a few KiB at any rate (each start is about 15 bytes of JSON; Table caps a string property at 64 KiB), and
    that a newcomer waits at most about one window of slots already handed out, plus its round. (The
    dispatcher also hands out only slots that begin within a few seconds, so at Graph's 5/10 s the row holds
    the window about to begin, not the next one.)
    """
    return AHEAD_WINDOWS * limit.calls


def spacing_for(limit: RateLimit) -> float:
    """How far apart the slots the dispatcher hands out start (pure): the widened window's share of one call,
    but never more than :data:`BURST_GAP_SECONDS` (a window's calls go together at a slow limit).

    - At a high rate a burst is what goes wrong: the dispatcher handed a window of slots out for one instant,
      one instance sent them one after the other, and the last ones left past their slot's lateness (not sent,
      the slot lost) or reached Graph out of step with the rest (a self-caused 429, which blocks the whole
      scope). Measured at 25/1 s, 1 worker, 5,000 calls: 21 429s with bursts of 25. So at 25/1 s or 200/10 s the
      slots are spaced evenly.
    - At Graph's 5/10 s, a window's 5 calls go within 0.4 s. Spaced evenly over the window (2.08 s apart), a
      drain of 60 calls ended one window less one slot (8.3 s) later than in bursts: 0.90 of the limit on the
      pacing bench instead of 0.96, since whatever the spacing only the first window decides when the last
      one can start. Fairness does not need the spacing: the dispatcher hands a window's places out just
      before they begin (:func:`reserve_many`'s ``latest``), so a newcomer that arrives before then takes one.
    """
    return min(BURST_GAP_SECONDS, (limit.window_seconds + margin_for(limit)) / limit.calls)


@dataclass(frozen=True)
class LimiterState:
    """One limiter row: reserved start times (epoch seconds, sorted), a throttle block, the backlog's round."""

    starts: tuple[float, ...] = ()
    blocked_until: float = 0.0
    round: int = 0
    waiting: bool = False

    def to_json(self) -> str:
        """Compact JSON for the Table property."""
        data: dict[str, object] = {"s": [round(t, 3) for t in self.starts], "b": round(self.blocked_until, 3)}
        if self.round:
            data["r"] = self.round
        if self.waiting:
            data["w"] = 1
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> LimiterState:
        """Parse what :meth:`to_json` wrote; an empty or unreadable row is an empty state."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(
                tuple(sorted(float(t) for t in data.get("s", []))),
                float(data.get("b", 0.0)),
                int(data.get("r", 0)),
                bool(data.get("w", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()

    def ahead(self, now: float) -> int:
        """Reserved starts still in the future."""
        return len(self.starts) - bisect.bisect_right(self.starts, now)

    def free(self, now: float, limit: RateLimit) -> int:
        """How many more future starts the row may hold now."""
        return max(0, ahead_for(limit) - self.ahead(now))


@dataclass(frozen=True)
class Reservation:
    """A slot at ``start`` (epoch seconds), or none (``start`` None) and a time to ask again."""

    start: float | None
    retry_at: float
    state: LimiterState = field(default_factory=LimiterState)


def reserve(
    state: LimiterState, now: float, limit: RateLimit, release: float | None = None, *, queue_behind: bool = True
) -> Reservation:
    """The earliest start at or after ``now`` that keeps every widened window at or under the limit.

    ``release`` gives back a slot that was reserved but never used (its holder arrived too late to start
    on it): nobody started a call then, so it must not keep counting against the budget.

    No slot (``start`` None) when the row already holds :func:`ahead_for` future starts, or when calls wait
    in the backlog and ``queue_behind`` (everyone but the dispatcher): a newcomer waits behind them. A caller
    giving a missed slot back (``release``) replaces it and is not held to the bound: the row grows by at most
    one start per call in flight.
    """
    window = limit.window_seconds + margin_for(limit)
    starts = sorted(t for t in state.starts if t > now - window)
    if release is not None:
        match = next((t for t in starts if abs(t - release) < 1e-3), None)
        if match is not None and match < now:
            starts.remove(match)
    kept = LimiterState(tuple(starts), state.blocked_until, state.round, state.waiting)
    if (queue_behind and state.waiting) or (release is None and kept.free(now, limit) == 0):
        return Reservation(None, _next_free(kept, now, window), kept)
    lower = max(now, state.blocked_until)
    # The earliest feasible time is ``lower`` or the moment an existing start leaves the window.
    candidates = sorted({lower, *(t + window for t in starts if t + window > lower)})
    # the last start + window is always feasible, so the search ends
    start = next(c for c in candidates if _feasible(starts, c, window, limit.calls))
    if start - now > HORIZON_SECONDS:
        return Reservation(None, now + HORIZON_SECONDS / 2, kept)
    bisect.insort(starts, start)
    return Reservation(start, start, LimiterState(tuple(starts), state.blocked_until, state.round, state.waiting))


def _next_free(state: LimiterState, now: float, window: float) -> float:
    """When a place in the row frees up: the earliest future start has passed (or one window, if none)."""
    future = [t for t in state.starts if t > now]
    return (future[0] if future else now + window) + 1e-3


@dataclass(frozen=True)
class Span:
    """Where the dispatcher's slots may lie, in seconds from now: no sooner than ``ahead`` (a dispatched call's
    message must reach a worker first), no later than ``within`` (None: anywhere the row allows)."""

    ahead: float = 0.0
    within: float | None = None


#: Any slot the row allows, from now on.
ANYWHERE = Span()


def reserve_many(
    state: LimiterState, now: float, limit: RateLimit, count: int, span: Span = ANYWHERE
) -> tuple[list[float], LimiterState]:
    """Up to ``count`` slots for the dispatcher (it goes first: the backlog is who newcomers queue behind).

    Spaced by :func:`spacing_for`. Fewer slots than asked when the row fills or past ``span.within`` (the
    dispatcher hands places out just in time, so that a newcomer that arrives meanwhile can still take one).
    ``span.ahead`` holds back only these slots, not the row's throttle block.
    """
    slots: list[float] = []
    blocked = state.blocked_until
    spacing = spacing_for(limit)
    latest = None if span.within is None else now + span.within
    for _ in range(count):
        floor = now + span.ahead
        if state.starts:
            floor = max(floor, state.starts[-1] + spacing)
        ask = replace(state, blocked_until=max(blocked, floor))
        reservation = reserve(ask, now, limit, queue_behind=False)
        if reservation.start is None or (latest is not None and reservation.start > latest + 1e-6):
            break
        state = replace(reservation.state, blocked_until=blocked)
        slots.append(reservation.start)
    return slots, state


def next_slot(state: LimiterState, now: float, limit: RateLimit, ahead: float = 0.0) -> float | None:
    """When the dispatcher's next slot would start, at least ``ahead`` from now (pure); None while the row is
    full (a place frees up only once a reserved start has passed, and the call on it pumps after it)."""
    slots, _ = reserve_many(state, now, limit, 1, Span(ahead))
    return slots[0] if slots else None


def wake_at(state: LimiterState, now: float, limit: RateLimit, ahead: float, before: float) -> float | None:
    """When the dispatcher should be woken to hand out its next place: ``before`` seconds ahead of it (pure).

    None when no wake is needed: the row is full (a place frees up once a reserved start passes, and the call
    on it pumps after its Graph call), the time is already here, or a call holds a start less than a second
    before then (it pumps after its call, about when the wake would come).
    """
    place = next_slot(state, now, limit, ahead)
    if place is None:
        return None
    at = place - before
    last = state.starts[-1] if state.starts else float("-inf")
    return None if at <= max(now, last + 1.0) else at


def advance_round(state: LimiterState, round_: int) -> LimiterState:
    """The scope's fairness round moved on to ``round_`` (never back)."""
    return replace(state, round=round_) if round_ > state.round else state


def mark_waiting(state: LimiterState, waiting: bool) -> LimiterState:
    """Record whether calls wait in the backlog (newcomers then queue behind them instead of taking a slot)."""
    return replace(state, waiting=waiting)


def _feasible(starts: list[float], candidate: float, window: float, calls: int) -> bool:
    """True if adding ``candidate`` leaves every run of ``calls``+1 starts spanning at least ``window``.

    ``starts`` is sorted; the check looks only at the runs that would include ``candidate`` (O(calls)).
    """
    index = bisect.bisect_left(starts, candidate)

    def at(k: int) -> float:
        return starts[k] if k < index else candidate if k == index else starts[k - 1]

    size = len(starts) + 1
    for lo in range(max(0, index - calls), index + 1):
        hi = lo + calls
        if hi < size and at(hi) - at(lo) < window - 1e-6:
            return False
    return True


def throttled(state: LimiterState, now: float, retry_after: float) -> LimiterState:
    """Graph said 429: nobody starts a call before ``now + retry_after``."""
    return replace(state, blocked_until=max(state.blocked_until, now + retry_after))


def count_in_any_window(starts: list[float], window: float) -> int:
    """The most starts any half-open window of length ``window`` holds (for tests and benchmarks)."""
    ordered = sorted(starts)
    best = 0
    lo = 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def scope_key(scope: str, service_principal_id: str, job_id: str) -> str:
    """The limiter row of a call: one for the tenant, or one per job (ids hashed: keys cannot hold every char)."""
    if scope == "job":
        digest = hashlib.sha256(f"{service_principal_id.lower()}/{job_id}".encode()).hexdigest()[:40]
        return f"job-{digest}"
    return "tenant"
