"""What an operator's list of requests is made of (pure): filters, summaries, and the index's keys.

The ledger has one partition per request, so "the newest failed requests" cannot be a ledger query without
reading every request row. Table ``ProvisioningIndex`` answers it instead: one partition per filter value
(``status:failed``, ``target:<hash>``, ``object:<hash>``…; the adapter keeps all the subjects' entries in
one table partition: :mod:`shared.adapters.request_index`), each entry's RowKey the request id *inverted*
so that a partition query returns the newest requests first (request ids sort by creation time:
:mod:`shared.core.request_ids`). This module names those keys; the adapter writes and reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.core import request_ids
from shared.core.records import RequestRecord
from shared.core.vocabulary import CallStatus, RequestStatus, Source

#: The widest page a caller may ask for, and the page size when it asks for none.
MAX_TOP = 200
DEFAULT_TOP = 50
#: At most this many index entries are read for one page: a filter combination that matches rarely
#: answers a short page with a ``nextLink`` instead of reading on (the cost of a page stays bounded).
MAX_SCAN = 1000
#: A summary names at most this many subjects' objectIds (and the index files a request under as many).
MAX_OBJECT_IDS = 100
#: The call statuses a target's backlog counts.
BACKLOG_STATUSES = (CallStatus.QUEUED, CallStatus.SCHEDULED, CallStatus.WAITING, CallStatus.RUNNING)

_ALL_ONES = (1 << 128) - 1


def row_key(request_id: str) -> str:
    """The request id inverted (32 hex digits), so ascending RowKeys run from the newest request to the oldest."""
    return f"{_ALL_ONES - int(request_id, 16):032x}"


def request_id_of(key: str) -> str:
    """The request id a RowKey of :func:`row_key` stands for."""
    return f"{_ALL_ONES - int(key, 16):032x}"


def newest_key(until: datetime) -> str:
    """The smallest RowKey a request created at or before ``until`` can have."""
    ceiling = int(request_ids.id_floor(until), 16) + (1 << 80) - 1  # every id of that millisecond
    return f"{_ALL_ONES - ceiling:032x}"


def oldest_key(since: datetime) -> str:
    """The largest RowKey a request created at or after ``since`` can have."""
    return row_key(request_ids.id_floor(since))


def _hashed(kind: str, value: str) -> str:
    # values may hold characters a PartitionKey cannot ('/', '#', '?', control characters) or be long
    return f"{kind}:{hashlib.sha256(value.encode('utf-8')).hexdigest()[:40]}"


ALL_PARTITION = "all"


def status_partition(status: str) -> str:
    """The partition of the requests that have ``status`` now."""
    return f"status:{status}"


def source_partition(source: str) -> str:
    """The partition of the requests that came in one way."""
    return f"source:{source}"


def target_partition(target: str) -> str:
    """The partition of one target's requests."""
    return _hashed("target", target)


def event_partition(event_id: str) -> str:
    """The partition of the request(s) of one caller event id."""
    return _hashed("event", event_id)


def object_partition(object_id: str) -> str:
    """The partition of the requests naming a subject (objectIds compare case-insensitively)."""
    return _hashed("object", object_id.lower())


def message_partition(message_hash: str) -> str:
    """The request a refused queue message was recorded as (by the SHA-256 of the message's text)."""
    return f"message:{message_hash}"


def backlog_partition(target: str) -> str:
    """The pending requests of one target, each with its counts of unfinished calls."""
    return _hashed("backlog", target)


@dataclass(frozen=True)
class Indexed:
    """What the index knows of a request: enough to file it under every filter it can be found by."""

    request_id: str
    status: str
    target: str | None
    source: str | None
    event_id: str | None
    object_ids: tuple[str, ...]
    backlog: Mapping[str, int] = field(default_factory=dict)
    message_hash: str | None = None

    def fixed_partitions(self) -> list[str]:
        """The partitions that never change for this request (all but its status and backlog)."""
        found = [ALL_PARTITION]
        if self.source:
            found.append(source_partition(self.source))
        if self.target:
            found.append(target_partition(self.target))
        if self.event_id:
            found.append(event_partition(self.event_id))
        if self.message_hash:
            found.append(message_partition(self.message_hash))
        found.extend(dict.fromkeys(object_partition(o) for o in self.object_ids))
        return found

    @property
    def pending(self) -> bool:
        """Still in flight: counted in its target's backlog."""
        return self.status == RequestStatus.PENDING


def backlog_counts(counts: Mapping[CallStatus, int]) -> dict[str, int]:
    """A request's counts of unfinished calls, by status."""
    return {str(status): int(counts.get(status, 0)) for status in BACKLOG_STATUSES}


def message_hash(text: str) -> str:
    """The hash a rejected request records of its queue message's text (found again through the index)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def object_ids_of(subjects: Iterable[object]) -> tuple[str, ...]:
    """The distinct objectIds of a request's subjects (call-row subject JSON already parsed), at most the cap."""
    found: dict[str, None] = {}
    for subject in subjects:
        if isinstance(subject, Mapping):
            value = subject.get("objectId")
            if isinstance(value, str) and value:
                found.setdefault(value, None)
        if len(found) >= MAX_OBJECT_IDS:
            break
    return tuple(found)


@dataclass(frozen=True)
class ListFilter:
    """A validated ``GET /api/provision`` query."""

    status: RequestStatus | None = None
    target: str | None = None
    source: Source | None = None
    event_id: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    top: int = DEFAULT_TOP
    after: str | None = None  # the RowKey the previous page ended at

    def partition(self) -> str:
        """The most selective partition the filter names; the other filters are checked on each request."""
        if self.event_id is not None:
            return event_partition(self.event_id)
        if self.object_id is not None:
            return object_partition(self.object_id)
        if self.status is not None:
            return status_partition(self.status)
        if self.target is not None:
            return target_partition(self.target)
        if self.source is not None:
            return source_partition(self.source)
        return ALL_PARTITION

    def matches(self, request: RequestRecord, object_ids: Iterable[str]) -> bool:
        """The request (and the objectIds it was filed with) pass every filter: a stale entry does not."""
        checks = (
            (self.status, request.status),
            (self.target, request.target),
            (self.source, request.source),
            (self.event_id, request.event_id),
        )
        if any(wanted is not None and wanted != actual for wanted, actual in checks):
            return False
        if self.object_id is not None and self.object_id.lower() not in {o.lower() for o in object_ids}:
            return False
        created = request.created_at
        if created is not None:
            if self.since is not None and created < self.since:
                return False
            if self.until is not None and created > self.until:
                return False
        return True


@dataclass(frozen=True)
class Summary:
    """One line of the list: the request's own fields, its counts and its subjects' objectIds."""

    request_id: str
    request: RequestRecord
    object_ids: tuple[str, ...]


@dataclass(frozen=True)
class Page:
    """One page of summaries, newest first, and where the next one starts (None: this was the last)."""

    summaries: list[Summary]
    next_after: str | None
    rows_read: int = 0
