"""The work queue adapter: ``provisioning-work``, one message per Graph call.

Messages are base64, as the Functions queue trigger expects (a plain-text message would be moved to the
poison queue without the function ever seeing it). A delay rides on the message's visibility timeout,
which Azure caps at 7 days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.adapters.create_once import CreateOnce
from shared.core import ids

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

WORK_QUEUE = "provisioning-work"
REQUESTS_QUEUE = "provisioning-requests"
REQUESTS_POISON_QUEUE = f"{REQUESTS_QUEUE}-poison"
MAX_VISIBILITY_DELAY_SECONDS = 7 * 24 * 3600 - 60


@dataclass(frozen=True)
class WorkItem:
    """Which call to make: a pointer into the ledger, never the call itself."""

    request_id: str
    call_id: str

    def to_json(self) -> str:
        """The message body."""
        return json.dumps({"requestId": self.request_id, "callId": self.call_id}, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: bytes | str) -> WorkItem:
        """Parse a message body; raises ValueError when it is not one of ours."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("work item must be a JSON object")
        request_id, call_id = data.get("requestId"), data.get("callId")
        if not isinstance(request_id, str) or not ids.is_request_id(request_id):
            raise ValueError("work item has no valid requestId")
        if not isinstance(call_id, str) or not (call_id.startswith("call-") and call_id[5:].isdigit()):
            raise ValueError("work item has no valid callId")
        return cls(request_id, call_id)


class WorkQueue:
    """Sends work items, optionally delayed."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue
        self._ensure_queue = CreateOnce(self._queue.create_queue)

    async def ping(self) -> None:
        """Reach the queue service (health check)."""
        await self._ensure_queue()
        await self._queue.get_queue_properties()

    async def send_text(self, text: str) -> None:
        """Enqueue a raw text message (base64 on the wire, like every message the host reads)."""
        await self._ensure_queue()
        await self._queue.send_message(text)

    async def send(self, item: WorkItem, delay_seconds: float = 0) -> None:
        """Enqueue ``item``, invisible for ``delay_seconds`` (clamped to the 7-day maximum)."""
        await self._ensure_queue()
        delay = int(min(max(0.0, delay_seconds), MAX_VISIBILITY_DELAY_SECONDS) + 0.999)
        await self._queue.send_message(item.to_json(), visibility_timeout=delay or None)
