"""The operator routes' inputs and outputs (pure): list filters from a query string, summaries, targets, poison.

Every refusal is a ``400`` problem naming the query parameter at fault (``{"parameter": …}`` is not an RFC
9457 member, so the pointer is ``/{parameter}`` into the query, as the OpenAPI document describes).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from shared.contract.problems import FieldError, Problem
from shared.core import listing
from shared.core.listing import ListFilter, Page, Summary
from shared.core.operations import Health, Poisoned
from shared.core.records import Attempt, camel, round_call_fields, shown_call_fields
from shared.core.vocabulary import CallStatus, RequestStatus, Source

LIST_PARAMETERS = ("status", "target", "source", "eventId", "objectId", "since", "until", "top", "continuation")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,1024}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEY = re.compile(r"[0-9a-f]{32}")


def _bad(parameter: str, detail: str) -> Problem:
    return Problem.invalid(
        "Invalid query parameter",
        f"The query parameter {parameter} is not valid: {detail}.",
        FieldError(f"/{parameter}", detail),
        slug="invalid-query",
    )


def _datetime(parameter: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise _bad(parameter, "must be an RFC 3339 date-time such as 2026-12-02T09:00:00Z") from exc
    if value.tzinfo is None:
        raise _bad(parameter, "must carry a time zone (Z or an offset)")
    return value


def encode_continuation(key: str) -> str:
    """The opaque token a ``nextLink`` carries: where the next page starts."""
    return base64.urlsafe_b64encode(bytes.fromhex(key)).decode("ascii").rstrip("=")


def _decode_continuation(text: str) -> str:
    if _TOKEN.fullmatch(text) is None:
        raise _bad("continuation", "is not a token this service handed out")
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).hex()
    except (binascii.Error, ValueError) as exc:
        raise _bad("continuation", "is not a token this service handed out") from exc
    if _KEY.fullmatch(key) is None:
        raise _bad("continuation", "is not a token this service handed out")
    return key


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise _bad(name, f"must be one of {', '.join(allowed)}")
    return value


def _top(text: str | None) -> int:
    if text is None:
        return listing.DEFAULT_TOP
    if re.fullmatch(r"[0-9]{1,4}", text) is None or not 1 <= int(text) <= listing.MAX_TOP:
        raise _bad("top", f"must be a whole number from 1 to {listing.MAX_TOP}")
    return int(text)


def list_filter(params: Mapping[str, str], targets: Mapping[str, object]) -> ListFilter:
    """The filter a ``GET /api/provision`` query asks for, or a 400 problem naming the parameter."""
    unknown = sorted(set(params) - set(LIST_PARAMETERS) - {"code"})
    if unknown:
        raise _bad(unknown[0], f"is not a filter; use {', '.join(LIST_PARAMETERS)}")
    for name in ("target", "eventId", "objectId"):
        text = params.get(name)
        if text is not None and _TEXT.fullmatch(text) is None:
            raise _bad(name, "must be 1-1024 characters without control characters")
    status = _choice(params, "status", tuple(s.value for s in RequestStatus))
    source = _choice(params, "source", tuple(s.value for s in Source))
    target = _choice(params, "target", tuple(targets))
    since = _datetime("since", params["since"]) if params.get("since") is not None else None
    until = _datetime("until", params["until"]) if params.get("until") is not None else None
    if since is not None and until is not None and since > until:
        raise _bad("until", "must not be before since")
    continuation = params.get("continuation")
    return ListFilter(
        status=RequestStatus(status) if status is not None else None,
        target=target,
        source=Source(source) if source is not None else None,
        event_id=params.get("eventId"),
        object_id=params.get("objectId"),
        since=since,
        until=until,
        top=_top(params.get("top")),
        after=_decode_continuation(continuation) if continuation is not None else None,
    )


def next_query(params: Mapping[str, str], next_after: str) -> dict[str, str]:
    """The query of the next page: the same filters, and where to go on from."""
    query = {k: v for k, v in params.items() if k in LIST_PARAMETERS and k != "continuation"}
    query["continuation"] = encode_continuation(next_after)
    return query


def _json_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def summary_view(summary: Summary) -> dict[str, Any]:
    """One request as a line of the list."""
    request = summary.request
    view: dict[str, Any] = {"requestId": summary.request_id}
    for name in ("event_id", "source", "target", "status", "created_at", "updated_at"):
        value = getattr(request, name)
        if value is not None:
            view[camel(name)] = _json_value(value)
    view["counts"] = {status.value: int(request.counts.get(status, 0)) for status in CallStatus}
    view["callCount"] = request.call_count
    view["objectIds"] = list(summary.object_ids)
    return view


def page_view(page: Page, next_link: str | None) -> dict[str, Any]:
    """``{"value": [...], "nextLink"?}``."""
    body: dict[str, Any] = {"value": [summary_view(s) for s in page.summaries]}
    if next_link is not None:
        body["nextLink"] = next_link
    return body


# --- attempts, targets, poison ------------------------------------------------------------------------------------

#: What an archived round shows: its outcome as it was when the retry cleared it.
_ATTEMPT_FIELDS = (
    "status",
    "attempts",
    *(name for name in shown_call_fields() if name in round_call_fields()),
    "last_attempt_at",
    "retried_at",
    "retried_by",
)


def attach_attempts(body: dict[str, Any], attempts: Sequence[Attempt]) -> dict[str, Any]:
    """``include=attempts``: each call gets ``attemptHistory``, its earlier rounds, oldest first (the current
    round is the call itself)."""
    by_call: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        entry: dict[str, Any] = {"attemptNumber": attempt.number}
        for name in _ATTEMPT_FIELDS:
            value = getattr(attempt.call, name)
            if value is not None:
                entry[camel(name)] = _json_value(value)
        by_call.setdefault(attempt.call.call_id, []).append(entry)
    for call in body.get("calls", []):
        call["attemptHistory"] = by_call.get(str(call.get("callId")), [])
    return body


def target_view(health: Health) -> dict[str, Any]:
    """One target's health."""
    job: dict[str, Any] = {"code": health.job.code if health.job is not None else None}
    if health.job is not None and health.job.code == "Quarantine":
        job["quarantine"] = {"reason": health.job.reason}
    if health.job_error is not None:
        job["error"] = health.job_error
    return {
        "name": health.name,
        "servicePrincipalId": health.service_principal_id,
        "jobId": health.job_id,
        "ruleId": health.rule_id,
        "jobStatus": job,
        "backlog": dict(health.backlog),
        "estimatedDrainSeconds": health.drain_seconds,
    }


