"""Ports: the Protocols every adapter implements, and the values use cases and adapters exchange (pure).

Use cases are typed against these; ``shared.runtime`` builds the adapters (``shared.adapters``) and passes
them in; tests pass fakes that implement the same Protocols.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.core import ids
from shared.core.listing import Indexed
from shared.core.pacing import RateLimit, Reservation
from shared.core.rules import RuleInfo

Row = dict[str, Any]
"""A ledger row as the Table holds it (typed records replace this in a later step)."""

MAX_VISIBILITY_DELAY_SECONDS = 7 * 24 * 3600 - 60


@dataclass(frozen=True)
class WorkItem:
    """Which call to make: a pointer into the ledger, never the call itself."""

    request_id: str
    call_id: str

    def to_json(self) -> str:
        """The message body."""
        return json.dumps({"requestId": self.request_id, "callId": self.call_id}, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: bytes | str) -> WorkItem:
        """Parse a message body; raises ValueError when it is not one of ours."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("work item must be a JSON object")
        request_id, call_id = data.get("requestId"), data.get("callId")
        if not isinstance(request_id, str) or not ids.is_request_id(request_id):
            raise ValueError("work item has no valid requestId")
        if not isinstance(call_id, str) or not (call_id.startswith("call-") and call_id[5:].isdigit()):
            raise ValueError("work item has no valid callId")
        return cls(request_id, call_id)


@dataclass(frozen=True)
class KnownEvent:
    """The request an event already made."""

    request_id: str
    fingerprint: str


@dataclass(frozen=True)
class GraphAnswer:
    """Graph answered 2xx with a ``stringKeyStringValuePair``."""

    key: str | None
    value: str | None
    request_id: str | None
    http_status: int = 200
    client_request_id: str | None = None


@dataclass(frozen=True)
class GraphFailure:
    """Graph answered an error or something unreadable, or did not answer at all (``http_status`` None)."""

    http_status: int | None
    code: str | None
    message: str
    request_id: str | None = None
    retry_after_seconds: float | None = None
    client_request_id: str | None = None
    raw_body: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """The part of ``GET …/jobs/{id}`` that decides whether calls can go through now."""

    code: str | None
    reason: str | None = None


class Provisioner(Protocol):
    """What the worker needs from Graph (tests may pass any object with this method)."""

    async def provision_on_demand(
        self, service_principal_id: str, job_id: str, rule_id: str, subject: dict[str, Any]
    ) -> GraphAnswer | GraphFailure: ...

    async def schema_rules(self, service_principal_id: str, job_id: str) -> list[RuleInfo] | GraphFailure: ...

    async def job_status(self, service_principal_id: str, job_id: str) -> JobStatus | GraphFailure: ...


class Ledger(Protocol):
    """The record of every request and call (implemented by ``shared.adapters.ledger.TableLedger``)."""

    async def ping(self) -> None: ...

    async def create(self, request: Row, calls: list[Row], *, tolerate_existing: bool = False) -> None: ...

    async def finished_request_ids_below(self, floor_id: str, finished_before: Any, limit: int) -> list[str]: ...

    async def delete_request(self, request_id: str) -> int: ...

    async def get_request(self, request_id: str) -> tuple[Row | None, list[Row]]: ...

    async def get_call(self, request_id: str, call_id: str) -> Row | None: ...

    async def update_call(self, call: Mapping[str, Any], changes: Mapping[str, Any]) -> Row: ...

    async def refresh_request(self, request_id: str, now: Any) -> Row | None: ...


class EventIndex(Protocol):
    """Which request each caller event id made (implemented by ``shared.adapters.idempotency``)."""

    async def claim(self, event_id: str, request_id: str, fingerprint: str, now: datetime) -> KnownEvent | None: ...

    async def forget(self, key: str) -> None: ...


class PendingIndex(Protocol):
    """The small index of requests still in flight (implemented by ``shared.adapters.pending``)."""

    async def add(self, request_id: str, now: datetime) -> None: ...

    async def remove(self, request_id: str) -> None: ...

    async def list(self, limit: int) -> list[tuple[str, datetime]]: ...


class RateLimiter(Protocol):
    """The shared budget of Graph calls (implemented by ``shared.adapters.limiter.TableLimiter``)."""

    @property
    def limit(self) -> RateLimit: ...

    async def reserve(self, key: str, release: float | None = None) -> Reservation: ...

    async def report_throttle(self, key: str, retry_after: float) -> None: ...


class WorkQueue(Protocol):
    """Where work items wait for a worker (implemented by ``shared.adapters.work_queue``)."""

    async def ping(self) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def send(self, item: WorkItem, delay_seconds: float = 0) -> None: ...


class LogStore(Protocol):
    """Provisioning logs too large for a ledger row (implemented by ``shared.adapters.log_store``)."""

    async def put(self, request_id: str, call_id: str, text: str) -> str: ...

    async def get(self, name: str) -> str | None: ...

    async def delete_request(self, request_id: str) -> int: ...


class RequestIndex(Protocol):
    """Table ``ProvisioningIndex``: requests by filter value, newest first (``shared.adapters.request_index``).

    Written by the ledger on the paths that change a request's status: the new entries before the ledger row,
    the stale one after it, so a crash in between leaves at most an entry that readers check and skip.
    """

    async def file_new(self, entry: Indexed) -> None: ...

    async def before_change(self, old_status: str | None, entry: Indexed) -> None: ...

    async def after_change(self, old_status: str | None, entry: Indexed) -> None: ...

    async def forget(self, request_id: str) -> None: ...

    def entries(
        self, partition: str, after: str | None, newest: str | None, oldest: str | None, page_size: int
    ) -> IndexScan: ...

    async def backlog(self, target: str) -> dict[str, int]: ...


class IndexScan(Protocol):
    """Index entries in RowKey order (newest request first): ``(rowKey, objectIds)``; counts what it read."""

    rows_read: int

    def __aiter__(self) -> AsyncIterator[tuple[str, tuple[str, ...]]]: ...


class OperatorLedger(Ledger, Protocol):
    """The ledger as operator actions use it: :class:`Ledger` and a little more (``TableLedger`` implements it)."""

    async def request_row(self, request_id: str) -> Row | None: ...

    async def stamp_request(self, request_id: str, changes: Mapping[str, Any]) -> None: ...

    async def archive_attempt(self, call: Mapping[str, Any], number: int) -> None: ...

    async def attempts(self, request_id: str) -> list[Row]: ...


class PoisonQueue(Protocol):
    """A poison queue and the queue its messages came from (``shared.adapters.poison``)."""

    @property
    def name(self) -> str: ...

    async def peek(self, limit: int) -> list[PoisonMessage]: ...

    async def requeue(self, message_ids: Collection[str] | None, limit: int) -> int: ...


@dataclass(frozen=True)
class PoisonMessage:
    """One message on a poison queue, as peeked (its text decoded as the host would)."""

    message_id: str
    text: str
    inserted_at: datetime | None
    dequeue_count: int
