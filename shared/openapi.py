"""The OpenAPI 3.1 document, generated from the pydantic models (pure).

Served at ``GET /api/openapi.json`` and shipped as ``openapi.json`` (a test keeps the two identical), for
client generation, fuzzing (schemathesis) and importing the API as a Logic Apps custom connector.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from shared import api_models

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(name)}}}
    if headers:
        response["headers"] = headers
    return response


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("ProblemDetails")}}}


_POLL_HEADERS = {
    "Location": {"description": "Absolute URL of the request's status", "schema": {"type": "string", "format": "uri"}},
    "Retry-After": {"description": "Seconds to wait before polling", "schema": {"type": "integer"}},
}
# The Functions host itself answers 404 (not problem+json) for a path it routes to no function, e.g. a path
# parameter with a line break in it.
_HOST_NOT_FOUND: dict[str, Any] = {
    "description": "No route for the path (answered by the host)",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}
_UNAVAILABLE = _problem("Our own storage did not answer; retry after Retry-After (never caused by the request)")


def _or_graph_error(responses: dict[str, Any]) -> dict[str, Any]:
    """With ``Prefer: wait``, a finished call answers as Graph did: any 4xx/5xx may carry Graph's error body."""
    graph_error = {"application/json": {"schema": _ref("GraphError")}}
    return {
        code: {**response, "content": {**response.get("content", {}), **graph_error}} if code[0] in "45" else response
        for code, response in responses.items()
    }


_BAD_INPUT = {
    "400": _problem("Invalid input; errors[] names each field (JSON pointer)"),
    "413": _problem("Body over 256 KiB"),
    "415": _problem("Not JSON"),
    "422": _problem("Unknown target"),
}


def document(version: str = "0.1.0") -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    _, defs = models_json_schema([(m, "validation") for m in api_models.EXPORTED], ref_template=_REF, by_alias=True)
    schemas = defs.get("$defs", {})
    provision_body = _ref("ProvisioningRequest")
    graph_body = {
        "oneOf": [_ref("GraphProvisionBody"), _ref("GraphParameters"), _ref("Subject")],
        "description": "Graph's body; also without the parameters wrapper, or one bare subject",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "provision-on-demand",
            "version": version,
            "description": "Paced, recorded Microsoft Graph provisionOnDemand calls. Asynchronous request-reply: "
            "POST answers 202 with Location and Retry-After; GET the Location until it answers 200.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "paths": {
            "/provision": {
                "post": {
                    "operationId": "Provision",
                    "summary": "Provision subjects into a target now (or at notBefore)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": provision_body},
                            "application/cloudevents+json": {"schema": _ref("CloudEvent")},
                        },
                    },
                    "responses": {
                        "202": _json(
                            "Accepted", "Recorded and queued (or the existing request of this eventId)", _POLL_HEADERS
                        ),
                        "409": _problem("eventId already used with a different body"),
                        **_BAD_INPUT,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/provision/{requestId}": {
                "get": {
                    "operationId": "GetProvisioningStatus",
                    "summary": "The request's outcome: 202 while pending, 200 when every call is done",
                    "parameters": [
                        {
                            "name": "requestId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        },
                        {
                            "name": "include",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["provisioningLog"]},
                        },
                    ],
                    "responses": {
                        "200": _json("RequestStatus", "Every call finished"),
                        "202": _json("RequestStatus", "Still pending; poll Location again", _POLL_HEADERS),
                        "404": {
                            "description": "Unknown request; or, as text, no route for the path",
                            "content": {**_problem("")["content"], **_HOST_NOT_FOUND["content"]},
                        },
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/servicePrincipals/{servicePrincipalId}/synchronization/jobs/{jobId}/provisionOnDemand": {
                "post": {
                    "operationId": "ProvisionOnDemandGraphCompatible",
                    "summary": "Graph's own provisionOnDemand body; Prefer: wait=N for a Graph-shaped answer",
                    "parameters": [
                        {
                            "name": "servicePrincipalId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        },
                        {
                            "name": "jobId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$"},
                        },
                        {
                            "name": "Prefer",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "example": "wait=30"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": graph_body}},
                    },
                    "responses": _or_graph_error(
                        {
                            "200": _json("StringKeyStringValuePair", "Done within Prefer: wait; Graph's answer"),
                            "202": _json("Accepted", "Recorded and queued; poll Location", _POLL_HEADERS),
                            "404": _HOST_NOT_FOUND,
                            "409": _problem("eventId already used with a different body"),
                            **_BAD_INPUT,
                            "503": _UNAVAILABLE,
                            "4XX": {"description": "With Prefer: wait, Graph refused the call: its status and body"},
                            "5XX": {"description": "With Prefer: wait, Graph failed: its status (502: no answer)"},
                        }
                    ),
                }
            },
            "/health": {
                "get": {
                    "operationId": "Health",
                    "security": [],
                    "responses": {
                        "200": _json("Health", "Storage and Graph reachable"),
                        "503": _json("Health", "A dependency is unreachable"),
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }
