"""The backlog (table ``ProvisioningBacklog``): calls waiting for a rate-limit slot, in fairness order.

PartitionKey is the rate-limit scope's key (``tenant`` or ``job-…``), RowKey the call's place
(:class:`shared.core.backlog.Place`), so a partition query returns the head of a scope's backlog in policy
order, one request whatever the depth. An entry only points at a call; the call row stays the record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.adapters.create_once import CreateOnce
from shared.adapters.new_rows import create_all
from shared.core.ports import Parked

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

BACKLOG_TABLE = "ProvisioningBacklog"
#: Operations in one entity-group transaction (Table Storage's limit).
_BATCH = 100


def _row(entry: Parked) -> dict[str, str]:
    return {"PartitionKey": entry.scope, "RowKey": entry.key, "requestId": entry.request_id, "callId": entry.call_id}


def _batches(entries: Sequence[Parked]) -> list[list[Parked]]:
    """The entries as transactions: one scope (partition) each, at most 100 operations."""
    by_scope: dict[str, list[Parked]] = {}
    for entry in entries:
        by_scope.setdefault(entry.scope, []).append(entry)
    return [scoped[k : k + _BATCH] for scoped in by_scope.values() for k in range(0, len(scoped), _BATCH)]


def _delete(entry: Parked) -> tuple[str, dict[str, str], dict[str, Any]]:
    row = {"PartitionKey": entry.scope, "RowKey": entry.key}
    if entry.etag is None:
        return ("delete", row, {"match_condition": MatchConditions.Unconditionally})
    return ("delete", row, {"etag": entry.etag, "match_condition": MatchConditions.IfNotModified})


class TableWaitingRoom:
    """Parks, lists in order and removes backlog entries."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ensure_table = CreateOnce(self._table.create_table)

    async def park(self, entry: Parked) -> None:
        """Add (or keep) an entry: idempotent, so parking a call again at the same place is harmless."""
        await self._ensure_table()
        await self._table.upsert_entity(_row(entry))

    async def park_many(self, entries: Sequence[Parked]) -> None:
        """Add (or keep) many entries: one transaction per 100 of one scope, so a request parks in a few writes.

        Intake parks a new request's calls, so the entries are created (:func:`create_all`: upserted only when
        a retried intake finds them there already)."""
        if not entries:
            return
        await self._ensure_table()
        for batch in _batches(entries):
            await create_all(self._table, [_row(e) for e in batch], upsert_mode="merge")

    async def head(self, scope: str, limit: int) -> list[Parked]:
        """The first ``limit`` entries of a scope, in order (one page of one partition query)."""
        await self._ensure_table()
        found: list[Parked] = []
        rows = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": scope}, results_per_page=min(max(limit, 1), 1000)
        )
        async for row in rows:
            etag = row.metadata.get("etag")
            found.append(
                Parked(
                    scope, str(row["RowKey"]), str(row["requestId"]), str(row["callId"]), str(etag) if etag else None
                )
            )
            if len(found) >= limit:
                break
        return found

    async def remove(self, entry: Parked) -> None:
        """Delete an entry (only as read, when it carries an ETag); gone or changed already is fine."""
        await self._ensure_table()
        condition = MatchConditions.Unconditionally if entry.etag is None else MatchConditions.IfNotModified
        try:
            with contextlib.suppress(ResourceNotFoundError):
                await self._table.delete_entity(entry.scope, entry.key, etag=entry.etag, match_condition=condition)
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise

    async def remove_many(self, entries: Sequence[Parked]) -> None:
        """Delete entries (each only as read): one transaction per 100 of one scope, so handing out a window of
        slots removes its entries in a write or two. A transaction fails whole when one entry is gone or changed;
        its entries are then removed one by one (:meth:`remove`)."""
        if not entries:
            return
        await self._ensure_table()
        for batch in _batches(entries):
            try:
                await self._table.submit_transaction([_delete(e) for e in batch])
            except HttpResponseError as exc:
                if exc.status_code not in (404, 412):
                    raise
                for entry in batch:
                    await self.remove(entry)

    async def keys(self, scope: str) -> set[str]:
        """Every key of a scope (for the sweeper's check that each parked call still has its entry)."""
        await self._ensure_table()
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": scope}, select=["RowKey"])
        return {str(row["RowKey"]) async for row in rows}
