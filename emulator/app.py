"""HTTP routes of the emulator: the managed identity endpoint, Graph (``/beta`` and ``/v1.0``) and ``/_emulator``.

Every Graph request goes through the same pipeline as at Graph's front door: latency and injected faults,
then the bearer token, then the resource lookup, then (provisionOnDemand only) the rate limit, then the
operation.  Every answer carries ``request-id`` and ``client-request-id``; every error is Graph's JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulator.calls import CallLog, CallRecord
from emulator.config import EmulatorConfig
from emulator.faults import (
    FRONT_DOOR_HTML,
    NO_IDENTITY_MESSAGE,
    Fault,
    FaultKind,
    FaultQueue,
    retry_after_text,
    retry_after_value,
)
from emulator.identity import TokenCheck, TokenIssuer, TokenProblem
from emulator.provisioning import parse_body, provision, validate
from emulator.ratelimit import RateLimit, RateLimiter, RateScope, retry_after_header
from emulator.responses import GraphError, error_body, new_guid
from emulator.tenant import JOB_STATUS_CODES, JobSpec, TenantState, load_tenant

__all__ = ["EMULATOR", "Emulator", "EmulatorConfig", "create_app"]

log = logging.getLogger("emulator")

GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
API_VERSIONS = ("beta", "v1.0")
JOB_PATH = "/{version}/servicePrincipals/{spId}/synchronization/jobs/{jobId}"


@dataclass
class Emulator:
    """Everything the routes share: tenant state, token issuer, limiter, faults and the call log."""

    config: EmulatorConfig
    state: TenantState
    issuer: TokenIssuer
    limiter: RateLimiter
    rate_scope: RateScope
    faults: FaultQueue
    calls: CallLog
    latency_ms: int
    #: ``Retry-After`` values the rate limit's 429s send, in turn (None in the list: no header); None: the
    #: real wait, rounded up to whole seconds.
    throttle_retry_after: list[float | str | None] | None = None
    throttle_turn: int = 0

    def reset(self) -> None:
        """Back to the tenant file's initial state; tokens stay valid, runtime rate/latency settings stay."""
        self.state.reset()
        self.limiter.reset()
        self.faults.clear()
        self.calls.clear()
        self.throttle_turn = 0

    def throttle_header(self, wait_seconds: float) -> str | None:
        """The ``Retry-After`` for the next rate-limit 429 (None: send none)."""
        if self.throttle_retry_after is None:
            return retry_after_header(wait_seconds)
        value = self.throttle_retry_after[self.throttle_turn % len(self.throttle_retry_after)]
        self.throttle_turn += 1
        return None if value is None else retry_after_text(value)

    def find_job(self, sp_id: str, job_id: str) -> JobSpec:
        """The job, or Graph's 404 for an unknown service principal or job."""
        jobs = self.state.tenant.find_sp(sp_id)
        if jobs is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{sp_id}' does not exist or one of its queried reference-property objects are not present.",
            )
        job = jobs.get(job_id)
        if job is None:
            raise GraphError(404, "ResourceNotFound", f"The synchronization job '{job_id}' was not found.")
        return job

    def job_status(self, job: JobSpec) -> dict[str, Any]:
        """The job's ``status`` (a control-API override wins over the tenant file)."""
        status = dict(self.state.job_state(job).status_override or job.status)
        if status.get("code") == "Quarantine" and not status.get("quarantine"):
            status["quarantine"] = {
                "currentBegan": "2024-01-01T00:00:00Z",
                "nextAttempt": "2099-01-01T00:00:00Z",
                "reason": "EncounteredQuarantineException",
                "seriesBegan": "2024-01-01T00:00:00Z",
                "seriesCount": 1,
                "error": {
                    "code": "SystemForCrossDomainIdentityManagementInvalidCredentials",
                    "message": "The credentials supplied to the target application were rejected.",
                    "tenantActionable": True,
                },
            }
        status.setdefault("countSuccessiveCompleteFailures", 0)
        status.setdefault("escrowsPruned", False)
        status.setdefault("progress", [])
        status.setdefault("synchronizedEntryCountByType", [])
        return status


EMULATOR = web.AppKey("emulator", Emulator)


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": GRAPH_CONTENT_TYPE, **(headers or {})},
    )


@dataclass(frozen=True)
class RawReply:
    """A reply sent byte for byte (a replayed capture, a front door's page, a bare status)."""

    status: int
    body: bytes
    headers: dict[str, str]


def _raw_response(reply: RawReply, headers: dict[str, str]) -> web.Response:
    """The reply with the request ids added unless it carries its own."""
    merged = {**headers, **reply.headers}
    response = web.Response(status=reply.status, body=reply.body)
    # aiohttp would add a Content-Type of its own; a replay sends exactly the headers it was given.
    response.headers.popall("Content-Type", None)
    response.headers.update(merged)
    return response


