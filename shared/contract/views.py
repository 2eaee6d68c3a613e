"""The JSON a caller reads about a request (pure): request row + call rows → response body.

Internal bookkeeping (ETags, claim deadlines, raw log chunks) is not shown; outcome fields are shown
exactly as Graph reported them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.core import aggregate, textsplit

_REQUEST_FIELDS = (
    "eventId",
    "source",
    "target",
    "servicePrincipalId",
    "jobId",
    "ruleId",
    "status",
    "reason",
    "requestedBy",
    "createdAt",
    "updatedAt",
)
_CALL_FIELDS = (
    "status",
    "ruleId",
    "ruleSource",
    "attempts",
    "notBefore",
    "nextAttemptAt",
    "result",
    "action",
    "errorCode",
    "errorMessage",
    "recommendedAction",
    "changeId",
    "reportableIdentifier",
    "targetObjectId",
    "failedStep",
    "graphRequestId",
    "httpStatus",
    "completedAt",
)


def _json_value(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def call_view(call: Mapping[str, Any], *, include_log: bool, blob_log: str | None = None) -> dict[str, Any]:
    """One call as the caller sees it."""
    view: dict[str, Any] = {"callId": call["RowKey"]}
    try:
        view["subject"] = json.loads(str(call.get("subject", "null")))
    except ValueError:
        view["subject"] = None
    for name in _CALL_FIELDS:
        if call.get(name) is not None:
            view[name] = _json_value(call[name])
    if call.get("normalisations"):
        try:
            view["normalisations"] = json.loads(str(call["normalisations"]))
        except ValueError:
            view["normalisations"] = [str(call["normalisations"])]
    if call.get("rawKey") is not None:
        view["rawKey"] = call["rawKey"]
    if include_log:
        log = blob_log if call.get("provisioningLogBlob") else textsplit.from_properties("provisioningLog", call)
        if log is not None:
            view["provisioningLog"] = log
    return view


def request_view(
    request: Mapping[str, Any],
    calls: Sequence[Mapping[str, Any]],
    *,
    include_logs: bool,
    blob_logs: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The whole request: its own fields, counts by status, and every call."""
    view: dict[str, Any] = {"requestId": request["PartitionKey"]}
    for name in _REQUEST_FIELDS:
        if request.get(name) is not None:
            view[name] = _json_value(request[name])
    for name in ("normalisations", "errors"):
        if request.get(name):
            try:
                view[name] = json.loads(str(request[name]))
            except ValueError:
                view[name] = [str(request[name])]
    view["counts"] = {name: int(request.get(f"{name}Count") or 0) for name in aggregate.CALL_STATUSES}
    blobs = blob_logs or {}
    view["calls"] = [call_view(c, include_log=include_logs, blob_log=blobs.get(str(c["RowKey"]))) for c in calls]
    return view


def is_pending(request: Mapping[str, Any]) -> bool:
    """True while any call may still change."""
    return request.get("status") == aggregate.PENDING


def graph_answer(call: Mapping[str, Any], graph_base_url: str, blob_log: str | None) -> tuple[int, Any]:
    """A finished call as Graph itself answered it: the ``stringKeyStringValuePair``, or Graph's error body."""
    status = str(call.get("status"))
    http_status = call.get("httpStatus")
    # a 200 whose stringKeyStringValuePair could not be read at all (HTML from a front door, say) has no key
    # to give back: it is answered as the error it is, not as an empty pair
    answered = status == "failed" and http_status == 200 and call.get("graphKey") is not None
    if status in ("succeeded", "skipped") or answered:
        log = blob_log if call.get("provisioningLogBlob") else textsplit.from_properties("provisioningLog", call)
        context = f"{graph_base_url}/$metadata#microsoft.graph.stringKeyStringValuePair"
        return 200, {"@odata.context": context, "key": call.get("graphKey"), "value": log}
    error = {
        "code": call.get("errorCode") or "ProvisioningFailed",
        "message": call.get("errorMessage") or "The provisioning call failed.",
        "innerError": {"request-id": call.get("graphRequestId")} if call.get("graphRequestId") else {},
    }
    if status == "rejected":
        return 400, {"error": error}
    code = int(http_status) if isinstance(http_status, int) and 400 <= http_status <= 599 else 502
    return code, {"error": error}
