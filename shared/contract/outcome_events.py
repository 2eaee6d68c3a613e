"""The outcome event a finished request emits: CloudEvents 1.0 JSON, ``provisioning.request.finished`` (pure).

One event per terminal transition. Its ``id`` is derived from the request id, the final status and the time
the request reached it, so every copy of one transition (a sender retried after a crash) carries the same id
and consumers can drop repeats, while a request an operator retried that finishes again is a new event.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

#: contract: the CloudEvents ``type`` of an outcome event.
FINISHED_TYPE = "provisioning.request.finished"
#: contract: the Storage queue every outcome event goes to.
OUTCOMES_QUEUE = "provisioning-outcomes"
#: Internal: callbacks waiting for their next attempt (one message per attempt, delayed by visibility).
CALLBACKS_QUEUE = "provisioning-callbacks"
#: The ``source`` when no ``PUBLIC_BASE_URL`` is set (a URI-reference, as CloudEvents allows).
DEFAULT_SOURCE = "/api/provision"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def transition_key(status: str, finished_at: datetime) -> str:
    """Names one terminal transition: the status and when the request reached it (what the outbox marks)."""
    return f"{status}@{_iso(finished_at)}"


def event_id(request_id: str, status: str, finished_at: datetime) -> str:
    """The event id of one terminal transition (the same for every copy of it)."""
    stamp = finished_at.strftime("%Y%m%dT%H%M%S%fZ")
    return f"{request_id}:{status}:{stamp}"


def finished_event(
    request_id: str, status: str, finished_at: datetime, body: dict[str, Any], *, public_base_url: str | None
) -> dict[str, Any]:
    """The CloudEvents 1.0 structured JSON event; ``data`` is the body ``GET /api/provision/{id}`` answers."""
    source = f"{public_base_url.rstrip('/')}/api/provision" if public_base_url else DEFAULT_SOURCE
    return {
        "specversion": "1.0",
        "id": event_id(request_id, status, finished_at),
        "source": source,
        "type": FINISHED_TYPE,
        "subject": request_id,
        "time": _iso(finished_at),
        "datacontenttype": "application/json",
        "data": body,
    }


#: Azure Queue Storage takes at most 64 KiB per message, and ours are base64 (4 bytes for 3): an event's JSON
#: must stay within 48 KiB to go on ``provisioning-outcomes`` at all (Azurite and Azure answer 413 beyond).
QUEUE_EVENT_LIMIT_BYTES = 48 * 1024


def _size(event: dict[str, Any]) -> int:
    return len(json.dumps(event, separators=(",", ":")).encode())


def fitted(event: dict[str, Any], status_url: str) -> dict[str, Any]:
    """The event as it fits one queue message: whole, or without its calls (a claim check).

    A request of a hundred calls has a status body past the queue's limit, so its event could never be sent and
    the announcement was retried at every sweep, forever. Past :data:`QUEUE_EVENT_LIMIT_BYTES`, ``data`` keeps
    the request's own fields and counts, says how many calls it left out (``callsOmitted``), and the event
    carries CloudEvents' ``dataref`` extension: ``status_url``, where ``GET`` answers the whole body.
    """
    if _size(event) <= QUEUE_EVENT_LIMIT_BYTES:
        return event
    data = dict(event["data"])
    calls = data.pop("calls", [])
    data["callsOmitted"] = len(calls)
    smaller = {**event, "data": data, "dataref": status_url}
    if _size(smaller) <= QUEUE_EVENT_LIMIT_BYTES:
        return smaller
    # the request's own fields are bounded, but its normalisations and errors are lists: keep the essentials
    keep = ("requestId", "status", "counts", "callCount", "callsOmitted")
    return {**smaller, "data": {k: data[k] for k in keep if k in data}}
