"""Queue boundary: messages in, use cases called.

``provisioning-requests`` takes the same request JSON as ``POST /api/provision`` (or a structured
CloudEvent). A message that can never be valid is recorded ``rejected`` in the ledger with its reasons and
moved to ``provisioning-requests-poison`` at once, instead of failing five times first; a failure of our
own storage raises, so the host retries the message. ``provisioning-work`` messages are one Graph call each.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import azure.functions as func

from shared import telemetry
from shared.contract.names import REQUEST_ROW, REQUESTS_POISON_QUEUE
from shared.contract.problems import FieldError, Problem
from shared.core import aggregate, ids
from shared.core.models import ProvisioningRequest
from shared.core.ports import WorkItem
from shared.core.request_ids import stable_request_id
from shared.runtime import Runtime, get_runtime
from shared.usecases import intake

log = telemetry.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


async def on_work_message(
    msg: func.QueueMessage, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> None:
    """Process one work item. A body that is not a work item raises, so the host poisons it after retries."""
    with telemetry.bound(invocationId=invocation_id, messageId=msg.id):
        item = WorkItem.from_json(msg.get_body())
        rt = runtime or get_runtime()
        await rt.worker.process(item)


def parse_request_message(body: bytes) -> tuple[ProvisioningRequest, list[str]]:
    """A message body → the validated request, exactly as ``POST /api/provision`` reads it; a Problem if not."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem(
            400,
            "Malformed JSON",
            f"The message is not valid JSON: {type(exc).__name__}",
            "malformed-json",
            (FieldError("", "is not valid JSON"),),
        ) from exc
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
        accepted = await intake.accept(
            request,
            source="queue",
            settings=rt.settings,
            ledger=rt.ledger,
            queue=rt.work_queue,
            events=rt.events,
            pending=rt.pending,
            now=_now(),
            normalisations=notes,
        )
    except Problem as problem:
        await _reject(rt, msg, body, problem)
        return
    log.info("queued request accepted", extra={"requestId": accepted.request_id, "messageId": msg.id})


async def _reject(rt: Runtime, msg: func.QueueMessage, body: bytes, problem: Problem) -> None:
    """Record why the message can never be valid, then move it to the poison queue ourselves."""
    now = _now()
    message_id = msg.id or ""
    request_id = stable_request_id(now, f"queue-message:{message_id}:{body!r}")
    event_id = _event_id_of(body)
    row = {
        "PartitionKey": request_id,
        "RowKey": REQUEST_ROW,
        "requestId": request_id,
        "eventId": event_id,
        "source": "queue",
        "status": "rejected",
        "reason": f"{problem.title}: {problem.detail}",
        "errors": json.dumps([{"pointer": e.pointer, "detail": e.detail} for e in problem.errors]),
        "queueMessageId": message_id,
        # the poison copy's text, hashed: how GET /api/poison finds this row again (shared.usecases.operator.poison)
        "messageHash": hashlib.sha256(body.decode("utf-8", errors="replace").encode("utf-8")).hexdigest(),
        "poisonQueue": REQUESTS_POISON_QUEUE,
        "callCount": 0,
        **{f"{name}Count": 0 for name in aggregate.CALL_STATUSES},
        "target": _target_of(body),
        "createdAt": now,
        "updatedAt": now,
    }
    await rt.ledger.create(row, [], tolerate_existing=True)
    await rt.requests_poison_queue.send_text(body.decode("utf-8", errors="replace"))
    log.warning(
        "queued request rejected and moved to the poison queue",
        extra={"requestId": request_id, "messageId": message_id, "reason": problem.title},
    )


def _field_of(body: bytes, name: str) -> str | None:
    """A short string field of a rejected body, for the ledger row (checked like any id before use)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("data"), dict) and "specversion" in data:
        data = data["data"]
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 200 and ids.is_object_id(value) else None


def _event_id_of(body: bytes) -> str | None:
    return _field_of(body, "eventId")


def _target_of(body: bytes) -> str | None:
    target = _field_of(body, "target")
    return target if target is not None and ids.is_target_name(target) else None
