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


#: A request of at most this many calls is recounted at every call's transition (its query reads that many rows).
RECOUNT_EVERY_CALL_UP_TO = 10
#: A bigger request's counts are recounted this many times over its calls (plus once at its last call).
RECOUNTS_PER_REQUEST = 10


def recount_due(call_index: int, call_count: int) -> bool:
    """Whether the transition of the call at ``call_index`` (0-based) recounts its request's calls (pure).

    A recount reads every call of the request, so recounting at each of ``n`` calls costs ``n``² rows: a
    1,000-call request read a million status cells while it drained, and the worker's loop spent four fifths
    of its time there. A bigger request is recounted at every ``n / RECOUNTS_PER_REQUEST``-th call (its counts
    move in steps of a tenth) and whenever no call is left pending, which a query of at most one row tells:
    per call, about ``RECOUNTS_PER_REQUEST`` rows whatever the request's size.
    """
    if call_count <= RECOUNT_EVERY_CALL_UP_TO:
        return True
    step = -(-call_count // RECOUNTS_PER_REQUEST)
    return call_index % step == 0
