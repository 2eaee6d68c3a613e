"""``POST /api/provision/batch``: up to 1,000 provisioning requests in one body, one answer per item.

Its own function on the literal route ``provision/batch``: the host (ASP.NET Core routing, and the devhost
the same way) tries literal segments before parameters, so this URL never reaches ``provision/{requestId?}``
as a request id "batch" (which is not a valid request id either: that route would answer 404).

Body limit: 8 MiB. One request may be 256 KiB, but 1,000 of those (256 MiB) would hold an invocation's memory
for nothing real: an HR export row is a few hundred bytes (1,000 single-user requests are about 250 KiB), and
8 MiB leaves room for 1,000 requests with group members and links. Each item is then held to what a single
request may be.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared import telemetry
from shared.contract.problems import PROBLEM_CONTENT_TYPE, FieldError, Problem
from shared.core.errors import SettingsError
from shared.core.models import ProvisioningRequest
from shared.runtime import Runtime, get_runtime
from shared.usecases import batch, intake

log = telemetry.get_logger(__name__)

MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_ITEM_BYTES = 256 * 1024


def _json(status: int, body: Any) -> func.HttpResponse:
    content_type = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")), status_code=status, headers={"Content-Type": content_type}
    )


def _read(req: func.HttpRequest) -> Any:
    """The body as JSON, or a Problem (411, 413, 415, 400) as ``POST /api/provision`` answers them."""
    body = req.get_body() or b""
    if not body and (req.headers.get("transfer-encoding") is not None or req.headers.get("content-length") is None):
        raise Problem(
            411,
            "Length required",
            "Send the body with a Content-Length header: the Functions host drops a chunked body.",
            "length-required",
            (FieldError("", "is required", "Content-Length"),),
        )
    if len(body) > MAX_BATCH_BYTES:
        raise Problem(413, "Body too large", f"A batch may be at most {MAX_BATCH_BYTES} bytes.", "body-too-large")
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise Problem(415, "Unsupported media type", "Send the body as application/json.", "unsupported-media-type")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem(
            400,
            "Malformed JSON",
            "The body is not valid JSON.",
            "malformed-json",
            (FieldError("", "is not valid JSON"),),
        ) from exc


def _oversized(items: list[Any]) -> dict[int, Problem]:
    """Items larger than one request may be (measured as compact JSON)."""
    found = {}
    for index, item in enumerate(items):
        if len(json.dumps(item, separators=(",", ":")).encode("utf-8")) > MAX_ITEM_BYTES:
            found[index] = Problem(
                413, "Request too large", f"One request may be at most {MAX_ITEM_BYTES} bytes.", "body-too-large",
                (FieldError("", f"is larger than {MAX_ITEM_BYTES} bytes"),),
            )  # fmt: skip
    return found


async def provision_batch(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Function ``provision_batch``: ``200 {"value": [{"index", "status", "requestId"?, "problem"?}]}``."""
    with telemetry.bound(invocationId=invocation_id):
        try:
            items = batch.requests_of(_read(req))
            rt = runtime or get_runtime()
        except Problem as problem:
            return _json(problem.status, problem.to_body(urlsplit(req.url).path))
        except SettingsError as exc:
            broken = Problem(
                500, "Service misconfigured", f"The app setting {exc.setting} is invalid.", "misconfigured"
            )
            return _json(500, broken.to_body())

        async def accept_one(request: ProvisioningRequest, notes: list[str]) -> intake.Accepted:
            return await intake.accept(
                request,
                source="http",
                settings=rt.settings,
                ledger=rt.ledger,
                queue=rt.work_queue,
                events=rt.events,
                pending=rt.pending,
                now=datetime.now(UTC),
                normalisations=notes,
            )

        too_large = _oversized(items)
        results = await batch.accept_all(items, accept_one, refused=too_large)
        return _json(200, {"value": [r.to_body() for r in results]})
