"""Outcomes: when a request reaches a terminal status, announce it once, and call its callback back.

Exactly one announcement per terminal transition, even under retries and crashes, with an outbox on the
request row. Whoever sees the request terminal (the worker that finished its last call, a duplicate work
item, the sweeper, the queue intake that rejected it) calls :meth:`Outcomes.request_finished`:

1. the row's ``notifiedFor`` already names this transition (``status@finishedAt``): done, nothing sent;
2. otherwise the caller claims the transition on the row (ETag-conditional, so one of two racing callers
   wins; the claim runs out, so a claimer that died is taken over);
3. it sends the CloudEvent to ``provisioning-outcomes`` (and Event Grid), queues the first callback attempt,
   and only then marks ``notifiedFor``.

The request stays in the sweeper's in-flight index until step 3 is marked (:class:`AnnouncingPending`: the
worker and the sweeper remove a finished request from the index only through it), so a crash anywhere before
it is finished by the next sweep; a crash between sending and marking re-sends the same event (same ``id``:
consumers drop it). Callbacks are one queue message per attempt, delayed by visibility (never a sleeping
worker), retried with backoff for 24 hours, each attempt claimed and recorded on the row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import telemetry
from shared.contract import outcome_events, views
from shared.core import callbacks
from shared.core.errors import StaleWrite
from shared.core.ports import CallbackClient, EventPublisher, Ledger, MessageQueue, PendingIndex
from shared.core.records import RequestRecord
from shared.core.vocabulary import CallbackStatus, RequestStatus

log = telemetry.get_logger(__name__)

CLAIM_SECONDS = 60.0
CALLBACK_CLAIM_SECONDS = 120.0
MAX_MARK_TRIES = 6


def _transition(request: RequestRecord) -> tuple[str, datetime] | None:
    """The terminal status and when it was reached, or None while the request is pending."""
    if request.status == RequestStatus.PENDING or request.updated_at is None:
        return None
    return request.status.value, request.updated_at


@dataclass(frozen=True)
class CallbackMessage:
    """One callback attempt on ``provisioning-callbacks``: which request, for which transition."""

    request_id: str
    transition: str

    def to_json(self) -> str:
        """The message body."""
        return json.dumps({"requestId": self.request_id, "transition": self.transition}, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: bytes | str) -> CallbackMessage:
        """Parse a message body; ValueError when it is not one of ours."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("callback message must be a JSON object")
        request_id, transition = data.get("requestId"), data.get("transition")
        if not isinstance(request_id, str) or not isinstance(transition, str) or len(transition) > 100:
            raise ValueError("callback message has no requestId and transition")
        return cls(request_id, transition)


