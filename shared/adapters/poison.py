"""Poison queues: peek at what the host (or intake) gave up on, and move it back to where it came from.

A requeue receives a message, sends its text to the source queue, and only then deletes it from the poison
queue: a stop in between leaves the message on both queues (processed twice, which delivery at least once
already allows), never on neither. Messages not asked for are made visible again once the move is over.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Collection
from typing import TYPE_CHECKING

from shared.adapters.create_once import CreateOnce
from shared.core.ports import PoisonMessage

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

#: How long a received message stays hidden while it is moved (seconds).
_MOVE_SECONDS = 30
_BATCH = 32  # the Queue service's most messages per receive and per peek


class StoragePoisonQueue:
    """One poison queue and its source queue, read and written as stored (no encoding policy on either client).

    The host expects base64, but a message that was not base64 is exactly what lands on a poison queue, so
    peeking decodes each message itself (base64 when it is, the text as stored otherwise), and a requeue sends
    the stored text back byte for byte.
    """

    def __init__(self, name: str, poison: QueueClient, source: QueueClient) -> None:
        self._name = name
        self._poison = poison
        self._source = source
        self._ensure = CreateOnce(self._create)

    async def _create(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        for client in (self._poison, self._source):
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()

    @property
    def name(self) -> str:
        """The poison queue's name."""
        return self._name

    async def peek(self, limit: int) -> list[PoisonMessage]:
        """The first ``limit`` (at most 32) messages, left where they are."""
        await self._ensure()
        messages = await self._poison.peek_messages(max_messages=max(1, min(limit, _BATCH)))
        return [
            PoisonMessage(str(m.id), _decoded(str(m.content)), m.inserted_on, int(m.dequeue_count or 0))
            for m in messages
        ]

    async def requeue(self, message_ids: Collection[str] | None, limit: int) -> int:
        """Move messages (every one, or those named) to the source queue: send first, then delete."""
        await self._ensure()
        wanted = set(message_ids) if message_ids is not None else None
        held = []  # received but not asked for: kept hidden while the rest is read, then made visible again
        moved = 0
        try:
            while moved < limit:
                batch = [
                    m
                    async for m in self._poison.receive_messages(
                        messages_per_page=_BATCH, max_messages=_BATCH, visibility_timeout=_MOVE_SECONDS
                    )
                ]
                if not batch:
                    break
                for message in batch:
                    if (wanted is not None and message.id not in wanted) or moved >= limit:
                        held.append(message)
                        continue
                    await self._source.send_message(message.content)
                    await self._poison.delete_message(message)
                    moved += 1
                    if wanted is not None:
                        wanted.discard(str(message.id))
                if wanted is not None and not wanted:
                    break
        finally:
            for message in held:
                await self._poison.update_message(message, visibility_timeout=0)
        return moved


def _decoded(content: str) -> str:
    """The message's text as the host would read it: base64-decoded UTF-8, or as stored when it is not that."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return content
