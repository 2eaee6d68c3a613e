"""A Storage queue of text messages with an optional visibility delay (outcome events, callback attempts).

Messages are base64, as the Functions queue trigger and most consumers expect; the delay rides on the
message's visibility timeout (at most 7 days).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.adapters.create_once import CreateOnce
from shared.core.ports import MAX_VISIBILITY_DELAY_SECONDS

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

#: Outcome events keep the queue's maximum time to live: -1 (never expire), so a consumer that is down for
#: a week still finds them.
NO_EXPIRY = -1


class TextQueue:
    """Sends text messages, optionally delayed."""

    def __init__(self, queue: QueueClient, *, keep: bool = False) -> None:
        self._queue = queue
        self._keep = keep
        self._ensure_queue = CreateOnce(self._queue.create_queue)

    async def send_text(self, text: str, delay_seconds: float = 0) -> None:
        """Enqueue ``text``, invisible for ``delay_seconds`` (clamped to the 7-day maximum)."""
        await self._ensure_queue()
        delay = int(min(max(0.0, delay_seconds), MAX_VISIBILITY_DELAY_SECONDS) + 0.999)
        await self._queue.send_message(
            text, visibility_timeout=delay or None, time_to_live=NO_EXPIRY if self._keep else None
        )
