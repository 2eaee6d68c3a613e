"""The operator routes in the OpenAPI document (pure): list, retry, cancel, targets, poison.

Kept apart from :mod:`shared.contract.openapi` so the request routes and these can change independently;
``openapi.document`` merges :func:`paths` and :func:`schemas` into the one document it serves.
"""

from __future__ import annotations

from typing import Any

from shared.core import aggregate, listing
from shared.core.vocabulary import RequestStatus, Source

_REF = "#/components/schemas/"
_PROBLEM = {"application/problem+json": {"schema": {"$ref": f"{_REF}ProblemDetails"}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PROBLEM}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF + name}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_REQUEST_ID = {
    "name": "requestId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_COMMON = {
    "404": _problem("Unknown request"),
    "503": _problem("Our own storage did not answer; retry after Retry-After"),
}
_COUNTS = {"type": "object", "properties": {s: {"type": "integer"} for s in aggregate.CALL_STATUSES}}


def paths() -> dict[str, Any]:
    """The operator paths."""
    statuses = [s.value for s in RequestStatus]
    return {
        "/provision": {
            "get": {
                "operationId": "ListProvisioningRequests",
                "summary": "Requests newest first, by filter; a page at a time (nextLink)",
                "parameters": [
                    _query("status", "The request's status", {"type": "string", "enum": statuses}),
                    _query("target", "A configured target's name", {"type": "string", "maxLength": 1024}),
                    _query("source", "How it came in", {"type": "string", "enum": [s.value for s in Source]}),
                    _query("eventId", "The caller's event id", {"type": "string", "maxLength": 1024}),
                    _query("objectId", "A subject's objectId (any case)", {"type": "string", "maxLength": 1024}),
                    _query("since", "Created at or after (RFC 3339)", {"type": "string", "format": "date-time"}),
                    _query("until", "Created at or before (RFC 3339)", {"type": "string", "format": "date-time"}),
                    _query(
                        "top",
                        "Page size",
                        {"type": "integer", "minimum": 1, "maximum": listing.MAX_TOP, "default": listing.DEFAULT_TOP},
                    ),
                    _query("continuation", "From nextLink: where the page starts", {"type": "string"}),
                ],
                "responses": {
                    "200": _json("RequestList", "One page, newest first"),
                    "400": {
                        "description": "A filter is invalid (errors[] names the parameter: /status, /top…); or, "
                        "as text, a URL longer than the host reads (8 KiB), refused before the app",
                        "content": {**_PROBLEM, "text/plain": {"schema": {"type": "string"}}},
                    },
                    "414": {"description": "URL too long (answered by the host)"},
                    "503": _COMMON["503"],
                },
            }
        },
        "/provision/{requestId}/retry": {
            "post": {
                "operationId": "RetryProvisioningRequest",
                "summary": "Failed calls get a new round, paced like any other; earlier rounds stay readable",
                "parameters": [_REQUEST_ID],
                "responses": {
                    "202": _json(
                        "Retried",
                        "Recorded and queued; poll Location (?include=attempts shows the earlier rounds)",
                        {
                            "Location": {"schema": {"type": "string", "format": "uri"}},
                            "Retry-After": {"schema": {"type": "integer"}},
                        },
                    ),
                    "409": _problem("No call failed: nothing to retry"),
                    **_COMMON,
                },
            }
        },
        "/provision/{requestId}/cancel": {
            "post": {
                "operationId": "CancelProvisioningRequest",
                "summary": "Calls not yet started are cancelled and never sent; a running call finishes",
                "parameters": [_REQUEST_ID],
                "responses": {
                    "200": _json("RequestStatus", "The request after the cancel"),
                    "409": _problem("The request is already finished"),
                    **_COMMON,
                },
            }
        },
        "/targets": {
            "get": {
                "operationId": "ListTargets",
                "summary": "Every configured target: job status, backlog, estimated drain time",
                "responses": {"200": _json("TargetList", "Every target"), "503": _COMMON["503"]},
            }
        },
        "/poison": {
            "get": {
                "operationId": "ListPoisonMessages",
                "summary": "Messages of both poison queues (up to 32 each), with the ledger's reason",
                "responses": {"200": _json("PoisonList", "The messages"), "503": _COMMON["503"]},
            }
        },
        "/poison/requeue": {
            "post": {
                "operationId": "RequeuePoisonMessages",
                "summary": "Move poison messages back to their source queue (sent before deleted)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"{_REF}RequeueRequest"}}},
                },
                "responses": {
                    "200": _json("Requeued", "How many moved"),
                    "400": _problem("Unknown queue or malformed messageIds"),
                    "411": _problem("No Content-Length"),
                    "413": _problem("Body over 256 KiB"),
                    "415": _problem("Not JSON"),
                    "503": _COMMON["503"],
                },
            }
        },
    }


