"""The JSON shapes Graph answers with: error bodies and the three ``stringKeyStringValuePair`` variants.

The variants are the ones documented or observed for provisionOnDemand (docs/graph-api-facts.md#answer-shapes): the
app's parser has to cope with all of them, so each job in the tenant file picks one.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

GRAPH_CONTEXT = "https://graph.microsoft.com/{version}/$metadata#microsoft.graph.stringKeyStringValuePair"
SYNCFABRIC_CONTEXT = (
    "https://syncfabric.windowsazure.com/api/$metadata#microsoft.synchronization.stringKeyStringValuePair"
)
STATUS_INFO_TYPE_NAME = "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo"


class ResponseShape(StrEnum):
    """How a job's provisionOnDemand result is wrapped (shapes A, B and D in docs/graph-api-facts.md#answer-shapes)."""

    GRAPH = "graph"
    SYNCFABRIC = "syncfabric"
    STATUS_INFO_TYPE_NAME = "statusInfoTypeName"


class GraphError(Exception):
    """An HTTP-level Graph error; the app turns it into Graph's error JSON."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None, *, bare: bool = False
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.bare = bare  # sent with no body at all


def compact(value: Any) -> str:
    """Serialise like the service does inside ``key``/``value``: no spaces, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def new_guid() -> str:
    """A fresh GUID in Graph's lower-case form."""
    return str(uuid.uuid4())


def error_body(code: str, message: str, request_id: str, client_request_id: str) -> dict[str, Any]:
    """Graph's error envelope, ``innerError`` with the ids support would ask for."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }


def odata_context(shape: ResponseShape, api_version: str) -> str:
    """The ``@odata.context`` a shape carries; syncfabric's does not depend on the API version."""
    if shape is ResponseShape.SYNCFABRIC:
        return SYNCFABRIC_CONTEXT
    return GRAPH_CONTEXT.format(version=api_version)


def pair_body(shape: ResponseShape, api_version: str, result: dict[str, Any], log: dict[str, Any]) -> dict[str, Any]:
    """Wrap an outcome ``{result, details}`` and its provisioning log in the job's response shape.

    An empty log (group subjects) is sent as ``"{}"``, as in the documented group example.
    """
    if shape is ResponseShape.STATUS_INFO_TYPE_NAME:
        entries = [log] if log else [{"statusInfo": {"status": result["result"]}}]
        return {
            "@odata.context": odata_context(shape, api_version),
            "key": STATUS_INFO_TYPE_NAME,
            "value": compact(entries),
        }
    return {
        "@odata.context": odata_context(shape, api_version),
        "key": compact(result),
        "value": compact(log),
    }


def retarget_context(body: dict[str, Any], api_version: str) -> dict[str, Any]:
    """Make a recorded Graph-hosted ``@odata.context`` name the API version the call actually used."""
    context = body.get("@odata.context")
    if isinstance(context, str) and context.startswith("https://graph.microsoft.com/"):
        for version in ("beta", "v1.0"):
            prefix = f"https://graph.microsoft.com/{version}/"
            if context.startswith(prefix):
                body = {
                    **body,
                    "@odata.context": f"https://graph.microsoft.com/{api_version}/" + context[len(prefix) :],
                }
                break
    return body
