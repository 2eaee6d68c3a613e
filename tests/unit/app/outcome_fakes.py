"""In-memory implementations of the outcome ports (``MessageQueue``, ``EventPublisher``, ``CallbackClient``);
the outbox marks live on the rows of :class:`tests.unit.app.fakes.InMemoryLedger`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.core.ports import CallbackResult


class InMemoryMessages:
    """Records texts with their delay; ``fail_next`` makes the next sends raise (a queue that is down)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, float]] = []
        self.fail_next = 0

    async def send_text(self, text: str, delay_seconds: float = 0) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise OSError("queue unreachable")
        self.sent.append((text, delay_seconds))


class RecordingPublisher:
    """Records published events."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []

    async def publish(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)


class ScriptedCallbacks:
    """Answers each POST with the next scripted result (the last one repeats) and records the bodies."""

    def __init__(self, *results: CallbackResult) -> None:
        self.results = list(results) or [CallbackResult(True, 200)]
        self.posts: list[tuple[str, bytes]] = []

    async def post(self, url: str, body: bytes) -> CallbackResult:
        self.posts.append((url, body))
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]
