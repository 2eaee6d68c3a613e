"""A request's status, derived from its calls (pure).

The request row stores counts by status so an operator's table query shows progress without reading every
call; the rule for the overall status is the contract's: pending while any call is unfinished, then
``failed`` if any call failed (or was rejected), else ``cancelled`` if any call was cancelled, else
``succeeded`` (skipped counts as done: Graph had nothing to change).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.core.vocabulary import CallStatus, RequestStatus

CALL_STATUSES: tuple[CallStatus, ...] = tuple(CallStatus)
PENDING_CALL_STATUSES = frozenset(s for s in CallStatus if s.is_pending)
TERMINAL_CALL_STATUSES = frozenset(s for s in CallStatus if s.is_terminal)
PENDING = RequestStatus.PENDING


@dataclass(frozen=True)
class Summary:
    """Counts by call status and the request status they add up to."""

    status: RequestStatus
    counts: Mapping[CallStatus, int]


def summarize(call_statuses: Iterable[str]) -> Summary:
    """Summarize the statuses of a request's calls; raises ValueError for a status that is not a call status."""
    raw = Counter(call_statuses)
    unknown = set(raw) - set(CALL_STATUSES)
    if unknown:
        raise ValueError(f"unknown call status: {sorted(unknown)}")
    counts = Counter({CallStatus(s): n for s, n in raw.items()})
    if not counts or any(counts[s] for s in PENDING_CALL_STATUSES):
        status = RequestStatus.PENDING
    elif counts[CallStatus.FAILED] or counts[CallStatus.REJECTED]:
        # a call the app refused (no rule fits) is a failure of the request; "rejected" as a request status
        # is kept for a request that was itself refused (an invalid queue message)
        status = RequestStatus.FAILED
    elif counts[CallStatus.CANCELLED]:
        status = RequestStatus.CANCELLED
    else:
        status = RequestStatus.SUCCEEDED
    return Summary(status, {name: counts.get(name, 0) for name in CALL_STATUSES})