def _raw_answer(fault: Fault) -> RawReply:
    assert fault.body is not None
    headers = dict(fault.headers)
    if fault.retry_after_header is not None:
        headers.setdefault("Retry-After", fault.retry_after_header)
    return RawReply(fault.status, fault.body, headers)


def _front_door_page(fault: Fault) -> RawReply:
    return RawReply(fault.status, FRONT_DOOR_HTML.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})


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


async def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering, like a load balancer dropping it mid-request."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


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
                    return await _drop(request)
                elif fault.kind is FaultKind.EXPIRED_TOKEN:
                    raise _expired_token()
                elif fault.kind is not FaultKind.HTML:
                    raise _fault_error(fault)
            if fault is not None and fault.kind is FaultKind.HTML:
                result = _front_door_page(fault)
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
            return _raw_response(result, headers)
        return _json_response(status, result[1], headers)

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
            return _raw_answer(answer)
        context = f"https://graph.microsoft.com/{version}/$metadata#microsoft.graph.stringKeyStringValuePair"
        return 200, {"@odata.context": context, "key": answer.key, "value": answer.value}
    return provision(emu.state, job, valid, version)


def _replayed(emu: Emulator, operation: str, job: JobSpec, record: CallRecord) -> RawReply | None:
    """A raw ``answer`` fault queued for this read, if any."""
    answer = emu.faults.take(operation, job.key, answers=True)
    if answer is None:
        return None
    record.fault = str(answer.kind)
    return _raw_answer(answer)


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
    return _json_response(400, body, {"request-id": request_id, "client-request-id": client_request_id})


async def _token(request: web.Request) -> web.StreamResponse:
    """App Service managed identity endpoint (``api-version=2019-08-01``, ``X-IDENTITY-HEADER``)."""
    emu = request.app[EMULATOR]
    secret = request.headers.get("X-IDENTITY-HEADER")
    label = "missing" if not secret else ("identityHeader" if secret == emu.config.identity_header else "invalid")
    correlation_id = new_guid()
    record = emu.calls.start(
        operation="token",
        method=request.method,
        path=request.path,
        api_version=None,
        authorization=label,
        client_id=request.query.get("client_id"),
        body=None,
        request_id=correlation_id,
    )

    def problem(status: int, message: str) -> web.Response:
        record.status = status
        return web.json_response(
            {"statusCode": status, "message": message, "correlationId": correlation_id}, status=status
        )

    if emu.latency_ms:
        await asyncio.sleep(emu.latency_ms / 1000)
    fault = emu.faults.take("token", None)
    if fault is not None:
        record.fault = str(fault.kind)
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_ms / 1000)
        elif fault.kind is FaultKind.DROP:
            return await _drop(request)
        elif fault.kind is FaultKind.NO_IDENTITY:
            return problem(400, NO_IDENTITY_MESSAGE)
        elif fault.kind is FaultKind.HTML:
            record.status = fault.status
            return _raw_response(_front_door_page(fault), {})
        else:
            record.throttled = fault.status == 429
            if fault.bare:
                record.status = fault.status
                return web.Response(status=fault.status)
            response = problem(fault.status, fault.error_message)
            if fault.retry_after_header is not None:
                response.headers["Retry-After"] = fault.retry_after_header
            return response
    if label == "missing":
        return problem(400, "The X-IDENTITY-HEADER request header is missing.")
    if label == "invalid":
        return problem(401, "The X-IDENTITY-HEADER request header does not match the identity secret.")
    if request.query.get("api-version") != "2019-08-01":
        return problem(400, "The api-version query parameter must be 2019-08-01.")
    resource = request.query.get("resource", "").strip()
    if not resource:
        return problem(400, "The resource query parameter is required.")
    replayed = emu.faults.take("token", None, answers=True)
    if replayed is not None:
        record.fault = str(replayed.kind)
        record.status = replayed.status
        return _raw_response(_raw_answer(replayed), {})
    client_id = request.query.get("client_id") or None
    token, claims = emu.issuer.issue(resource, client_id)
    record.status = 200
    record.client_id = str(claims["appid"])
    return web.json_response(
        {
            "access_token": token,
            "expires_on": str(claims["exp"]),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": claims["appid"],
        }
    )


