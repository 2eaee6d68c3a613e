"""The shared rate limiter: one Table row per scope, updated with optimistic concurrency.

Every instance of the app (Functions scales the work queue out) reads the row, computes a reservation with
:mod:`shared.core.pacing`, and writes it back only if the row's ETag is unchanged; on a conflict it re-reads and
decides again. So the budget holds across processes and machines with no lock service.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.adapters.create_once import CreateOnce
from shared.core import pacing
from shared.core.pacing import RateLimit

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

LIMITER_TABLE = "ProvisioningLimiter"
_PARTITION = "limiter"
_MAX_CONFLICTS = 50


def _conflict_backoff(attempt: int) -> float:
    """Full-jitter backoff after losing an ETag race: spreads many instances' retries on the one row."""
    return random.uniform(0, min(0.5, 0.01 * 2**attempt))  # noqa: S311 (jitter, not a secret)


class TableLimiter:
    """Reservations and throttle reports on the limiter rows."""

    def __init__(self, table: TableClient, limit: RateLimit, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._limit = limit
        self._clock = clock
        self._ensure_table = CreateOnce(self._table.create_table)

    @property
    def limit(self) -> RateLimit:
        """The limit this limiter enforces."""
        return self._limit

    async def _read(self, key: str) -> tuple[pacing.LimiterState, str | None]:
        try:
            entity = await self._table.get_entity(_PARTITION, key)
        except ResourceNotFoundError:
            return pacing.LimiterState(), None
        return pacing.LimiterState.from_json(entity.get("state")), str(entity.metadata["etag"])

    async def _write(self, key: str, state: pacing.LimiterState, etag: str | None) -> bool:
        entity = {"PartitionKey": _PARTITION, "RowKey": key, "state": state.to_json()}
        try:
            if etag is None:
                await self._table.create_entity(entity)
            else:
                await self._table.update_entity(
                    entity, mode="replace", etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except ResourceExistsError:
            return False
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise
        return True

    async def reserve(self, key: str, release: float | None = None) -> pacing.Reservation:
        """A start slot for one call (possibly in the future), or none within the horizon.

        ``release``: the caller's earlier slot, which it missed; it is given back in the same write.
        """
        await self._ensure_table()
        for attempt in range(_MAX_CONFLICTS):
            state, etag = await self._read(key)
            reservation = pacing.reserve(state, self._clock(), self._limit, release)
            if reservation.start is None or await self._write(key, reservation.state, etag):
                return reservation
            await asyncio.sleep(_conflict_backoff(attempt))
        # Heavy contention: take no slot, come back shortly.
        return pacing.Reservation(None, self._clock() + 1.0)

    async def report_throttle(self, key: str, retry_after: float) -> None:
        """Graph answered 429: block every instance's new reservations for ``retry_after`` seconds."""
        await self._ensure_table()
        for attempt in range(_MAX_CONFLICTS):
            state, etag = await self._read(key)
            if await self._write(key, pacing.throttled(state, self._clock(), retry_after), etag):
                return
            await asyncio.sleep(_conflict_backoff(attempt))

    async def next_free(self, key: str) -> float:
        """When the next call of this scope could start (epoch seconds), as booked now; nothing is reserved."""
        await self._ensure_table()
        state, _ = await self._read(key)
        return pacing.reserve(state, self._clock(), self._limit).retry_at
