"""The index of unfinished requests (table ``ProvisioningPending``), read by the sweeper.

Work messages can be lost in ways the queue cannot see: a crash between writing the ledger and enqueuing,
a notBefore further out than a message may be delayed (7 days). The sweeper must find such requests
without scanning the ledger, so intake adds each request here and the worker removes it when the request
reaches a final status. The table holds only what is in flight: small, whatever the ledger's size.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.create_once import CreateOnce

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PENDING_TABLE = "ProvisioningPending"
_PARTITION = "pending"


class TablePendingIndex:
    """Adds, lists and removes in-flight request ids."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ensure_table = CreateOnce(self._table.create_table)

    async def add(self, request_id: str, now: datetime) -> None:
        """Mark a request as in flight (idempotent)."""
        await self._ensure_table()
        await self._table.upsert_entity({"PartitionKey": _PARTITION, "RowKey": request_id, "addedAt": now})

    async def remove(self, request_id: str) -> None:
        """The request is final: nothing left to sweep."""
        await self._ensure_table()
        with contextlib.suppress(ResourceNotFoundError):
            await self._table.delete_entity(_PARTITION, request_id)

    async def list(self, limit: int) -> list[tuple[str, datetime]]:
        """In-flight request ids with when they were added, oldest ids first."""
        await self._ensure_table()
        found: list[tuple[str, datetime]] = []
        async for entity in self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _PARTITION}):
            found.append((str(entity["RowKey"]), entity["addedAt"]))
            if len(found) >= limit:
                break
        return found
