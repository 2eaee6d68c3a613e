"""The backlog's order: which waiting call gets the next free slot of a rate-limit scope (pure).

Calls that find no slot within the limiter's short horizon (:func:`shared.core.pacing.ahead_for`) wait in
an index ordered by :func:`order_key`; a dispatcher hands the free slots to the head of that order. The
policy, fair by default:

1. ``priority`` first: every ``high`` call before any ``normal`` one, every ``normal`` before any ``low``.
2. Then a *virtual round*: the scope's round when the call started waiting, plus the call's index within its
   request. The scope's round is the round of the last call handed a slot. So a request gets one slot per
   round, whatever its size: a 1,000-call request's calls are spread over 1,000 rounds, and a 1-call request
   that arrives meanwhile is placed in the current round, within about one round of slots of the head.
3. Then the request id (time-ordered: the older request first within a round), then the call id.

Keys are fixed-width strings, so Table Storage's RowKey order is this order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.core.records import CallRecord
from shared.core.vocabulary import CallStatus, Priority, WaitingFor

#: Digits of the round in a key: 10^12 rounds is 60,000 years at 0.5 slots per second.
_ROUND_DIGITS = 12
_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


@dataclass(frozen=True)
class Place:
    """Where a waiting call stands in its scope's backlog."""

    priority: Priority
    round: int
    request_id: str
    call_id: str

    @property
    def key(self) -> str:
        """The RowKey: sorts as the policy orders (see the module docstring)."""
        return f"{_RANK[self.priority]}-{self.round:0{_ROUND_DIGITS}d}-{self.request_id}-{self.call_id}"

    @classmethod
    def parse(cls, key: str) -> Place:
        """The place a key names; ValueError when it is not one :attr:`key` wrote."""
        rank, round_, request_id, call_id = key.split("-", 3)
        priority = next((p for p, r in _RANK.items() if str(r) == rank), None)
        if priority is None or len(round_) != _ROUND_DIGITS or not round_.isdigit() or not call_id.startswith("call-"):
            raise ValueError(f"not a backlog key: {key!r}")
        return cls(priority, int(round_), request_id, call_id)


def call_index(call_id: str) -> int:
    """The 0-based index of a call within its request (``call-0001`` is 0)."""
    return max(0, int(call_id.removeprefix("call-")) - 1)


def place_for(priority: str | None, scope_round: int, request_id: str, call_id: str) -> Place:
    """A call's place when it starts waiting in a scope whose round is ``scope_round``."""
    try:
        chosen = Priority(priority) if priority else Priority.NORMAL
    except ValueError:
        chosen = Priority.NORMAL
    return Place(chosen, scope_round + call_index(call_id), request_id, call_id)


def stale_entry(call: CallRecord | None) -> bool:
    """An entry whose call will not become parked at it without writing the entry again (pure).

    A ``running`` or ``queued`` call may be between its worker's two parking writes (entry first, then the
    row): its entry must stay. Any other call that does not wait at this entry gets it written again if it
    parks later.
    """
    return call is None or call.status not in (CallStatus.RUNNING, CallStatus.QUEUED, CallStatus.SCHEDULED)


def is_parked(call: CallRecord, key: str | None = None) -> bool:
    """The call waits in the backlog (at ``key``, when given) for a slot (pure)."""
    return (
        call.status is CallStatus.WAITING
        and call.waiting_for is WaitingFor.SLOT
        and (key is None or call.backlog_key == key)
    )


def parking(scope: str, call: CallRecord, round_: int) -> dict[str, Any]:
    """The changes that mark a call parked in ``scope``'s backlog in the scope's round ``round_``; a call parked
    before keeps its place (pure)."""
    key = call.backlog_key or place_for(call.priority, round_, call.request_id, call.call_id).key
    return {
        "status": CallStatus.WAITING,
        "claimed_until": None,
        "reserved_at": None,
        "waiting_for": WaitingFor.SLOT,
        "backlog_key": key,
        "backlog_scope": scope,
    }
