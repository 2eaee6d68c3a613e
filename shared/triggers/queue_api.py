"""Queue boundary: messages in, use cases called.

``provisioning-requests`` takes the same request JSON as ``POST /api/provision`` (or a structured
CloudEvent). A message that can never be valid is recorded ``rejected`` in the ledger with its reasons and
moved to ``provisioning-requests-poison`` at once (``shared.usecases.rejections``), instead of failing five
times first; a failure of our own storage raises, so the host retries the message. ``provisioning-work``
messages are one Graph call each, or a wake for a scope's dispatcher (``shared.core.ports.Wake``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared import telemetry
from shared.contract.problems import Problem
from shared.core.models import ProvisioningRequest
from shared.core.ports import Wake, work_message
from shared.core.vocabulary import Source
from shared.runtime import Runtime, get_runtime
from shared.usecases import intake
from shared.usecases.outcomes import CallbackMessage

if TYPE_CHECKING:
    import azure.functions as func

log = telemetry.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


async def on_work_message(
    msg: func.QueueMessage, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> None:
    """Process one work item, or wake a scope's dispatcher. A body that is neither raises, so the host poisons it
    after retries."""
    with telemetry.bound(invocationId=invocation_id, messageId=msg.id):
        item = work_message(msg.get_body())
        rt = runtime or get_runtime()
        if isinstance(item, Wake):
            await rt.dispatcher.woken(item.scope)
            return
        await rt.worker.process(item)


async def on_callback_message(
    msg: func.QueueMessage, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> None:
    """One callback attempt from ``provisioning-callbacks`` (the next one, if needed, is queued delayed)."""
    with telemetry.bound(invocationId=invocation_id, messageId=msg.id):
        message = CallbackMessage.from_json(msg.get_body())
        rt = runtime or get_runtime()
        await rt.outcomes.deliver_callback(message)


def parse_request_message(body: bytes) -> tuple[ProvisioningRequest, list[str]]:
    """A message body → the validated request, exactly as ``POST /api/provision`` reads it; a Problem if not."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem.malformed_json(f"The message is not valid JSON: {type(exc).__name__}") from exc
    return intake.provision_request("", {}, data)


async def on_request_message(
    msg: func.QueueMessage, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> None:
    """Intake from ``provisioning-requests``: accept like HTTP, or record the rejection and poison at once."""
    with telemetry.bound(invocationId=invocation_id, messageId=msg.id):
        await _on_request_message(msg, runtime or get_runtime())


async def _on_request_message(msg: func.QueueMessage, rt: Runtime) -> None:
    body = msg.get_body()
    try:
        request, notes = parse_request_message(body)
        accepted = await rt.intake().accept(intake.AcceptCommand(request, Source.QUEUE, _now(), notes))
    except Problem as problem:
        await rt.queue_rejections.reject(msg.id or "", body, problem, _now())
        return
    log.info("queued request accepted", extra={"requestId": accepted.request_id, "messageId": msg.id})