async def _health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _calls(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    return web.json_response({"calls": emu.calls.list(request.query.get("operation"))})


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[EMULATOR].reset()
    log.info("reset")
    return web.json_response({"status": "reset"})


async def _state(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[EMULATOR].state.snapshot())


def _config_view(emu: Emulator) -> dict[str, Any]:
    return {
        "rateLimit": str(emu.limiter.limit),
        "rateScope": emu.rate_scope.value,
        "latencyMs": emu.latency_ms,
        "faults": emu.faults.to_json(),
        "jobStatus": {
            job.key: emu.state.job_state(job).status_override
            for job in emu.state.tenant.jobs()
            if emu.state.job_state(job).status_override is not None
        },
        "tokenLifetimeSeconds": emu.issuer.lifetime_seconds,
        "retryAfter": (
            None if emu.throttle_retry_after is None else ["none" if v is None else v for v in emu.throttle_retry_after]
        ),
    }


def _apply_config(emu: Emulator, patch: Any) -> None:
    """Validate the whole patch first, then apply it, so a bad request changes nothing."""
    if not isinstance(patch, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(patch) - {
        "rateLimit",
        "rateScope",
        "faults",
        "clearFaults",
        "latencyMs",
        "jobStatus",
        "tokenLifetimeSeconds",
        "retryAfter",
    }
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    limit = RateLimit.parse(str(patch["rateLimit"])) if "rateLimit" in patch else None
    scope = RateScope(patch["rateScope"]) if "rateScope" in patch else None
    faults = [Fault.parse(f) for f in patch.get("faults", [])]
    latency = int(patch["latencyMs"]) if "latencyMs" in patch else None
    if latency is not None and latency < 0:
        raise ValueError("latencyMs must be >= 0")
    lifetime = int(patch["tokenLifetimeSeconds"]) if "tokenLifetimeSeconds" in patch else None
    throttle = _throttle_retry_after(patch["retryAfter"]) if "retryAfter" in patch else None
    statuses: list[tuple[JobSpec, dict[str, Any] | None]] = []
    for key, value in dict(patch.get("jobStatus", {})).items():
        sp_id, _, job_id = str(key).partition("/")
        try:
            job = emu.find_job(sp_id, job_id)
        except GraphError as exc:
            raise ValueError(f"jobStatus: no job {key!r}") from exc
        status = {"code": value} if isinstance(value, str) else value
        if status is not None and (not isinstance(status, dict) or status.get("code") not in JOB_STATUS_CODES):
            raise ValueError(f"jobStatus[{key!r}]: code must be one of {JOB_STATUS_CODES}")
        statuses.append((job, status))
    if limit is not None:
        emu.limiter.configure(limit)
    if scope is not None:
        emu.rate_scope = scope
        emu.limiter.reset()
    if patch.get("clearFaults"):
        emu.faults.clear()
    emu.faults.add(faults)
    if latency is not None:
        emu.latency_ms = latency
    if lifetime is not None:
        emu.issuer.lifetime_seconds = lifetime
    if "retryAfter" in patch:
        emu.throttle_retry_after = throttle
        emu.throttle_turn = 0
    for job, status in statuses:
        emu.state.job_state(job).status_override = status


def _throttle_retry_after(raw: Any) -> list[float | str | None] | None:
    """``retryAfter``: null (the real wait), one value, or a list of values sent in turn by throttled calls."""
    if raw is None:
        return None
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ValueError("'retryAfter' must not be an empty list")
    return [retry_after_value(v) for v in values]


async def _get_config(request: web.Request) -> web.StreamResponse:
    return web.json_response(_config_view(request.app[EMULATOR]))


async def _post_config(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    try:
        _apply_config(emu, json.loads(await request.read() or b"{}"))
    except (ValueError, TypeError, KeyError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(_config_view(emu))


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """Build the emulator's aiohttp application (used by ``python -m emulator`` and by in-process tests)."""
    config = config or EmulatorConfig()
    tenant = load_tenant(config.tenant_path)
    emulator = Emulator(
        config=config,
        state=TenantState(tenant),
        issuer=TokenIssuer(
            tenant_id=tenant.tenant_id,
            default_client_id=tenant.default_client_id,
            lifetime_seconds=config.token_lifetime_seconds,
        ),
        limiter=RateLimiter(config.parsed_rate_limit()),
        rate_scope=config.parsed_rate_scope(),
        faults=FaultQueue(),
        calls=CallLog(),
        latency_ms=config.latency_ms,
    )
    app = web.Application()
    app[EMULATOR] = emulator
    app.router.add_get("/msi/token", _token)
    app.router.add_get("/_emulator/health", _health)
    app.router.add_get("/_emulator/calls", _calls)
    app.router.add_post("/_emulator/reset", _reset)
    app.router.add_get("/_emulator/state", _state)
    app.router.add_get("/_emulator/config", _get_config)
    app.router.add_post("/_emulator/config", _post_config)
    for version in API_VERSIONS:
        base = JOB_PATH.replace("{version}", version)
        app.router.add_post(f"{base}/provisionOnDemand", _graph_route("provisionOnDemand", _provision_on_demand))
        app.router.add_get(f"{base}/schema", _graph_route("getSchema", _get_schema))
        app.router.add_get(base, _graph_route("getJob", _get_job))
        app.router.add_route("*", f"/{version}/{{tail:.*}}", _graph_not_found)
    return app
