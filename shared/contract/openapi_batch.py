"""``POST /provision/batch`` in the OpenAPI document (pure): many requests in one body, one answer per item.

Kept apart from :mod:`shared.contract.openapi` like the operator routes; ``openapi.document`` merges
:func:`paths` and :func:`schemas` into the one document it serves.
"""

from __future__ import annotations

from typing import Any

_REF = "#/components/schemas/"
_PROBLEM = {"application/problem+json": {"schema": {"$ref": f"{_REF}ProblemDetails"}}}
#: Items in one batch (``shared.usecases.batch.MAX_REQUESTS``; a unit test keeps the two equal).
MAX_ITEMS = 1000


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PROBLEM}


def paths() -> dict[str, Any]:
    """The batch path."""
    return {
        "/provision/batch": {
            "post": {
                "operationId": "ProvisionBatch",
                "summary": "Up to 1,000 requests in one body; each accepted or refused on its own",
                "description": "Each item is what POST /provision takes (application/json) and gets the status it "
                "would have got alone: 202 with its requestId, or its 4xx with a problem whose pointers start "
                "at /requests/{index}; 503 for an item whose dependency failed (resend it: an eventId makes "
                "that idempotent). One item's failure never stops the others.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"{_REF}BatchRequest"}}},
                },
                "responses": {
                    "200": {
                        "description": "One answer per item, in item order",
                        "content": {"application/json": {"schema": {"$ref": f"{_REF}BatchResult"}}},
                    },
                    "400": _problem("Not a batch: not an object, unknown fields, or not 1 to 1,000 requests"),
                    "411": _problem("The body arrived empty because it was sent without Content-Length"),
                    "413": _problem("Body over 8 MiB"),
                    "415": _problem("Not JSON"),
                    "503": _problem("Our own storage did not answer; retry after Retry-After"),
                },
            }
        }
    }


def schemas() -> dict[str, Any]:
    """The batch route's schemas (an item is a ``ProvisioningRequest``)."""
    return {
        "BatchRequest": {
            "type": "object",
            "description": "Provisioning requests, each as POST /provision takes it",
            "properties": {
                "requests": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_ITEMS,
                    "items": {"$ref": f"{_REF}ProvisioningRequest"},
                }
            },
            "required": ["requests"],
            "additionalProperties": False,
        },
        "BatchItemResult": {
            "type": "object",
            "description": "One item's answer: 202 and its request, or the 4xx/503 it got and why",
            "properties": {
                "index": {"type": "integer", "minimum": 0},
                "status": {"type": "integer"},
                "requestId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "problem": {"$ref": f"{_REF}ProblemDetails"},
            },
            "required": ["index", "status"],
        },
        "BatchResult": {
            "type": "object",
            "properties": {"value": {"type": "array", "items": {"$ref": f"{_REF}BatchItemResult"}}},
            "required": ["value"],
        },
    }
