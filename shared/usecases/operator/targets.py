"""Every configured target's health (``GET /api/targets``): job status, backlog, and when it will drain.

Job status comes from Graph through the ``Provisioner`` port, cached briefly so a console refreshing every few
seconds does not spend Graph calls; the backlog from the request index (per target, per unfinished call
status), never from the ledger; the drain estimate from that backlog and the rate limit in force.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.core.operations import Health
from shared.core.pacing import RateLimit
from shared.core.ports import GraphFailure, JobStatus, Provisioner, RequestIndex
from shared.core.rules import TtlCache
from shared.core.vocabulary import CallStatus, RateScope
from shared.settings import Target

#: How long a job's status is reused before Graph is asked again.
JOB_STATUS_TTL_SECONDS = 30.0
#: Unfinished calls that wait for the rate limit (scheduled ones wait for their own time, not for the limit).
_DRAINING = (CallStatus.QUEUED, CallStatus.WAITING, CallStatus.RUNNING)


def drain_seconds(backlog: int, limit: RateLimit) -> int:
    """Seconds until ``backlog`` calls have started at ``limit`` (calls per window), rounded up."""
    if backlog <= 0:
        return 0
    return math.ceil(backlog / limit.calls * limit.window_seconds)


@dataclass
class TargetHealth:
    """Reads the targets' health over the Graph and index ports."""

    graph: Provisioner
    index: RequestIndex
    limit: RateLimit
    scope: str = RateScope.TENANT
    cache: TtlCache[tuple[str, str], JobStatus | GraphFailure] = field(
        default_factory=lambda: TtlCache(JOB_STATUS_TTL_SECONDS)
    )

    async def _job(self, target: Target) -> JobStatus | GraphFailure:
        key = (target.service_principal_id.lower(), target.job_id)
        cached = self.cache.get(key)
        if cached is None:
            try:
                cached = await self.graph.job_status(target.service_principal_id, target.job_id)
            except Exception as exc:  # the adapter must not raise; if it does, the page still answers
                cached = GraphFailure(None, "UnexpectedError", type(exc).__name__)
            self.cache.put(key, cached)
        return cached

    async def all(self, targets: Iterable[Target]) -> list[Health]:
        """Health of every target, in the order given."""
        listed = list(targets)
        jobs = await asyncio.gather(*(self._job(t) for t in listed))
        backlogs = [await self.index.backlog(t.name) for t in listed]
        draining = [sum(b.get(str(s), 0) for s in _DRAINING) for b in backlogs]
        # one tenant-wide budget: a target's calls drain no faster than everything queued before and beside them
        shared = sum(draining) if self.scope == RateScope.TENANT else None
        found = []
        for target, job, backlog, own in zip(listed, jobs, backlogs, draining, strict=True):
            failure = job if isinstance(job, GraphFailure) else None
            status = job if isinstance(job, JobStatus) else None
            seconds = drain_seconds(shared if shared is not None and own else own, self.limit)
            error = f"{failure.code or failure.http_status}: {failure.message}" if failure is not None else None
            found.append(
                Health(
                    target.name,
                    target.service_principal_id,
                    target.job_id,
                    target.rule_id,
                    status,
                    error,
                    backlog,
                    seconds,
                )
            )
        return found
