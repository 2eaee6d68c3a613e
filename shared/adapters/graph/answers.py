"""Graph's answers read from the raw response: the error mapping (Graph's error JSON, or the evidence of
whatever came instead), the provisionOnDemand pair, and the two reads (job status, schema rules).

Read from the JSON and not from the SDK's models: the models silently read a field of the wrong JSON type as
absent, and parsing them imports thousands of modules for the few fields the worker needs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from shared.adapters.graph.headers import RawResponse, parse_retry_after
from shared.core.ports import GraphAnswer, GraphFailure, JobStatus
from shared.core.rules import RuleInfo

_T = TypeVar("_T")

#: The most raw response text kept as evidence (characters); the rest is cut and marked.
RAW_BODY_LIMIT = 64 * 1024


def error_failure(response: RawResponse) -> GraphFailure:
    """Graph's error JSON (``{"error": {"code", "message", "innerError"}}``) or whatever came instead."""
    request_id = response.header("request-id")
    client_request_id = response.header("client-request-id")
    code: str | None = None
    message: str | None = None
    data = _json(response.body)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = _str_or_none(error.get("code"))
        message = _str_or_none(error.get("message"))
        inner = error.get("innerError") or error.get("innererror")
        if isinstance(inner, dict):
            request_id = request_id or _str_or_none(inner.get("request-id"))
            client_request_id = client_request_id or _str_or_none(inner.get("client-request-id"))
    if response.status == 401 and code is None:
        code = "Unauthorized"
    if (
        response.status == 401
        and code == "InvalidAuthenticationToken"
        and message is not None
        and "expired" in message.lower()
    ):
        code = "TokenExpired"
    if message is None:
        what = "no body" if not response.body.strip() else "a body that is not Graph's error JSON"
        message = f"Graph answered HTTP {response.status} with {what}"
    return GraphFailure(
        http_status=response.status,
        code=code,
        message=cut(message, 4000),
        request_id=request_id,
        retry_after_seconds=parse_retry_after(response.header("retry-after")),
        client_request_id=client_request_id,
        raw_body=None if isinstance(error, dict) else cut(response.text),
    )


def read_answer(response: RawResponse) -> GraphAnswer | GraphFailure:
    """A 2xx provisionOnDemand answer: a ``stringKeyStringValuePair`` with string (or null) key and value."""
    request_id = response.header("request-id")
    client_request_id = response.header("client-request-id")
    if not response.body.strip():
        return unparseable(response, "with no body")
    data = _json(response.body)
    if data is _NOT_JSON:
        return unparseable(response, f"with a body that is not JSON (Content-Type {response.header('content-type')})")
    if not isinstance(data, dict) or not {"key", "value"} & data.keys():
        return unparseable(response, "with JSON that is not a stringKeyStringValuePair")
    for name in ("key", "value"):
        if data.get(name) is not None and not isinstance(data[name], str):
            return unparseable(response, f"with a {name!r} that is a JSON {_json_type(data[name])}, not a string")
    return GraphAnswer(
        key=data.get("key"),
        value=data.get("value"),
        request_id=request_id,
        http_status=response.status,
        client_request_id=client_request_id,
    )


def unparseable(response: RawResponse, why: str) -> GraphFailure:
    return GraphFailure(
        http_status=response.status,
        code="UnparseableResponse",
        message=f"Graph answered HTTP {response.status} {why}; the raw answer is kept",
        request_id=response.header("request-id"),
        client_request_id=response.header("client-request-id"),
        raw_body=cut(response.text),
    )


def read_parsed(response: RawResponse, parse: Callable[[dict[str, Any]], _T]) -> _T | GraphFailure:
    """A 2xx read answer (a JSON object), parsed; anything else is unparseable, with its raw text."""
    if not response.body.strip():
        return unparseable(response, "with no body")
    data = _json(response.body)
    if not isinstance(data, dict):
        return unparseable(response, "with a body that is not a JSON object")
    try:
        return parse(data)
    except ValueError as exc:
        return unparseable(response, f"with {exc}")


def _field(data: dict[str, Any], name: str, kind: type[_T]) -> _T | None:
    """``data[name]`` when it has the JSON type the API documents; None when absent or null.

    A field of another type is refused rather than read as absent (which is what the SDK's models do
    silently), so a wrong answer never turns into a wrong decision.
    """
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise ValueError(f"{name!r} that is a JSON {_json_type(value)}")
    return value


def parse_job(data: dict[str, Any]) -> JobStatus:
    """``status.code`` and ``status.quarantine.reason`` of a synchronizationJob."""
    status = _field(data, "status", dict) or {}
    quarantine = _field(status, "quarantine", dict) or {}
    return JobStatus(_field(status, "code", str) or None, _field(quarantine, "reason", str) or None)


def parse_schema(data: dict[str, Any]) -> list[RuleInfo]:
    """The synchronizationRules of a synchronizationSchema: id, name, on-demand support, mapped source types."""
    rules = []
    for rule in _field(data, "synchronizationRules", list) or []:
        if not isinstance(rule, dict):
            raise ValueError(f"a synchronization rule that is a JSON {_json_type(rule)}")
        metadata = {}
        for entry in _field(rule, "metadata", list) or []:
            if not isinstance(entry, dict):
                raise ValueError(f"a rule metadata entry that is a JSON {_json_type(entry)}")
            key = _field(entry, "key", str)
            if key:
                metadata[key] = entry.get("value")
        sources = []
        for mapping in _field(rule, "objectMappings", list) or []:
            if not isinstance(mapping, dict):
                raise ValueError(f"an object mapping that is a JSON {_json_type(mapping)}")
            source = _field(mapping, "sourceObjectName", str)
            if source and mapping.get("enabled") is not False:
                sources.append(source)
        rules.append(
            RuleInfo(
                id=_field(rule, "id", str) or "",
                name=_field(rule, "name", str),
                supports_provision_on_demand=str(metadata.get("supportsProvisionOnDemand", "")).lower() == "true",
                source_object_names=tuple(sources),
            )
        )
    return [r for r in rules if r.id]


_NOT_JSON = object()


def _json(body: bytes) -> Any:
    """The body's JSON, or ``_NOT_JSON``."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else type(value).__name__


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def cut(text: str, limit: int = RAW_BODY_LIMIT) -> str:
    """``text``, cut to ``limit`` characters with a note saying how much is missing."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [cut: {len(text) - limit} more characters]"


def cap(text: str | None) -> str | None:
    return None if text is None else cut(text)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
