"""The ledger adapter: Table Storage ``ProvisioningRequests``, one partition per request.

PartitionKey is the request id; RowKey ``request`` is the request, ``call-0001``… its Graph calls. Reading
a request is one point read plus one partition query; creating one is a batch inside that partition; every
update is conditional on the ETag read, so two workers can never silently overwrite each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.adapters import ledger_codec as codec
from shared.adapters.create_once import CreateOnce
from shared.contract.names import REQUEST_ROW
from shared.core import aggregate, listing
from shared.core.errors import StaleWrite, StoreUnavailable
from shared.core.records import CALL_STATE_FIELDS, Attempt, CallRecord, OutboxMarks, RequestRecord, Stamp, camel
from shared.core.vocabulary import CallStatus, RequestStatus, WaitingFor

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

    from shared.core.ports import RequestIndex

_BATCH = 100  # Table transactions take at most 100 operations
#: Read-recompute-write rounds of a request's status before giving up (each lost to another worker's write).
_REFRESH_TRIES = 12
#: Up to this many rows a request is written row by row, not as a transaction: a transaction is a multipart
#: MIME body that azure-core builds and parses with the ``email`` package, about 16 ms of CPU per request on
#: the intake path (cProfile under bench/intake), several times the cost of a plain JSON insert per row.
_SINGLE_ROWS = 4


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

    async def create(
        self, request: RequestRecord, calls: Sequence[CallRecord], *, tolerate_existing: bool = False
    ) -> None:
        """Write a new request: its calls first, the request row last, so a visible request is complete.

        ``tolerate_existing`` finishes a creation that another intake of the same event started: a batch
        whose rows already exist is skipped, so the rows are the same whoever wrote them first.
        """
        from azure.data.tables import TableErrorCode, TableTransactionError

        await self._ensure_table()
        rows = [*(codec.call_to_entity(c) for c in calls), codec.request_to_entity(request)]
        if len(rows) <= _SINGLE_ROWS:
            # the index entries and the calls at once, then the request row: nothing is visible before its calls
            # exist, and an index entry whose request row is not there yet is skipped by every reader
            await asyncio.gather(
                self._file_new(request, calls), *(self._create_row(row, tolerate_existing) for row in rows[:-1])
            )
            await self._create_row(rows[-1], tolerate_existing)
            return
        await self._file_new(request, calls)
        for start in range(0, len(rows), _BATCH):
            try:
                await self._table.submit_transaction([("create", row) for row in rows[start : start + _BATCH]])
            except TableTransactionError as exc:
                if not (tolerate_existing and getattr(exc, "error_code", None) == TableErrorCode.ENTITY_ALREADY_EXISTS):
                    raise
                await self._create_missing(rows[start : start + _BATCH])

    async def _create_row(self, row: Entity, tolerate_existing: bool) -> None:
        try:
            await self._table.create_entity(row)
        except ResourceExistsError:
            if not tolerate_existing:
                raise

    async def _file_new(self, request: RequestRecord, calls: Sequence[CallRecord]) -> None:
        if self._index is not None:
            await self._index.file_new(_indexed(request, request.status, request.counts, calls))

    async def _create_missing(self, rows: list[Entity]) -> None:
        for row in rows:
            with contextlib.suppress(ResourceExistsError):
                await self._table.create_entity(row)

    async def finished_request_ids_below(self, floor_id: str, finished_before: datetime, limit: int) -> list[str]:
        """Finished requests created before ``floor_id`` and last updated before ``finished_before``.

        A PartitionKey range (ids sort by creation time), so no table scan. A pending request is never
        returned however old it is: a far-future notBefore or a long-held job must still run.
        """
        await self._ensure_table()
        query = "PartitionKey lt @floor and RowKey eq @row and status ne @pending and updatedAt lt @before"
        pending = RequestStatus.PENDING.value
        params = {"floor": floor_id, "row": REQUEST_ROW, "pending": pending, "before": finished_before}
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

    async def get_request(self, request_id: str) -> tuple[RequestRecord | None, list[CallRecord]]:
        """The request (None if unknown) and its calls, in call order."""
        await self._ensure_table()
        try:
            entity = await self._table.get_entity(request_id, REQUEST_ROW)
        except ResourceNotFoundError:
            return None, []
        calls = await self._calls(request_id)
        return codec.request_from_entity(entity, entity.metadata["etag"]), calls

    async def _calls(self, request_id: str) -> list[CallRecord]:
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": request_id, "lo": "call-", "hi": "call."}
        calls = [
            codec.call_from_entity(e, e.metadata.get("etag"))
            async for e in self._table.query_entities(query, parameters=params)
        ]
        return sorted(calls, key=lambda c: c.call_id)

    async def _call_statuses(self, request_id: str) -> list[str]:
        """The statuses of a request's calls, nothing else: a call row may carry a 600 KB provisioning log."""
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": request_id, "lo": "call-", "hi": "call."}
        rows = self._table.query_entities(query, parameters=params, select=["status"])
        return [str(e.get("status")) async for e in rows]

    async def has_unfinished_calls(self, request_id: str) -> bool:
        """Whether any call of the request is pending: a query the service filters, one row per page at most.

        A page may come back empty with a continuation (the service stops a scan at its time or partition
        bounds), so the pages are followed until a row or the end.
        """
        await self._ensure_table()
        query, params = _pending_calls_query(request_id)
        rows = self._table.query_entities(query, parameters=params, select=["status"], results_per_page=1)
        async for _ in rows:
            return True
        return False

    async def unfinished_calls(self, request_id: str) -> list[CallRecord]:
        """The request's pending calls with only their state and timing properties: the service filters the
        statuses and drops every other property (a call row may carry a 600 KB log), so a sweep of a deep backlog
        reads a few dozen bytes per waiting call."""
        await self._ensure_table()
        query, params = _pending_calls_query(request_id)
        select = ["RowKey", *(camel(name) for name in CALL_STATE_FIELDS)]
        rows = self._table.query_entities(query, parameters=params, select=select)
        calls = [codec.call_from_entity({"PartitionKey": request_id, **e}) async for e in rows]
        return sorted(calls, key=lambda c: c.call_id)

    async def parked_calls(self, request_id: str, call_ids: Collection[str]) -> list[CallRecord]:
        """Those of ``call_ids`` that wait in the backlog, whole (with their ETags), in one range query: the
        dispatcher reads the calls it hands slots to a request at a time, not a point read each. The service
        returns only the rows waiting for a slot (Table allows 15 comparisons per filter, not one per id)."""
        wanted = set(call_ids)
        if not wanted:
            return []
        await self._ensure_table()
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi and status eq @s and waitingFor eq @w"
        params = {"pk": request_id, "lo": min(wanted), "hi": max(wanted)}
        params.update(s=CallStatus.WAITING.value, w=WaitingFor.SLOT.value)
        found: list[CallRecord] = []
        async for entity in self._table.query_entities(query, parameters=params, results_per_page=1000):
            if entity["RowKey"] in wanted:
                found.append(codec.call_from_entity(entity, entity.metadata["etag"]))
                if len(found) == len(wanted):
                    break  # the rest of the range is other parked calls
        return found

    async def get_call(self, request_id: str, call_id: str) -> CallRecord | None:
        """One call (its ``version`` is the row's ETag), or None."""
        await self._ensure_table()
        try:
            entity = await self._table.get_entity(request_id, call_id)
        except ResourceNotFoundError:
            return None
        return codec.call_from_entity(entity, entity.metadata["etag"])

    async def update_call(self, call: CallRecord) -> CallRecord:
        """Write ``call`` whole if its row is still at ``call.version``; the call as written (new version).

        Raises :class:`StaleWrite` when the row changed since that version was read, and
        :class:`StoreUnavailable` when the Table service did not answer or answered a server error.
        """
        entity = codec.call_to_entity(call)
        try:
            # replace, not merge: a field set to None loses its property (no stale error on a later success)
            meta = await self._table.update_entity(
                entity, mode="replace", etag=call.version, match_condition=MatchConditions.IfNotModified
            )
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise StoreUnavailable(f"{call.request_id}/{call.call_id}: {type(exc).__name__}") from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise StaleWrite(f"{call.request_id}/{call.call_id} changed") from exc
            if exc.status_code is None or exc.status_code >= 500:
                raise StoreUnavailable(f"{call.request_id}/{call.call_id}: {exc.status_code}") from exc
            raise
        return replace(call, version=str(meta["etag"]))

    async def refresh_request(self, request_id: str, now: datetime) -> RequestRecord | None:
        """Recompute the request's status and counts from its calls (ETag-safe against concurrent workers)."""
        await self._ensure_table()
        for attempt in range(_REFRESH_TRIES):
            if attempt:
                # many workers of one request finish together: spread their retries instead of colliding again
                await asyncio.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))  # noqa: S311 (jitter)
            try:
                request = await self._table.get_entity(request_id, REQUEST_ROW)
            except ResourceNotFoundError:
                return None
            if request.get("status") == RequestStatus.REJECTED:
                return codec.request_from_entity(request, request.metadata["etag"])
            summary = aggregate.summarize(await self._call_statuses(request_id))
            props: dict[str, Any] = {"status": summary.status.value, **codec.count_properties(summary.counts)}
            if all(request.get(k) == v for k, v in props.items()):
                return codec.request_from_entity(request, request.metadata["etag"])
            entity = {"PartitionKey": request_id, "RowKey": REQUEST_ROW, **props, "updatedAt": now}
            old_status = str(request.get("status"))
            indexed = _indexed(codec.request_from_entity(request), summary.status, summary.counts, ())
            if self._index is not None:
                await self._index.before_change(old_status, indexed)
            try:
                meta = await self._table.update_entity(
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
            return codec.request_from_entity({**dict(request), **entity}, meta.get("etag"))
        raise StaleWrite(f"{request_id}: request row kept changing")

    async def read_request(self, request_id: str) -> RequestRecord | None:
        """The request row alone (one point read), or None."""
        await self._ensure_table()
        try:
            entity = await self._table.get_entity(request_id, REQUEST_ROW)
        except ResourceNotFoundError:
            return None
        return codec.request_from_entity(entity, entity.metadata["etag"])

    async def update_marks(self, request: RequestRecord, marks: OutboxMarks) -> RequestRecord:
        """Write the outbox marks onto the request row as it is at ``request.version``; StaleWrite if it moved on.

        The row is replaced (a mark set to None loses its property) with every other property exactly as stored,
        conditional on the ETag, so nothing another writer wrote can be lost: it would have changed the ETag.
        """
        try:
            entity = await self._table.get_entity(request.request_id, REQUEST_ROW)
        except ResourceNotFoundError as exc:
            raise StaleWrite(f"{request.request_id}/{REQUEST_ROW} is gone") from exc
        etag = str(entity.metadata["etag"])
        if etag != request.version:
            raise StaleWrite(f"{request.request_id}/{REQUEST_ROW} changed")
        row = {k: v for k, v in entity.items() if k not in codec.MARK_PROPERTIES}
        row.update(codec.marks_properties(marks))
        try:
            meta = await self._table.update_entity(
                row, mode="replace", etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            if exc.status_code in (404, 412):
                raise StaleWrite(f"{request.request_id}/{REQUEST_ROW} changed") from exc
            raise
        return replace(request, marks=marks, version=str(meta["etag"]))

    # --- operator actions (shared.core.ports.OperatorLedger) ---------------------------------------------------

    async def stamp_request(self, request_id: str, stamp: Stamp) -> None:
        """Merge who did what (``retriedBy``, ``cancelledAt``…) into the request row; status and counts untouched."""
        props = {f"{stamp.action}At": stamp.at, **({f"{stamp.action}By": stamp.by} if stamp.by else {})}
        await self._table.update_entity({"PartitionKey": request_id, "RowKey": REQUEST_ROW, **props}, mode="merge")

    async def archive_attempt(self, call: CallRecord, number: int) -> None:
        """Keep a finished round of a call as row ``attempt-0001-01`` before a retry clears it (idempotent).

        Its own row, not a property of the call: a finished call can hold a provisioning log of up to 600 KB,
        so two of them would not fit one entity. Outside the ``call-`` RowKey range, so reading a request's
        calls never reads its history.
        """
        await self._ensure_table()
        row = codec.call_to_entity(call)
        row["RowKey"] = f"{_ATTEMPT_PREFIX}{call.call_id[len('call-') :]}-{number:02d}"
        row["callId"] = call.call_id
        row["attemptNumber"] = number
        with contextlib.suppress(ResourceExistsError):
            await self._table.create_entity(row)

    async def attempts(self, request_id: str) -> list[Attempt]:
        """Every archived round of every call of a request, in call and round order."""
        await self._ensure_table()
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": request_id, "lo": _ATTEMPT_PREFIX, "hi": "attempt."}
        rows = sorted([dict(e) async for e in self._table.query_entities(query, parameters=params)], key=_row_key)
        return [Attempt(int(e["attemptNumber"]), codec.call_from_entity({**e, "RowKey": e["callId"]})) for e in rows]


_ATTEMPT_PREFIX = "attempt-"


def _row_key(entity: Entity) -> str:
    return str(entity["RowKey"])


def _indexed(
    request: RequestRecord, status: RequestStatus, counts: Mapping[CallStatus, int], calls: Sequence[CallRecord]
) -> listing.Indexed:
    """What the request index files a request under (``status`` and ``counts`` as they are about to be)."""
    return listing.Indexed(
        request_id=request.request_id,
        status=str(status),
        target=request.target,
        source=str(request.source) if request.source else None,
        event_id=request.event_id,
        object_ids=listing.object_ids_of(c.subject for c in calls),
        backlog=listing.backlog_counts(counts),
        message_hash=request.message_hash,
    )


def _pending_calls_query(request_id: str) -> tuple[str, dict[str, Any]]:
    """The filter (and its parameters) of a request's calls in a pending status."""
    pending = sorted(aggregate.PENDING_CALL_STATUSES)
    either = " or ".join(f"status eq @s{i}" for i in range(len(pending)))
    # spaces around the parentheses: the SDK finds parameters by splitting the filter on spaces
    query = f"PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and ( {either} )"
    params: dict[str, Any] = {"pk": request_id, "lo": "call-", "hi": "call."}
    params.update({f"s{i}": status.value for i, status in enumerate(pending)})
    return query, params
