"""Timer boundary: scheduled housekeeping, each a single call into a use case."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared import telemetry
from shared.runtime import Runtime, get_runtime
from shared.usecases import retention, sweeper
from shared.usecases.schedules import Fired

if TYPE_CHECKING:
    import azure.functions as func


async def on_retention_timer(
    timer: func.TimerRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> retention.Purged:
    """Delete requests older than ``LEDGER_RETENTION_DAYS``."""
    with telemetry.bound(invocationId=invocation_id):
        rt = runtime or get_runtime()
        return await rt.retention.run(datetime.now(UTC))


async def on_sweeper_timer(
    timer: func.TimerRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> sweeper.Swept:
    """Re-drive calls whose work message was lost; enqueue far-future calls that came within reach."""
    with telemetry.bound(invocationId=invocation_id):
        rt = runtime or get_runtime()
        return await rt.sweeper.run(datetime.now(UTC))


async def on_backlog_timer(
    timer: func.TimerRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> int:
    """Hand free rate-limit slots to the backlog of every scope (the workers do it too, after their calls)."""
    with telemetry.bound(invocationId=invocation_id):
        rt = runtime or get_runtime()
        return await rt.dispatcher.pump_all()


async def on_schedules_timer(
    timer: func.TimerRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> list[Fired]:
    """Submit the occurrences of PROVISIONING_SCHEDULES that are due (once each, whichever instance runs)."""
    with telemetry.bound(invocationId=invocation_id):
        rt = runtime or get_runtime()
        if not rt.settings.schedules:
            return []
        return await rt.schedule_runner.run(datetime.now(UTC))
