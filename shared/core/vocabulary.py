"""The service's vocabularies as ``str`` enums (pure).

``str`` enums, as ``azure-data-tables`` does with ``UpdateMode``: a member *is* its string, so it is written to
the ledger, compared with what the ledger holds and rendered in JSON without conversion, while the code names
each value once and a typo is a type error instead of a silently unmatched string.
"""

from __future__ import annotations

from enum import StrEnum


class CallStatus(StrEnum):
    """A Graph call's status in the ledger (contract)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Finished: no further Graph call is ever made for it."""
        return self not in _PENDING_CALL

    @property
    def is_pending(self) -> bool:
        """Not finished: queued, scheduled, waiting or running."""
        return self in _PENDING_CALL


_PENDING_CALL = frozenset({CallStatus.QUEUED, CallStatus.SCHEDULED, CallStatus.WAITING, CallStatus.RUNNING})


class RequestStatus(StrEnum):
    """A request's status in the ledger (contract): pending until every call is finished."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Every call is finished, or the request itself was refused."""
        return self is not RequestStatus.PENDING


class Source(StrEnum):
    """Which way a request came in (contract)."""

    HTTP = "http"
    QUEUE = "queue"
    GRAPH_COMPATIBLE = "graph-compatible"
    SCHEDULE = "schedule"


class RateScope(StrEnum):
    """What one budget of Graph calls covers (setting ``GRAPH_RATE_SCOPE``)."""

    TENANT = "tenant"
    JOB = "job"


class Priority(StrEnum):
    """How a request's calls are ordered against others waiting for the same budget (contract ``priority``)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class WaitingFor(StrEnum):
    """What a ``waiting`` call waits for, when it is not a time (call-row ``waitingFor``)."""

    SLOT = "slot"


class WorkerOutcome(StrEnum):
    """What one work item came to (the worker's return value, logged and counted; not stored)."""

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    WAITING = "waiting"
    MISSING = "missing"
    DUPLICATE = "duplicate"
    CLAIMED = "claimed"
    EARLY = "early"
    PACED = "paced"
    PARKED = "parked"
    HELD = "held"
    SUPERSEDED = "superseded"


class RuleSource(StrEnum):
    """Where a call's ``ruleId`` came from (contract)."""

    REQUEST = "request"
    TARGET = "target"
    SCHEMA = "schema"


class CallbackStatus(StrEnum):
    """``callbackStatus`` on the request row: where the request's callback stands."""

    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
