"""Timer boundary: scheduled housekeeping, each a single call into a use case."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared import telemetry
from shared.runtime import Runtime, get_runtime
from shared.usecases import retention, sweeper
from shared.usecases.schedules import Fired


async def on_retention_timer(
    timer: func.TimerRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> retention.Purged:
    """Delete requests older than ``LEDGER_RETENTION_DAYS``."""
    with telemetry.bound(invocationId=invocation_id):
        rt = runtime or get_runtime()
        return await retention.purge(
            rt.ledger, rt.log_store, rt.events, now=datetime.now(UTC), retention_days=rt.settings.ledger_retention_days
        )


async def on_sweeper_timer(
    timer: func.TimerRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> sweeper.Swept:
    """Re-drive calls whose work message was lost; enqueue far-future calls that came within reach."""
    with telemetry.bound(invocationId=invocation_id):
        rt = runtime or get_runtime()
        return await sweeper.sweep(rt.ledger, rt.work_queue, rt.pending, now=datetime.now(UTC))


async def on_schedules_timer(
    timer: func.TimerRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> list[Fired]:
    """Submit the occurrences of PROVISIONING_SCHEDULES that are due (once each, whichever instance runs)."""
    with telemetry.bound(invocationId=invocation_id):
        rt = runtime or get_runtime()
        if not rt.settings.schedules:
            return []
        return await rt.schedule_runner.run(datetime.now(UTC))
