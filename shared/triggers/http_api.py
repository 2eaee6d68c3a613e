"""HTTP boundary: ``func.HttpRequest`` in, ``func.HttpResponse`` out.

Everything a caller can get wrong becomes a 4xx problem+json naming the field; a 5xx only ever means our
own dependency failed (``503``, retry later) or the app is misconfigured (``500`` type ``misconfigured``, no
``Retry-After``: retrying cannot help until an operator fixes the setting). Responses follow the
asynchronous request-reply pattern as Logic Apps' HTTP action expects it: ``202`` with an absolute
``Location`` and ``Retry-After`` while work is pending, the same ``202`` again on every poll until done,
then ``200``.

One Functions function serves both the submit and the status route of each way in (``provision`` for
``POST /api/provision`` and ``GET /api/provision/{requestId}``; ``provision_graph_compatible`` for Graph's path
and its ``/{requestId}`` status), because a function key is valid only for its own function: a caller that
submitted with its function key must be able to poll ``Location`` with the same key.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError

from shared import telemetry
from shared.contract import operator_views, views
from shared.contract.problems import PROBLEM_CONTENT_TYPE, FieldError, Problem
from shared.core import ids
from shared.core.errors import SettingsError
from shared.core.models import ProvisioningRequest
from shared.runtime import Runtime, get_runtime
from shared.triggers import links
from shared.usecases import intake

log = telemetry.get_logger(__name__)

ROUTE_PREFIX = links.ROUTE_PREFIX  # host.json extensions.http.routePrefix
MAX_BODY_BYTES = 256 * 1024
POLL_SECONDS = 2
MAX_WAIT_SECONDS = 60
WAIT_POLL_SECONDS = 0.25
#: At most this many ``Prefer: wait`` callers hold an invocation at once in one process; the next one gets its
#: 202 at once. Half of the Flex per-instance HTTP concurrency the Bicep sets (16), so waiting callers can
#: never take every slot from intake and status polls.
MAX_CONCURRENT_WAITS = 8
IDEMPOTENCY_HEADER = "client-request-id"
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII: Graph sends a GUID here


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


def _misconfigured(exc: SettingsError) -> func.HttpResponse:
    """``500`` type ``misconfigured``: names the setting (never its value); no Retry-After, retrying cannot help."""
    telemetry.report_invalid_setting(exc, during="a request")
    problem = Problem(
        500,
        "Service misconfigured",
        f"The app setting {exc.setting} is invalid, so no request can be accepted until an operator fixes it. "
        "Retrying will not help.",
        "misconfigured",
    )
    return problem_response(problem)


def _method_not_allowed(allowed: str) -> func.HttpResponse:
    problem = Problem(405, "Method not allowed", f"This URL answers {allowed} only.", "method-not-allowed")
    response = problem_response(problem)
    response.headers["Allow"] = allowed
    return response


def dependency_failure(exc: Exception) -> func.HttpResponse:
    """What a caller sees when our own storage (503, retry later) or configuration (500) failed; nothing internal."""
    if isinstance(exc, SettingsError):
        return _misconfigured(exc)
    log.error("dependency failure: %s", type(exc).__name__, exc_info=exc)
    return _unavailable()


def _length_unknown(req: func.HttpRequest) -> bool:
    """The body was sent without ``Content-Length`` (chunked, or HTTP/2 without the header).

    The Functions host passes a request body to the worker only when ``Content-Length`` > 0
    (``GrpcMessageConversionExtensions.ToRpcHttp``; azure-functions-host issue 7930), but it passes every
    header: such a body arrives empty, next to a ``Transfer-Encoding`` header or without ``Content-Length``.
    """
    return req.headers.get("transfer-encoding") is not None or req.headers.get("content-length") is None


def read_json_body(req: func.HttpRequest) -> Any:
    """The body as JSON, or a Problem (411 no Content-Length, 413 too large, 415 not JSON, 400 malformed)."""
    body = req.get_body() or b""
    if not body and _length_unknown(req):
        raise Problem(
            411,
            "Length required",
            "Send the body with a Content-Length header. A body sent without one (chunked transfer encoding) "
            "never reaches the app: the Functions host drops it.",
            "length-required",
            (FieldError("", "is required: the body arrived empty because it had no Content-Length", "Content-Length"),),
        )
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


# --- Prefer: wait ------------------------------------------------------------------------------------------------


def _split_top_level(text: str, separator: str) -> Iterator[str]:
    """Split on ``separator`` outside quoted strings (RFC 9110 lists and parameters)."""
    start, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            yield text[start:index]
            start = index + 1
    yield text[start:]


def prefer_wait(header: str | None) -> int | None:
    """Seconds from RFC 7240 ``Prefer: wait=N`` (capped at ``MAX_WAIT_SECONDS``), or None.

    Only the first ``wait`` counts (RFC 7240 §2), its value as ASCII digits (``wait="5"`` too). Anything
    else (``wait=²``, ``wait=-1``, ``wait=1.5``) is a preference the server cannot comply with, and RFC 7240
    says to ignore it: the request is answered as if no wait was asked for.
    """
    for preference in _split_top_level(header or "", ","):
        name, equals, value = next(_split_top_level(preference, ";")).partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not equals or re.fullmatch(r"[0-9]+", value) is None:  # ASCII digits only; str.isdigit() takes ²
            return None
        digits = value.lstrip("0") or "0"  # a long run of digits is capped without ever becoming a huge int
        return MAX_WAIT_SECONDS if len(digits) > 6 else min(int(digits), MAX_WAIT_SECONDS)
    return None


class WaitSlots:
    """How many callers may be held by ``Prefer: wait`` at once in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    @contextmanager
    def take(self) -> Iterator[bool]:
        """Yields True with a slot held, or False at once when every slot is taken (never waits for one)."""
        if self.in_use >= self.limit:
            yield False
            return
        self.in_use += 1
        try:
            yield True
        finally:
            self.in_use -= 1


