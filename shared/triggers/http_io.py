"""What every HTTP trigger shares: reading a JSON body as the Functions host delivers it, and rendering JSON,
problem+json and the answers for our own failures (``503`` retry later, ``500`` misconfigured).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared import telemetry
from shared.contract.problems import PROBLEM_CONTENT_TYPE, Problem
from shared.core.errors import SettingsError

if TYPE_CHECKING:
    from collections.abc import Mapping

log = telemetry.get_logger(__name__)

MAX_BODY_BYTES = 256 * 1024
UNAVAILABLE_RETRY_AFTER_SECONDS = 10


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    """A compact ``application/json`` response."""
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=dict(headers) if headers is not None else None,
        mimetype="application/json",
    )


def problem_response(problem: Problem, instance: str | None = None) -> func.HttpResponse:
    """An RFC 9457 ``application/problem+json`` response."""
    return func.HttpResponse(
        json.dumps(problem.to_body(instance)),
        status_code=problem.status,
        headers={"Content-Type": PROBLEM_CONTENT_TYPE},
    )


def method_not_allowed(allowed: str) -> func.HttpResponse:
    """``405`` with ``Allow``."""
    response = problem_response(Problem.method_not_allowed(allowed))
    response.headers["Allow"] = allowed
    return response


def dependency_failure(exc: Exception) -> func.HttpResponse:
    """What a caller sees when our own storage (503, retry later) or configuration (500) failed; nothing internal."""
    if isinstance(exc, SettingsError):
        # names the setting (never its value); no Retry-After: retrying cannot help until an operator fixes it
        telemetry.report_invalid_setting(exc, during="a request")
        return problem_response(Problem.misconfigured(exc.setting))
    log.error("dependency failure: %s", type(exc).__name__, exc_info=exc)
    response = problem_response(Problem.unavailable())
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    return response


def _length_unknown(req: func.HttpRequest) -> bool:
    """The body was sent without ``Content-Length`` (chunked, or HTTP/2 without the header).

    The Functions host passes a request body to the worker only when ``Content-Length`` > 0
    (``GrpcMessageConversionExtensions.ToRpcHttp``; azure-functions-host issue 7930), but it passes every
    header: such a body arrives empty, next to a ``Transfer-Encoding`` header or without ``Content-Length``.
    """
    return req.headers.get("transfer-encoding") is not None or req.headers.get("content-length") is None


def content_type(req: func.HttpRequest) -> str:
    """The request's media type, lowercased, without parameters ("" when none was sent)."""
    return (req.headers.get("content-type") or "").split(";")[0].strip().lower()


def read_json_body(req: func.HttpRequest) -> Any:
    """The body as JSON, or a Problem (411 no Content-Length, 413 too large, 415 not JSON, 400 malformed)."""
    body = req.get_body() or b""
    if not body and _length_unknown(req):
        raise Problem.length_required()
    if len(body) > MAX_BODY_BYTES:
        raise Problem.too_large(MAX_BODY_BYTES)
    media_type = content_type(req)
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem.unsupported_media_type()
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise Problem.malformed_json(f"The body is not valid JSON: {exc}") from exc
