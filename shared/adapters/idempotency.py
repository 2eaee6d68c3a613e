"""Idempotency by ``eventId``: the same event twice is one request, never a second Graph call.

An HR system or Logic App retries on timeouts; a queue delivers at least once. The first intake of an
event inserts a row in table ``ProvisioningEvents`` (insert-if-absent is atomic in Table Storage, so of
two concurrent duplicates exactly one wins); every later intake finds it and answers the existing request,
or ``409`` when the same ``eventId`` arrives with a different body.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.adapters.create_once import CreateOnce
from shared.core.models import ProvisioningRequest

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

EVENTS_TABLE = "ProvisioningEvents"
_ROW = "event"


def event_key(event_id: str) -> str:
    """The PartitionKey of an event: a hash, since event ids may hold characters keys cannot (``/``, ``#``, ``?``)."""
    return hashlib.sha256(event_id.encode("utf-8")).hexdigest()


def fingerprint(request: ProvisioningRequest, target_key: str) -> str:
    """What makes two bodies "the same request": the validated, normalised content and the resolved target."""
    content: dict[str, Any] = request.model_dump(mode="json", by_alias=True, exclude={"event_id"})
    content["resolvedTarget"] = target_key
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KnownEvent:
    """The request an event already made."""

    request_id: str
    fingerprint: str


class EventIndex:
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