wait_slots = WaitSlots(MAX_CONCURRENT_WAITS)


# --- Links -------------------------------------------------------------------------------------------------------


async def _link(req: func.HttpRequest, rt: Runtime, *segments: str) -> str:
    """An absolute link to ``/api/{segments}`` on the app's public base, with the caller's key if it may travel."""
    base = links.base_url(req.url, rt.settings.public_base_url)
    key = await links.travelling_key(req.params, req.headers, base)
    return links.api_url(base, *segments, key=key)


def _status_segments(request_id: str, graph_path: tuple[str, str] | None) -> tuple[str, ...]:
    if graph_path is None:
        return ("provision", request_id)
    sp, job = graph_path
    return ("servicePrincipals", sp, "synchronization", "jobs", job, "provisionOnDemand", request_id)


async def _accepted_response(
    req: func.HttpRequest, rt: Runtime, accepted: intake.Accepted, graph_path: tuple[str, str] | None = None
) -> func.HttpResponse:
    location = await _link(req, rt, *_status_segments(accepted.request_id, graph_path))
    body: dict[str, Any] = {"requestId": accepted.request_id, "status": accepted.status, "calls": accepted.calls}
    if accepted.duplicate and accepted.status == "failed":  # sending the event again cannot change that: retry
        body.update(operator_views.retry_advice(await _link(req, rt, "provision", accepted.request_id, "retry")))
    return _json(202, body, {"Location": location, "Retry-After": str(POLL_SECONDS)})


async def _accept(
    rt: Runtime, request: ProvisioningRequest, *, source: str, notes: list[str], conflict: FieldError | None = None
) -> intake.Accepted:
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
        conflict_error=conflict,
    )


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
    return _method_not_allowed("GET" if has_id else "POST")


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
    return problem_response(Problem(404, "Unknown request", "No request has this id.", "unknown-request"))


async def _status(
    req: func.HttpRequest, runtime: Runtime | None, graph_path: tuple[str, str] | None
) -> func.HttpResponse:
    request_id = req.route_params.get("requestId", "")
    if not ids.is_request_id(request_id):
        return _unknown_request()
    try:
        rt = runtime or get_runtime()
        request, calls = await rt.ledger.get_request(request_id)
        if request is None or (graph_path is not None and not _made_for(request, graph_path)):
            return _unknown_request()
        include_logs = "provisioningLog" in (includes := set((req.params.get("include") or "").split(",")))
        blob_logs: dict[str, str | None] = {}
        if include_logs:
            for call in calls:
                if call.get("provisioningLogBlob"):
                    blob_logs[str(call["RowKey"])] = await rt.log_store.get(str(call["provisioningLogBlob"]))
        body = views.request_view(request, calls, include_logs=include_logs, blob_logs=blob_logs)
        if "attempts" in includes:  # earlier rounds of retried calls
            body = operator_views.attach_attempts(body, await rt.ledger.attempts(request_id))
        if not views.is_pending(request):
            return _json(200, body)
        location = await _link(req, rt, *_status_segments(request_id, graph_path))
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)
    return _json(202, body, {"Location": location, "Retry-After": str(POLL_SECONDS)})


