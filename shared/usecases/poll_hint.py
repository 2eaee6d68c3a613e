"""``Retry-After`` for a pending request from its calls and the shared limiter (see ``shared.core.poll_hint``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared import telemetry
from shared.core import aggregate, poll_hint
from shared.core.pacing import scope_key
from shared.core.ports import Ledger, SlotBook

log = telemetry.get_logger(__name__)


def _dt(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


async def retry_after(
    request: Mapping[str, Any] | None,
    calls: Sequence[Mapping[str, Any]],
    limiter: SlotBook,
    rate_scope: str,
    now: datetime | None = None,
) -> int:
    """Seconds before a poll of this pending request can show progress (2-300; the minimum when unknown)."""
    now = now or datetime.now(UTC)
    if request is None:
        return poll_hint.MIN_SECONDS
    unfinished = [c for c in calls if str(c.get("status")) not in aggregate.TERMINAL_CALL_STATUSES]
    dues = [d for c in unfinished if (d := _dt(c.get("reservedAt")) or _dt(c.get("nextAttemptAt"))) is not None]
    next_due = min(dues) if dues else None
    next_free: datetime | None = None
    sp, job = request.get("servicePrincipalId"), request.get("jobId")
    if unfinished and sp and job:
        try:
            free = await limiter.next_free(scope_key(rate_scope, str(sp), str(job)))
            next_free = datetime.fromtimestamp(free, UTC)
        except Exception as exc:  # a hint only: never fail a status read for it
            log.warning("limiter not read for Retry-After: %s", type(exc).__name__)
    return poll_hint.retry_after(now, next_due, len(unfinished), next_free, limiter.limit)


async def after_accept(ledger: Ledger, limiter: SlotBook, rate_scope: str, request_id: str) -> int:
    """:func:`retry_after` for a request just accepted (read back: its calls say when they are due)."""
    request, calls = await ledger.get_request(request_id)
    return await retry_after(request, calls, limiter, rate_scope)
