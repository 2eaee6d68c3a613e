"""The JSON a caller reads about a request (pure): request and call records → response body.

Internal bookkeeping (ETags, claim deadlines, raw log chunks) is not shown; outcome fields are shown
exactly as Graph reported them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from shared.core.records import CallRecord, RequestRecord, camel, shown_call_fields
from shared.core.vocabulary import CallStatus, RequestStatus

_REQUEST_FIELDS = (
    "event_id",
    "source",
    "target",
    "service_principal_id",
    "job_id",
    "rule_id",
    "priority",
    "status",
    "reason",
    "requested_by",
    "created_at",
    "updated_at",
)
#: Counted for every request; ``cancelled`` is shown once a call was cancelled (bodies stay as they were).
_ALWAYS_COUNTED = tuple(s for s in CallStatus if s is not CallStatus.CANCELLED)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [dict(v) if isinstance(v, Mapping) else v for v in value]
    return value


def call_view(call: CallRecord, *, include_log: bool, blob_log: str | None = None) -> dict[str, Any]:
    """One call as the caller sees it: every field :mod:`shared.core.records` marks shown, when set."""
    view: dict[str, Any] = {"callId": call.call_id, "subject": dict(call.subject) if call.subject else None}
    for name in shown_call_fields():
        value = getattr(call, name)
        if value is not None and value != ():
            view[camel(name)] = _json_value(value)
    if include_log:
        log = blob_log if call.provisioning_log_blob else call.provisioning_log
        if log is not None:
            view["provisioningLog"] = log
    return view


def request_view(
    request: RequestRecord,
    calls: Sequence[CallRecord],
    *,
    include_logs: bool,
    blob_logs: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The whole request: its own fields, counts by status, and every call."""
    view: dict[str, Any] = {"requestId": request.request_id}
    for name in _REQUEST_FIELDS:
        value = getattr(request, name)
        if value is not None:
            view[camel(name)] = _json_value(value)
    for name in ("normalisations", "errors"):
        value = getattr(request, name)
        if value:
            view[name] = _json_value(value)
    # the calls read with the request are the truth; the row's counts may lag them (a claim does not refresh it)
    counts: Mapping[CallStatus, int] = Counter(c.status for c in calls) if calls else request.counts
    counted = [*_ALWAYS_COUNTED, *(s for s in (CallStatus.CANCELLED,) if counts.get(s))]
    view["counts"] = {status.value: int(counts.get(status, 0)) for status in counted}
    blobs = blob_logs or {}
    view["calls"] = [call_view(c, include_log=include_logs, blob_log=blobs.get(c.call_id)) for c in calls]
    return view


def is_pending(request: RequestRecord) -> bool:
    """True while any call may still change."""
    return request.status is RequestStatus.PENDING


def graph_answer(call: CallRecord, graph_base_url: str, blob_log: str | None) -> tuple[int, Any]:
    """A finished call as Graph itself answered it: the ``stringKeyStringValuePair``, or Graph's error body."""
    http_status = call.http_status
    # a 200 whose stringKeyStringValuePair could not be read at all (HTML from a front door, say) has no key
    # to give back: it is answered as the error it is, not as an empty pair
    answered = call.status is CallStatus.FAILED and http_status == 200 and call.graph_key is not None
    if call.status in (CallStatus.SUCCEEDED, CallStatus.SKIPPED) or answered:
        log = blob_log if call.provisioning_log_blob else call.provisioning_log
        context = f"{graph_base_url}/$metadata#microsoft.graph.stringKeyStringValuePair"
        return 200, {"@odata.context": context, "key": call.graph_key, "value": log}
    error = {
        "code": call.error_code or "ProvisioningFailed",
        "message": call.error_message or "The provisioning call failed.",
        "innerError": {"request-id": call.graph_request_id} if call.graph_request_id else {},
    }
    if call.status is CallStatus.REJECTED:
        return 400, {"error": error}
    code = http_status if http_status is not None and 400 <= http_status <= 599 else 502
    return code, {"error": error}
