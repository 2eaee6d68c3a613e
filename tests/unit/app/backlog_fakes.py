"""In-memory backlog ports (waiting room, lease, slot bank) for unit tests of the dispatcher and the worker.

The slot bank runs the real pure limiter (:mod:`shared.core.pacing`) over one in-memory state per scope, on
the test's clock, so what a test sees handed out is what the Table limiter would hand out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared.core import pacing
from shared.core.pacing import ANYWHERE, LimiterState, RateLimit, Span
from shared.core.ports import Parked


class InMemoryWaitingRoom:
    """Entries per scope, keyed by place, with a version standing in for the ETag."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], tuple[Parked, int]] = {}
        self.version = 0
        self.removed: list[str] = []
        self.transactions = 0  # park_many
        self.removals = 0  # remove_many

    async def park(self, entry: Parked) -> None:
        self.version += 1
        self.entries[(entry.scope, entry.key)] = (entry, self.version)

    async def park_many(self, entries: Sequence[Parked]) -> None:
        self.transactions += 1
        for entry in entries:
            await self.park(entry)

    async def head(self, scope: str, limit: int) -> list[Parked]:
        keys = sorted(k for s, k in self.entries if s == scope)[:limit]
        found = []
        for key in keys:
            entry, version = self.entries[(scope, key)]
            found.append(Parked(scope, key, entry.request_id, entry.call_id, str(version)))
        return found

    async def remove_many(self, entries: Sequence[Parked]) -> None:
        self.removals += 1 if entries else 0  # nothing to remove is no write, as in the Table adapter
        for entry in entries:
            await self.remove(entry)

    async def remove(self, entry: Parked) -> None:
        held = self.entries.get((entry.scope, entry.key))
        if held is None or (entry.etag is not None and str(held[1]) != entry.etag):
            return
        del self.entries[(entry.scope, entry.key)]
        self.removed.append(entry.key)

    async def keys(self, scope: str) -> set[str]:
        return {k for s, k in self.entries if s == scope}


class InMemoryLease:
    """Leases by name on the test's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.held: dict[str, tuple[str, float]] = {}
        self.count = 0

    async def acquire(self, name: str, seconds: float) -> str | None:
        held = self.held.get(name)
        if held is not None and held[1] > self.clock():
            return None
        self.count += 1
        token = f"t{self.count}"
        self.held[name] = (token, self.clock() + seconds)
        return token

    async def release(self, name: str, token: str) -> None:
        if self.held.get(name, ("", 0.0))[0] == token:
            del self.held[name]


@dataclass
class InMemorySlotBank:
    """The shared limiter: the pure decisions over an in-memory state per scope."""

    clock: Callable[[], float]
    limit: RateLimit = field(default_factory=lambda: RateLimit(5, 10.0))
    states: dict[str, LimiterState] = field(default_factory=dict)
    throttles: list[float] = field(default_factory=list)

    async def reserve(self, key: str, release: float | None = None, *, queue_behind: bool = True) -> pacing.Reservation:
        r = pacing.reserve(
            self.states.get(key, LimiterState()), self.clock(), self.limit, release, queue_behind=queue_behind
        )
        if r.start is not None:
            self.states[key] = r.state
        return r

    async def report_throttle(self, key: str, retry_after: float) -> None:
        self.throttles.append(retry_after)
        self.states[key] = pacing.throttled(self.states.get(key, LimiterState()), self.clock(), retry_after)

    async def state(self, key: str) -> LimiterState:
        return self.states.get(key, LimiterState())

    def known(self, key: str) -> LimiterState | None:
        return self.states.get(key)

    async def reserve_many(
        self, key: str, count: int, *, round_: int | None = None, waiting: bool | None = None, span: Span = ANYWHERE
    ) -> list[float]:
        now = self.clock()
        slots, state = pacing.reserve_many(self.states.get(key, LimiterState()), now, self.limit, count, span)
        if round_ is not None:
            state = pacing.advance_round(state, round_)
        if waiting is not None:
            state = pacing.mark_waiting(state, waiting)
        self.states[key] = state
        return slots

    async def mark_waiting(self, key: str) -> None:
        self.states[key] = pacing.mark_waiting(self.states.get(key, LimiterState()), True)

    async def scopes(self) -> list[str]:
        return sorted(self.states)
