"""In-memory implementations of the ports in ``shared.core.ports``, for unit tests of the use cases.

Each class implements its whole Protocol (mypy checks it where a use case is built), so tests pass them
without ``cast``. Tests subclass them to add hooks or to record what happened.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.adapters import ledger_codec as codec
from shared.contract.names import REQUEST_ROW
from shared.core import aggregate, listing
from shared.core.errors import StaleWrite
from shared.core.idempotency import event_key
from shared.core.listing import Indexed
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus, KnownEvent, PoisonMessage, WorkItem
from shared.core.records import CALL_STATE_FIELDS, Attempt, CallRecord, OutboxMarks, RequestRecord, Stamp, camel
from shared.core.rules import RuleInfo
from shared.core.vocabulary import CallStatus, RequestStatus, Source, WaitingFor

Row = dict[str, Any]


class InMemoryLedger:
    """The ``Ledger`` port over rows kept as the Table adapter writes them (its codec), keyed by
    (PartitionKey, RowKey), with a counter standing in for the ETag as the record's ``version``.

    Tests read and change ``rows`` as the ledger's contract names the properties.
    """

    def __init__(self, index: InMemoryIndex | None = None) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self.version = 0
        self.index = index or InMemoryIndex()  # ProvisioningIndex, kept as the Table ledger keeps it
        self.stamps: list[tuple[str, Stamp]] = []

    async def ping(self) -> None:
        return None

    async def create(
        self, request: RequestRecord, calls: Sequence[CallRecord], *, tolerate_existing: bool = False
    ) -> None:
        await self.index.file_new(_indexed(request, request.status, request.counts, calls))
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
            if pk == request_id and rk.startswith("call-")
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
        statuses = [
            str(r["status"]) for (pk, rk), r in self.rows.items() if pk == request_id and rk.startswith("call-")
        ]
        summary = aggregate.summarize(statuses)
        request = self.rows.get((request_id, REQUEST_ROW))
        if request is None:
            return RequestRecord(request_id, summary.status, counts=summary.counts)
        if request.get("status") == RequestStatus.REJECTED:
            return codec.request_from_entity(request, str(request["_v"]))
        old = str(request.get("status"))
        entry = _indexed(codec.request_from_entity(request), summary.status, summary.counts, ())
        await self.index.before_change(old, entry)
        self.version += 1
        self.rows[(request_id, REQUEST_ROW)] = {
            **request,
            "status": summary.status.value,
            **codec.count_properties(summary.counts),
            "updatedAt": now,
            "_v": self.version,
        }
        await self.index.after_change(old, entry)
        return codec.request_from_entity(self.rows[(request_id, REQUEST_ROW)], str(self.version))

    async def has_unfinished_calls(self, request_id: str) -> bool:
        return any(
            CallStatus(str(r["status"])).is_pending
            for (pk, rk), r in self.rows.items()
            if pk == request_id and rk.startswith("call-")
        )

    async def read_request(self, request_id: str) -> RequestRecord | None:
        row = self.rows.get((request_id, REQUEST_ROW))
        return None if row is None else codec.request_from_entity(row, str(row["_v"]))

    async def unfinished_calls(self, request_id: str) -> list[CallRecord]:
        # only the state fields, as the Table adapter reads them: a use case that relies on more fails here too
        keep = {"PartitionKey", "RowKey", *(camel(name) for name in CALL_STATE_FIELDS)}
        return [
            codec.call_from_entity({k: v for k, v in row.items() if k in keep})
            for (pk, rk), row in sorted(self.rows.items())
            if pk == request_id and rk.startswith("call-") and CallStatus(str(row["status"])).is_pending
        ]

    async def parked_calls(self, request_id: str, call_ids: Collection[str]) -> list[CallRecord]:
        rows = [self.rows.get((request_id, c)) for c in sorted(set(call_ids))]  # one query: no get_call each
        found = [codec.call_from_entity(row, str(row["_v"])) for row in rows if row is not None]
        return [c for c in found if c and c.status is CallStatus.WAITING and c.waiting_for is WaitingFor.SLOT]

    async def update_marks(self, request: RequestRecord, marks: OutboxMarks) -> RequestRecord:
        key = (request.request_id, REQUEST_ROW)
        current = self.rows.get(key)
        if current is None or str(current["_v"]) != request.version:
            raise StaleWrite("changed")
        self.version += 1
        row = {k: v for k, v in current.items() if k not in codec.MARK_PROPERTIES}
        self.rows[key] = {**row, **codec.marks_properties(marks), "_v": self.version}
        return replace(request, marks=marks, version=str(self.version))

    # --- OperatorLedger ---

    async def stamp_request(self, request_id: str, stamp: Stamp) -> None:
        self.stamps.append((request_id, stamp))
        row = self.rows[(request_id, REQUEST_ROW)]
        row.update({f"{stamp.action}At": stamp.at, **({f"{stamp.action}By": stamp.by} if stamp.by else {})})

    async def archive_attempt(self, call: CallRecord, number: int) -> None:
        key = (call.request_id, f"attempt-{call.call_id[5:]}-{number:02d}")
        self.rows.setdefault(key, {**codec.call_to_entity(call), "RowKey": key[1], "callId": call.call_id, "n": number})

    async def attempts(self, request_id: str) -> list[Attempt]:
        return [
            Attempt(int(r["n"]), codec.call_from_entity({**r, "RowKey": r["callId"]}))
            for (pk, rk), r in sorted(self.rows.items())
            if pk == request_id and rk.startswith("attempt-")
        ]


def _indexed(
    request: RequestRecord, status: RequestStatus, counts: Mapping[CallStatus, int], calls: Sequence[CallRecord]
) -> Indexed:
    return Indexed(
        request_id=request.request_id,
        status=str(status),
        target=request.target,
        source=str(request.source) if request.source else None,
        event_id=request.event_id,
        object_ids=listing.object_ids_of(c.subject for c in calls),
        backlog=listing.backlog_counts(counts),
        message_hash=request.message_hash,
    )


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
    """Index entries handed out one by one, counted."""

    def __init__(self, entries: list[tuple[str, tuple[str, ...]]]) -> None:
        self._entries = entries
        self.rows_read = 0

    async def __aiter__(self) -> AsyncIterator[tuple[str, tuple[str, ...]]]:
        for entry in self._entries:
            self.rows_read += 1
            yield entry


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


def request_records(
    request_id: str,
    now: datetime,
    statuses: Sequence[str],
    *,
    target: str = "t1",
    event_id: str | None = None,
    **more: Any,
) -> tuple[RequestRecord, list[CallRecord]]:
    """A request and its calls as intake writes them (statuses as given, counts to match)."""
    calls = [
        CallRecord(
            request_id,
            f"call-{i + 1:04d}",
            subject={"objectId": f"user-{i + 1}", "objectTypeName": "User"},
            status=CallStatus(status),
            created_at=now,
            next_attempt_at=now,
        )
        for i, status in enumerate(statuses)
    ]
    summary = aggregate.summarize(statuses)
    request = RequestRecord(
        request_id,
        summary.status,
        source=Source.HTTP,
        created_at=now,
        updated_at=now,
        event_id=event_id,
        target=target,
        call_count=len(calls),
        counts=summary.counts,
        **more,
    )
    return request, calls


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
