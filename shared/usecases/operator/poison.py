"""Poison messages (``GET /api/poison``, ``POST /api/poison/requeue``): what failed, why, and back to work.

A request message the app refused has a ``rejected`` request row with the reason, found through the request
index by the message's hash; a work item points at its call, whose last error is the reason. A message the
host gave up on without the app recording anything (five failed deliveries) says so.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from shared.core import listing
from shared.core.operations import Poisoned
from shared.core.ports import Ledger, PoisonMessage, PoisonQueue, RequestIndex, WorkItem

#: Messages looked at per queue (the Queue service peeks at most 32 at a time).
PEEK_LIMIT = 32
#: Messages moved by one requeue at most.
REQUEUE_LIMIT = 1000
_HOST_GAVE_UP = "No record in the ledger: the Functions host moved it here after its delivery kept failing."


message_hash = listing.message_hash


async def _work_reason(message: PoisonMessage, ledger: Ledger) -> tuple[str, str | None, str | None]:
    try:
        item = WorkItem.from_json(message.text)
    except ValueError:
        return "Not a work item of this app: it can never be processed.", None, None
    call = await ledger.get_call(item.request_id, item.call_id)
    if call is None:
        return "The call it points to is not in the ledger (deleted by retention?).", item.request_id, item.call_id
    code, text, status = call.error_code, call.error_message, call.status.value
    reason = f"call {status}: {code}: {text}" if code else f"call {status}; {_HOST_GAVE_UP}"
    return reason, item.request_id, item.call_id


async def _request_reason(
    message: PoisonMessage, ledger: Ledger, index: RequestIndex
) -> tuple[str, str | None, str | None]:
    scan = index.entries(listing.message_partition(message_hash(message.text)), None, None, None, page_size=5)
    async for key, _ in scan:
        request = await ledger.read_request(listing.request_id_of(key))
        if request is not None and request.reason:
            return _with_errors(request.reason, request.errors), request.request_id, None
    return _HOST_GAVE_UP, None, None


def _with_errors(reason: str, errors: Iterable[Mapping[str, str]] | None) -> str:
    """The reason, and each field it names (``/subjects: …``) from the request's ``errors``."""
    fields = [f"{e.get('pointer') or e.get('header')}: {e.get('detail')}" for e in errors or ()]
    return f"{reason} ({'; '.join(fields)})" if fields else reason


async def peek_all(queues: Iterable[PoisonQueue], *, ledger: Ledger, index: RequestIndex) -> list[Poisoned]:
    """The first messages of every poison queue, each with its reason."""
    found: list[Poisoned] = []
    for queue in queues:
        for message in await queue.peek(PEEK_LIMIT):
            if queue.name.startswith("provisioning-work"):
                reason, request_id, call_id = await _work_reason(message, ledger)
            else:
                reason, request_id, call_id = await _request_reason(message, ledger, index)
            found.append(Poisoned(queue.name, message, reason, request_id, call_id))
    return found


async def requeue(queue: PoisonQueue, message_ids: Collection[str] | None) -> int:
    """Move messages (all, or those named) back to their source queue; how many moved."""
    return await queue.requeue(message_ids, REQUEUE_LIMIT)
