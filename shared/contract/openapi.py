"""The OpenAPI 3.1 document, generated from the pydantic models (pure), and its Swagger 2.0 form.

Served at ``GET /api/openapi.json`` and shipped as ``openapi.json`` (a test keeps the two identical), for
client generation and fuzzing (schemathesis). Logic Apps and Power Platform custom connectors import only
OpenAPI 2.0 (Swagger), so :func:`swagger2` derives that form, shipped as
``connector/apiDefinition.swagger.json``: the same operations, with the few 3.1 constructs 2.0 lacks
(``null`` types, ``oneOf``, ``const``) written the 2.0 way. After changing an answer, regenerate both with
``python -m shared.contract.openapi`` (tests compare them with what this module generates).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from shared.contract import api_models, openapi_batch, openapi_operator

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
_MISCONFIGURED = _problem(
    "Type misconfigured: an app setting is invalid (detail names it); no Retry-After, retrying cannot help"
)
_LENGTH_REQUIRED = _problem(
    "The body arrived empty because it was sent without Content-Length (chunked): the Functions host drops such "
    "bodies; send Content-Length"
)


def _or_graph_error(responses: dict[str, Any]) -> dict[str, Any]:
    """With ``Prefer: wait``, a finished call answers as Graph did: any 4xx/5xx may carry Graph's error body."""
    graph_error = {"application/json": {"schema": _ref("GraphError")}}
    return {
        code: {**response, "content": {**response.get("content", {}), **graph_error}} if code[0] in "45" else response
        for code, response in responses.items()
    }


_BAD_INPUT = {
    "400": _problem("Invalid input; errors[] names each field (JSON pointer)"),
    "411": _LENGTH_REQUIRED,
    "413": _problem("Body over 256 KiB"),
    "415": _problem("Not JSON"),
    "422": _problem("Unknown target"),
}


