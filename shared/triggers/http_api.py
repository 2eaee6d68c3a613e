"""HTTP boundary: ``func.HttpRequest`` in, ``func.HttpResponse`` out.

Everything a caller can get wrong becomes a 4xx problem+json naming the field; a 5xx only ever means our own
dependency failed (``503``, retry later) or the app is misconfigured (``500`` ``misconfigured``, no ``Retry-After``).
Responses follow the asynchronous request-reply pattern as Logic Apps' HTTP action expects it: ``202`` with an
absolute ``Location`` and an honest ``Retry-After`` (``shared.usecases.poll_hint``) while work is pending, then ``200``.

One Functions function serves both the submit and the status route of each way in (``provision`` for
``POST /api/provision`` and ``GET /api/provision/{requestId}``; ``provision_graph_compatible`` for Graph's path
and its ``/{requestId}`` status), because a function key is valid only for its own function: a caller that
submitted with its function key must be able to poll ``Location`` with the same key.

Each handler parses, calls a use case, renders: intake (``shared.usecases.intake``), status reads and the
``Prefer: wait`` poll (``shared.usecases.status``), the health probe (``shared.usecases.health``). Body reading
and rendering are in ``http_io``, ``Prefer`` in ``prefer``, links and keys in ``links``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import telemetry
from shared.contract import operator_views
from shared.contract.problems import FieldError, Problem
from shared.core import ids
from shared.core.errors import SettingsError
from shared.core.models import ProvisioningRequest
from shared.core.vocabulary import RequestStatus, Source
from shared.runtime import Runtime, get_runtime
from shared.triggers import auth, links, prefer
from shared.triggers.http_io import (
    content_type,
    dependency_failure,
    json_response,
    method_not_allowed,
    problem_response,
    read_json_body,
)
from shared.usecases import intake
from shared.usecases.status import JobPath

ROUTE_PREFIX = links.ROUTE_PREFIX  # host.json extensions.http.routePrefix
IDEMPOTENCY_HEADER = "client-request-id"
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII: Graph sends a GUID here


# --- Links -------------------------------------------------------------------------------------------------------


async def _link(req: func.HttpRequest, rt: Runtime, *segments: str) -> str:
    """An absolute link to ``/api/{segments}`` on the app's public base, with the caller's key if it may travel."""
    base = links.base_url(req.url, rt.settings.public_base_url)
    key = await links.travelling_key(req.params, req.headers, base, rt.admin_keys)
    return links.api_url(base, *segments, key=key)


def _status_segments(request_id: str, graph_path: JobPath | None) -> tuple[str, ...]:
    if graph_path is None:
        return ("provision", request_id)
    sp, job = graph_path
    return ("servicePrincipals", sp, "synchronization", "jobs", job, "provisionOnDemand", request_id)


async def _accepted_response(
    req: func.HttpRequest, rt: Runtime, accepted: intake.Accepted, graph_path: JobPath | None = None
) -> func.HttpResponse:
    location = await _link(req, rt, *_status_segments(accepted.request_id, graph_path))
    if accepted.written is not None:
        wait = await rt.status.retry_after_for(*accepted.written)
    else:
        wait = await rt.status.retry_after(accepted.request_id)
    body: dict[str, Any] = {"requestId": accepted.request_id, "status": accepted.status, "calls": accepted.calls}
    if accepted.duplicate and accepted.status == RequestStatus.FAILED:  # the same event cannot change that: retry
        body.update(operator_views.retry_advice(await _link(req, rt, "provision", accepted.request_id, "retry")))
    return json_response(202, body, {"Location": location, "Retry-After": str(wait)})


async def _accept(  # noqa: PLR0913
    rt: Runtime,
    request: ProvisioningRequest,
    *,
    source: str,
    notes: list[str],
    conflict: FieldError | None = None,
    requested_by: str | None = None,
) -> intake.Accepted:
    command = intake.AcceptCommand(
        request, Source(source), datetime.now(UTC), notes, conflict_error=conflict, requested_by=requested_by
    )
    return await rt.intake().accept(command)


# --- POST and GET /api/provision -----------------------------------------------------------------------------------


async def provision(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Function ``provision``: ``POST /api/provision`` submits, ``GET /api/provision/{requestId}`` reads."""
    has_id = bool(req.route_params.get("requestId"))
    method = req.method.upper()
    if method == "POST" and not has_id:
        return await post_provision(req, runtime, invocation_id=invocation_id)
    if method == "GET" and has_id:
        return await get_provision(req, runtime, invocation_id=invocation_id)
    return method_not_allowed("GET" if has_id else "POST")