@dataclass
class Outcomes:
    """The adapters outcome announcements and callbacks need."""

    ledger: Ledger
    outcomes_queue: MessageQueue
    callbacks_queue: MessageQueue
    callbacks: CallbackClient
    event_grid: EventPublisher | None = None
    public_base_url: str | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def _status_body(self, request_id: str) -> dict[str, Any] | None:
        request, calls = await self.ledger.get_request(request_id)
        if request is None:
            return None
        return views.request_view(request, calls, include_logs=False)

    async def _merge(self, request: RequestRecord, changes: dict[str, Any]) -> RequestRecord | None:
        """Write marks, re-reading when only someone else's property changed in between (bounded)."""
        for _ in range(MAX_MARK_TRIES):
            try:
                return await self.ledger.update_marks(request, replace(request.marks, **changes))
            except StaleWrite:
                fresh = await self.ledger.read_request(request.request_id)
                if fresh is None:
                    return None
                request = fresh
        raise StaleWrite(f"{request.request_id}: request row kept changing")

    async def settle(self, request_id: str) -> bool:
        """:meth:`request_finished` for the worker and the sweeper: a failure is logged, not raised.

        Event Grid or the outcomes queue being down must not fail the Graph call that just finished; the
        request stays in the in-flight index (False) and the next sweep announces it.
        """
        try:
            return await self.request_finished(request_id)
        except Exception as exc:  # any dependency failure: retried by the sweeper
            log.warning(
                "request outcome not announced yet; the sweeper retries",
                extra={"requestId": request_id, "error": type(exc).__name__},
            )
            return False

    async def request_finished(self, request_id: str) -> bool:
        """Announce the request's terminal transition unless announced already; True once it is announced.

        False while the request is pending, gone, or another caller holds the claim (the caller keeps the
        request in the in-flight index, so the sweeper asks again).
        """
        for _ in range(MAX_MARK_TRIES):
            request = await self.ledger.read_request(request_id)
            if request is None:
                return False
            transition = _transition(request)
            if transition is None:
                return False
            status, finished_at = transition
            key = outcome_events.transition_key(status, finished_at)
            marks = request.marks
            if marks.notified_for == key:
                return True
            now = self.clock()
            claimed_until = marks.notify_claimed_until
            if marks.notify_claim_for == key and claimed_until is not None and claimed_until > now:
                return False
            claim = replace(marks, notify_claim_for=key, notify_claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
            try:
                request = await self.ledger.update_marks(request, claim)
            except StaleWrite:
                continue
            await self._announce(request, status, finished_at, key)
            return True
        return False

    async def _announce(self, request: RequestRecord, status: str, finished_at: datetime, key: str) -> None:
        request_id = request.request_id
        body = await self._status_body(request_id)
        if body is None:
            return
        event = outcome_events.finished_event(
            request_id, status, finished_at, body, public_base_url=self.public_base_url
        )
        event = outcome_events.fitted(event, f"{event['source']}/{request_id}")
        await self.outcomes_queue.send_text(json.dumps(event, separators=(",", ":")))
        if self.event_grid is not None:
            await self.event_grid.publish(event)
        changes: dict[str, Any] = {
            "notified_for": key,
            "notified_at": self.clock(),
            "notify_claim_for": None,
            "notify_claimed_until": None,
        }
        if request.callback_url and request.marks.callback_for != key:
            # queued before the mark: a crash in between queues a second message, which finds the attempt
            # claimed or done and does nothing
            await self.callbacks_queue.send_text(CallbackMessage(request_id, key).to_json())
            changes |= {
                "callback_for": key,
                "callback_status": CallbackStatus.PENDING,
                "callback_attempts": 0,
                "callback_last_error": None,
            }
        await self._merge(request, changes)
        log.info("request outcome announced", extra={"requestId": request_id, "status": status, "eventId": event["id"]})

    async def deliver_callback(self, message: CallbackMessage) -> str:
        """One callback attempt for ``message``; returns what happened (for logs and tests)."""
        for _ in range(MAX_MARK_TRIES):
            request = await self.ledger.read_request(message.request_id)
            if request is None:
                return "missing"
            url = request.callback_url
            transition = _transition(request)
            if not url or transition is None:
                return "none"
            key = outcome_events.transition_key(*transition)
            if key != message.transition:
                return "stale"  # the request changed since; its new transition queues its own callback
            marks = request.marks
            same = marks.callback_for == key
            state = marks.callback_status if same else None
            if state in (CallbackStatus.DELIVERED, CallbackStatus.FAILED):
                return "done"
            now = self.clock()
            claimed_until = marks.callback_claimed_until
            if state == CallbackStatus.SENDING and claimed_until is not None and claimed_until > now:
                return "busy"  # another attempt is in flight; if its worker dies, its message comes back
            attempts = (marks.callback_attempts or 0) if same else 0
            claim = replace(
                marks,
                callback_for=key,
                callback_status=CallbackStatus.SENDING,
                callback_attempts=attempts + 1,
                callback_claimed_until=now + timedelta(seconds=CALLBACK_CLAIM_SECONDS),
            )
            try:
                request = await self.ledger.update_marks(request, claim)
            except StaleWrite:
                continue
            return await self._attempt(message, request, url, attempts + 1, transition[1])
        return "busy"

    async def _attempt(
        self, message: CallbackMessage, request: RequestRecord, url: str, attempts: int, finished_at: datetime
    ) -> str:
        body = await self._status_body(message.request_id)
        if body is None:
            return "missing"
        result = await self.callbacks.post(url, json.dumps(body, separators=(",", ":")).encode("utf-8"))
        now = self.clock()
        changes: dict[str, Any] = {"callback_claimed_until": None, "callback_http_status": result.http_status}
        ctx = {"requestId": message.request_id, "attempts": attempts, "httpStatus": result.http_status}
        if result.delivered:
            changes |= {
                "callback_status": CallbackStatus.DELIVERED,
                "callback_delivered_at": now,
                "callback_next_at": None,
            }
            outcome = "delivered"
            log.info("callback delivered", extra=ctx)
        else:
            delay = callbacks.retry_delay(attempts)
            deadline = finished_at + timedelta(seconds=callbacks.WINDOW_SECONDS)
            if result.permanent or now + timedelta(seconds=delay) > deadline:
                changes |= {"callback_status": CallbackStatus.FAILED, "callback_next_at": None}
                outcome = "failed"
            else:
                await self.callbacks_queue.send_text(message.to_json(), delay)
                changes |= {
                    "callback_status": CallbackStatus.RETRYING,
                    "callback_next_at": now + timedelta(seconds=delay),
                }
                outcome = "retrying"
            changes["callback_last_error"] = (result.error or "failed")[:1000]
            log.warning("callback not delivered", extra={**ctx, "outcome": outcome, "error": result.error})
        await self._merge(request, changes)
        return outcome


@dataclass
class AnnouncingPending:
    """The in-flight index, keeping a finished request until its outcome is announced.

    The worker and the sweeper remove a request from the index once it is final; through this wrapper the
    removal first announces it (:meth:`Outcomes.settle`) and happens only once that is done, or when there is
    no request row at all (an intake that never finished): so the next sweep retries a failed announcement.
    """

    inner: PendingIndex
    outcomes: Outcomes

    async def add(self, request_id: str, now: datetime) -> None:
        """As the index does."""
        await self.inner.add(request_id, now)

    async def remove(self, request_id: str) -> None:
        """Announce, then forget (or keep it for the next sweep when the announcement did not happen)."""
        if await self.outcomes.settle(request_id) or await self.outcomes.ledger.read_request(request_id) is None:
            await self.inner.remove(request_id)

    async def list(self, limit: int) -> list[tuple[str, datetime]]:
        """As the index does."""
        return await self.inner.list(limit)
