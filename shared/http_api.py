"""HTTP boundary: ``func.HttpRequest`` in, ``func.HttpResponse`` out.

Everything a caller can get wrong becomes a 4xx problem+json naming the field; a 5xx only ever means our
own dependency failed (and says nothing internal). Responses follow the asynchronous request-reply pattern
as Logic Apps' HTTP action expects it: ``202`` with an absolute ``Location`` and ``Retry-After`` while work is
pending, the same ``202`` again on every poll until done, then ``200``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import ids, intake, telemetry, views
from shared.models import ProvisioningRequest
from shared.problems import PROBLEM_CONTENT_TYPE, FieldError, Problem
from shared.runtime import Runtime, get_runtime
from shared.settings import SettingsError

log = telemetry.get_logger(__name__)

ROUTE_PREFIX = "api"  # host.json extensions.http.routePrefix
MAX_BODY_BYTES = 256 * 1024
POLL_SECONDS = 2
MAX_WAIT_SECONDS = 60
WAIT_POLL_SECONDS = 0.25


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")), status_code=status, headers=headers, mimetype="application/json"
    )


def problem_response(problem: Problem, instance: str | None = None) -> func.HttpResponse:
    """An RFC 9457 ``application/problem+json`` response."""
    return func.HttpResponse(
        json.dumps(problem.to_body(instance)),
        status_code=problem.status,
        headers={"Content-Type": PROBLEM_CONTENT_TYPE},
    )


def _unavailable() -> func.HttpResponse:
    problem = Problem(
        503, "Temporarily unavailable", "A dependency of the service did not answer; retry later.", "unavailable"
    )
    response = problem_response(problem)
    response.headers["Retry-After"] = "10"
    return response


def status_url(req: func.HttpRequest, request_id: str) -> str:
    """Absolute status URL; a function key given as ``code`` travels along so pollers keep access."""
    parts = urlsplit(req.url)
    url = f"{parts.scheme}://{parts.netloc}/{ROUTE_PREFIX}/provision/{request_id}"
    code = req.params.get("code")
    return f"{url}?{urlencode({'code': code})}" if code else url


def read_json_body(req: func.HttpRequest) -> Any:
    """The request body as JSON, or a Problem (413 too large, 415 not JSON, 400 malformed)."""
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise Problem(413, "Body too large", f"The body may be at most {MAX_BODY_BYTES} bytes.", "body-too-large")
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise Problem(415, "Unsupported media type", "Send the body as application/json.", "unsupported-media-type")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise Problem(
            400,
            "Malformed JSON",
            f"The body is not valid JSON: {exc}",
            "malformed-json",
            (FieldError("", "is not valid JSON"),),
        ) from exc


def _accepted_response(req: func.HttpRequest, accepted: intake.Accepted) -> func.HttpResponse:
    location = status_url(req, accepted.request_id)
    return _json(
        202,
        {"requestId": accepted.request_id, "status": accepted.status, "calls": accepted.calls},
        {"Location": location, "Retry-After": str(POLL_SECONDS)},
    )


async def _accept(rt: Runtime, request: ProvisioningRequest, *, source: str, notes: list[str]) -> intake.Accepted:
    return await intake.accept(
        request,
        source=source,
        settings=rt.settings,
        ledger=rt.ledger,
        queue=rt.work_queue,
        events=rt.events,
        pending=rt.pending,
        now=datetime.now(UTC),
        normalisations=notes,
    )


async def post_provision(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """``POST /api/provision``: our request, or a CloudEvent carrying one; 202 with where to poll."""
    with telemetry.bound(invocationId=invocation_id):
        return await _post_provision(req, runtime)


async def _post_provision(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    try:
        data = read_json_body(req)
        content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
        request, notes = intake.provision_request(content_type, req.headers, data)
        rt = runtime or get_runtime()
        accepted = await _accept(rt, request, source="http", notes=notes)
    except Problem as problem:
        return problem_response(problem, instance=urlsplit(req.url).path)
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)
    return _accepted_response(req, accepted)


def prefer_wait(header: str | None) -> int | None:
    """Seconds from RFC 7240 ``Prefer: wait=N`` (capped at ``MAX_WAIT_SECONDS``), or None."""
    for preference in (header or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait" and value.strip().isdigit():
            return min(int(value.strip()), MAX_WAIT_SECONDS)
    return None


async def post_graph_compatible(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Graph's own provisionOnDemand, paced and recorded; with ``Prefer: wait=N`` a Graph-shaped answer."""
    with telemetry.bound(invocationId=invocation_id):
        return await _post_graph_compatible(req, runtime)