def _made_for(request: dict[str, Any], graph_path: tuple[str, str]) -> bool:
    """The request was made for the job the path names (ids compare case-insensitively, like Graph's)."""
    sp, job = graph_path
    return (
        str(request.get("servicePrincipalId") or "").lower() == sp.lower()
        and str(request.get("jobId") or "").lower() == job.lower()
    )


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
    return _method_not_allowed("GET" if has_id else "POST")


def _graph_path(req: func.HttpRequest) -> tuple[str, str] | func.HttpResponse:
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
        return problem_response(Problem(400, "Invalid path", "The path names no valid job.", errors=path_errors))
    return sp, job


async def post_graph_compatible(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """Graph's own provisionOnDemand, paced and recorded; with ``Prefer: wait=N`` a Graph-shaped answer."""
    with telemetry.bound(invocationId=invocation_id):
        return await _post_graph_compatible(req, runtime)


def _idempotency_key(req: func.HttpRequest) -> str | None:
    """``client-request-id``, Graph's own request id header: the same id with the same body is one request."""
    value: str | None = req.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if _CLIENT_REQUEST_ID.fullmatch(value) is None:
        raise Problem(
            400,
            "Invalid client-request-id",
            "client-request-id must be 1-128 visible ASCII characters, such as a GUID.",
            errors=(FieldError("", "must be 1-128 visible ASCII characters", IDEMPOTENCY_HEADER),),
        )
    return value


async def _post_graph_compatible(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    path = _graph_path(req)
    if isinstance(path, func.HttpResponse):
        return path
    sp, job = path
    instance = urlsplit(req.url).path
    wait = prefer_wait(req.headers.get("prefer"))  # read before anything is accepted: it can never fail later
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
        accepted = await _accept(rt, request, source="graph-compatible", notes=notes, conflict=conflict)
        if key is not None:
            echo[IDEMPOTENCY_HEADER] = key
        answer: tuple[int, Any] | None = None
        waited = False
        if wait is not None and accepted.calls == 1:
            with wait_slots.take() as slot:
                if slot:
                    waited = True
                    answer = await _wait_for_graph_answer(rt, accepted.request_id, wait)
        if answer is None:
            response = await _accepted_response(req, rt, accepted, (sp, job))
        else:
            status, payload = answer
            response = _json(status, payload, {"Provisioning-Request-Id": accepted.request_id})
    except Problem as problem:
        return problem_response(problem, instance=instance)
    except (AzureError, OSError, SettingsError) as exc:
        return dependency_failure(exc)
    response.headers.update(echo)
    if waited:
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


# --- Health and the document ---------------------------------------------------------------------------------------


async def health(
    req: func.HttpRequest, runtime: Runtime | None = None, *, invocation_id: str | None = None
) -> func.HttpResponse:
    """``GET /api/health``: 200 when storage and Graph answer; 503 naming what does not (never a value)."""
    with telemetry.bound(invocationId=invocation_id):
        return await _health(req, runtime)


async def _health(req: func.HttpRequest, runtime: Runtime | None) -> func.HttpResponse:
    try:
        rt = runtime or get_runtime()
    except SettingsError as exc:
        telemetry.report_invalid_setting(exc, during="the health check")
        body = {"status": "unavailable", "checks": {"settings": "invalid"}, "invalidSetting": exc.setting}
        return _json(503, body)
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


async def openapi_document(req: func.HttpRequest, *, invocation_id: str | None = None) -> func.HttpResponse:
    """``GET /api/openapi.json``: the OpenAPI 3.1 document, generated from the models."""
    from shared.contract import openapi

    return _json(200, openapi.document())