def _object(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties, "required": required}


_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}


def schemas() -> dict[str, Any]:
    """The operator routes' schemas."""
    backlog = {s.value: {"type": "integer"} for s in listing.BACKLOG_STATUSES}
    return {
        "RequestSummary": _object(
            {
                "requestId": _STRING,
                "eventId": _STRING,
                "source": _STRING,
                "target": _STRING,
                "status": {"type": "string", "enum": [s.value for s in RequestStatus]},
                "createdAt": {"type": "string", "format": "date-time"},
                "updatedAt": {"type": "string", "format": "date-time"},
                "counts": _COUNTS,
                "callCount": {"type": "integer"},
                "objectIds": {"type": "array", "items": _STRING},
            },
            ["requestId", "status", "counts", "callCount", "objectIds"],
            "One request as a line of the list",
        ),
        "RequestList": _object(
            {
                "value": {"type": "array", "items": {"$ref": f"{_REF}RequestSummary"}},
                "nextLink": {"type": "string", "format": "uri"},
            },
            ["value"],
            "A page of requests, newest first",
        ),
        "Retried": _object(
            {"requestId": _STRING, "status": _STRING, "retriedCalls": {"type": "array", "items": _STRING}},
            ["requestId", "status", "retriedCalls"],
            "The retry was recorded",
        ),
        "Target": _object(
            {
                "name": _STRING,
                "servicePrincipalId": _STRING,
                "jobId": _STRING,
                "ruleId": _NULLABLE_STRING,
                "jobStatus": _object(
                    {"code": _NULLABLE_STRING, "quarantine": {"type": "object"}, "error": _STRING},
                    ["code"],
                    "The job's status.code from Graph (cached briefly); null when Graph did not say",
                ),
                "backlog": _object(backlog, list(backlog), "Unfinished calls by status"),
                "estimatedDrainSeconds": {"type": "integer"},
            },
            ["name", "servicePrincipalId", "jobId", "jobStatus", "backlog", "estimatedDrainSeconds"],
            "One configured target's health",
        ),
        "TargetList": _object(
            {"value": {"type": "array", "items": {"$ref": f"{_REF}Target"}}}, ["value"], "Every configured target"
        ),
        "PoisonMessage": _object(
            {
                "queue": _STRING,
                "messageId": _STRING,
                "insertedAt": _NULLABLE_STRING,
                "dequeueCount": {"type": "integer"},
                "reason": _STRING,
                "body": _STRING,
                "requestId": _STRING,
                "callId": _STRING,
            },
            ["queue", "messageId", "reason", "body"],
            "A message the host or intake gave up on, with why",
        ),
        "PoisonList": _object(
            {"value": {"type": "array", "items": {"$ref": f"{_REF}PoisonMessage"}}}, ["value"], "Poison messages"
        ),
        "RequeueRequest": _object(
            {
                "queue": {"type": "string", "enum": ["provisioning-requests-poison", "provisioning-work-poison"]},
                "messageIds": {"type": "array", "items": _STRING, "minItems": 1, "maxItems": 1000},
            },
            ["queue"],
            "Which messages to move back (all when messageIds is absent)",
        ),
        "Requeued": _object({"queue": _STRING, "requeued": {"type": "integer"}}, ["queue", "requeued"], "How many"),
    }


def with_paths(base: dict[str, Any]) -> dict[str, Any]:
    """``base`` paths with the operator's added (a path both name, ``/provision``, gets both methods)."""
    merged = {path: dict(methods) for path, methods in base.items()}
    for path, methods in paths().items():
        merged.setdefault(path, {}).update(methods)
    return merged
