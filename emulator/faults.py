"""Injected faults: queued per operation, consumed in order, so tests can script "two 503s, then success".

Kinds taken at the front door (before the token is checked):
- ``status``: an error status with Graph's error body, optional ``Retry-After``; ``"bare": true`` sends the
  status with no body at all (how the synchronization API answers a missing app role: a bare 401);
- ``429storm``: a run of throttling answers (``Retry-After`` 1 unless given; ``"none"`` sends none);
- ``drop``: the connection is closed without a response; ``slow``: a delay before normal handling;
- ``html``: a ``200`` HTML page, as a front door or proxy answers in Graph's place;
- ``expiredToken``: Graph's 401 ``InvalidAuthenticationToken`` "Access token has expired…", whatever the token;
- ``noIdentity`` (``token`` only): App Service's 400 for a managed identity that is not on the app.

And ``answer``, taken where the outcome is produced (after the token, rate limit and body checks): either a
``200`` whose ``key``/``value`` are given verbatim (strings, null, or any JSON value: how tests get
Failure-in-200, unparseable and very large answers), or a raw reply replayed byte for byte: ``status``,
``headers`` and ``body`` (text) or ``bodyBase64``, so any captured response can be replayed.

``retryAfter`` is a number of seconds (``10``, ``2.128``), a string sent verbatim (an HTTP-date) or ``"none"``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

NO_IDENTITY_MESSAGE = (
    "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."
)
FRONT_DOOR_HTML = (
    "<!DOCTYPE html>\n<html><head><title>Service unavailable</title></head>\n<body><h2>Our services aren't "
    "available right now</h2><p>We're working to restore all services as soon as possible. Please check back "
    "soon.</p></body></html>\n"
)

OPERATIONS = ("provisionOnDemand", "getJob", "getSchema", "token")
_MISSING = object()

_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "ResourceNotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class FaultKind(StrEnum):
    """What a fault does to the request it hits."""

    STATUS = "status"
    STORM = "429storm"
    DROP = "drop"
    SLOW = "slow"
    ANSWER = "answer"
    HTML = "html"
    EXPIRED_TOKEN = "expiredToken"
    NO_IDENTITY = "noIdentity"


def retry_after_value(raw: Any) -> float | str | None:
    """A ``retryAfter`` setting checked: seconds (>= 0), a verbatim header string, or None for ``"none"``."""
    if raw is None or raw == "none":
        return None
    if isinstance(raw, bool):
        raise ValueError("'retryAfter' must be a number of seconds, a header string or 'none'")
    if isinstance(raw, int | float):
        if raw < 0:
            raise ValueError("'retryAfter' must not be negative")
        return float(raw)
    if isinstance(raw, str) and raw.strip() and raw.isprintable():
        return raw
    raise ValueError("'retryAfter' must be a number of seconds, a header string or 'none'")


def retry_after_text(value: float | str) -> str:
    """The ``Retry-After`` header for a setting: whole seconds without a decimal point, fractions as given."""
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass
class Fault:
    """One queued fault; ``remaining`` counts down as requests hit it."""

    operation: str
    kind: FaultKind
    remaining: int
    status: int = 503
    retry_after: float | str | None = None
    delay_ms: int = 0
    code: str | None = None
    message: str | None = None
    job: str | None = None
    key: Any = None
    value: Any = None
    bare: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @property
    def raw(self) -> bool:
        """An ``answer`` that replays a raw reply (status, headers, bytes) instead of a key/value pair."""
        return self.kind is FaultKind.ANSWER and self.body is not None

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        """Build a fault from its control-API JSON, refusing anything ambiguous."""
        if not isinstance(raw, dict):
            raise ValueError("a fault must be a JSON object")
        operation = raw.get("operation", "provisionOnDemand")
        if operation not in OPERATIONS:
            raise ValueError(f"fault operation must be one of {OPERATIONS}, got {operation!r}")
        kind = FaultKind(raw.get("kind", "status"))
        default_status = {
            FaultKind.STORM: 429,
            FaultKind.HTML: 200,
            FaultKind.ANSWER: 200,
            FaultKind.EXPIRED_TOKEN: 401,
        }
        status = int(raw.get("status", default_status.get(kind, 503)))
        if kind is FaultKind.STATUS and not 400 <= status <= 599:
            raise ValueError("a status fault needs a 4xx or 5xx 'status'")
        if kind in (FaultKind.ANSWER, FaultKind.HTML) and not 100 <= status <= 599:
            raise ValueError("'status' must be an HTTP status code")
        if kind is FaultKind.NO_IDENTITY and operation != "token":
            raise ValueError("a noIdentity fault is for the token operation only")
        if kind is FaultKind.EXPIRED_TOKEN and operation == "token":
            raise ValueError("an expiredToken fault is for Graph operations, not token")
        retry_after = retry_after_value(raw.get("retryAfter", 1 if kind is FaultKind.STORM else None))
        headers = raw.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("'headers' must be an object of header names to string values")
        body = _raw_body(raw)
        if kind is FaultKind.ANSWER and body is None:
            if operation != "provisionOnDemand":
                raise ValueError("a key/value answer fault is for provisionOnDemand only; give 'body' to replay")
            if "status" in raw or headers:
                raise ValueError("'status' and 'headers' need a raw 'body' or 'bodyBase64'")
        elif body is not None and kind is not FaultKind.ANSWER:
            raise ValueError("'body' and 'bodyBase64' belong to an answer fault")
        times = int(raw.get("times", 1))
        if times < 1:
            raise ValueError("'times' must be at least 1")
        return cls(
            operation=operation,
            kind=kind,
            remaining=times,
            status=429 if kind is FaultKind.STORM else status,
            retry_after=retry_after,
            delay_ms=int(raw.get("delayMs", 0)),
            code=raw.get("code"),
            message=raw.get("message"),
            job=raw.get("job"),
            key=raw.get("key"),
            value=raw.get("value"),
            bare=bool(raw.get("bare", False)),
            headers=dict(headers),
            body=body,
        )

    @property
    def retry_after_header(self) -> str | None:
        """The ``Retry-After`` header value this fault sends, if any."""
        return None if self.retry_after is None else retry_after_text(self.retry_after)

    @property
    def error_code(self) -> str:
        """Graph's ``error.code`` for this fault's status."""
        return self.code or _CODES.get(self.status, "UnknownError")

    @property
    def error_message(self) -> str:
        """A message that says it was injected, so nobody mistakes it for a real service problem."""
        return self.message or f"Injected fault: HTTP {self.status} ({self.error_code})."

    def to_json(self) -> dict[str, Any]:
        """The control-API view of the fault and how many hits it has left."""
        out: dict[str, Any] = {"operation": self.operation, "kind": str(self.kind), "times": self.remaining}
        if self.kind in (FaultKind.STATUS, FaultKind.STORM, FaultKind.ANSWER, FaultKind.HTML):
            out["status"] = self.status
            if self.retry_after is not None:
                out["retryAfter"] = self.retry_after
        if self.bare:
            out["bare"] = True
        if self.kind is FaultKind.SLOW:
            out["delayMs"] = self.delay_ms
        if self.job:
            out["job"] = self.job
        return out


class FaultQueue:
    """Faults in the order they were configured."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, faults: list[Fault]) -> None:
        """Append faults after the ones already queued."""
        self._faults.extend(faults)

    def clear(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    def take(self, operation: str, job_key: str | None, *, answers: bool = False) -> Fault | None:
        """Consume one hit of the first live fault for this operation (and job, when the fault names one).

        ``answers`` selects ``answer`` faults (taken where the outcome is produced) instead of the others
        (taken at the front door, before the token is even checked).
        """
        for fault in self._faults:
            if fault.operation != operation or (fault.job is not None and fault.job != job_key):
                continue
            if (fault.kind is FaultKind.ANSWER) != answers:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
            return fault
        return None

    def to_json(self) -> list[dict[str, Any]]:
        """Queued faults for ``GET /_emulator/config``."""
        return [f.to_json() for f in self._faults]


def _raw_body(raw: dict[str, Any]) -> bytes | None:
    """An answer fault's raw bytes from ``body`` (text, sent as UTF-8) or ``bodyBase64``; None when neither."""
    text, encoded = raw.get("body", _MISSING), raw.get("bodyBase64", _MISSING)
    if text is not _MISSING and encoded is not _MISSING:
        raise ValueError("give 'body' or 'bodyBase64', not both")
    if text is not _MISSING:
        if not isinstance(text, str):
            raise ValueError("'body' must be a string (use 'bodyBase64' for bytes)")
        return text.encode("utf-8")
    if encoded is not _MISSING:
        if not isinstance(encoded, str):
            raise ValueError("'bodyBase64' must be a base64 string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("'bodyBase64' is not valid base64") from exc
    return None
