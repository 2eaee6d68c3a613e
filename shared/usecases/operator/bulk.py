"""Retry every failed request of a target (a ``retryFailed`` schedule, ``shared.usecases.schedules``).

The failed requests are found through the request index (status ``failed``, the target, created since the
given time), a page at a time, and each is retried exactly as an operator's ``POST …/retry`` does. A request
that another retry (or a worker) took first is left to it: its 409 is not a failure of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared import telemetry
from shared.contract.problems import Problem
from shared.core.listing import MAX_TOP, ListFilter
from shared.core.ports import Ledger, RequestIndex
from shared.core.vocabulary import RequestStatus
from shared.usecases.operator.actions import RequestActions
from shared.usecases.operator.listing import list_requests

log = telemetry.get_logger(__name__)

#: Requests retried by one run at most (the next run goes on with the rest).
MAX_RETRIED = 1000


@dataclass(frozen=True)
class FailedRetry:
    """Retries failed requests found through the index (a ``ScheduleRunner.retry_failed``)."""

    index: RequestIndex
    ledger: Ledger
    actions: RequestActions
    by: str = "schedule"

    async def __call__(self, target: str, since: datetime) -> int:
        """Retry the target's failed requests created since ``since``; how many were retried."""
        return await _retry_failed(self, target, since)


async def _retry_failed(ports: FailedRetry, target: str, since: datetime) -> int:
    retried = 0
    after: str | None = None
    while retried < MAX_RETRIED:
        query = ListFilter(status=RequestStatus.FAILED, target=target, since=since, top=MAX_TOP, after=after)
        page = await list_requests(query, index=ports.index, ledger=ports.ledger)
        for summary in page.summaries:
            try:
                await ports.actions.retry(summary.request_id, by=ports.by)
            except Problem as problem:  # another retry took it first, or it is no longer failed
                log.info("failed request not retried", extra={"requestId": summary.request_id, "reason": problem.slug})
                continue
            retried += 1
        if page.next_after is None:
            break
        after = page.next_after
    return retried
