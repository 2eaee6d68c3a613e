"""Ports: the Protocols every adapter implements, and the values use cases and adapters exchange (pure).
Use cases are typed against these; ``shared.runtime`` builds the adapters (``shared.adapters``) and passes
them in; tests pass fakes that implement the same Protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.core.listing import Indexed
from shared.core.pacing import ANYWHERE, LimiterState, RateLimit, Reservation, Span
from shared.core.records import Attempt, CallRecord, OutboxMarks, RequestRecord, Stamp
from shared.core.rules import RuleInfo
from shared.core.work_items import MAX_VISIBILITY_DELAY_SECONDS as MAX_VISIBILITY_DELAY_SECONDS
from shared.core.work_items import Wake as Wake
from shared.core.work_items import WorkItem as WorkItem
from shared.core.work_items import work_message as work_message


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
    """The record of every request and call (implemented by ``shared.adapters.ledger.TableLedger``). Records carry
    an opaque ``version``: :meth:`update_call` writes a call only while its row is still at the version it was
    read at, and raises :class:`shared.core.errors.StaleWrite` otherwise."""

    async def ping(self) -> None:
        """Reach the store; raises if it does not answer."""

    async def create(
        self, request: RequestRecord, calls: Sequence[CallRecord], *, tolerate_existing: bool = False
    ) -> None:
        """Write a new request, its calls first; ``tolerate_existing`` finishes a creation another intake began."""

    async def finished_request_ids_below(self, floor_id: str, finished_before: datetime, limit: int) -> list[str]:
        """Finished requests with ids below ``floor_id``, last updated before ``finished_before``."""

    async def delete_request(self, request_id: str) -> int:
        """Delete the request and its calls; returns how many rows went."""

    async def get_request(self, request_id: str) -> tuple[RequestRecord | None, list[CallRecord]]:
        """The request (None if unknown) and its calls, in call order."""

    async def get_call(self, request_id: str, call_id: str) -> CallRecord | None:
        """One call, or None."""

    async def update_call(self, call: CallRecord) -> CallRecord:
        """Write ``call`` if its row is still at ``call.version``; the call as written, with its new version."""

    async def refresh_request(self, request_id: str, now: datetime) -> RequestRecord | None:
        """Recompute the request's status and counts from its calls; None if the request is unknown."""

    async def has_unfinished_calls(self, request_id: str) -> bool:
        """Whether any call of the request is still pending (reads at most one call, whatever the request's size)."""

    async def read_request(self, request_id: str) -> RequestRecord | None:
        """The request alone (no calls), or None."""

    async def unfinished_calls(self, request_id: str) -> list[CallRecord]:
        """The request's pending calls with only ``records.CALL_STATE_FIELDS`` read (no subjects, no logs)."""

    async def parked_calls(self, request_id: str, call_ids: Collection[str]) -> list[CallRecord]:
        """Those of ``call_ids`` that wait in the backlog, whole, in one query (others are not returned)."""

    async def update_marks(self, request: RequestRecord, marks: OutboxMarks) -> RequestRecord:
        """Write the request's outbox ``marks`` (nothing else) if its row is still at ``request.version``;
        the request as written. Raises StaleWrite when the row changed or is gone."""


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


class SlotBank(RateLimiter, Protocol):
    """The limiter as the backlog uses it: slots handed out in bulk, newcomers queued behind waiting calls."""

    async def reserve(self, key: str, release: float | None = None, *, queue_behind: bool = True) -> Reservation: ...

    async def state(self, key: str) -> LimiterState: ...

    async def reserve_many(
        self, key: str, count: int, *, round_: int | None = None, waiting: bool | None = None, span: Span = ANYWHERE
    ) -> list[float]: ...

    async def mark_waiting(self, key: str) -> None: ...

    async def scopes(self) -> list[str]: ...

    def known(self, key: str) -> LimiterState | None:
        """The row as this process last read or wrote it (no I/O; may be stale), or None."""
        ...


@dataclass(frozen=True)
class Parked:
    """One entry of the backlog: a call waiting for a slot of ``scope``, at ``key`` (its place)."""

    scope: str
    key: str
    request_id: str
    call_id: str
    etag: str | None = None


class WaitingRoom(Protocol):
    """Calls waiting for a slot, per scope, in fairness order (``shared.adapters.waiting_room``)."""

    async def park(self, entry: Parked) -> None: ...

    async def park_many(self, entries: Sequence[Parked]) -> None: ...

    async def head(self, scope: str, limit: int) -> list[Parked]: ...

    async def remove(self, entry: Parked) -> None: ...

    async def remove_many(self, entries: Sequence[Parked]) -> None: ...

    async def keys(self, scope: str) -> set[str]: ...


