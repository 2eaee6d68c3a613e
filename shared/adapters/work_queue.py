"""The work queue adapter: ``provisioning-work``, one message per Graph call.

Messages are base64, as the Functions queue trigger expects (a plain-text message would be moved to the
poison queue without the function ever seeing it). A delay rides on the message's visibility timeout,
which Azure caps at 7 days.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.adapters.create_once import CreateOnce
from shared.core.ports import MAX_VISIBILITY_DELAY_SECONDS, Wake, WorkItem

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient


class StorageQueue:
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

    async def wake(self, scope: str, delay_seconds: float) -> None:
        """Wake ``scope``'s dispatcher in ``delay_seconds`` (whole seconds, rounded down: rather early than late)."""
        await self._ensure_queue()
        delay = int(min(max(0.0, delay_seconds), MAX_VISIBILITY_DELAY_SECONDS))
        await self._queue.send_message(Wake(scope).to_json(), visibility_timeout=delay or None)
