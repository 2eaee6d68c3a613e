"""In-memory ports for the operator use cases: a ledger that keeps the request index as the Table ledger does,
the index itself, poison queues and a Graph that only reports job status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from typing import Any

from shared.contract.names import REQUEST_ROW
from shared.core import aggregate, listing
from shared.core.listing import Indexed
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus, PoisonMessage
from shared.core.rules import RuleInfo
from tests.unit.app.fakes import InMemoryLedger, Row


class InMemoryIndex:
    """``ProvisioningIndex`` as partitions of RowKey → objectIds (and backlog counts)."""

    def __init__(self) -> None:
        self.partitions: dict[str, dict[str, dict[str, Any]]] = {}

    def _put(self, partition: str, key: str, entity: dict[str, Any]) -> None:
        self.partitions.setdefault(partition, {})[key] = entity

    def _delete(self, partition: str, key: str) -> None:
        self.partitions.get(partition, {}).pop(key, None)

    async def file_new(self, entry: Indexed) -> None:
        key = listing.row_key(entry.request_id)
        for partition in [*entry.fixed_partitions(), listing.status_partition(entry.status)]:
            self._put(partition, key, {"objectIds": list(entry.object_ids)})
        if entry.pending and entry.target:
            self._put(listing.backlog_partition(entry.target), key, dict(entry.backlog))

    async def before_change(self, old_status: str | None, entry: Indexed) -> None:
        key = listing.row_key(entry.request_id)
        ids = self.partitions.get(listing.ALL_PARTITION, {}).get(key, {}).get("objectIds", [])
        self._put(listing.status_partition(entry.status), key, {"objectIds": ids})
        if entry.target:
            if entry.pending:
                self._put(listing.backlog_partition(entry.target), key, dict(entry.backlog))
            else:
                self._delete(listing.backlog_partition(entry.target), key)

    async def after_change(self, old_status: str | None, entry: Indexed) -> None:
        if old_status is not None and old_status != entry.status:
            self._delete(listing.status_partition(old_status), listing.row_key(entry.request_id))

    async def forget(self, request_id: str) -> None:
        key = listing.row_key(request_id)
        for entries in self.partitions.values():
            entries.pop(key, None)

    def entries(
        self, partition: str, after: str | None, newest: str | None, oldest: str | None, page_size: int
    ) -> Scan:
        keys = sorted(self.partitions.get(partition, {}))
        chosen = [
            (k, tuple(self.partitions[partition][k].get("objectIds", [])))
            for k in keys
            if (after is None or k > after) and (newest is None or k >= newest) and (oldest is None or k <= oldest)
        ]
        return Scan(chosen)

    async def backlog(self, target: str) -> dict[str, int]:
        totals = {str(s): 0 for s in listing.BACKLOG_STATUSES}
        for counts in self.partitions.get(listing.backlog_partition(target), {}).values():
            for name in totals:
                totals[name] += int(counts.get(name, 0))
        return totals


class Scan:
    """Entries handed out one by one, counted."""

    def __init__(self, entries: list[tuple[str, tuple[str, ...]]]) -> None:
        self._entries = entries
        self.rows_read = 0

    async def __aiter__(self) -> AsyncIterator[tuple[str, tuple[str, ...]]]:
        for entry in self._entries:
            self.rows_read += 1
            yield entry


def _indexed(request: Mapping[str, Any], props: Mapping[str, Any], calls: list[Row]) -> Indexed:
    return Indexed(
        request_id=str(request["PartitionKey"]),
        status=str(props["status"]),
        target=request.get("target"),
        source=request.get("source"),
        event_id=request.get("eventId"),
        object_ids=listing.object_ids_of(json.loads(str(c["subject"])) for c in calls),
        backlog=listing.backlog_counts(props),
        message_hash=request.get("messageHash"),
    )


class IndexedLedger(InMemoryLedger):
    """The in-memory ledger with what the Table ledger adds: request status refresh, the index, attempt rows."""

    def __init__(self, index: InMemoryIndex | None = None) -> None:
        super().__init__()
        self.index = index or InMemoryIndex()
        self.stamps: list[tuple[str, dict[str, Any]]] = []

    async def create(self, request: Row, calls: list[Row], *, tolerate_existing: bool = False) -> None:
        await self.index.file_new(_indexed(request, request, calls))
        await super().create(request, calls, tolerate_existing=tolerate_existing)

    async def get_request(self, request_id: str) -> tuple[Row | None, list[Row]]:
        request, rows = await super().get_request(request_id)
        return request, [r for r in rows if str(r["RowKey"]).startswith("call-")]

    async def refresh_request(self, request_id: str, now: Any) -> Row | None:
        request, calls = await self.get_request(request_id)
        if request is None:
            return None
        props = aggregate.summarize(str(c["status"]) for c in calls).as_properties()
        entry = _indexed(request, props, [])
        old = str(request.get("status"))
        await self.index.before_change(old, entry)
        self.rows[(request_id, REQUEST_ROW)].update({**props, "updatedAt": now})
        await self.index.after_change(old, entry)
        return dict(self.rows[(request_id, REQUEST_ROW)])

    async def request_row(self, request_id: str) -> Row | None:
        row = self.rows.get((request_id, REQUEST_ROW))
        return None if row is None else dict(row)

    async def stamp_request(self, request_id: str, changes: Mapping[str, Any]) -> None:
        self.stamps.append((request_id, dict(changes)))
        self.rows[(request_id, REQUEST_ROW)].update({k: v for k, v in changes.items() if v is not None})

    async def archive_attempt(self, call: Mapping[str, Any], number: int) -> None:
        key = (str(call["PartitionKey"]), f"attempt-{str(call['RowKey'])[5:]}-{number:02d}")
        row = {k: v for k, v in call.items() if k != "_etag"}
        self.rows.setdefault(key, {**row, "RowKey": key[1], "callId": call["RowKey"], "attemptNumber": number})

    async def attempts(self, request_id: str) -> list[Row]:
        return [dict(r) for (pk, rk), r in sorted(self.rows.items()) if pk == request_id and rk.startswith("attempt-")]


class FakePoisonQueue:
    """A poison queue as a list; requeued texts go to ``source``."""

    def __init__(self, name: str, messages: list[PoisonMessage]) -> None:
        self._name = name
        self.messages = list(messages)
        self.source: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    async def peek(self, limit: int) -> list[PoisonMessage]:
        return self.messages[:limit]

    async def requeue(self, message_ids: Collection[str] | None, limit: int) -> int:
        moving = [m for m in self.messages if message_ids is None or m.message_id in message_ids][:limit]
        for message in moving:
            self.source.append(message.text)
            self.messages.remove(message)
        return len(moving)


class JobsOnly:
    """A Graph that reports job status (counting the questions) and is never asked to provision."""

    def __init__(self, statuses: Mapping[str, JobStatus | GraphFailure]) -> None:
        self.statuses = dict(statuses)
        self.asked: list[str] = []

    async def provision_on_demand(
        self, service_principal_id: str, job_id: str, rule_id: str, subject: dict[str, Any]
    ) -> GraphAnswer | GraphFailure:
        raise AssertionError("operator reads never provision")

    async def schema_rules(self, service_principal_id: str, job_id: str) -> list[RuleInfo] | GraphFailure:
        raise AssertionError("operator reads never read the schema")

    async def job_status(self, service_principal_id: str, job_id: str) -> JobStatus | GraphFailure:
        self.asked.append(job_id)
        return self.statuses[job_id]


def request_rows(
    request_id: str, now: datetime, statuses: list[str], *, target: str = "t1", event_id: str | None = None, **more: Any
) -> tuple[Row, list[Row]]:
    """A request row and its call rows as intake writes them (statuses as given, counts to match)."""
    calls = [
        {
            "PartitionKey": request_id,
            "RowKey": f"call-{i + 1:04d}",
            "status": status,
            "attempts": 0,
            "subject": json.dumps({"objectId": f"user-{i + 1}", "objectTypeName": "User"}),
            "createdAt": now,
            "nextAttemptAt": now,
        }
        for i, status in enumerate(statuses)
    ]
    request = {
        "PartitionKey": request_id,
        "RowKey": REQUEST_ROW,
        "requestId": request_id,
        "eventId": event_id,
        "source": "http",
        "target": target,
        "createdAt": now,
        "updatedAt": now,
        "callCount": len(calls),
        **aggregate.summarize(statuses).as_properties(),
        **more,
    }
    return request, calls
