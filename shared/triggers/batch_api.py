"""``POST /api/provision/batch``: up to 1,000 provisioning requests in one body, one answer per item.

Its own function on the literal route ``provision/batch``: the host (ASP.NET Core routing, and the devhost
the same way) tries literal segments before parameters, so this URL never reaches ``provision/{requestId?}``
as a request id "batch" (which is not a valid request id either: that route would answer 404).

Body limit: 8 MiB. One request may be 256 KiB, but 1,000 of those (256 MiB) would hold an invocation's memory
for nothing real: an HR export row is a few hundred bytes (1,000 single-user requests are about 250 KiB), and
8 MiB leaves room for 1,000 requests with group members and links. Each item is then held to what a single
request may be. Same role as ``POST /api/provision`` (``Provisioning.Submit`` under ``AUTH_MODE=entra``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import telemetry
from shared.contract.problems import Problem
from shared.core.errors import SettingsError
from shared.core.models import ProvisioningRequest
from shared.core.vocabulary import Source
from shared.runtime import Runtime, get_runtime
from shared.triggers import auth
from shared.triggers.http_io import content_type, dependency_failure, json_response, problem_response
from shared.usecases import batch, intake

log = telemetry.get_logger(__name__)

MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_ITEM_BYTES = 256 * 1024


def _read(req: func.HttpRequest) -> Any:
    """The body as JSON, or a Problem (411, 413, 415, 400) as ``POST /api/provision`` answers them."""
    body = req.get_body() or b""
    if not body and (req.headers.get("transfer-encoding") is not None or req.headers.get("content-length") is None):
        raise Problem.length_required()
    if len(body) > MAX_BATCH_BYTES:
        raise Problem.too_large(MAX_BATCH_BYTES)
    if content_type(req) != "application/json":
        raise Problem.unsupported_media_type()
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem.malformed_json("The body is not valid JSON.") from exc


def _oversized(items: list[Any]) -> dict[int, Problem]:
    """Items larger than one request may be (measured as compact JSON): each a 413 of its own."""
    return {
        index: Problem.too_large(MAX_ITEM_BYTES)
        for index, item in enumerate(items)
        if len(json.dumps(item, separators=(",", ":")).encode("utf-8")) > MAX_ITEM_BYTES
    }


async def provision_batch(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Function ``provision_batch``: ``200 {"value": [{"index", "status", "requestId"?, "problem"?}]}``."""
    with telemetry.bound(invocationId=invocation_id):
        if isinstance(caller := auth.authorize(req, auth.SUBMIT, runtime), func.HttpResponse):
            return caller
        try:
            items = batch.requests_of(_read(req))
            rt = runtime or get_runtime()
        except Problem as problem:
            return problem_response(problem, urlsplit(req.url).path)
        except (AzureError, OSError, SettingsError) as exc:
            return dependency_failure(exc)
        requested_by = auth.requested_by(caller)

        async def accept_one(request: ProvisioningRequest, notes: list[str]) -> intake.Accepted:
            command = intake.AcceptCommand(request, Source.HTTP, datetime.now(UTC), notes, requested_by=requested_by)
            return await rt.intake().accept(command)

        results = await batch.accept_all(items, accept_one, refused=_oversized(items))
        return json_response(200, {"value": [r.to_body() for r in results]})
