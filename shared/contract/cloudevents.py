"""CloudEvents 1.0 envelopes around a provisioning request (pure).

Event Grid, HR connectors and Logic Apps often deliver events as CloudEvents: structured mode (the whole
event is the JSON body, ``application/cloudevents+json``) or binary mode (``ce-*`` headers, ``data`` is the
body). Either way ``data`` is the provisioning request; when it carries no ``eventId``, the event's
``source`` and ``id`` (unique together, by the spec) become the idempotency key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.contract.problems import FieldError, Problem, json_pointer
from shared.core import ids

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_SURROGATE = re.compile("[\ud800-\udfff]")
_ATTRIBUTE_NAME = re.compile("[a-z0-9]+")  # CloudEvents 1.0: ASCII lowercase letters and digits only
_REQUIRED = ("specversion", "id", "source", "type")
_ENVELOPE_KEYS = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
}


@dataclass(frozen=True)
class Unwrapped:
    """The request inside an envelope, and the event id to use when the request names none."""

    data: Any
    event_id: str | None
    mode: str | None  # "structured", "binary" or None (no envelope)


def _event_id(source: str, event_id: str) -> str:
    """``source#id``, or its hash when that would not be a valid ``eventId`` (too long, control characters, …)."""
    key = f"{source}#{event_id}"
    if len(key) <= 200 and ids.is_object_id(key) and not _SURROGATE.search(key):
        return key
    # surrogatepass: a lone surrogate (a "\ud800" escape in the JSON) cannot be encoded otherwise.
    return "ce-sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check_attributes(attrs: Mapping[str, Any], *, binary: bool) -> None:
    def error(name: str, detail: str) -> FieldError:
        # Structured mode: a member of the body; binary mode: a ce-* request header, not a JSON pointer.
        return FieldError("", detail, header=f"ce-{name}") if binary else FieldError(f"/{name}", detail)

    errors = [
        error(name, "is required and must be a non-empty string")
        for name in _REQUIRED
        if not isinstance(attrs.get(name), str) or not attrs.get(name)
    ]
    if not errors and attrs.get("specversion") != "1.0":
        errors.append(error("specversion", "must be 1.0"))
    content_type = attrs.get("datacontenttype")
    if content_type is not None and not str(content_type).split(";")[0].strip().lower().endswith("json"):
        errors.append(error("datacontenttype", "must be application/json"))
    if errors:
        raise Problem.invalid("The CloudEvent is not valid", "The envelope misses required attributes.", *errors)


def is_structured(content_type: str, data: Any) -> bool:
    """A structured-mode event: by its media type, or a JSON object that has ``specversion`` and ``data``."""
    if content_type == STRUCTURED_CONTENT_TYPE:
        return True
    return isinstance(data, dict) and "specversion" in data and "data" in data


def unwrap(content_type: str, headers: Mapping[str, str], data: Any) -> Unwrapped:
    """Take the request out of a CloudEvent, if it is in one; refuse a malformed envelope with a Problem."""
    if is_structured(content_type, data):
        if not isinstance(data, dict):
            raise Problem.invalid(
                "The CloudEvent is not valid",
                "A structured CloudEvent is a JSON object.",
                FieldError("", "must be a JSON object"),
            )
        _check_attributes(data, binary=False)
        unknown = sorted(k for k in data if k not in _ENVELOPE_KEYS and not _ATTRIBUTE_NAME.fullmatch(k))
        if unknown:
            raise Problem.invalid(
                "The CloudEvent is not valid",
                "Extension attribute names are lowercase letters and digits.",
                *(FieldError(json_pointer([k]), "is not a valid attribute name") for k in unknown),
            )
        if "data_base64" in data:
            raise Problem.invalid(
                "The CloudEvent is not valid",
                "The provisioning request must be JSON in data, not base64 in data_base64.",
                FieldError("/data_base64", "is not accepted: send the request as JSON in data"),
            )
        if "data" not in data:
            raise Problem.invalid(
                "The CloudEvent is not valid",
                "The event carries no data.",
                FieldError("/data", "is required: the provisioning request"),
            )
        return Unwrapped(data["data"], _event_id(data["source"], data["id"]), "structured")
    attrs = {k[3:].lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}
    if "specversion" in attrs:
        _check_attributes(attrs, binary=True)
        return Unwrapped(data, _event_id(attrs["source"], attrs["id"]), "binary")
    return Unwrapped(data, None, None)
