"""The dispatcher: hands free rate-limit slots to the head of a scope's backlog.

A call that finds no slot within the limiter's short horizon is *parked* by the worker: an entry in the
backlog (:class:`shared.core.ports.WaitingRoom`, ordered by :mod:`shared.core.backlog`) first, then its row
marked ``waitingFor: slot``; its work message completes. It costs nothing while it waits, however long.

:meth:`Dispatcher.pump` fills the limiter's free places from the head of the backlog: under a short lease
(one dispatcher per scope at a time, across instances) it reads the head, checks each call still waits for
a slot, reserves their slots in one limiter write, then for each call writes its slot on the row (ETag),
enqueues its work item to arrive just before the slot, and only then deletes the entry. So an entry is
never lost: a crash leaves an entry whose call either still waits (dispatched again next time) or holds a
slot already (the entry is dropped as stale). Places are handed out just before they begin (within
:data:`HAND_OUT_WITHIN_SECONDS`), so a newcomer that arrives meanwhile takes one. Workers pump after their Graph
call, a wake (a delayed work message) comes just before a window's places when no call would pump then, and a
timer pumps every scope as a safety net. Storage operations per call are a constant:
no call is read or moved again while it waits, whatever the depth.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared import telemetry
from shared.core import pacing
from shared.core.backlog import Place, is_parked, parking
from shared.core.backlog import stale_entry as _stale
from shared.core.errors import StaleWrite
from shared.core.pacing import LimiterState, Span, scope_key
from shared.core.ports import Alarm, Lease, Ledger, Parked, SlotBank, WaitingRoom, WorkItem, WorkQueue
from shared.core.records import CallRecord
from shared.core.vocabulary import CallStatus

log = telemetry.get_logger(__name__)

#: How long one pump may hold a scope's lease (a pump takes well under a second; a dead one blocks this long).
LEASE_SECONDS = 15.0
#: Rounds of head-read, reserve and hand-out in one pump (each fills up to the limiter's free places).
MAX_PASSES = 3
#: No pass begins after the pump has held its lease this long (a third of it): a pump whose storage answers
#: slowly lets the next one (a worker's, the timer's) start over from the limiter's state as it then is.
#: Measured on Azurite during a 20,000-call intake: one timer pump held the lease for 3 min 6 s.
PASSES_WITHIN_SECONDS = LEASE_SECONDS / 3
#: A dispatched call's message arrives this long before its slot (the worker's own lead; queue delays are
#: whole seconds and polling is not punctual), and the worker sleeps the rest.
LEAD_SECONDS = 3.0
#: A slot handed out of the backlog lies at least this far ahead (see :meth:`Dispatcher._ahead`).
DISPATCH_AHEAD_SECONDS = 2.0
#: A slot handed out of the backlog lies at most this far ahead: a window's places are handed out just before
#: they begin, not a window ahead, so a newcomer that arrives meanwhile takes one (it sorts first in the
#: backlog). At Graph's 5/10 s, handed out a window ahead, a newcomer arriving just after a hand-out waited for
#: the next window's too: 10 slots. Just in time, it waits at most a window plus this (about 8 slots).
HAND_OUT_WITHIN_SECONDS = 6.0
#: A wake (see :meth:`Dispatcher._wake_before`) is timed to arrive this long before the next place begins:
#: whole-second delays arrive up to 1 s early, queue polling up to 2 s late, and the place must still lie
#: within :data:`HAND_OUT_WITHIN_SECONDS` and at least :data:`DISPATCH_AHEAD_SECONDS` ahead.
WAKE_BEFORE_SECONDS = 5.0
#: Calls of a new request that go straight to the queue when the limiter has free places for them all (more
#: are parked at intake, see :meth:`Dispatcher.admit`): a window at Graph's 5/10 s.
AT_ONCE = 5
#: Storage requests one pump makes at once (a window of slots is handed out in one go).
CONCURRENCY = 16

T = TypeVar("T")


async def _bounded(jobs: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``jobs`` concurrently, at most :data:`CONCURRENCY` at a time, results in order."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Coroutine[Any, Any, T]) -> T:
        async with semaphore:
            return await job

    return list(await asyncio.gather(*(one(j) for j in jobs)))


#: Entries of one request at the head from which its calls are read in one query rather than one by one.
QUERY_FROM = 3


def _parking(scope: str, call: CallRecord, state: LimiterState) -> dict[str, Any]:
    """The changes that mark a call parked in ``scope``'s backlog (pure; :func:`backlog.parking`)."""
    return parking(scope, call, state.round)


