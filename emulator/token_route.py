"""The App Service managed identity endpoint: ``GET /msi/token`` (``api-version=2019-08-01``).

Answers like App Service does: the ``X-IDENTITY-HEADER`` secret is checked first, errors are
``{"statusCode", "message", "correlationId"}``, and a token is a JWT only this process can have signed.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from emulator.faults import NO_IDENTITY_MESSAGE, FaultKind
from emulator.replies import drop, front_door_page, raw_answer, raw_response
from emulator.responses import new_guid
from emulator.state import EMULATOR

__all__ = ["add_token_route"]


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
            return await drop(request)
        elif fault.kind is FaultKind.NO_IDENTITY:
            return problem(400, NO_IDENTITY_MESSAGE)
        elif fault.kind is FaultKind.HTML:
            record.status = fault.status
            return raw_response(front_door_page(fault), {})
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
        return raw_response(raw_answer(replayed), {})
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


def add_token_route(router: web.UrlDispatcher) -> None:
    """``GET /msi/token``, where ``IDENTITY_ENDPOINT`` points."""
    router.add_get("/msi/token", _token)