def poison_view(poisoned: Poisoned) -> dict[str, Any]:
    """One poison message with its reason."""
    message = poisoned.message
    view: dict[str, Any] = {
        "queue": poisoned.queue,
        "messageId": message.message_id,
        "insertedAt": _json_value(message.inserted_at),
        "dequeueCount": message.dequeue_count,
        "reason": poisoned.reason,
        "body": message.text[:4096],
    }
    if poisoned.request_id is not None:
        view["requestId"] = poisoned.request_id
    if poisoned.call_id is not None:
        view["callId"] = poisoned.call_id
    return view


_MESSAGE_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
MAX_REQUEUE_IDS = 1000


def requeue_body(data: Any, queues: tuple[str, ...]) -> tuple[str, list[str] | None]:
    """``{"queue", "messageIds"?}`` checked: a known poison queue, and message ids as the service writes them."""
    if not isinstance(data, dict):
        raise Problem.invalid("Invalid body", "Send a JSON object.", FieldError("", "must be an object"))
    unknown = sorted(set(data) - {"queue", "messageIds"})
    if unknown:
        raise Problem.invalid("Invalid body", "Unknown field.", FieldError(f"/{unknown[0]}", "is not a field"))
    queue = data.get("queue")
    if queue not in queues:
        raise Problem.invalid(
            "Invalid body", "Name a poison queue.", FieldError("/queue", f"must be one of {', '.join(queues)}")
        )
    if "messageIds" not in data:  # absent: every message; an explicit null is not a list (the schema's type)
        return str(queue), None
    ids = data["messageIds"]
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_REQUEUE_IDS:
        raise Problem.invalid(
            "Invalid body",
            "messageIds must be a list.",
            FieldError("/messageIds", f"must be a list of 1-{MAX_REQUEUE_IDS} message ids"),
        )
    for i, value in enumerate(ids):
        if not isinstance(value, str) or _MESSAGE_ID.fullmatch(value) is None:
            raise Problem.invalid("Invalid body", "Not a message id.", FieldError(f"/messageIds/{i}", "is not an id"))
    return str(queue), [str(v) for v in ids]


def retry_advice(retry_link: str) -> dict[str, Any]:
    """What a repeated event whose request failed is told: the request stands; retry it instead."""
    return {
        "links": {"retry": retry_link},
        "advice": "This eventId already made this request, and it failed: sending the same event again only "
        "answers this request. To try its failed calls again, POST to links.retry.",
    }
