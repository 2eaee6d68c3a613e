"""Retention: finished requests older than ``LEDGER_RETENTION_DAYS`` are deleted with their logs.

A request counts from when it was created and when it last changed: both must be older than the
retention, and a request still pending is never deleted (a notBefore months ahead must still run).

Request ids sort by creation time (:mod:`shared.core.request_ids`), so the expired requests are one PartitionKey
range: the timer reads only what it deletes, never the whole table. Work is bounded per run; what is left
is taken by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared import telemetry
from shared.core.ports import EventIndex, Ledger, LogStore
from shared.core.request_ids import id_floor

log = telemetry.get_logger(__name__)

MAX_REQUESTS_PER_RUN = 5000


@dataclass(frozen=True)
class Purged:
    """What one retention run deleted."""

    requests: int
    rows: int
    blobs: int


class Retention:
    """The retention use case over its ports, built once per process in ``shared.runtime``."""

    def __init__(self, ledger: Ledger, logs: LogStore, events: EventIndex, retention_days: int) -> None:
        self._ledger, self._logs, self._events, self._retention_days = ledger, logs, events, retention_days

    async def run(self, now: datetime) -> Purged:
        """Delete what is past retention (see :func:`purge`)."""
        return await purge(self._ledger, self._logs, self._events, now=now, retention_days=self._retention_days)


async def purge(ledger: Ledger, logs: LogStore, events: EventIndex, *, now: datetime, retention_days: int) -> Purged:
    """Delete every finished request created and last updated more than ``retention_days`` ago (bounded)."""
    cutoff = now - timedelta(days=retention_days)
    expired = await ledger.finished_request_ids_below(id_floor(cutoff), cutoff, MAX_REQUESTS_PER_RUN)
    rows = blobs = 0
    for request_id in expired:
        request, _ = await ledger.get_request(request_id)
        if request is not None and request.event_key:
            await events.forget(request.event_key)
        blobs += await logs.delete_request(request_id)
        rows += await ledger.delete_request(request_id)
    if expired:
        log.info("retention purged requests", extra={"requests": len(expired), "rows": rows, "blobs": blobs})
    return Purged(len(expired), rows, blobs)
