"""The request index: table ``ProvisioningIndex``, what lets operators list requests without a table scan.

One partition per filter value (see :mod:`shared.core.listing` for the keys), each entry's RowKey the
inverted request id, so a partition query reads the newest requests first and a page of 50 reads about 50
entries however large the ledger is. The ledger writes it on the paths that change a request's status
(create, refresh, delete); an entry carries only what a reader cannot get from the request row itself
(the subjects' objectIds, and the partitions it was filed under so that retention can remove them).

The entries by subject are the exception: a request names up to 100 subjects, and one partition per subject
would cost 100 writes per request on the intake path. They all live in one partition, ``objects``, their
RowKey the subject's hash then the inverted request id, so that a request's entries are one transaction and
a subject's requests are still one range of keys, newest first. Callers name them by their logical partition
(:func:`shared.core.listing.object_partition`); :func:`_place` alone knows where they are kept.

A target's backlog is one partition more: an entry per pending request of the target holding its counts of
unfinished calls, overwritten on every status refresh and removed when the request finishes; the backlog is
the sum over that partition (as large as the target's in-flight requests, never the ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError

from shared.adapters.create_once import CreateOnce
from shared.adapters.new_rows import create_all
from shared.core import listing
from shared.core.listing import Indexed
from shared.core.vocabulary import RequestStatus

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

INDEX_TABLE = "ProvisioningIndex"
_CONCURRENCY = 8
#: The one partition that holds every entry by subject (see the module's docstring).
OBJECTS_PARTITION = "objects"
_OBJECT_PREFIX = listing.object_partition("x").split(":", 1)[0] + ":"
_SEPARATOR = ":"
_BATCH = 100  # a Table transaction's most operations


def _place(partition: str, key: str) -> tuple[str, str]:
    """Where the entry of logical ``partition`` for RowKey ``key`` is kept: its PartitionKey and RowKey."""
    if partition.startswith(_OBJECT_PREFIX):
        return OBJECTS_PARTITION, partition[len(_OBJECT_PREFIX) :] + _SEPARATOR + key
    return partition, key


def _range(partition: str) -> tuple[str, str, str]:
    """The PartitionKey, and the RowKey prefix and the key just past it, of a logical partition's entries."""
    if partition.startswith(_OBJECT_PREFIX):
        prefix = partition[len(_OBJECT_PREFIX) :] + _SEPARATOR
        return OBJECTS_PARTITION, prefix, prefix[:-1] + chr(ord(_SEPARATOR) + 1)
    return partition, "", ""