class Lease(Protocol):
    """A short exclusive lease by name, across instances (``shared.adapters.lease``)."""

    async def acquire(self, name: str, seconds: float) -> str | None: ...

    async def release(self, name: str, token: str) -> None: ...


class WorkQueue(Protocol):
    """Where work items wait for a worker (implemented by ``shared.adapters.work_queue``)."""

    async def ping(self) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def send(self, item: WorkItem, delay_seconds: float = 0) -> None: ...


class Alarm(Protocol):
    """Wakes a scope's dispatcher later (implemented by ``shared.adapters.work_queue``: a delayed message)."""

    async def wake(self, scope: str, delay_seconds: float) -> None: ...


class LogStore(Protocol):
    """Provisioning logs too large for a ledger row (implemented by ``shared.adapters.log_store``)."""

    async def put(self, request_id: str, call_id: str, text: str) -> str: ...

    async def get(self, name: str) -> str | None: ...

    async def delete_request(self, request_id: str) -> int: ...


@dataclass(frozen=True)
class HostAnswer:
    """What one ``GET`` to another host got: its HTTP status, or None and why there was no answer."""

    status: int | None
    failure: str | None = None  # the error's type name when there was no answer (for logs; never a URL or key)
    #: The answer asked for a bearer token (``WWW-Authenticate: Bearer``): App Service Authentication answered in
    #: front of the host, so the status says nothing about the key.
    bearer_challenge: bool = False


class HostProbe(Protocol):
    """Asks another host one question over HTTP (``shared.adapters.host_probe``): is Graph's host reachable
    (health), does a key open the Functions host's admin routes (whether a key may travel in links)."""

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HostAnswer: ...


# --- Outcomes: events and callbacks when a request finishes ------------------------------------------------------


class MessageQueue(Protocol):
    """A Storage queue that takes text messages, optionally delayed (base64 on the wire)."""

    async def send_text(self, text: str, delay_seconds: float = 0) -> None: ...


class EventPublisher(Protocol):
    """Where outcome events go besides the queue (Event Grid, when configured)."""

    async def publish(self, event: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class CallbackResult:
    """One callback attempt: delivered (2xx), or why not; ``permanent`` when retrying cannot help."""

    delivered: bool
    http_status: int | None = None
    error: str | None = None
    permanent: bool = False


class CallbackClient(Protocol):
    """POSTs a callback to an allow-listed URL (implemented by ``shared.adapters.callback_http``)."""

    async def post(self, url: str, body: bytes) -> CallbackResult: ...


# --- The directory: users by name, group members ----------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A group member as Graph lists it: its id and its type (``User``, ``Group``, ``Device``…)."""

    object_id: str
    object_type_name: str


class Directory(Protocol):
    """Directory reads through Graph (implemented by ``shared.adapters.graph_directory``); never raise."""

    async def user_id(self, user_principal_name: str) -> str | GraphFailure | None:
        """The object id of the user with this UPN; None when there is none (Graph's 404)."""
        ...

    async def group_members(self, group_id: str) -> list[Member] | GraphFailure | None:
        """Every direct member of the group, all pages read; None when there is no such group."""
        ...


class SlotBook(Protocol):
    """How far the shared limiter is booked (implemented by ``shared.adapters.limiter.TableLimiter``)."""

    @property
    def limit(self) -> RateLimit: ...

    async def next_free(self, key: str) -> float:
        """When the next call of this scope could start (epoch seconds)."""
        ...


# --- Operator: the request index, retry and cancel, poison queues -------------------------------------------------


class RequestIndex(Protocol):
    """Table ``ProvisioningIndex``: requests by filter value, newest first (``shared.adapters.request_index``).
    Written by the ledger on the paths that change a request's status: the new entries before the ledger row,
    the stale one after it, so a crash in between leaves at most an entry that readers check and skip."""

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

    async def stamp_request(self, request_id: str, stamp: Stamp) -> None:
        """Record who retried or cancelled the request and when; its status and counts untouched."""
        ...

    async def archive_attempt(self, call: CallRecord, number: int) -> None:
        """Keep a finished round of a call before a retry clears it (idempotent)."""
        ...

    async def attempts(self, request_id: str) -> list[Attempt]:
        """Every archived round of every call of a request, in call and round order."""
        ...


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