async def _post_graph_compatible(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    sp = req.route_params.get("servicePrincipalId", "")
    job = req.route_params.get("jobId", "")
    path_errors = [
        FieldError(pointer, message)
        for pointer, ok, message in (
            ("/servicePrincipalId", ids.is_guid(sp), "the path's servicePrincipalId must be a GUID"),
            ("/jobId", ids.is_job_id(job), "the path's jobId must be a synchronization job id"),
        )
        if not ok
    ]
    instance = urlsplit(req.url).path
    if path_errors:
        return problem_response(Problem(400, "Invalid path", "The path names no valid job.", errors=path_errors))
    try:
        data = read_json_body(req)
        request, notes = intake.graph_compatible_request(data, sp, job)
        rt = runtime or get_runtime()
        accepted = await _accept(rt, request, source="graph-compatible", notes=notes)
        wait = prefer_wait(req.headers.get("prefer"))
        if wait is None or accepted.calls != 1:
            return _accepted_response(req, accepted)
        answer = await _wait_for_graph_answer(rt, accepted.request_id, wait)
    except Problem as problem:
        return problem_response(problem, instance=instance)
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)
    if answer is None:
        response = _accepted_response(req, accepted)
    else:
        status, payload = answer
        response = _json(status, payload, {"Provisioning-Request-Id": accepted.request_id})
    response.headers["Preference-Applied"] = f"wait={wait}"
    return response


async def _wait_for_graph_answer(rt: Runtime, request_id: str, wait: int) -> tuple[int, Any] | None:
    """Poll the ledger until the single call is done or ``wait`` seconds pass; then Graph's answer shape."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        request, calls = await rt.ledger.get_request(request_id)
        if request is not None and not views.is_pending(request) and len(calls) == 1:
            blob = None
            if calls[0].get("provisioningLogBlob"):
                blob = await rt.log_store.get(str(calls[0]["provisioningLogBlob"]))
            return views.graph_answer(calls[0], rt.settings.graph_base_url, blob)
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(WAIT_POLL_SECONDS)


async def get_provision(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """``GET /api/provision/{requestId}``: 202 while pending (Logic Apps keeps polling), 200 when done."""
    with telemetry.bound(invocationId=invocation_id):
        return await _get_provision(req, runtime)


async def _get_provision(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    request_id = req.route_params.get("requestId", "")
    if not ids.is_request_id(request_id):
        return problem_response(Problem(404, "Unknown request", "No request has this id.", "unknown-request"))
    try:
        rt = runtime or get_runtime()
        request, calls = await rt.ledger.get_request(request_id)
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)
    if request is None:
        return problem_response(Problem(404, "Unknown request", "No request has this id.", "unknown-request"))
    include_logs = (req.params.get("include") or "") == "provisioningLog"
    blob_logs: dict[str, str | None] = {}
    if include_logs:
        try:
            for call in calls:
                if call.get("provisioningLogBlob"):
                    blob_logs[str(call["RowKey"])] = await rt.log_store.get(str(call["provisioningLogBlob"]))
        except (AzureError, OSError) as exc:
            return dependency_failure(exc)
    body = views.request_view(request, calls, include_logs=include_logs, blob_logs=blob_logs)
    if views.is_pending(request):
        return _json(202, body, {"Location": status_url(req, request_id), "Retry-After": str(POLL_SECONDS)})
    return _json(200, body)


async def health(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """``GET /api/health``: 200 when storage and Graph answer; reveals nothing else."""
    with telemetry.bound(invocationId=invocation_id):
        return await _health(req, runtime)


async def _health(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    try:
        rt = runtime or get_runtime()
    except SettingsError:
        log.error("health: the app settings are invalid", exc_info=True)
        return _json(503, {"status": "unavailable", "checks": {"settings": "invalid"}})
    checks = {"storage": "ok", "graph": "ok"}
    try:
        await rt.ledger.ping()
        await rt.work_queue.ping()
    except Exception:
        log.warning("health: storage unreachable", exc_info=True)
        checks["storage"] = "unreachable"
    if not await _graph_reachable(rt.settings.graph_base_url):
        checks["graph"] = "unreachable"
    healthy = all(v == "ok" for v in checks.values())
    return _json(200 if healthy else 503, {"status": "ok" if healthy else "unavailable", "checks": checks})


async def _graph_reachable(base_url: str) -> bool:
    """Any HTTP answer from the Graph host counts (no token is spent; a 401 still proves reachability)."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            await client.get(base_url)
    except httpx.HTTPError:
        return False
    return True


def dependency_failure(exc: Exception) -> func.HttpResponse:
    """What a caller sees when our own storage or configuration failed: 503, nothing internal."""
    log.error("dependency failure: %s", type(exc).__name__, exc_info=exc)
    return _unavailable()


async def openapi_document(req: func.HttpRequest, *, invocation_id: str | None = None) -> func.HttpResponse:
    """``GET /api/openapi.json``: the OpenAPI 3.1 document, generated from the models."""
    from shared import openapi

    return _json(200, openapi.document())
