"""Idempotency by ``eventId``: the same event twice is one request, never a second Graph call.

An HR system or Logic App retries on timeouts; a queue delivers at least once. The first intake of an
event inserts a row in table ``ProvisioningEvents`` (insert-if-absent is atomic in Table Storage, so of
two concurrent duplicates exactly one wins); every later intake finds it and answers the existing request,
or ``409`` when the same ``eventId`` arrives with a different body.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.adapters.create_once import CreateOnce
from shared.core.idempotency import event_key
from shared.core.ports import KnownEvent

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

EVENTS_TABLE = "ProvisioningEvents"
_ROW = "event"


class TableEventIndex:
    """Rows of ``ProvisioningEvents``: eventId → requestId and body fingerprint."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ensure_table = CreateOnce(self._table.create_table)

    async def claim(self, event_id: str, request_id: str, fingerprint: str, now: datetime) -> KnownEvent | None:
        """Record the event for ``request_id``; None if this call won, else the request it already made."""
        await self._ensure_table()
        entity = {
            "PartitionKey": event_key(event_id),
            "RowKey": _ROW,
            "eventId": event_id,
            "requestId": request_id,
            "fingerprint": fingerprint,
            "createdAt": now,
        }
        try:
            await self._table.create_entity(entity)
        except ResourceExistsError:
            existing = await self._table.get_entity(event_key(event_id), _ROW)
            return KnownEvent(str(existing["requestId"]), str(existing["fingerprint"]))
        return None

    async def forget(self, key: str) -> None:
        """Delete an event row (retention), by :func:`event_key`."""
        await self._ensure_table()
        with contextlib.suppress(ResourceNotFoundError):
            await self._table.delete_entity(key, _ROW)
