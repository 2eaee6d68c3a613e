"""``status --watch``: poll a request until it is finished, redrawing its progress in place."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cli.client import Answer, ApiClient, JsonObject
from cli.errors import ExitCode
from shared.core.vocabulary import RequestStatus

#: The shortest pause between two polls, whatever ``Retry-After`` says.
MIN_INTERVAL = 0.2


class Display(Protocol):
    """Where each state of the request goes (a rich ``Live``, or nothing for ``--json``)."""

    def update(self, body: JsonObject) -> None: ...


def outcome_code(body: JsonObject) -> ExitCode:
    """``OK`` for a request that succeeded (or is still pending), ``FAILED`` for failed/rejected/cancelled."""
    status = body.get("status")
    if status in (RequestStatus.FAILED, RequestStatus.REJECTED, RequestStatus.CANCELLED):
        return ExitCode.FAILED
    return ExitCode.OK


def finished(answer: Answer, body: JsonObject) -> bool:
    """The app answers ``200`` once every call is finished; a terminal request status says the same."""
    status = body.get("status")
    return answer.status == 200 or (isinstance(status, str) and status != RequestStatus.PENDING)


@dataclass
class Watcher:
    """Polls ``GET /api/provision/{id}`` every ``interval`` seconds (or sooner when ``Retry-After`` says so)."""

    client: ApiClient
    interval: float
    timeout: float | None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def watch(self, request_id: str, display: Display) -> tuple[JsonObject, ExitCode]:
        """The last body seen and the exit code: the outcome's, or ``PENDING`` when ``timeout`` ran out."""
        deadline = None if self.timeout is None else self.clock() + self.timeout
        while True:
            answer = self.client.status(request_id)
            body = answer.json_object()
            display.update(body)
            if finished(answer, body):
                return body, outcome_code(body)
            pause = min(self.interval, answer.retry_after) if answer.retry_after is not None else self.interval
            pause = max(pause, MIN_INTERVAL)
            if deadline is not None and self.clock() + pause > deadline:
                return body, ExitCode.PENDING
            self.sleep(pause)
