"""Graph's routes under ``/beta`` and ``/v1.0``: provisionOnDemand, ``GET job`` and ``GET schema``.

Every Graph request goes through the same pipeline as at Graph's front door: latency and injected faults,
then the bearer token, then the resource lookup, then (provisionOnDemand only) the rate limit, then the
operation.  Every answer carries ``request-id`` and ``client-request-id``; every error is Graph's JSON.
The facts behind the shapes are in ``docs/graph-api-facts.md``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from emulator.calls import CallRecord
from emulator.faults import Fault, FaultKind
from emulator.identity import TokenCheck, TokenProblem
from emulator.provisioning import parse_body, provision, validate
from emulator.ratelimit import RateScope
from emulator.replies import RawReply, drop, front_door_page, json_response, raw_answer, raw_response
from emulator.responses import GraphError, error_body, new_guid
from emulator.state import EMULATOR, Emulator
from emulator.tenant import JobSpec

__all__ = ["API_VERSIONS", "JOB_PATH", "add_graph_routes"]

API_VERSIONS = ("beta", "v1.0")
JOB_PATH = "/{version}/servicePrincipals/{spId}/synchronization/jobs/{jobId}"


def _expired_token() -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", str(TokenProblem.LIFETIME), _www_authenticate())


def _www_authenticate() -> dict[str, str]:
    return {
        "WWW-Authenticate": 'Bearer realm="", authorization_uri='
        '"https://login.microsoftonline.com/common/oauth2/authorize", '
        'client_id="00000003-0000-0000-c000-000000000000"'
    }


def _body_for_log(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return raw.decode("utf-8", errors="replace")


def _authorization_label(check: TokenCheck) -> str:
    if not check.present:
        return "missing"
    return "Bearer" if check.valid else "invalid"


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _fault_error(fault: Fault) -> GraphError:
    headers = {}
    if fault.retry_after_header is not None:
        headers["Retry-After"] = fault.retry_after_header
    return GraphError(fault.status, fault.error_code, fault.error_message, headers, bare=fault.bare)


GraphOperation = Callable[
    [Emulator, web.Request, JobSpec, bytes, str, CallRecord], Awaitable[tuple[int, Any] | RawReply]
]


def _graph_route(operation: str, handler: GraphOperation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an operation in Graph's front-door pipeline and record the call."""

    async def route(request: web.Request) -> web.StreamResponse:
        emu = request.app[EMULATOR]
        version = request.path.split("/", 2)[1]
        sp_id, job_id = request.match_info["spId"], request.match_info["jobId"]
        request_id = new_guid()
        client_request_id = request.headers.get("client-request-id") or request_id
        raw = await request.read()
        check = emu.issuer.check_authorization(request.headers.get("Authorization"), _origin(request))
        claims = check.claims if check.valid else None
        record = emu.calls.start(
            operation=operation,
            method=request.method,
            path=request.path,
            api_version=version,
            authorization=_authorization_label(check),
            client_id=str(claims.get("appid")) if claims else None,
            body=_body_for_log(raw),
            request_id=request_id,
            service_principal_id=sp_id,
            job_id=job_id,
        )
        headers: dict[str, str] = {"request-id": request_id, "client-request-id": client_request_id}
        try:
            if emu.latency_ms:
                await asyncio.sleep(emu.latency_ms / 1000)
            fault = emu.faults.take(operation, f"{sp_id}/{job_id}")
            result: tuple[int, Any] | RawReply
            if fault is not None:
                record.fault = str(fault.kind)
                if fault.kind is FaultKind.SLOW:
                    await asyncio.sleep(fault.delay_ms / 1000)
                elif fault.kind is FaultKind.DROP:
                    return await drop(request)
                elif fault.kind is FaultKind.EXPIRED_TOKEN:
                    raise _expired_token()
                elif fault.kind is not FaultKind.HTML:
                    raise _fault_error(fault)
            if fault is not None and fault.kind is FaultKind.HTML:
                result = front_door_page(fault)
            else:
                if check.problem is not None:
                    raise GraphError(401, "InvalidAuthenticationToken", str(check.problem), _www_authenticate())
                job = emu.find_job(sp_id, job_id)
                result = await handler(emu, request, job, raw, version, record)
        except GraphError as error:
            headers.update(error.headers)
            if error.bare:
                result = RawReply(error.status, b"", {})
            else:
                result = error.status, error_body(error.code, error.message, request_id, client_request_id)
        status = result.status if isinstance(result, RawReply) else result[0]
        record.status = status
        record.throttled = status == 429
        if isinstance(result, RawReply):
            return raw_response(result, headers)
        return json_response(status, result[1], headers)

    return route


