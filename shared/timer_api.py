"""Timer boundary: scheduled housekeeping, each a single call into a use case."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared import retention
from shared.runtime import Runtime, get_runtime


async def on_retention_timer(timer: func.TimerRequest, runtime: Runtime | None = None) -> retention.Purged:
    """Delete requests older than ``LEDGER_RETENTION_DAYS``."""
    rt = runtime or get_runtime()
    return await retention.purge(
        rt.ledger, rt.log_store, rt.events, now=datetime.now(UTC), retention_days=rt.settings.ledger_retention_days
    )
