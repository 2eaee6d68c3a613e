"""The emulator's shared state: what every route reads and the control API changes.

One ``Emulator`` per application, stored under ``EMULATOR`` in the aiohttp app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulator.calls import CallLog
from emulator.config import EmulatorConfig
from emulator.entra import EntraIssuer
from emulator.faults import FaultQueue, retry_after_text
from emulator.identity import TokenIssuer
from emulator.ratelimit import RateLimiter, RateScope, retry_after_header
from emulator.responses import GraphError
from emulator.tenant import JobSpec, TenantState

__all__ = ["EMULATOR", "Emulator"]


@dataclass
class Emulator:
    """Everything the routes share: tenant state, token issuers, limiter, faults and the call log."""

    config: EmulatorConfig
    state: TenantState
    issuer: TokenIssuer
    limiter: RateLimiter
    rate_scope: RateScope
    faults: FaultQueue
    calls: CallLog
    latency_ms: int
    #: Entra's client-credentials endpoint for the app's own callers (the devhost's Easy Auth trusts it).
    entra: EntraIssuer
    #: ``Retry-After`` values the rate limit's 429s send, in turn (None in the list: no header); None: the
    #: real wait, rounded up to whole seconds.
    throttle_retry_after: list[float | str | None] | None = None
    throttle_turn: int = 0

    def reset(self) -> None:
        """Back to the tenant file's initial state; tokens stay valid, runtime rate/latency settings stay."""
        self.state.reset()
        self.limiter.reset()
        self.faults.clear()
        self.calls.clear()
        self.throttle_turn = 0

    def throttle_header(self, wait_seconds: float) -> str | None:
        """The ``Retry-After`` for the next rate-limit 429 (None: send none)."""
        if self.throttle_retry_after is None:
            return retry_after_header(wait_seconds)
        value = self.throttle_retry_after[self.throttle_turn % len(self.throttle_retry_after)]
        self.throttle_turn += 1
        return None if value is None else retry_after_text(value)

    def find_job(self, sp_id: str, job_id: str) -> JobSpec:
        """The job, or Graph's 404 for an unknown service principal or job."""
        jobs = self.state.tenant.find_sp(sp_id)
        if jobs is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{sp_id}' does not exist or one of its queried reference-property objects are not present.",
            )
        job = jobs.get(job_id)
        if job is None:
            raise GraphError(404, "ResourceNotFound", f"The synchronization job '{job_id}' was not found.")
        return job

    def job_status(self, job: JobSpec) -> dict[str, Any]:
        """The job's ``status`` (a control-API override wins over the tenant file)."""
        status = dict(self.state.job_state(job).status_override or job.status)
        if status.get("code") == "Quarantine" and not status.get("quarantine"):
            status["quarantine"] = {
                "currentBegan": "2024-01-01T00:00:00Z",
                "nextAttempt": "2099-01-01T00:00:00Z",
                "reason": "EncounteredQuarantineException",
                "seriesBegan": "2024-01-01T00:00:00Z",
                "seriesCount": 1,
                "error": {
                    "code": "SystemForCrossDomainIdentityManagementInvalidCredentials",
                    "message": "The credentials supplied to the target application were rejected.",
                    "tenantActionable": True,
                },
            }
        status.setdefault("countSuccessiveCompleteFailures", 0)
        status.setdefault("escrowsPruned", False)
        status.setdefault("progress", [])
        status.setdefault("synchronizedEntryCountByType", [])
        return status


EMULATOR = web.AppKey("emulator", Emulator)