async def _provision_on_demand(
    emu: Emulator, request: web.Request, job: JobSpec, raw: bytes, version: str, record: CallRecord
) -> tuple[int, Any] | RawReply:
    key = "tenant" if emu.rate_scope is RateScope.TENANT else job.key
    wait = emu.limiter.try_acquire(key)
    if wait is not None:
        retry_after = emu.throttle_header(wait)
        raise GraphError(
            429,
            "TooManyRequests",
            f"Too many requests: the limit is {emu.limiter.limit} for provisionOnDemand "
            f"({emu.rate_scope.value} scope). Retry after the number of seconds in Retry-After.",
            {"Retry-After": retry_after} if retry_after is not None else {},
        )
    valid = validate(job, parse_body(raw))
    answer = emu.faults.take("provisionOnDemand", job.key, answers=True)
    if answer is not None:
        record.fault = str(answer.kind)
        if answer.raw:
            return raw_answer(answer)
        context = f"https://graph.microsoft.com/{version}/$metadata#microsoft.graph.stringKeyStringValuePair"
        return 200, {"@odata.context": context, "key": answer.key, "value": answer.value}
    return provision(emu.state, job, valid, version)


def _replayed(emu: Emulator, operation: str, job: JobSpec, record: CallRecord) -> RawReply | None:
    """A raw ``answer`` fault queued for this read, if any."""
    answer = emu.faults.take(operation, job.key, answers=True)
    if answer is None:
        return None
    record.fault = str(answer.kind)
    return raw_answer(answer)


async def _get_job(
    emu: Emulator, request: web.Request, job: JobSpec, raw: bytes, version: str, record: CallRecord
) -> tuple[int, Any] | RawReply:
    replayed = _replayed(emu, "getJob", job, record)
    if replayed is not None:
        return replayed
    return 200, {
        "@odata.context": f"https://graph.microsoft.com/{version}/$metadata#servicePrincipals"
        f"('{job.service_principal_id}')/synchronization/jobs/$entity",
        "id": job.id,
        "templateId": job.template_id,
        "schedule": job.schedule,
        "status": emu.job_status(job),
        "synchronizationJobSettings": [],
    }


async def _get_schema(
    emu: Emulator, request: web.Request, job: JobSpec, raw: bytes, version: str, record: CallRecord
) -> tuple[int, Any] | RawReply:
    replayed = _replayed(emu, "getSchema", job, record)
    if replayed is not None:
        return replayed
    return 200, {
        "@odata.context": f"https://graph.microsoft.com/{version}/$metadata#servicePrincipals"
        f"('{job.service_principal_id}')/synchronization/jobs('{job.id}')/schema/$entity",
        "id": job.schema_id,
        "version": "Date:2024-01-01T00:00:00Z;Hash:emulator",
        "synchronizationRules": [rule.to_graph() for rule in job.rules],
        "directories": [],
    }


async def _graph_not_found(request: web.Request) -> web.StreamResponse:
    """Anything else under a Graph version: Graph's 400 for an unknown segment, still with request ids."""
    request_id = new_guid()
    client_request_id = request.headers.get("client-request-id") or request_id
    body = error_body(
        "BadRequest",
        f"Resource not found for the segment '{request.match_info.get('tail', '')}'.",
        request_id,
        client_request_id,
    )
    return json_response(400, body, {"request-id": request_id, "client-request-id": client_request_id})


def add_graph_routes(router: web.UrlDispatcher) -> None:
    """Graph's operations under each API version, then Graph's 400 for anything else under that version."""
    for version in API_VERSIONS:
        base = JOB_PATH.replace("{version}", version)
        router.add_post(f"{base}/provisionOnDemand", _graph_route("provisionOnDemand", _provision_on_demand))
        router.add_get(f"{base}/schema", _graph_route("getSchema", _get_schema))
        router.add_get(base, _graph_route("getJob", _get_job))
        router.add_route("*", f"/{version}/{{tail:.*}}", _graph_not_found)