async def post_provision(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """``POST /api/provision``: our request, or a CloudEvent carrying one; 202 with where to poll."""
    with telemetry.bound(invocationId=invocation_id):
        return await _post_provision(req, runtime)


async def _post_provision(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    if isinstance(caller := auth.authorize(req, auth.SUBMIT, runtime), func.HttpResponse):
        return caller
    try:
        data = read_json_body(req)
        request, notes = intake.provision_request(content_type(req), req.headers, data)
        rt = runtime or get_runtime()
        accepted = await _accept(rt, request, source="http", notes=notes, requested_by=auth.requested_by(caller))
        return await _accepted_response(req, rt, accepted)
    except Problem as problem:
        return problem_response(problem, instance=urlsplit(req.url).path)
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)


async def get_provision(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """``GET /api/provision/{requestId}``: 202 while pending (Logic Apps keeps polling), 200 when done."""
    with telemetry.bound(invocationId=invocation_id):
        return await _status(req, runtime, None)


def _unknown_request() -> func.HttpResponse:
    return problem_response(Problem.not_found("Unknown request", "No request has this id.", "unknown-request"))


async def _status(req: func.HttpRequest, runtime: Runtime | None, job: JobPath | None) -> func.HttpResponse:
    if isinstance(caller := auth.authorize(req, auth.SUBMIT, runtime), func.HttpResponse):
        return caller
    request_id = req.route_params.get("requestId", "")
    if not ids.is_request_id(request_id):
        return _unknown_request()
    includes = set((req.params.get("include") or "").split(","))
    try:
        rt = runtime or get_runtime()
        read = await rt.status.read(
            request_id,
            job=job,
            include_logs="provisioningLog" in includes,
            include_attempts="attempts" in includes,  # earlier rounds of retried calls
        )
        if read is None:
            return _unknown_request()
        if not read.pending:
            return json_response(200, read.body)
        location = await _link(req, rt, *_status_segments(request_id, job))
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)
    return json_response(202, read.body, {"Location": location, "Retry-After": str(read.retry_after)})


# --- Graph's own path ----------------------------------------------------------------------------------------------


async def graph_compatible(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Function ``provision_graph_compatible``: POST Graph's body to Graph's path; GET ``…/{requestId}`` reads it."""
    has_id = bool(req.route_params.get("requestId"))
    method = req.method.upper()
    if method == "POST" and not has_id:
        return await post_graph_compatible(req, runtime, invocation_id=invocation_id)
    if method == "GET" and has_id:
        with telemetry.bound(invocationId=invocation_id):
            path = _graph_path(req)
            if isinstance(path, func.HttpResponse):
                return path
            return await _status(req, runtime, path)
    return method_not_allowed("GET" if has_id else "POST")


def _graph_path(req: func.HttpRequest) -> JobPath | func.HttpResponse:
    """The path's service principal and job ids, or a 400 naming the one that is malformed."""
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
    if path_errors:
        return problem_response(Problem.invalid("Invalid path", "The path names no valid job.", *path_errors))
    return sp, job


async def post_graph_compatible(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Graph's own provisionOnDemand, paced and recorded; with ``Prefer: wait=N`` a Graph-shaped answer."""
    with telemetry.bound(invocationId=invocation_id):
        if isinstance(caller := auth.authorize(req, auth.SUBMIT, runtime), func.HttpResponse):
            return caller
        return await _post_graph_compatible(req, runtime, caller)


def _idempotency_key(req: func.HttpRequest) -> str | None:
    """``client-request-id``, Graph's own request id header: the same id with the same body is one request."""
    value: str | None = req.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if _CLIENT_REQUEST_ID.fullmatch(value) is None:
        raise Problem.invalid(
            "Invalid client-request-id",
            "client-request-id must be 1-128 visible ASCII characters, such as a GUID.",
            FieldError.of_header(IDEMPOTENCY_HEADER, "must be 1-128 visible ASCII characters"),
        )
    return value


async def _post_graph_compatible(
    req: func.HttpRequest, runtime: Runtime | None, caller: auth.Principal | None
) -> func.HttpResponse:
    path = _graph_path(req)
    if isinstance(path, func.HttpResponse):
        return path
    sp, job = path
    instance = urlsplit(req.url).path
    wait = prefer.prefer_wait(req.headers.get("prefer"))  # read before anything is accepted: it can never fail later
    echo: dict[str, str] = {}
    try:
        key = _idempotency_key(req)
        data = read_json_body(req)
        request, notes = intake.graph_compatible_request(data, sp, job)
        conflict = None
        if key is not None:
            request = request.model_copy(update={"event_id": f"{IDEMPOTENCY_HEADER}:{key}"})
            conflict = FieldError("", "was already used with a different body", IDEMPOTENCY_HEADER)
        rt = runtime or get_runtime()
        accepted = await _accept(
            rt,
            request,
            source="graph-compatible",
            notes=notes,
            conflict=conflict,
            requested_by=auth.requested_by(caller),
        )
        if key is not None:
            echo[IDEMPOTENCY_HEADER] = key
        answer: tuple[int, Any] | None = None
        waited = False
        if wait is not None and accepted.calls == 1:
            with prefer.wait_slots.take() as slot:
                if slot:
                    waited = True
                    answer = await rt.status.wait_for_graph_answer(accepted.request_id, wait)
        if answer is None:
            response = await _accepted_response(req, rt, accepted, (sp, job))
        else:
            status, payload = answer
            response = json_response(status, payload, {"Provisioning-Request-Id": accepted.request_id})
    except Problem as problem:
        return problem_response(problem, instance=instance)
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)
    response.headers.update(echo)
    if waited:
        response.headers["Preference-Applied"] = f"wait={wait}"
    return response


# --- Health and the document ---------------------------------------------------------------------------------------


async def health(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """``GET /api/health``: 200 when storage and Graph answer; 503 naming what does not (never a value)."""
    with telemetry.bound(invocationId=invocation_id):
        return await _health(runtime)


async def _health(runtime: Runtime | None) -> func.HttpResponse:
    try:
        rt = runtime or get_runtime()
    except SettingsError as exc:
        telemetry.report_invalid_setting(exc, during="the health check")
        body = {"status": "unavailable", "checks": {"settings": "invalid"}, "invalidSetting": exc.setting}
        return json_response(503, body)
    report = await rt.health.check()
    status = "ok" if report.healthy else "unavailable"
    return json_response(200 if report.healthy else 503, {"status": status, "checks": report.checks})


async def openapi_document(req: func.HttpRequest, *, invocation_id: str | None = None) -> func.HttpResponse:
    """``GET /api/openapi.json``: the OpenAPI 3.1 document, generated from the models."""
    from shared.contract import openapi

    if isinstance(caller := auth.authorize(req, auth.SUBMIT), func.HttpResponse):
        return caller
    return json_response(200, openapi.document())
