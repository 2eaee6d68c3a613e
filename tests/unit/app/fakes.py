"""In-memory implementations of the ports in ``shared.core.ports``, for unit tests of the use cases.

Each class implements its whole Protocol (mypy checks it where a use case is built), so tests pass them
without ``cast``. Tests subclass them to add hooks or to record what happened.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.adapters import ledger_codec as codec
from shared.contract.names import REQUEST_ROW
from shared.core import aggregate
from shared.core.errors import StaleWrite
from shared.core.idempotency import event_key
from shared.core.ports import KnownEvent, WorkItem
from shared.core.records import CallRecord, OutboxMarks, RequestRecord
from shared.core.vocabulary import RequestStatus

Row = dict[str, Any]


class InMemoryLedger:
    """The ``Ledger`` port over rows kept as the Table adapter writes them (its codec), keyed by
    (PartitionKey, RowKey), with a counter standing in for the ETag as the record's ``version``.

    Tests read and change ``rows`` as the ledger's contract names the properties.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self.version = 0

    async def ping(self) -> None:
        return None

    async def create(
        self, request: RequestRecord, calls: Sequence[CallRecord], *, tolerate_existing: bool = False
    ) -> None:
        entities = [*(codec.call_to_entity(c) for c in calls), codec.request_to_entity(request)]
        for row in entities:
            key = (str(row["PartitionKey"]), str(row["RowKey"]))
            if key in self.rows:
                if tolerate_existing:
                    continue
                raise KeyError(f"{key} exists")
            self.version += 1
            self.rows[key] = {**row, "_v": self.version}

    async def finished_request_ids_below(self, floor_id: str, finished_before: datetime, limit: int) -> list[str]:
        found = [
            pk
            for (pk, rk), row in sorted(self.rows.items())
            if rk == REQUEST_ROW
            and pk < floor_id
            and row.get("status") != RequestStatus.PENDING
            and row.get("updatedAt", finished_before) < finished_before
        ]
        return found[:limit]

    async def delete_request(self, request_id: str) -> int:
        keys = [key for key in self.rows if key[0] == request_id]
        for key in keys:
            del self.rows[key]
        return len(keys)

    async def get_request(self, request_id: str) -> tuple[RequestRecord | None, list[CallRecord]]:
        request = self.rows.get((request_id, REQUEST_ROW))
        if request is None:
            return None, []
        calls = [
            codec.call_from_entity(row, str(row["_v"]))
            for (pk, rk), row in sorted(self.rows.items())
            if pk == request_id and rk != REQUEST_ROW
        ]
        return codec.request_from_entity(request, str(request["_v"])), calls

    async def get_call(self, request_id: str, call_id: str) -> CallRecord | None:
        row = self.rows.get((request_id, call_id))
        return None if row is None else codec.call_from_entity(row, str(row["_v"]))

    async def update_call(self, call: CallRecord) -> CallRecord:
        key = (call.request_id, call.call_id)
        if str(self.rows[key]["_v"]) != call.version:
            raise StaleWrite("changed")
        self.version += 1
        self.rows[key] = {**codec.call_to_entity(call), "_v": self.version}
        return replace(call, version=str(self.version))

    async def refresh_request(self, request_id: str, now: datetime) -> RequestRecord | None:
        statuses = [str(r["status"]) for (pk, rk), r in self.rows.items() if pk == request_id and rk != REQUEST_ROW]
        summary = aggregate.summarize(statuses)
        request = self.rows.get((request_id, REQUEST_ROW))
        if request is None:
            return RequestRecord(request_id, summary.status, counts=summary.counts)
        self.version += 1
        self.rows[(request_id, REQUEST_ROW)] = {
            **request,
            "status": summary.status.value,
            **codec.count_properties(summary.counts),
            "updatedAt": now,
            "_v": self.version,
        }
        return codec.request_from_entity(self.rows[(request_id, REQUEST_ROW)], str(self.version))

    async def read_request(self, request_id: str) -> RequestRecord | None:
        row = self.rows.get((request_id, REQUEST_ROW))
        return None if row is None else codec.request_from_entity(row, str(row["_v"]))

    async def update_marks(self, request: RequestRecord, marks: OutboxMarks) -> RequestRecord:
        key = (request.request_id, REQUEST_ROW)
        current = self.rows.get(key)
        if current is None or str(current["_v"]) != request.version:
            raise StaleWrite("changed")
        self.version += 1
        row = {k: v for k, v in current.items() if k not in codec.MARK_PROPERTIES}
        self.rows[key] = {**row, **codec.marks_properties(marks), "_v": self.version}
        return replace(request, marks=marks, version=str(self.version))


class InMemoryEventIndex:
    """Event ids → the request each made first, as the Table index keeps them."""

    def __init__(self) -> None:
        self.known: dict[str, KnownEvent] = {}

    async def claim(self, event_id: str, request_id: str, fingerprint: str, now: datetime) -> KnownEvent | None:
        if event_id in self.known:
            return self.known[event_id]
        self.known[event_id] = KnownEvent(request_id, fingerprint)
        return None

    async def forget(self, key: str) -> None:
        self.known = {e: k for e, k in self.known.items() if event_key(e) != key}


class InMemoryQueue:
    """Records what was sent (work items with their delay, and raw texts)."""

    def __init__(self) -> None:
        self.sent: list[tuple[WorkItem, float]] = []
        self.texts: list[str] = []

    async def ping(self) -> None:
        return None

    async def send_text(self, text: str) -> None:
        self.texts.append(text)

    async def send(self, item: WorkItem, delay_seconds: float = 0) -> None:
        self.sent.append((item, delay_seconds))


class InMemoryPending:
    """The in-flight index as a dict of request id → when it was added."""

    def __init__(self) -> None:
        self.entries: dict[str, datetime] = {}
        self.removed: list[str] = []

    async def add(self, request_id: str, now: datetime) -> None:
        self.entries[request_id] = now

    async def remove(self, request_id: str) -> None:
        self.entries.pop(request_id, None)
        self.removed.append(request_id)

    async def list(self, limit: int) -> list[tuple[str, datetime]]:
        return sorted(self.entries.items())[:limit]


class InMemoryLogStore:
    """Blobs as a dict of name → text, named as the blob adapter names them."""

    def __init__(self) -> None:
        self.blobs: dict[str, str] = {}

    async def put(self, request_id: str, call_id: str, text: str) -> str:
        name = f"{request_id}/{call_id}.json"
        self.blobs[name] = text
        return name

    async def get(self, name: str) -> str | None:
        return self.blobs.get(name)

    async def delete_request(self, request_id: str) -> int:
        names = [name for name in self.blobs if name.startswith(f"{request_id}/")]
        for name in names:
            del self.blobs[name]
        return len(names)


def queued_call_row(request_id: str, now: datetime, object_type_name: str = "User", **row: Any) -> dict[str, Any]:
    """A call row as intake writes it: queued, due ``now``, created an hour before; ``row`` overrides fields."""
    return {
        "PartitionKey": request_id,
        "RowKey": "call-0001",
        "_v": 0,
        "status": "queued",
        "attempts": 0,
        "subject": json.dumps({"objectId": "u1", "objectTypeName": object_type_name}),
        "servicePrincipalId": "sp",
        "jobId": "job",
        "ruleId": "rule-1",
        "nextAttemptAt": now,
        "createdAt": now - timedelta(hours=1),
        **row,
    }