class TableRequestIndex:
    """Files requests under their filter values and reads them back newest first."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ensure_table = CreateOnce(self._table.create_table)

    async def _upsert_all(self, entities: list[dict[str, Any]]) -> None:
        semaphore = asyncio.Semaphore(_CONCURRENCY)

        async def upsert(entity: dict[str, Any]) -> None:
            async with semaphore:
                await self._table.upsert_entity(entity, mode="replace")

        await asyncio.gather(*(upsert(e) for e in entities))

    async def _delete(self, partition: str, key: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            await self._table.delete_entity(*_place(partition, key))

    async def file_new(self, entry: Indexed) -> None:
        """File a new request under every partition it can be found by (idempotent: upserts; the subjects' entries
        are created, and upserted only when a retried intake finds them there, see :func:`create_all`)."""
        await self._ensure_table()
        entities = self.new_entities(entry)
        by_subject = [e for e in entities if e["PartitionKey"] == OBJECTS_PARTITION]
        others = [e for e in entities if e["PartitionKey"] != OBJECTS_PARTITION]
        batches = [by_subject[k : k + _BATCH] for k in range(0, len(by_subject), _BATCH)]
        await asyncio.gather(
            self._upsert_all(others),
            *(create_all(self._table, b, upsert_mode="replace") for b in batches),
        )

    @classmethod
    def new_entities(cls, entry: Indexed) -> list[dict[str, Any]]:
        """The entities :meth:`file_new` writes for a new request (the subjects' all in one partition)."""
        key = listing.row_key(entry.request_id)
        fixed = entry.fixed_partitions()
        ids = json.dumps(list(entry.object_ids), separators=(",", ":"))
        entities: list[dict[str, Any]] = []
        for partition in fixed:
            pk, rk = _place(partition, key)
            entities.append({"PartitionKey": pk, "RowKey": rk, "objectIds": ids})
        entities[0]["partitions"] = json.dumps(fixed, separators=(",", ":"))  # the ALL entry: what to forget
        entities.append({"PartitionKey": listing.status_partition(entry.status), "RowKey": key, "objectIds": ids})
        if entry.pending and entry.target:
            entities.append(cls._backlog_entity(entry, key))
        return entities

    @staticmethod
    def _backlog_entity(entry: Indexed, key: str) -> dict[str, Any]:
        assert entry.target is not None
        counts = {f"{status}Count": int(entry.backlog.get(str(status), 0)) for status in listing.BACKLOG_STATUSES}
        return {"PartitionKey": listing.backlog_partition(entry.target), "RowKey": key, **counts}

    async def before_change(self, old_status: str | None, entry: Indexed) -> None:
        """Before the request row changes: file it under its new status, and bring its backlog entry up to date."""
        await self._ensure_table()
        key = listing.row_key(entry.request_id)
        if old_status != entry.status:
            ids = await self._object_ids(key)
            await self._table.upsert_entity(
                {"PartitionKey": listing.status_partition(entry.status), "RowKey": key, "objectIds": ids},
                mode="replace",
            )
        if entry.target:
            if entry.pending:
                await self._table.upsert_entity(self._backlog_entity(entry, key), mode="replace")
            else:
                await self._delete(listing.backlog_partition(entry.target), key)

    async def after_change(self, old_status: str | None, entry: Indexed) -> None:
        """After the request row changed: remove the entry under the status it no longer has."""
        if old_status is not None and old_status != entry.status:
            await self._delete(listing.status_partition(old_status), listing.row_key(entry.request_id))

    async def _object_ids(self, key: str) -> str:
        try:
            entity = await self._table.get_entity(listing.ALL_PARTITION, key, select=["objectIds"])
        except ResourceNotFoundError:
            return "[]"
        return str(entity.get("objectIds") or "[]")

    async def forget(self, request_id: str) -> None:
        """Remove every entry of a request (retention deletes it); the ALL entry, which lists them, goes last."""
        await self._ensure_table()
        key = listing.row_key(request_id)
        try:
            entity = await self._table.get_entity(listing.ALL_PARTITION, key)
        except ResourceNotFoundError:
            return
        try:
            fixed = [str(p) for p in json.loads(str(entity.get("partitions") or "[]"))]
        except ValueError:
            fixed = []
        partitions = [p for p in fixed if p != listing.ALL_PARTITION]
        partitions += [listing.status_partition(s) for s in RequestStatus]
        for partition in partitions:
            await self._delete(partition, key)
        await self._delete(listing.ALL_PARTITION, key)

    def entries(
        self, partition: str, after: str | None, newest: str | None, oldest: str | None, page_size: int
    ) -> _Scan:
        """Entries of ``partition`` newest first, after RowKey ``after``, within the ``newest``…``oldest`` keys.

        ``page_size``: entities per round trip (the reader asks for what one page of its answer needs).
        """
        return _Scan(self, (partition, after, newest, oldest, page_size))

    async def backlog(self, target: str) -> dict[str, int]:
        """A target's unfinished calls by status, summed over its pending requests."""
        await self._ensure_table()
        totals = {str(status): 0 for status in listing.BACKLOG_STATUSES}
        names = [f"{status}Count" for status in listing.BACKLOG_STATUSES]
        async for entity in self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": listing.backlog_partition(target)}, select=names
        ):
            for status in listing.BACKLOG_STATUSES:
                value = entity.get(f"{status}Count")
                totals[str(status)] += int(value) if isinstance(value, int) else 0
        return totals

    async def _query(
        self, partition: str, after: str | None, newest: str | None, oldest: str | None, page_size: int
    ) -> AsyncIterator[dict[str, Any]]:
        await self._ensure_table()
        pk, prefix, past = _range(partition)
        clauses = ["PartitionKey eq @pk"]
        params: dict[str, Any] = {"pk": pk}
        lower = max((k for k in (after, newest) if k is not None), default=None)
        if lower is not None:
            clauses.append("RowKey gt @lo" if lower == after else "RowKey ge @lo")
            params["lo"] = prefix + lower
        elif prefix:
            clauses.append("RowKey ge @lo")
            params["lo"] = prefix
        if oldest is not None:
            clauses.append("RowKey le @hi")
            params["hi"] = prefix + oldest
        elif past:
            clauses.append("RowKey lt @hi")
            params["hi"] = past
        query = " and ".join(clauses)
        pages = self._table.query_entities(
            query, parameters=params, select=["RowKey", "objectIds"], results_per_page=max(1, min(page_size, 1000))
        )
        async for entity in pages:
            found = dict(entity)
            found["RowKey"] = str(found["RowKey"])[len(prefix) :]
            yield found


class _Scan:
    """An async iteration over index entries that counts the entities it read."""

    def __init__(self, index: TableRequestIndex, args: tuple[str, str | None, str | None, str | None, int]) -> None:
        self._args = args
        self._index = index
        self.rows_read = 0

    async def __aiter__(self) -> AsyncIterator[tuple[str, tuple[str, ...]]]:
        async for entity in self._index._query(*self._args):
            self.rows_read += 1
            try:
                ids = json.loads(str(entity.get("objectIds") or "[]"))
            except ValueError:
                ids = []
            yield str(entity["RowKey"]), tuple(str(i) for i in ids if isinstance(i, str))
