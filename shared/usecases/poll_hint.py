"""``Retry-After`` for a pending request from its calls and the shared limiter (see ``shared.core.poll_hint``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from shared import telemetry
from shared.core import aggregate, poll_hint
from shared.core.pacing import scope_key
from shared.core.ports import SlotBook
from shared.core.records import CallRecord, RequestRecord

log = telemetry.get_logger(__name__)


async def retry_after(
    request: RequestRecord | None,
    calls: Sequence[CallRecord],
    limiter: SlotBook,
    rate_scope: str,
    now: datetime | None = None,
) -> int:
    """Seconds before a poll of this pending request can show progress (2-300; the minimum when unknown)."""
    now = now or datetime.now(UTC)
    if request is None:
        return poll_hint.MIN_SECONDS
    unfinished = [c for c in calls if c.status not in aggregate.TERMINAL_CALL_STATUSES]
    dues = [d for c in unfinished if (d := c.reserved_at or c.next_attempt_at) is not None]
    next_due = min(dues) if dues else None
    next_free: datetime | None = None
    sp, job = request.service_principal_id, request.job_id
    if unfinished and sp and job:
        try:
            free = await limiter.next_free(scope_key(rate_scope, sp, job))
            next_free = datetime.fromtimestamp(free, UTC)
        except Exception as exc:  # a hint only: never fail a status read for it
            log.warning("limiter not read for Retry-After: %s", type(exc).__name__)
    return poll_hint.retry_after(now, next_due, len(unfinished), next_free, limiter.limit)
