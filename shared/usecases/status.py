"""Reading a request's outcome: the ledger's rows and the large logs in the blob store, turned into the views
callers read (``GET …/{requestId}``), and the ``Prefer: wait`` poll of the Graph-compatible route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.contract import operator_views, views
from shared.core import poll_hint as hints
from shared.core.ports import LogStore, OperatorLedger, SlotBook
from shared.core.records import CallRecord, RequestRecord
from shared.usecases import poll_hint

#: How often the ``Prefer: wait`` poll reads the ledger.
WAIT_POLL_SECONDS = 0.25

JobPath = tuple[str, str]
"""A Graph-compatible path's (servicePrincipalId, jobId)."""


@dataclass(frozen=True)
class StatusRead:
    """What a status read found: the body callers see, and whether the request is still pending."""

    body: dict[str, Any]
    pending: bool
    #: While pending: seconds before polling again can show progress (``Retry-After``).
    retry_after: int = hints.MIN_SECONDS


class Status:
    """Reads requests from the ledger (and their large logs from the blob store) into the caller's views.

    ``logs`` is called only when a large log is to be read, so a read that needs none never builds the blob
    client (nor fails for want of its setting).
    """

    def __init__(
        self,
        ledger: OperatorLedger,
        logs: Callable[[], LogStore],
        graph_base_url: str,
        poll_seconds: float = WAIT_POLL_SECONDS,
        slots: tuple[SlotBook, str] | None = None,
    ) -> None:
        self._ledger = ledger
        self._slots = slots  # the shared limiter and the rate scope, for an honest Retry-After
        self._logs = logs
        self._graph_base_url = graph_base_url
        self.poll_seconds = poll_seconds

    async def read(
        self, request_id: str, *, job: JobPath | None = None, include_logs: bool = False, include_attempts: bool = False
    ) -> StatusRead | None:
        """The request's view; None when there is no such request, or (``job`` given) it was made for another job.

        ``include_attempts``: each call also shows the rounds before an operator's retry (``attemptHistory``).
        """
        request, calls = await self._ledger.get_request(request_id)
        if request is None or (job is not None and not _made_for(request, job)):
            return None
        blob_logs: dict[str, str | None] = {}
        if include_logs:
            for call in calls:
                if call.provisioning_log_blob:
                    blob_logs[call.call_id] = await self._logs().get(call.provisioning_log_blob)
        body = views.request_view(request, calls, include_logs=include_logs, blob_logs=blob_logs)
        if include_attempts:
            body = operator_views.attach_attempts(body, await self._ledger.attempts(request_id))
        if not views.is_pending(request):
            return StatusRead(body, False)
        return StatusRead(body, True, await self._retry_after(request, calls))

    async def retry_after(self, request_id: str) -> int:
        """``Retry-After`` for a request just accepted: read back, its calls say when they are due."""
        request, calls = await self._ledger.get_request(request_id)
        return await self._retry_after(request, calls)

    async def retry_after_for(self, request: RequestRecord, calls: Sequence[CallRecord]) -> int:
        """``Retry-After`` for rows the caller already holds (intake just wrote them): no read of the ledger."""
        return await self._retry_after(request, list(calls))

    async def _retry_after(self, request: RequestRecord | None, calls: list[CallRecord]) -> int:
        if self._slots is None:
            return hints.MIN_SECONDS
        return await poll_hint.retry_after(request, calls, *self._slots)

    async def wait_for_graph_answer(self, request_id: str, wait: int) -> tuple[int, Any] | None:
        """Poll the ledger until the single call is done or ``wait`` seconds pass; then Graph's answer shape."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            request, calls = await self._ledger.get_request(request_id)
            if request is not None and not views.is_pending(request) and len(calls) == 1:
                blob = None
                if calls[0].provisioning_log_blob:
                    blob = await self._logs().get(calls[0].provisioning_log_blob)
                return views.graph_answer(calls[0], self._graph_base_url, blob)
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(self.poll_seconds)


def _made_for(request: RequestRecord, job: JobPath) -> bool:
    """The request was made for the job the path names (ids compare case-insensitively, like Graph's)."""
    sp, job_id = job
    return (request.service_principal_id or "").lower() == sp.lower() and (
        request.job_id or ""
    ).lower() == job_id.lower()
