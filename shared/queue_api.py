"""Queue boundary: a ``provisioning-work`` message in, one call made and recorded."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared import worker
from shared.runtime import Runtime, get_runtime
from shared.work_queue import WorkItem


def _now() -> datetime:
    return datetime.now(UTC)


async def on_work_message(msg: func.QueueMessage, runtime: Runtime | None = None) -> None:
    """Process one work item. A body that is not a work item raises, so the host poisons it after retries."""
    item = WorkItem.from_json(msg.get_body())
    rt = runtime or get_runtime()
    await worker.process(
        item,
        ledger=rt.ledger,
        queue=rt.work_queue,
        graph=rt.graph,
        rules=rt.rule_discovery,
        logs=rt.log_store,
        clock=_now,
    )
