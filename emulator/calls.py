"""The log of calls the emulator received, for tests and benchmarks to assert on (never holds tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_CALLS = 100_000


@dataclass
class CallRecord:
    """One request to an emulated Graph or identity endpoint and how it was answered."""

    seq: int
    time: str
    operation: str
    method: str
    path: str
    api_version: str | None
    authorization: str
    client_id: str | None
    body: Any
    request_id: str
    status: int | None = None
    throttled: bool = False
    fault: str | None = None
    service_principal_id: str | None = None
    job_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The control API's JSON for this call."""
        return {
            "seq": self.seq,
            "time": self.time,
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "apiVersion": self.api_version,
            "servicePrincipalId": self.service_principal_id,
            "jobId": self.job_id,
            "authorization": self.authorization,
            "clientId": self.client_id,
            "body": self.body,
            "status": self.status,
            "throttled": self.throttled,
            "fault": self.fault,
            "requestId": self.request_id,
        }


class CallLog:
    """Append-only call log with a bound, so a long benchmark cannot exhaust memory."""

    def __init__(self) -> None:
        self._calls: list[CallRecord] = []
        self._seq = 0

    def start(self, **fields: Any) -> CallRecord:
        """Record a call as it arrives; the handler fills in status and outcome."""
        self._seq += 1
        record = CallRecord(seq=self._seq, time=datetime.now(UTC).isoformat(timespec="milliseconds"), **fields)
        self._calls.append(record)
        if len(self._calls) > MAX_CALLS:
            del self._calls[: len(self._calls) - MAX_CALLS]
        return record

    def clear(self) -> None:
        """Forget every call; sequence numbers start again at 1."""
        self._calls.clear()
        self._seq = 0

    def list(self, operation: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        """Calls in arrival order, optionally only one operation, optionally only those after the ``seq``
        ``after`` (a poller then reads what is new, not the whole log each time)."""
        start = 0
        if after and self._calls:
            start = max(0, min(len(self._calls), after - self._calls[0].seq + 1))
        return [c.to_json() for c in self._calls[start:] if operation is None or c.operation == operation]
