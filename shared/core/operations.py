"""What operator routes report (pure): a target's health and a poison message with its reason."""

from __future__ import annotations

from dataclasses import dataclass

from shared.core.ports import JobStatus, PoisonMessage


@dataclass(frozen=True)
class Health:
    """One configured target as an operator sees it."""

    name: str
    service_principal_id: str
    job_id: str
    rule_id: str | None
    job: JobStatus | None  # None: Graph did not say (an error, a stand-in without the endpoint)
    job_error: str | None
    backlog: dict[str, int]
    drain_seconds: int


@dataclass(frozen=True)
class Poisoned:
    """A peeked poison message: its queue, the ledger's reason, and the request (and call) it belongs to."""

    queue: str
    message: PoisonMessage
    reason: str
    request_id: str | None
    call_id: str | None = None
