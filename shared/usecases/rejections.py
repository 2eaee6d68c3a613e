"""Recording a queued request that can never be valid: a ``rejected`` ledger row with its reasons, and the
message moved to ``provisioning-requests-poison`` at once (instead of failing five times first).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime

from shared import telemetry
from shared.contract.names import REQUESTS_POISON_QUEUE
from shared.contract.problems import Problem
from shared.core import ids, listing
from shared.core.ports import Ledger, WorkQueue
from shared.core.records import RequestRecord
from shared.core.request_ids import stable_request_id
from shared.core.vocabulary import RequestStatus, Source

log = telemetry.get_logger(__name__)


class QueueRejections:
    """Records why a ``provisioning-requests`` message was refused, then poisons it ourselves."""

    def __init__(
        self, ledger: Ledger, poison_queue: WorkQueue, announce: Callable[[str], Awaitable[object]] | None = None
    ) -> None:
        self._ledger = ledger
        self._poison_queue = poison_queue
        self._announce = announce  # the outcome event and callback of the rejection (``Outcomes.request_finished``)

    async def reject(self, message_id: str, body: bytes, problem: Problem, now: datetime) -> str:
        """Record why the message can never be valid, then move it to the poison queue; the request id recorded."""
        request_id = stable_request_id(now, f"queue-message:{message_id}:{body!r}")
        event_id = _event_id_of(body)
        row = RequestRecord(
            request_id=request_id,
            event_id=event_id,
            source=Source.QUEUE,
            status=RequestStatus.REJECTED,
            reason=f"{problem.title}: {problem.detail}",
            errors=tuple({"pointer": e.pointer, "detail": e.detail} for e in problem.errors),
            queue_message_id=message_id,
            poison_queue=REQUESTS_POISON_QUEUE,
            # the poison copy's text, hashed: how GET /api/poison finds this row again (shared.usecases.operator.poison)
            message_hash=listing.message_hash(body.decode("utf-8", errors="replace")),
            call_count=0,
            target=_target_of(body),
            created_at=now,
            updated_at=now,
        )
        await self._ledger.create(row, [], tolerate_existing=True)
        if self._announce is not None:
            await self._announce(request_id)  # before poisoning: a failure here retries the message
        await self._poison_queue.send_text(body.decode("utf-8", errors="replace"))
        log.warning(
            "queued request rejected and moved to the poison queue",
            extra={"requestId": request_id, "messageId": message_id, "reason": problem.title},
        )
        return request_id


def _field_of(body: bytes, name: str) -> str | None:
    """A short string field of a rejected body, for the ledger row (checked like any id before use)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "specversion" in data:
        data = data["data"]
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 200 and ids.is_object_id(value) else None


def _event_id_of(body: bytes) -> str | None:
    return _field_of(body, "eventId")


def _target_of(body: bytes) -> str | None:
    target = _field_of(body, "target")
    return target if target is not None and ids.is_target_name(target) else None