_REQUEST_ID: dict[str, Any] = {
    "name": "requestId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
_INCLUDE: dict[str, Any] = {
    "name": "include",
    "in": "query",
    "required": False,
    "description": "provisioningLog: each call's log; attempts: each call's earlier rounds (after a retry)",
    "schema": {"type": "string", "enum": ["provisioningLog", "attempts", "provisioningLog,attempts"]},
}
_GRAPH_PATH: list[dict[str, Any]] = [
    {"name": "servicePrincipalId", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}},
    {
        "name": "jobId",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$"},
    },
]
_STATUS_RESPONSES: dict[str, Any] = {
    "200": _json("RequestStatus", "Every call finished"),
    "202": _json("RequestStatus", "Still pending; poll Location again", _POLL_HEADERS),
    "404": {
        "description": "Unknown request; or, as text, no route for the path",
        "content": {**_problem("")["content"], **_HOST_NOT_FOUND["content"]},
    },
    "500": _MISCONFIGURED,
    "503": _UNAVAILABLE,
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
    doc: dict[str, Any] = {
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
                        "500": _MISCONFIGURED,
                        "503": _UNAVAILABLE,
                    },
                }
            },
            "/provision/{requestId}": {
                "get": {
                    "operationId": "GetProvisioningStatus",
                    "summary": "The request's outcome: 202 while pending, 200 when every call is done",
                    "parameters": [_REQUEST_ID, _INCLUDE],
                    "responses": _STATUS_RESPONSES,
                }
            },
            "/servicePrincipals/{servicePrincipalId}/synchronization/jobs/{jobId}/provisionOnDemand": {
                "post": {
                    "operationId": "ProvisionOnDemandGraphCompatible",
                    "summary": "Graph's own provisionOnDemand body; Prefer: wait=N for a Graph-shaped answer",
                    "parameters": [
                        *_GRAPH_PATH,
                        {
                            "name": "Prefer",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "example": "wait=30"},
                        },
                        {
                            "name": "client-request-id",
                            "in": "header",
                            "required": False,
                            "description": "Idempotency key (Graph's own request id header): the same id with the "
                            "same body answers the same request; with a different body, 409",
                            "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
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
                            "409": _problem("client-request-id already used with a different body"),
                            **_BAD_INPUT,
                            "500": _MISCONFIGURED,
                            "503": _UNAVAILABLE,
                            "4XX": {"description": "With Prefer: wait, Graph refused the call: its status and body"},
                            "5XX": {"description": "With Prefer: wait, Graph failed: its status (502: no answer)"},
                        }
                    ),
                }
            },
            "/servicePrincipals/{servicePrincipalId}/synchronization/jobs/{jobId}/provisionOnDemand/{requestId}": {
                "get": {
                    "operationId": "GetGraphCompatibleStatus",
                    "summary": "The Location of a Graph-compatible request: served by the same function (and key)",
                    "parameters": [*_GRAPH_PATH, _REQUEST_ID, _INCLUDE],
                    "responses": {
                        **_STATUS_RESPONSES,
                        "400": _problem("The path's servicePrincipalId or jobId is malformed"),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "Health",
                    "security": [],
                    "responses": {
                        "200": _json("Health", "Storage and Graph reachable"),
                        "503": _json("Health", "A dependency is unreachable, or a setting is invalid (named)"),
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
    doc["paths"] = openapi_operator.with_paths({**doc["paths"], **openapi_batch.paths()})
    doc["components"]["schemas"].update(openapi_operator.schemas())
    doc["components"]["schemas"].update(openapi_batch.schemas())
    return doc


_REF_3 = "#/components/schemas/"
_REF_2 = "#/definitions/"


def _schema2(schema: Any) -> Any:
    """A JSON Schema (OpenAPI 3.1 dialect) as a Swagger 2.0 schema."""
    if isinstance(schema, list):
        return [_schema2(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    nullable = False
    for key, value in schema.items():
        if key == "$ref":
            out[key] = str(value).replace(_REF_3, _REF_2)
        elif key in ("anyOf", "oneOf"):
            options = [o for o in value if o != {"type": "null"}]
            nullable = nullable or len(options) < len(value)
            first = _schema2(options[0]) if options else {}
            if "$ref" in first and len(schema) > 1:
                out["allOf"] = [first]  # 2.0 ignores siblings of $ref
            else:
                out.update(first)
        elif key == "const":
            out["enum"] = [value]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            nullable = nullable or len(types) < len(value)
            out["type"] = types[0] if types else "string"
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key in ("examples", "$schema", "prefixItems", "contentMediaType", "propertyNames"):
            continue
        elif key == "default" and value is None:
            continue  # 2.0 has no null; an absent default means the same
        elif key in ("properties", "patternProperties"):
            out[key] = {name: _schema2(sub) for name, sub in value.items()}
        else:
            out[key] = _schema2(value)
    if nullable:
        out["x-nullable"] = True
    return out


def _parameter2(parameter: dict[str, Any]) -> dict[str, Any]:
    schema = _schema2(parameter.get("schema", {"type": "string"}))
    out = {k: v for k, v in parameter.items() if k != "schema"}
    out.update({k: v for k, v in schema.items() if k in ("type", "format", "pattern", "enum", "maxLength")})
    if "example" in schema:
        out["x-example"] = schema["example"]
    return out


def _response2(response: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": response["description"]}
    content = response.get("content", {})
    if content:
        out["schema"] = _schema2(next(iter(content.values()))["schema"])
    if "headers" in response:
        out["headers"] = {
            name: {
                "description": h.get("description", ""),
                **{k: v for k, v in _schema2(h["schema"]).items() if k in ("type", "format")},
            }
            for name, h in response["headers"].items()
        }
    return out


def swagger2(doc: dict[str, Any]) -> dict[str, Any]:
    """The Swagger 2.0 form of :func:`document`, for Logic Apps and Power Platform custom connectors."""
    paths: dict[str, Any] = {}
    for path, operations in doc["paths"].items():
        paths[path] = {}
        for method, op in operations.items():
            new: dict[str, Any] = {k: v for k, v in op.items() if k not in ("requestBody", "responses", "parameters")}
            parameters = [_parameter2(p) for p in op.get("parameters", [])]
            consumes = ["application/json"]
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                consumes = list(content)
                body_schema = _schema2(content["application/json"]["schema"])
                parameters.append({"name": "body", "in": "body", "required": True, "schema": body_schema})
            if parameters:
                new["parameters"] = parameters
            new["consumes"] = consumes
            new["produces"] = sorted({ct for r in op["responses"].values() for ct in r.get("content", {})})
            # 2.0 has no status ranges (4XX, 5XX): they become the default response
            new["responses"] = {
                (code if code.isdigit() else "default"): _response2(r) for code, r in op["responses"].items()
            }
            paths[path][method] = new
    return {
        "swagger": "2.0",
        "info": doc["info"],
        "basePath": doc["servers"][0]["url"],
        "schemes": ["https"],
        "paths": paths,
        "definitions": {name: _schema2(schema) for name, schema in doc["components"]["schemas"].items()},
        "securityDefinitions": doc["components"]["securitySchemes"],
        "security": doc["security"],
    }


def write(root: Path) -> None:
    """Regenerate the shipped documents: ``python -m shared.contract.openapi`` from the repository root."""
    doc = document()
    (root / "openapi.json").write_text(json.dumps(doc, indent=2) + "\n")
    (root / "connector" / "apiDefinition.swagger.json").write_text(json.dumps(swagger2(doc), indent=2) + "\n")


if __name__ == "__main__":
    write(Path.cwd())