@dataclass(frozen=True)
class Admission:
    """A new request's due calls as intake writes them (see :meth:`Dispatcher.admit`)."""

    scope: str
    state: LimiterState
    calls: tuple[CallRecord, ...]
    #: The limiter had free places: pump once the entries are written.
    pump: bool


@dataclass
class Dispatcher:
    """Moves calls from the backlog into slots; one :meth:`pump` per scope at a time across instances."""

    ledger: Ledger
    queue: WorkQueue
    limiter: SlotBank
    room: WaitingRoom
    lease: Lease
    clock: Callable[[], float] = time.time
    #: Wakes the dispatcher when the next window's places are about to begin (None: the timer and the workers'
    #: pumps only, as in tests that do not look at timing).
    alarm: Alarm | None = None
    _last_pump: dict[str, float] = field(default_factory=dict)
    _wakes: dict[str, float] = field(default_factory=dict)
    _pump_seconds: dict[str, float] = field(default_factory=dict)

    async def park(self, scope: str, call: CallRecord, state: LimiterState) -> dict[str, Any]:
        """Write a call's backlog entry; the changes that mark its row parked (the worker writes them, as its attempt).

        A call parked before keeps its place. The entry is written before the row says ``waitingFor: slot``,
        so a parked call always has its entry (the sweeper re-parks one whose entry was lost anyway).
        """
        changes = _parking(scope, call, state)
        await self.room.park(Parked(scope, changes["backlog_key"], call.request_id, call.call_id))
        return changes

    async def admit(self, calls: Sequence[CallRecord], rate_scope: str, now: datetime) -> Admission:
        """A new request's due calls as intake should write them: parked from the start when they cannot all
        start now (calls already wait for the scope, or the limiter has fewer free places than calls) or are
        more than :data:`AT_ONCE` (5, a window at Graph's 5/10 s).

        Parked at intake, a call costs its share of one backlog transaction and no message, instead of a
        message, a read, an entry and a row write in a worker that only parks it. One limiter read per request.
        Intake does not take the free places it sees (that would be a write on the contended limiter row per
        request), so concurrent intakes all see the same ones: about 44 requests of 100 calls posted at once
        at 200/10 s went to the queue, and for two minutes the drain ran at half the limit while workers took
        those messages one by one. A few calls at most per request bound that to what a pump would send at once.
        """
        if not calls:
            return Admission("", LimiterState(), tuple(calls), pump=False)
        first = calls[0]
        scope = scope_key(rate_scope, str(first.service_principal_id), str(first.job_id))
        state = await self.limiter.state(scope)
        free = state.free(self.clock(), self.limiter.limit)
        if not state.waiting and min(free, AT_ONCE, self.limiter.limit.calls) >= len(calls):
            return Admission(scope, state, tuple(calls), pump=False)
        parked = tuple(replace(c, **_parking(scope, c, state), next_attempt_at=now) for c in calls)
        return Admission(scope, state, parked, pump=free > 0)

    async def admitted(self, admission: Admission) -> None:
        """After intake wrote the rows: the parked calls' entries (rows first, so the dispatcher never finds an
        entry without its call; a crash in between is the sweeper's lost entry), the scope marked waiting, and,
        when the limiter had free places, a pump so they are used now rather than at the timer's next tick."""
        parked = [c for c in admission.calls if is_parked(c)]
        if not parked:
            return
        scope = admission.scope
        await self.room.park_many([Parked(scope, str(c.backlog_key), c.request_id, c.call_id) for c in parked])
        await self.parked(scope, admission.state)
        if admission.pump:
            await self.pump_soon(scope)

    async def park_fresh(self, call: CallRecord, rate_scope: str, now: datetime) -> bool:
        """Park a call never attempted yet, before any claim, when calls already wait for its scope's slots.

        A flood of new calls (a big request, a burst of them) is parked at two writes each (the entry, then
        the row, conditional on the version read) and one read of the limiter row, instead of a claim, two
        refreshes of the request and a second write: so the flood drains from the queue fast and the messages
        the dispatcher times for their slots are not stuck behind it. The request's counts are refreshed by the
        call's next transition. True when the call was parked; False to go on as usual (not fresh, no backlog
        yet, or the row changed meanwhile: the claim then re-reads it).
        """
        fresh = call.status in (CallStatus.QUEUED, CallStatus.SCHEDULED) and not call.attempts
        if not fresh or call.backlog_key is not None or call.reserved_at is not None:
            return False
        scope = scope_key(rate_scope, str(call.service_principal_id), str(call.job_id))
        state = await self.limiter.state(scope)
        if not state.waiting and state.free(self.clock(), self.limiter.limit) > 0:
            return False
        changes = await self.park(scope, call, state)
        try:
            await self.ledger.update_call(replace(call, **changes, next_attempt_at=now))
        except StaleWrite:
            return False
        await self.parked(scope, state)
        log.info(
            "rate limit: calls wait for this scope; waiting in the backlog",
            extra={"backlogKey": changes["backlog_key"]},
        )
        return True

    async def parked(self, scope: str, state: LimiterState) -> None:
        """A call is parked: newcomers must queue behind it (one limiter write, only when not yet so)."""
        if not state.waiting:
            await self.limiter.mark_waiting(scope)

    async def pump_soon(self, scope: str) -> int:
        """Pump when the slots already handed out run low (workers call this after each Graph call).

        Not when this instance pumped the scope less than an eighth of a window ago, nor while the limiter row
        (as this process last saw it, no I/O) still holds starts beyond half a window after the soonest slot a
        pump could hand out: pumping only once a half window, whatever was left, let the starts run out before
        the next pump on a short window, and the slots it then handed out began after a gap (measured at
        50/1 s: 29 pumps for 1,000 calls, drain at 0.44 of the limit). Never raises: the caller's own work
        must go on, and the timer pumps too.
        """
        now = self.clock()
        window = self.limiter.limit.window_seconds
        if now - self._last_pump.get(scope, float("-inf")) < window / 8:
            return 0
        known = self.limiter.known(scope)
        if known is not None and known.starts and known.starts[-1] > now + self._ahead() + window / 2:
            return 0
        try:
            return await self.pump(scope)
        except Exception:
            log.warning("could not hand slots to the backlog; the timer will", exc_info=True)
            return 0

    async def pump_all(self) -> int:
        """Pump every scope that has a limiter row (the timer's safety net)."""
        handed = 0
        for scope in await self.limiter.scopes():
            handed += await self.pump(scope)
        return handed

    async def pump(self, scope: str) -> int:
        """Hand the free slots of ``scope`` to the head of its backlog; how many calls got one."""
        self._last_pump[scope] = self.clock()
        name = f"dispatch-{scope}"
        token = await self.lease.acquire(name, LEASE_SECONDS)
        if token is None:
            return 0  # another instance is dispatching this scope right now
        handed = 0
        began = self.clock()
        try:
            for _ in range(MAX_PASSES):
                given, more = await self._pass(scope)
                handed += given
                if not more or self.clock() - began >= PASSES_WITHIN_SECONDS:
                    break
        finally:
            await self.lease.release(name, token)
        held = self.clock() - began
        self._pump_seconds[scope] = held
        if held >= LEASE_SECONDS:
            log.warning("backlog: a pump outlived its lease", extra={"scope": scope, "seconds": round(held, 1)})
        if handed:
            log.info("backlog: calls handed a slot", extra={"scope": scope, "calls": handed})
        return handed

    async def _pass(self, scope: str) -> tuple[int, bool]:
        """One read of the head and hand-out; whether another pass may find more to do."""
        state = await self.limiter.state(scope)
        now = self.clock()
        free = len(self._places(scope, state, now))
        if free == 0:
            if state.waiting:
                await self._wake_before(scope, state, now)
            return 0, False
        entries = await self.room.head(scope, free)
        calls = await self._calls_of(entries)
        ready: list[tuple[Parked, CallRecord]] = []
        stale: list[Parked] = []
        for entry, call in zip(entries, calls, strict=True):
            if call is not None and is_parked(call, entry.key):
                ready.append((entry, call))
            elif _stale(call):
                stale.append(entry)  # the call was handed a slot, finished, or is gone
            # else: a worker holds the call and may be parking it right now (entry written, row not yet): keep
        await self.room.remove_many(stale)
        emptied = len(entries) < free
        if not ready:
            if emptied and state.waiting:
                await self.limiter.reserve_many(scope, 0, waiting=False)
            return 0, bool(entries) and not emptied
        round_ = max(Place.parse(entry.key).round for entry, _ in ready)
        slots = await self.limiter.reserve_many(
            scope,
            len(ready),
            round_=round_,
            waiting=False if emptied else None,
            span=self._span(scope),
        )
        results = await _bounded([self._hand(e, c, slot) for (e, c), slot in zip(ready, slots, strict=False)])
        # the entries of the calls handed a slot go last, together (a crash before leaves them to the next pump,
        # which finds their calls no longer parked and drops them)
        await self.room.remove_many([e for (e, _), handed in zip(ready, results, strict=False) if handed])
        more = not emptied and len(slots) == len(ready)
        known = self.limiter.known(scope)
        if not emptied and known is not None:
            await self._wake_before(scope, known, self.clock())
        return sum(results), more

    def _places(self, scope: str, state: LimiterState, now: float) -> list[float]:
        """The slots a pass could hand out now: free places of the row, due within the hand-out horizon (pure)."""
        limit = self.limiter.limit
        free = state.free(now, limit)
        return pacing.reserve_many(state, now, limit, free, self._span(scope))[0]

    async def _wake_before(self, scope: str, state: LimiterState, now: float) -> None:
        """Calls still wait: have a wake arrive just before the next place begins (:func:`pacing.wake_at`), unless
        this process already asked for one as early. Never raises: the timer pumps too."""
        at = pacing.wake_at(state, now, self.limiter.limit, self._ahead(), WAKE_BEFORE_SECONDS)
        asked = self._wakes.get(scope)
        if self.alarm is None or at is None or (asked is not None and now < asked <= at + 0.5):
            return
        try:
            await self.alarm.wake(scope, at - now)
        except Exception:
            log.warning("could not set the dispatcher's wake; the timer will pump", exc_info=True)
            return
        self._wakes[scope] = at

    async def woken(self, scope: str) -> int:
        """A wake arrived: hand the places about to begin to the head of the backlog. Never raises (a wake that
        failed is not worth a poison message: the timer pumps every scope anyway)."""
        self._wakes.pop(scope, None)
        try:
            handed = await self.pump(scope)
            log.info("backlog: woken", extra={"scope": scope, "calls": handed})
            return handed
        except Exception:
            log.warning("could not hand slots to the backlog on a wake; the timer will", exc_info=True)
            return 0

    async def _calls_of(self, entries: list[Parked]) -> list[CallRecord | None]:
        """The call row of each entry. A request with a few entries at the head has its parked calls read in one
        query; any other call by a point read (one entry of a request: round-robin across many requests puts
        one call of each in a round, and a query costs more than a point read; or a call that is not parked:
        the read says whether its entry is stale)."""
        by_request: dict[str, list[str]] = {}
        for entry in entries:
            by_request.setdefault(entry.request_id, []).append(entry.call_id)
        several = {rid: ids for rid, ids in by_request.items() if len(ids) >= QUERY_FROM}
        answers = await _bounded([self.ledger.parked_calls(rid, ids) for rid, ids in several.items()])
        found = {(c.request_id, c.call_id): c for calls in answers for c in calls}
        others = [e for e in entries if (e.request_id, e.call_id) not in found]
        reads = await _bounded([self.ledger.get_call(e.request_id, e.call_id) for e in others])
        for entry, call in zip(others, reads, strict=True):
            if call is not None:
                found[(entry.request_id, entry.call_id)] = call
        return [found.get((e.request_id, e.call_id)) for e in entries]

    def _ahead(self) -> float:
        """How far ahead a dispatched slot must lie: a message takes this long to reach a worker and be claimed
        (queue polling backs off to 2 s when idle; then a read and a claim). Half a window for short ones."""
        return min(DISPATCH_AHEAD_SECONDS, self.limiter.limit.window_seconds / 2)

    def _span(self, scope: str) -> Span:
        """Where a dispatched slot lies: far enough ahead for its message, and just in time, unless pumps take long.

        The places a pump hands out must last until the next one can hand out more: while this process's last
        pump of the scope held the lease for ``t`` seconds, other pumps waited for it, so slots reach
        ``ahead + 2t + window/8`` (a pump's run, the next one's, and the workers' spacing between pumps), at most
        the row's window of places. Measured at 200/10 s with 4 workers while the storage emulator was saturated:
        pumps of 5-7 s each handed out 6 s of slots and the drain fell to 0.4 of the limit between them.
        """
        took = self._pump_seconds.get(scope, 0.0)
        window = self.limiter.limit.window_seconds
        return Span(self._ahead(), max(HAND_OUT_WITHIN_SECONDS, self._ahead() + 2 * took + window / 8))

    async def _hand(self, entry: Parked, call: CallRecord, slot: float) -> bool:
        """Give one parked call its slot: row first (version), then its work item (the caller removes the entry)."""
        at = datetime.fromtimestamp(slot, UTC)
        try:
            await self.ledger.update_call(replace(call, waiting_for=None, reserved_at=at, next_attempt_at=at))
        except StaleWrite:
            fresh = await self.ledger.get_call(entry.request_id, entry.call_id)
            if fresh is None or not is_parked(fresh, entry.key):
                if _stale(fresh):
                    await self.room.remove(entry)
                return False  # taken over meanwhile: its slot goes unused
            try:
                await self.ledger.update_call(replace(fresh, waiting_for=None, reserved_at=at, next_attempt_at=at))
            except StaleWrite:
                return False  # keeps its entry: the next pump looks again
        delay = max(0.0, slot - self.clock() - LEAD_SECONDS)
        await self.queue.send(WorkItem(entry.request_id, entry.call_id), float(int(delay)))
        return True
