"""A request's status, derived from its calls (pure).

The request row stores counts by status so an operator's table query shows progress without reading every
call; the rule for the overall status is the contract's: pending while any call is unfinished, then
``failed`` if any call failed, else ``cancelled`` if an operator cancelled any call, else ``succeeded``
(skipped counts as done: Graph had nothing to change).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

CALL_STATUSES = (
    "queued",
    "scheduled",
    "waiting",
    "running",
    "succeeded",
    "skipped",
    "failed",
    "rejected",
    "cancelled",
)
PENDING_CALL_STATUSES = frozenset({"queued", "scheduled", "waiting", "running"})
TERMINAL_CALL_STATUSES = frozenset({"succeeded", "skipped", "failed", "rejected", "cancelled"})
PENDING = "pending"


@dataclass(frozen=True)
class Summary:
    """Counts by call status and the request status they add up to."""

    status: str
    counts: dict[str, int]

    def as_properties(self) -> dict[str, int | str]:
        """Ledger properties: ``status`` plus ``<status>Count`` for every call status."""
        props: dict[str, int | str] = {"status": self.status}
        props.update({f"{name}Count": self.counts.get(name, 0) for name in CALL_STATUSES})
        return props


def summarize(call_statuses: Iterable[str]) -> Summary:
    """Summarize the statuses of a request's calls."""
    counts = Counter(call_statuses)
    unknown = set(counts) - set(CALL_STATUSES)
    if unknown:
        raise ValueError(f"unknown call status: {sorted(unknown)}")
    if not counts or any(counts[s] for s in PENDING_CALL_STATUSES):
        status = PENDING
    elif counts["failed"] or counts["rejected"]:
        # a call the app refused (no rule fits) is a failure of the request; "rejected" as a request status
        # is kept for a request that was itself refused (an invalid queue message)
        status = "failed"
    elif counts["cancelled"]:
        # an operator cancelled what had not started; what did run succeeded or was skipped
        status = "cancelled"
    else:
        status = "succeeded"
    return Summary(status, {name: counts.get(name, 0) for name in CALL_STATUSES})
