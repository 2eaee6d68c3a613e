"""The ledger adapter: Table Storage ``ProvisioningRequests``, one partition per request.

PartitionKey is the request id; RowKey ``request`` is the request, ``call-0001``… its Graph calls. Reading
a request is one point read plus one partition query; creating one is a batch inside that partition; every
update is conditional on the ETag read, so two workers can never silently overwrite each other.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.adapters.create_once import CreateOnce
from shared.contract.names import REQUEST_ROW
from shared.core import aggregate, listing
from shared.core.errors import StaleWrite

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

    from shared.core.ports import RequestIndex

_BATCH = 100  # Table transactions take at most 100 operations


Entity = dict[str, Any]


class TableLedger:
    """Reads and writes request and call rows."""

    def __init__(self, table: TableClient, index: RequestIndex | None = None) -> None:
        self._table = table
        self._ensure_table = CreateOnce(self._table.create_table)
        self._index = index  # ProvisioningIndex: written before the request row changes (shared.adapters.request_index)

    async def ping(self) -> None:
        """Reach the table service (used by the health check); raises if it does not answer."""
        await self._ensure_table()
        with contextlib.suppress(ResourceNotFoundError):
            await self._table.get_entity("health", "probe")

    async def create(self, request: Entity, calls: list[Entity], *, tolerate_existing: bool = False) -> None:
        """Write a new request: its calls first, the request row last, so a visible request is complete.

        ``tolerate_existing`` finishes a creation that another intake of the same event started: a batch
        whose rows already exist is skipped, so the rows are the same whoever wrote them first.
        """
        from azure.data.tables import TableErrorCode, TableTransactionError

        await self._ensure_table()
        if self._index is not None:
            await self._index.file_new(_indexed(request, request, calls))
        rows = [{k: v for k, v in row.items() if v is not None} for row in (*calls, request)]
        for start in range(0, len(rows), _BATCH):
            try:
                await self._table.submit_transaction([("create", row) for row in rows[start : start + _BATCH]])
            except TableTransactionError as exc:
                if not (tolerate_existing and getattr(exc, "error_code", None) == TableErrorCode.ENTITY_ALREADY_EXISTS):
                    raise
                await self._create_missing(rows[start : start + _BATCH])

    async def _create_missing(self, rows: list[Entity]) -> None:
        for row in rows:
            with contextlib.suppress(ResourceExistsError):
                await self._table.create_entity(row)

    async def finished_request_ids_below(self, floor_id: str, finished_before: Any, limit: int) -> list[str]:
        """Finished requests created before ``floor_id`` and last updated before ``finished_before``.

        A PartitionKey range (ids sort by creation time), so no table scan. A pending request is never
        returned however old it is: a far-future notBefore or a long-held job must still run.
        """
        await self._ensure_table()
        query = "PartitionKey lt @floor and RowKey eq @row and status ne @pending and updatedAt lt @before"
        params = {"floor": floor_id, "row": REQUEST_ROW, "pending": aggregate.PENDING, "before": finished_before}
        found: list[str] = []
        async for entity in self._table.query_entities(query, parameters=params, select=["PartitionKey"]):
            found.append(str(entity["PartitionKey"]))
            if len(found) >= limit:
                break
        return found

    async def delete_request(self, request_id: str) -> int:
        """Delete a request's whole partition (calls first, the request row last); returns rows deleted."""
        await self._ensure_table()
        if self._index is not None:
            await self._index.forget(request_id)
        rows = [
            dict(e)
            async for e in self._table.query_entities(
                "PartitionKey eq @pk", parameters={"pk": request_id}, select=["PartitionKey", "RowKey"]
            )
        ]
        rows.sort(key=lambda e: e["RowKey"] == REQUEST_ROW)
        for start in range(0, len(rows), _BATCH):
            await self._table.submit_transaction([("delete", row) for row in rows[start : start + _BATCH]])
        return len(rows)

    async def get_request(self, request_id: str) -> tuple[Entity | None, list[Entity]]:
        """The request row (None if unknown) and its call rows, in call order."""
        await self._ensure_table()
        try:
            request = dict(await self._table.get_entity(request_id, REQUEST_ROW))
        except ResourceNotFoundError:
            return None, []
        calls = await self._calls(request_id)
        return request, calls

    async def _calls(self, request_id: str) -> list[Entity]:
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": request_id, "lo": "call-", "hi": "call."}
        calls = [dict(e) async for e in self._table.query_entities(query, parameters=params)]
        return sorted(calls, key=lambda e: str(e["RowKey"]))

    async def get_call(self, request_id: str, call_id: str) -> Entity | None:
        """One call row (with its ``etag`` in the entity metadata), or None."""
        await self._ensure_table()
        try:
            entity = await self._table.get_entity(request_id, call_id)
        except ResourceNotFoundError:
            return None
        result = dict(entity)
        result["_etag"] = entity.metadata["etag"]
        return result

    async def update_call(self, call: Mapping[str, Any], changes: Mapping[str, Any]) -> Entity:
        """Apply ``changes`` (None removes a property) to a call from :meth:`get_call`, if still unchanged."""
        entity = {k: v for k, v in {**call, **changes}.items() if k != "_etag" and v is not None}
        try:
            # replace, not merge: a property set to None is removed (no stale error on a later success)
            meta = await self._table.update_entity(
                entity, mode="replace", etag=call["_etag"], match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise StaleWrite(f"{call['PartitionKey']}/{call['RowKey']} changed") from exc
            raise
        entity["_etag"] = meta["etag"]
        return entity

    async def refresh_request(self, request_id: str, now: Any) -> Entity | None:
        """Recompute the request's status and counts from its calls (ETag-safe against concurrent workers)."""
        await self._ensure_table()
        for _ in range(10):
            try:
                request = await self._table.get_entity(request_id, REQUEST_ROW)
            except ResourceNotFoundError:
                return None
            if request.get("status") == "rejected":
                return dict(request)
            calls = await self._calls(request_id)
            summary = aggregate.summarize(str(c["status"]) for c in calls)
            props = summary.as_properties()
            if all(request.get(k) == v for k, v in props.items()):
                return dict(request)
            entity = {"PartitionKey": request_id, "RowKey": REQUEST_ROW, **props, "updatedAt": now}
            old_status = str(request.get("status"))
            if self._index is not None:
                indexed = _indexed(request, props, ())
                await self._index.before_change(old_status, indexed)
            try:
                await self._table.update_entity(
                    entity,
                    mode="merge",
                    etag=request.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    continue
                raise
            if self._index is not None:
                await self._index.after_change(old_status, indexed)
            return {**dict(request), **entity}
        raise StaleWrite(f"{request_id}: request row kept changing")

    # --- operator actions (shared.core.ports.OperatorLedger) ---------------------------------------------------

    async def request_row(self, request_id: str) -> Entity | None:
        """The request row alone (one point read), or None."""
        await self._ensure_table()
        try:
            return dict(await self._table.get_entity(request_id, REQUEST_ROW))
        except ResourceNotFoundError:
            return None

    async def stamp_request(self, request_id: str, changes: Mapping[str, Any]) -> None:
        """Merge who did what (``retriedBy``, ``cancelledAt``…) into the request row; status and counts untouched."""
        stamps = {k: v for k, v in changes.items() if v is not None}
        entity = {"PartitionKey": request_id, "RowKey": REQUEST_ROW, **stamps}
        await self._table.update_entity(entity, mode="merge")

    async def archive_attempt(self, call: Mapping[str, Any], number: int) -> None:
        """Keep a finished round of a call as row ``attempt-0001-01`` before a retry clears it (idempotent).

        Its own row, not a property of the call: a finished call can hold a provisioning log of up to 600 KB,
        so two of them would not fit one entity. Outside the ``call-`` RowKey range, so reading a request's
        calls never reads its history.
        """
        await self._ensure_table()
        row = {k: v for k, v in call.items() if k != "_etag" and v is not None}
        row["RowKey"] = f"{_ATTEMPT_PREFIX}{str(call['RowKey'])[len('call-') :]}-{number:02d}"
        row["callId"] = call["RowKey"]
        row["attemptNumber"] = number
        with contextlib.suppress(ResourceExistsError):
            await self._table.create_entity(row)

    async def attempts(self, request_id: str) -> list[Entity]:
        """Every archived round of every call of a request, in call and round order."""
        await self._ensure_table()
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": request_id, "lo": _ATTEMPT_PREFIX, "hi": "attempt."}
        rows = [dict(e) async for e in self._table.query_entities(query, parameters=params)]
        return sorted(rows, key=lambda e: str(e["RowKey"]))


_ATTEMPT_PREFIX = "attempt-"


def _indexed(request: Mapping[str, Any], props: Mapping[str, Any], calls: list[Entity] | tuple[()]) -> listing.Indexed:
    """What the request index files a request under, from its row (``props`` override its status and counts)."""
    subjects = []
    for call in calls:
        try:
            subjects.append(json.loads(str(call.get("subject") or "null")))
        except ValueError:
            continue
    return listing.Indexed(
        request_id=str(request["PartitionKey"]),
        status=str(props.get("status")),
        target=str(request["target"]) if request.get("target") else None,
        source=str(request["source"]) if request.get("source") else None,
        event_id=str(request["eventId"]) if request.get("eventId") else None,
        object_ids=listing.object_ids_of(subjects),
        backlog=listing.backlog_counts(props),
        message_hash=str(request["messageHash"]) if request.get("messageHash") else None,
    )
