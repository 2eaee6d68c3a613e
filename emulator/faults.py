"""Injected faults: queued per operation, consumed in order, so tests can script "two 503s, then success".

Kinds: ``status`` (an error status with Graph's error body, optional ``Retry-After``), ``429storm`` (a run
of throttling answers), ``drop`` (the connection is closed without a response) and ``slow`` (a delay before
normal handling); and ``answer`` (a ``200`` whose ``key``/``value`` strings are given verbatim, after the
token, rate limit and body checks passed: how tests get Failure-in-200, unparseable and very large answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

OPERATIONS = ("provisionOnDemand", "getJob", "getSchema", "token")

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


@dataclass
class Fault:
    """One queued fault; ``remaining`` counts down as requests hit it."""

    operation: str
    kind: FaultKind
    remaining: int
    status: int = 503
    retry_after: float | None = None
    delay_ms: int = 0
    code: str | None = None
    message: str | None = None
    job: str | None = None
    key: str | None = None
    value: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        """Build a fault from its control-API JSON, refusing anything ambiguous."""
        if not isinstance(raw, dict):
            raise ValueError("a fault must be a JSON object")
        operation = raw.get("operation", "provisionOnDemand")
        if operation not in OPERATIONS:
            raise ValueError(f"fault operation must be one of {OPERATIONS}, got {operation!r}")
        kind = FaultKind(raw.get("kind", "status"))
        status = int(raw.get("status", 429 if kind is FaultKind.STORM else 503))
        if kind is FaultKind.STATUS and not 400 <= status <= 599:
            raise ValueError("a status fault needs a 4xx or 5xx 'status'")
        retry_after = raw.get("retryAfter", 1 if kind is FaultKind.STORM else None)
        if kind is FaultKind.ANSWER:
            if operation != "provisionOnDemand":
                raise ValueError("an answer fault is for provisionOnDemand only")
            for name in ("key", "value"):
                if raw.get(name) is not None and not isinstance(raw.get(name), str):
                    raise ValueError(f"an answer fault's {name!r} must be a string or null")
            status = 200
        times = int(raw.get("times", 1))
        if times < 1:
            raise ValueError("'times' must be at least 1")
        return cls(
            operation=operation,
            kind=kind,
            remaining=times,
            status=429 if kind is FaultKind.STORM else status,
            retry_after=None if retry_after is None else float(retry_after),
            delay_ms=int(raw.get("delayMs", 0)),
            code=raw.get("code"),
            message=raw.get("message"),
            job=raw.get("job"),
            key=raw.get("key"),
            value=raw.get("value"),
        )

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
        if self.kind in (FaultKind.STATUS, FaultKind.STORM):
            out["status"] = self.status
            if self.retry_after is not None:
                out["retryAfter"] = self.retry_after
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
